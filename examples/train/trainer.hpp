#pragma once
// One worker of data-parallel training, over any dssync transport: its own
// shard of the training set, reshuffled every epoch with its own seed; its own
// SGD with momentum; and the synchronizer chosen by name. The transport is a
// template parameter and the only thing that differs between threads in one
// process (InProcTransport), processes under mpirun (MPITransport) or over
// plain TCP (TcpTransport), and ranks on the simulated network (SimTransport).
//
// The order of a step follows the methods being compared:
//  - DS-Sync, gossip, local SGD and "none" take the local step, then
//    synchronize the parameters (as the DS-Sync paper's workers do);
//  - the BSP baseline all-reduces the gradients (Average), then every worker
//    takes the same step; SFB (sufficient factor broadcasting) gives the same
//    mean gradient, sending some layers as the factors backprop computed;
//  - StaleSync ("stale") is BSP whose workers compute their gradients at
//    parameters up to --staleness clocks old (its view()), then take the step;
//  - SSPSync ("ssp") all-reduces the gradients in the background: step c gets
//    the mean of step c - s and every worker takes the same step with it;
//  - ShadowSync ("shadow-ma", "shadow-bmuf", "shadow-easgd", "shadow-ds")
//    takes the local step, then merges the last finished background round.
// The two background synchronizers end a run with finish(): SSP's means still
// in flight are applied, and ShadowSync's workers end on the same bits.

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <numbers>
#include <numeric>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <dssync/dssync.hpp>
#include <dssync/sync/shadow.hpp>
#include <dssync/sync/ssp.hpp>

#include "data.hpp"
#include "mlp.hpp"
#include "reconstruct.hpp"
#include "softmax.hpp"

namespace train {

// The synchronizers make_sync knows by name.
inline constexpr std::array<std::string_view, 16> sync_names = {
    "dssync", "allreduce", "sfb",         "sfb-factors",  "stale",
    "ssp",    "shadow-ma", "shadow-bmuf", "shadow-easgd", "shadow-ds",
    "gossip", "localsgd",  "gaia",        "skewscout",    "skewscout-localsgd",
    "none"};

inline std::string sync_name_list() {
  std::string l;
  for (const auto name : sync_names) {
    if (!l.empty()) l += ", ";
    l += name;
  }
  return l;
}

struct Config {
  std::string sync = "dssync";  // dssync | allreduce | sfb | sfb-factors | stale | gossip | localsgd | none
  std::string model = "mlp";    // mlp (784-hidden-10) | softmax (784-10)
  std::vector<int> hidden = {256, 128};  // the MLP's hidden widths
  int staleness = 0;                     // stale: the delay bound s
  std::string delay = "uniform";         // stale: uniform (drawn in 0..s) | fixed (always s)
  double stop_at = 0;  // stop after the first record whose averaged model reaches this test accuracy,
                       // or has diverged (0: never)
  int group_size = 2;
  std::string shuffle = "random";  // random | butterfly | none | topology | racks
  int period = 8;                  // local SGD: average every H steps
  std::string reduce = "ring";     // allreduce, localsgd, skewscout-localsgd, sfb*: ring | hd (halving-doubling) | hier
  int epochs = 10;
  int batch = 32;  // per worker
  float lr = 0.05f;
  std::string schedule = "cosine";  // cosine (from lr to 0 over all steps) | constant
  float momentum = 0.9f;
  std::uint64_t seed = 1;
  std::size_t train_limit = 0;  // use only the first N training images (0: all)
  bool checked = false;
  bool evaluate_workers = true;  // each worker's own test accuracy (for the worst)
  int evals_per_epoch = 1;       // evaluations (records) per epoch, at even steps
  int rack_size = 0;             // ranks per rack, for --shuffle topology|racks (0: one per rank)
  int envoys = 2;                // --shuffle racks: members per rack that cross the uplink each step
  double sim_compute = 0;        // sim: compute seconds per step in virtual time (0: the measured time)
  double sim_jitter = 0;         // sim: a step's compute is C (1 + X J), J ~ Exp(1) from (seed, rank, step)
  double sim_straggler = 1;      // sim: rank 0's compute is this many times the others'
  std::uint64_t max_lag = std::numeric_limits<std::uint64_t>::max();  // shadow: steps a round may lag
  std::uint64_t shadow_period = 0;  // shadow: steps between round starts, at least
  int sfb_background_channel = 0;  // sfb*: the channel of the traffic after the k's (0: all in sequence)
  std::optional<double> block_momentum;  // shadow-bmuf: eta (none: 1 - 1/n, Chen and Huo's rule)
  std::optional<double>
      easgd_alpha;  // shadow-easgd: the elastic pull (none: 0.9 / n, EASGD's n alpha = 0.9)
  std::string partition = "iid";  // iid | skew:p (fraction p of each class in its home DC)
  int dcs = 1;                    // data centers: consecutive blocks of n / dcs ranks
  std::string norm = "none";      // the MLP's norm: none | batch | group:G
  double gaia_threshold = 0.01;   // gaia, skewscout: T0 (Gaia's relative significance)
  int gaia_slack = 0;             // gaia, skewscout: the mirror clock's slack
  int gaia_period = 1;            // gaia, skewscout: clocks between exchanges across data centers
  double scout_target = 0.05;     // skewscout*: the accuracy loss to stay under
  int scout_period = 0;           // skewscout*: steps between estimates (0: once an epoch)
  std::string scout_baseline = "visitor-home";  // skewscout*: visitor-home | host-model
  std::string scout_moment = "after-step";  // skewscout*: after-step | before-sync
  double scout_step = 2;          // skewscout*: the knob's factor (loosen; tighten is its inverse)
  double scout_min = 0;           // skewscout*: the knob's floor (0: 1 step for a period, 1e-4 for a threshold)
  int probe_samples = 512;        // skewscout*: the probe set, from each leader's own shard

  // A short name for tables, logs and plot legends: the synchronizer's, then
  // the data partition, data centers and norm when they are not the defaults
  // (so the labels of runs without them stay as they were).
  std::string label() const {
    std::string l = sync_label();
    if (partition != "iid") l += " " + partition;
    if (dcs != 1) l += " dcs=" + std::to_string(dcs);
    if (norm != "none") l += " norm=" + norm;
    return l;
  }

  std::string sync_label() const {
    if (sync == "dssync" && shuffle == "topology") return "dssync topology-aware";
    if (sync == "dssync" && shuffle == "racks") return "dssync racks e=" + std::to_string(envoys);
    if (sync == "dssync")
      return "dssync g=" + std::to_string(group_size) + " " + shuffle;
    if (sync == "localsgd") return "localsgd H=" + std::to_string(period) + reduce_suffix();
    if (sync == "gaia" || sync == "skewscout") {
      std::ostringstream l;
      l << (sync == "gaia" ? "gaia" : "skewscout gaia") << " T=" << gaia_threshold;
      if (gaia_period > 1) l << " period=" << gaia_period;
      if (gaia_slack > 0) l << " slack=" << gaia_slack;
      if (sync == "skewscout") l << " target=" << scout_target << scout_suffix();
      return l.str();
    }
    if (sync == "skewscout-localsgd") {
      std::ostringstream l;
      l << "skewscout localsgd H=" << period << reduce_suffix() << " target=" << scout_target << scout_suffix();
      return l.str();
    }
    if (sync == "gossip") return "gossip ring";
    if (sync == "allreduce") return "bsp allreduce" + reduce_suffix() + model_suffix();
    if (sync == "sfb") return "sfb hybrid" + reduce_suffix() + model_suffix() + sfb_suffix();
    if (sync == "sfb-factors")
      return "sfb factors" + reduce_suffix() + model_suffix() + sfb_suffix();
    if (sync == "stale") return "stale s=" + std::to_string(staleness) + " " + delay + model_suffix();
    if (sync == "ssp") return "ssp s=" + std::to_string(staleness) + model_suffix();
    if (sync.starts_with("shadow-")) {
      std::string l = sync;
      if (sync == "shadow-ds") l += " g=" + std::to_string(group_size);
      if (max_lag != std::numeric_limits<std::uint64_t>::max()) l += " lag<=" + std::to_string(max_lag);
      if (shadow_period > 1) l += " every>=" + std::to_string(shadow_period);
      return l;
    }
    return sync;
  }
  // Nothing for the default MLP, so that the existing records' labels stay.
  // The all-reduce of BSP and local SGD (SkewScout's too) when it is not the ring.
  std::string reduce_suffix() const { return reduce == "ring" ? "" : " " + reduce; }
  std::string scout_suffix() const {
    std::ostringstream l;
    if (scout_baseline != "visitor-home") l << " " << scout_baseline;
    if (scout_moment != "after-step") l << " " << scout_moment;
    if (scout_step != 2) l << " step=" << scout_step;
    if (scout_min != 0) l << " min=" << scout_min;
    return l.str();
  }
  // SFB with its traffic in the background: " beside" (the records' label);
  // in sequence nothing, so the labels of the older records stay.
  std::string sfb_suffix() const { return sfb_background_channel > 0 ? " beside" : ""; }

  std::string model_suffix() const {
    if (model != "mlp") return " " + model;
    if (hidden == Shape{}.hidden) return "";
    std::string widths;
    // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on "," + std::to_string(w).
    for (const int w : hidden) {
      if (!widths.empty()) widths += ',';
      widths += std::to_string(w);
    }
    return " mlp " + widths;
  }
};

// What a worker's epoch amounts to, over all workers.
struct EpochRecord {
  double epoch = 0;           // epochs trained so far (fractional with evals_per_epoch > 1)
  double train_loss = 0;      // mean over the epoch's samples of all workers
  double test_acc_avg = 0;    // the averaged model's test accuracy
  double test_loss_avg = 0;   // and its test loss
  double test_acc_worst = 0;  // the worst worker's own test accuracy (NaN when not evaluated)
  double consensus = 0;       // mean over workers of ||x_i - mean||^2
  double bytes_per_worker = 0;  // sent by the synchronizer since the last record, the most of any worker
                                // (NaN when the synchronizer does not count its bytes: SSP, ShadowSync)
  double seconds = 0;         // training time since the last record, the slowest worker's
  double wall = 0;            // cumulative training time
  // Seconds since the last record spent inside the synchronizer's step() and
  // finish(), the mean over workers (virtual on the simulator): for SSP the
  // trainer's waiting for a step's mean, for BSP the exchange.
  double sync_seconds = 0;
  // ShadowSync: rounds started so far (mean over workers) and the mean over
  // all merges so far of the steps between a round's snapshot and its merge.
  double rounds = 0;
  double merge_lag = 0;
  // Bytes that left their rack (a data center on the simulator) since the
  // last record, all workers together; NaN off the simulator.
  double wan_bytes = 0;
  // The communication knob at the record (GaiaSync's threshold, local SGD's
  // period; NaN without one), and of the entries Gaia's filters looked at
  // since the last record, the share they sent (NaN without Gaia).
  double knob = 0;
  double significant = 0;
  double estimate = 0;  // SkewScout's last estimated accuracy loss (NaN without SkewScout)
  double steps = 0;  // steps since the last record, each worker's
};

// A background synchronizer's own counts, for the records.
struct RoundCounts {
  double rounds = 0, merges = 0, lag_steps = 0;
};

// The synchronizer behind a name, with one face for the training loop.
class ParamSync {
 public:
  virtual ~ParamSync() = default;
  virtual void step(std::span<float> x) = 0;
  virtual dssync::SyncStats stats() const = 0;
  // True when step() is given gradients (BSP), false when parameters.
  virtual bool on_gradients() const { return false; }
  // True when the gradients go with their factors, to step_factors (SFB).
  virtual bool wants_factors() const { return false; }
  virtual void step_factors(std::span<float> g, std::span<const dssync::FactorView>) { step(g); }
  // The parameters at which to compute this step's gradient: `params` itself
  // but for StaleSync, whose view() gives an older copy.
  virtual std::span<const float> view(std::span<const float> params) { return params; }
  // The end of a run, on every worker; `lr` is the last step's learning rate.
  // SSPSync applies the means still in flight, ShadowSync ends on equal bits.
  virtual void finish(std::span<float> /*params*/, float /*lr*/) {}
  // The model every worker starts from, before the first step (GaiaSync's
  // first reference), and each step's learning rate over the first one (its
  // threshold follows it).
  virtual void start(std::span<const float> /*params*/) {}
  virtual void learning_rate(double /*scale*/) {}

  virtual RoundCounts rounds() const { return {}; }
  // The communication knob (NaN: none), and GaiaSync's running counts of
  // entries sent across and entries considered ({0, 0}: not Gaia).
  virtual double knob() const { return std::numeric_limits<double>::quiet_NaN(); }
  virtual std::pair<double, double> significance() const { return {0, 0}; }
  // SkewScout's last estimated accuracy loss (NaN: no SkewScout).
  virtual double estimate() const { return std::numeric_limits<double>::quiet_NaN(); }
  // False when stats().bytes_sent does not count what the synchronizer sends
  // (every synchronizer here counts; SSPSync and ShadowSync as their
  // background jobs end, so a record holds the jobs finished by then).
  virtual bool counts_bytes() const { return true; }
};

namespace detail {
template <class Sync>
class SyncOf final : public ParamSync {
 public:
  template <class... Args>
  explicit SyncOf(bool gradients, Args&&... args)
      : sync_(std::forward<Args>(args)...), gradients_(gradients) {}
  void step(std::span<float> x) override { sync_.step(x); }
  dssync::SyncStats stats() const override { return sync_.stats(); }
  bool on_gradients() const override { return gradients_; }
  double knob() const override {
    if constexpr (requires { sync_.knob(); })
      return sync_.knob();
    else
      return ParamSync::knob();
  }
  std::span<const float> view(std::span<const float> params) override {
    if constexpr (requires { sync_.view(params); })
      return sync_.view(params);
    else
      return params;
  }

 private:
  Sync sync_;
  bool gradients_;
};

template <class T, class Reduce>
class SfbOf final : public ParamSync {
 public:
  SfbOf(T& t, std::vector<dssync::SFBLayer> layers, dssync::SFBOptions o, Reduce reduce)
      : sync_(t, std::move(layers), o, FusedReconstruct{}, std::move(reduce)) {}
  void step(std::span<float>) override {
    throw std::logic_error("SFB synchronizes gradients with their factors: step_factors");
  }
  void step_factors(std::span<float> g, std::span<const dssync::FactorView> f) override {
    sync_.step(g, f);
  }
  dssync::SyncStats stats() const override { return sync_.stats(); }
  bool on_gradients() const override { return true; }
  bool wants_factors() const override { return true; }

 private:
  dssync::SFBSync<T, Reduce, FusedReconstruct> sync_;
};

// SSPSync on gradients. The means still in flight at the end are applied as
// the header shows, params -= lr * rest, with the last learning rate: no
// momentum step, so that staleness 0 (rest = 0) leaves BSP's parameters as
// they are, to the bit.
template <class T>
class SspOf final : public ParamSync {
 public:
  SspOf(T& t, std::size_t parameters, dssync::SSPSyncOptions o)
      : sync_(t, parameters, o), rest_(parameters) {}
  void step(std::span<float> g) override { sync_.step(g); }
  void finish(std::span<float> params, float lr) override {
    sync_.finish(std::span<float>(rest_));
    for (std::size_t i = 0; i < rest_.size(); ++i) params[i] -= lr * rest_[i];
  }
  dssync::SyncStats stats() const override { return sync_.stats(); }
  bool on_gradients() const override { return true; }

 private:
  dssync::SSPSync<T> sync_;
  std::vector<float> rest_;
};

// ShadowSync on parameters, after the local step: on all `parameters` of the
// model, or only on the first `synchronized` of them (the trainable ones,
// before batch norm's running statistics), which the rounds then never see:
// each worker keeps its own, as under BSP.
template <class T, template <class, class> class Round>
class ShadowOf final : public ParamSync {
 public:
  template <class... Args>
  ShadowOf(T& t, std::size_t parameters, std::size_t synchronized, Args&&... args)
      : sync_(t, synchronized, std::forward<Args>(args)...), parameters_(parameters) {}
  void step(std::span<float> x) override { sync_.step(seen(x)); }
  void finish(std::span<float> params, float) override { sync_.finish(seen(params)); }
  dssync::SyncStats stats() const override { return sync_.stats(); }
  RoundCounts rounds() const override {
    const auto& s = sync_.stats();
    return {static_cast<double>(s.rounds), static_cast<double>(s.merges), static_cast<double>(s.lag_steps)};
  }

 private:
  // The part of the model the rounds see; a buffer of another size goes
  // whole, for ShadowSync to report.
  std::span<float> seen(std::span<float> x) const {
    return x.size() == parameters_ ? x.first(sync_.parameters()) : x;
  }

  dssync::ShadowSync<T, Round> sync_;
  std::size_t parameters_;
};

// GaiaSync across the --dcs data centers, alone or inside SkewScout (whose
// knob is its threshold); made by start(), when the initial model is known.
template <class T>
class GaiaOf final : public ParamSync {
 public:
  using Probe = std::function<double(std::span<const float>)>;
  GaiaOf(T& t, std::vector<std::string> dcs, dssync::GaiaOptions o, bool scout,
         dssync::SkewScoutOptions so, Probe probe)
      : t_(t), dcs_(std::move(dcs)), options_(o), scout_(scout), scout_options_(so),
        probe_(std::move(probe)) {}
  void start(std::span<const float> params) override {
    gaia_.emplace(t_, params, dcs_, options_);
    if (scout_) skewscout_.emplace(t_, *gaia_, dcs_, scout_options_, probe_);
  }
  void learning_rate(double scale) override { gaia_->set_lr_scale(scale); }
  void step(std::span<float> x) override {
    if (skewscout_)
      skewscout_->step(x);
    else
      gaia_->step(x);
  }
  void finish(std::span<float> params, float) override { gaia_->finish(params); }
  dssync::SyncStats stats() const override {
    return gaia_ ? static_cast<dssync::SyncStats>(gaia_->stats()) : dssync::SyncStats{};
  }
  double knob() const override { return gaia_ ? gaia_->knob() : ParamSync::knob(); }
  double estimate() const override { return skewscout_ ? skewscout_->stats().loss : ParamSync::estimate(); }
  std::pair<double, double> significance() const override {
    if (!gaia_) return {0, 0};
    return {static_cast<double>(gaia_->stats().significant),
            static_cast<double>(gaia_->stats().considered)};
  }

 private:
  T& t_;
  std::vector<std::string> dcs_;
  dssync::GaiaOptions options_;
  bool scout_;
  dssync::SkewScoutOptions scout_options_;
  Probe probe_;
  std::optional<dssync::GaiaSync<T>> gaia_;
  std::optional<dssync::SkewScout<dssync::GaiaSync<T>>> skewscout_;
};

// SkewScout around LocalSGD over AllReduceSync (the all-reduce `reduce`): the
// knob is the period.
template <class T, class Reduce>
class ScoutedLocalOf final : public ParamSync {
 public:
  using Local = dssync::LocalSGD<dssync::AllReduceSync<T, Reduce>>;
  ScoutedLocalOf(T& t, int period, bool checked, const std::vector<std::string>& dcs,
                 dssync::SkewScoutOptions so, std::function<double(std::span<const float>)> probe,
                 Reduce reduce)
      : local_(t, typename Local::Options{.period = period, .inner = {.checked = checked}},
               std::move(reduce)),
        scout_(t, local_, dcs, so, std::move(probe)) {}
  void step(std::span<float> x) override { scout_.step(x); }
  dssync::SyncStats stats() const override { return local_.stats(); }
  double knob() const override { return local_.knob(); }
  double estimate() const override { return scout_.stats().loss; }

 private:
  Local local_;
  dssync::SkewScout<Local> scout_;
};

// BSP (the all-reduce of gradients) or local SGD (of parameters, every
// --period steps) over the all-reduce `reduce`.
template <dssync::transport T, class Reduce>
std::unique_ptr<ParamSync> bsp_or_local(T& t, const Config& c, Reduce reduce) {
  using Bsp = dssync::AllReduceSync<T, Reduce>;
  const dssync::AllReduceSyncOptions o{.checked = c.checked};
  if (c.sync == "allreduce") return std::make_unique<SyncOf<Bsp>>(true, t, o, std::move(reduce));
  using Local = dssync::LocalSGD<Bsp>;
  return std::make_unique<SyncOf<Local>>(
      false, t, typename Local::Options{.period = c.period, .inner = o}, std::move(reduce));
}

class NoSync final : public ParamSync {
 public:
  void step(std::span<float>) override { ++stats_.steps; }
  dssync::SyncStats stats() const override { return stats_; }

 private:
  dssync::SyncStats stats_;
};
}  // namespace detail

// `layers`: the model's fully connected layers, for SFB; `parameters`: the
// model's size, for StaleSync's history.
// `probe`: a worker's accuracy on its probe set, for SkewScout.
// `trainable`: the leading parameters a gradient step changes (0: all of
// them). The rest, batch norm's running statistics, are synchronized with the
// model by the synchronizers that average it, but not by the rounds that are
// not a plain average (shadow-bmuf's block momentum, shadow-easgd's elastic
// pull, which would extrapolate them): there each worker keeps its own.
template <dssync::transport T>
std::unique_ptr<ParamSync> make_sync(T& t, const Config& c,
                                     std::vector<dssync::SFBLayer> layers = {},
                                     std::size_t parameters = 0,
                                     std::function<double(std::span<const float>)> probe = {},
                                     std::size_t trainable = 0) {
  using namespace dssync;
  const DSSyncOptions ds{.group_size = c.group_size, .seed = c.seed, .checked = c.checked};
  if (c.sync == "dssync") {
    if (c.shuffle == "random")
      return std::make_unique<detail::SyncOf<DSSync<T, RandomShuffle, RingReduce>>>(false, t, ds);
    if (c.shuffle == "butterfly")
      return std::make_unique<detail::SyncOf<DSSync<T, ButterflyShuffle, RingReduce>>>(false, t, ds);
    if (c.shuffle == "none")
      return std::make_unique<detail::SyncOf<DSSync<T, NoShuffle, RingReduce>>>(false, t, ds);
    // Racks of rack_size consecutive ranks, for the two rack-aware groupings.
    std::vector<std::string> racks;
    for (int r = 0; r < t.size(); ++r)
      racks.push_back("rack" + std::to_string(c.rack_size > 0 ? r / c.rack_size : r));
    if (c.shuffle == "topology")
      return std::make_unique<detail::SyncOf<DSSync<T, NoShuffle, RingReduce, TopologyAwareGroups>>>(
          false, t, ds, NoShuffle{}, RingReduce{}, TopologyAwareGroups(racks));
    if (c.shuffle == "racks")
      return std::make_unique<detail::SyncOf<DSSync<T, NoShuffle, RingReduce, RackGroups>>>(
          false, t, ds, NoShuffle{}, RingReduce{}, RackGroups(racks, c.envoys, c.seed));
    throw std::invalid_argument("unknown shuffle '" + c.shuffle + "' (random, butterfly, none, topology, racks)");
  }
  // The data centers' labels: consecutive blocks of n / dcs ranks.
  auto dc_labels = [&] {
    std::vector<std::string> dcs;
    const int per_dc = t.size() / std::max(1, c.dcs);
    for (int r = 0; r < t.size(); ++r) dcs.push_back("dc" + std::to_string(r / std::max(1, per_dc)));
    return dcs;
  };
  // f(the all-reduce that --reduce names).
  auto with_reduce = [&](auto f) -> std::unique_ptr<ParamSync> {
    if (c.reduce == "ring") return f(RingReduce{});
    if (c.reduce == "hd") return f(HalvingDoublingReduce{});
    if (c.reduce == "hier") return f(HierarchicalReduce(dc_labels()));
    throw std::invalid_argument("unknown all-reduce '" + c.reduce + "' (ring, hd, hier)");
  };
  if (c.sync == "allreduce" || c.sync == "localsgd")
    return with_reduce([&](auto reduce) { return detail::bsp_or_local(t, c, std::move(reduce)); });
  if (c.sync == "sfb" || c.sync == "sfb-factors") {
    const SFBOptions o{.mode = c.sync == "sfb" ? SFBMode::hybrid : SFBMode::factors,
                       .checked = c.checked,
                       .expected_k = c.batch,
                       .background_channel = c.sfb_background_channel};
    return with_reduce([&](auto reduce) -> std::unique_ptr<ParamSync> {
      return std::make_unique<detail::SfbOf<T, decltype(reduce)>>(t, std::move(layers), o, reduce);
    });
  }
  if (c.sync == "stale") {
    const StaleSyncOptions o{.seed = c.seed, .checked = c.checked};
    if (c.delay == "uniform")
      return std::make_unique<detail::SyncOf<StaleSync<T, UniformDelay>>>(
          true, t, parameters, UniformDelay{c.staleness}, o);
    if (c.delay == "fixed")
      return std::make_unique<detail::SyncOf<StaleSync<T, FixedDelay>>>(
          true, t, parameters, FixedDelay{c.staleness}, o);
    throw std::invalid_argument("unknown delay '" + c.delay + "' (uniform, fixed)");
  }
  if (c.sync == "ssp" || c.sync.starts_with("shadow-")) {
    if constexpr (transport_with_channels<T>) {
      if (c.sync == "ssp")
        return std::make_unique<detail::SspOf<T>>(
            t, parameters, SSPSyncOptions{.staleness = c.staleness, .checked = c.checked});
      const ShadowSyncOptions so{.max_lag = c.max_lag, .period = c.shadow_period};
      // BMUF's and EASGD's rounds on the trainable parameters only.
      const std::size_t trained = trainable > 0 ? std::min(trainable, parameters) : parameters;
      if (c.sync == "shadow-ma")
        return std::make_unique<detail::ShadowOf<T, ShadowAverage>>(
            t, parameters, parameters, so, AllReduceSyncOptions{.checked = c.checked});
      if (c.sync == "shadow-bmuf")
        return std::make_unique<detail::ShadowOf<T, ShadowBMUF>>(
            t, parameters, trained, so,
            ShadowBMUFOptions{.block_momentum = c.block_momentum.value_or(1.0 - 1.0 / t.size())});
      if (c.sync == "shadow-easgd")
        return std::make_unique<detail::ShadowOf<T, ShadowEASGD>>(
            t, parameters, trained, so,
            ShadowEASGDOptions{.alpha = c.easgd_alpha.value_or(0.9 / t.size())});
      if (c.sync == "shadow-ds")
        return std::make_unique<detail::ShadowOf<T, ShadowDS>>(t, parameters, parameters, so, ds);
      throw std::invalid_argument("unknown synchronizer '" + c.sync +
                                  "' (shadow-ma, shadow-bmuf, shadow-easgd, shadow-ds)");
    } else {
      throw std::invalid_argument("--sync " + c.sync +
                                  " runs in the background on a second channel: this transport has no channels");
    }
  }
  if (c.sync == "gossip")
    return std::make_unique<detail::SyncOf<GossipSync<T, RingTopology>>>(false, t);
  if (c.sync == "gaia" || c.sync.starts_with("skewscout")) {
    std::vector<std::string> dcs = dc_labels();
    if (c.scout_period < 0) throw std::invalid_argument("--scout-period must be at least 0");
    if (c.scout_baseline != "host-model" && c.scout_baseline != "visitor-home")
      throw std::invalid_argument("unknown --scout-baseline '" + c.scout_baseline +
                                  "' (visitor-home, host-model)");
    if (c.scout_moment != "after-step" && c.scout_moment != "before-sync")
      throw std::invalid_argument("unknown --scout-moment '" + c.scout_moment + "' (after-step, before-sync)");
    if (!(c.scout_step > 1) || !std::isfinite(c.scout_step))
      throw std::invalid_argument("--scout-step must be above 1, got " + std::to_string(c.scout_step));
    const SkewScoutOptions so{
        .target = c.scout_target,
        .period = static_cast<std::uint64_t>(c.scout_period > 0 ? c.scout_period : 500),
        .tighten = 1 / c.scout_step,
        .loosen = c.scout_step,
        .knob_min = c.scout_min > 0 ? c.scout_min : c.sync == "skewscout-localsgd" ? 1.0 : 1e-4,
        .knob_max = c.sync == "skewscout-localsgd" ? 1e6 : 1.0,
        .baseline = c.scout_baseline == "host-model" ? SkewScoutBaseline::host_model
                                                      : SkewScoutBaseline::visitor_home,
        .moment = c.scout_moment == "before-sync" ? SkewScoutMoment::before_sync
                                                  : SkewScoutMoment::after_step};
    if (c.sync == "skewscout-localsgd")
      return with_reduce([&](auto reduce) -> std::unique_ptr<ParamSync> {
        return std::make_unique<detail::ScoutedLocalOf<T, decltype(reduce)>>(
            t, c.period, c.checked, dcs, so, std::move(probe), std::move(reduce));
      });
    if (c.sync != "gaia" && c.sync != "skewscout")
      throw std::invalid_argument("unknown synchronizer '" + c.sync + "' (skewscout, skewscout-localsgd)");
    const GaiaOptions go{
        .threshold = c.gaia_threshold, .slack = c.gaia_slack, .period = c.gaia_period, .checked = c.checked};
    return std::make_unique<detail::GaiaOf<T>>(t, std::move(dcs), go, c.sync == "skewscout", so,
                                               std::move(probe));
  }
  if (c.sync == "none") return std::make_unique<detail::NoSync>();
  throw std::invalid_argument("unknown synchronizer '" + c.sync + "' (" + sync_name_list() + ")");
}

// The channels a run of `c` uses on each rank (a transport with channels
// must have at least as many): channel 0, and channel 1 where the
// synchronizer runs in the background (SSPSync, ShadowSync, GaiaSync and
// SkewScout around it with slack >= 1), or SFB's --sfb-background-channel.
inline int channels_used(const Config& c) {
  if (c.sync == "ssp" || c.sync.starts_with("shadow-")) return 2;
  if ((c.sync == "gaia" || c.sync == "skewscout") && c.gaia_slack > 0) return 2;
  if (c.sync == "sfb" || c.sync == "sfb-factors") return std::max(0, c.sfb_background_channel) + 1;
  return 1;
}

// Checks the --sync list before any run, so that a bad name or option does
// not end the program after the runs before it: every name known, and what
// a name's synchronizer takes of the options (n: the workers, 0 if unknown).
inline void check_syncs(const std::vector<std::string>& syncs, const Config& c, int n) {
  if (syncs.empty()) throw std::invalid_argument("--sync names no synchronizer");
  for (const auto& s : syncs) {
    if (std::find(sync_names.begin(), sync_names.end(), s) == sync_names.end())
      throw std::invalid_argument("unknown synchronizer '" + s + "' in --sync (" +
                                  sync_name_list() + ")");
    if (s == "shadow-bmuf" && c.block_momentum &&
        !(*c.block_momentum >= 0 && *c.block_momentum < 1))
      throw std::invalid_argument("--block-momentum must be in [0, 1)");
    // EASGD's centre diverges unless n alpha < 2.
    if (s == "shadow-easgd" && c.easgd_alpha &&
        !(*c.easgd_alpha > 0 && (n < 1 || *c.easgd_alpha * n < 2))) {
      std::ostringstream m;
      m << "--easgd-alpha must be in (0, 2/n)";
      if (n > 0) m << ": below " << 2.0 / n << " for " << n << " workers";
      throw std::invalid_argument(m.str());
    }
    if (s.starts_with("skewscout") && !(c.scout_step > 1 && std::isfinite(c.scout_step)))
      throw std::invalid_argument("--scout-step must be above 1");
  }
}

// Worker me of n holds samples me, me + n, me + 2n, ... of the first
// `samples`; each epoch it visits them in its own random order, drawn from
// (seed, worker, epoch).
inline std::vector<std::size_t> shuffle_shard(std::vector<std::size_t> shard, int me,
                                              std::uint64_t seed, int epoch) {
  dssync::CounterRng rng(seed * 1000003u + static_cast<std::uint64_t>(me),
                         static_cast<std::uint64_t>(epoch));
  dssync::random_permute(std::span<std::size_t>(shard), rng);
  return shard;
}
inline std::vector<std::size_t> epoch_order(int me, int n, std::size_t samples, std::uint64_t seed,
                                            int epoch) {
  std::vector<std::size_t> shard;
  for (std::size_t i = static_cast<std::size_t>(me); i < samples; i += static_cast<std::size_t>(n))
    shard.push_back(i);
  return shuffle_shard(std::move(shard), me, seed, epoch);
}

// Every worker takes the same number of steps per epoch: as many full
// batches as the smallest shard holds.
inline std::size_t steps_per_epoch(int n, std::size_t samples, int batch) {
  return (samples / static_cast<std::size_t>(n)) / static_cast<std::size_t>(batch);
}

// How the training set is split over the workers (--partition, --dcs).
// The workers form `dcs` data centers of n / dcs consecutive ranks (rank r in
// data center r / (n / dcs)); class c's home is data center c mod dcs.
// iid: today's split, worker r holding samples r, r + n, ... (the data
// centers play no part). skew:p: of each class's images, taken in an order
// drawn from (seed, class), the first round(p x count) go to the class's home
// data center, dealt round-robin over its workers (one counter per data
// center, classes in order); all the others, in index order, are dealt
// round-robin over all n workers, that is evenly over the data centers and
// round-robin inside each. Every image is then in exactly one shard; skew:0
// deals every image round-robin in index order: today's split, to the bit.
struct DataPartition {
  double skew = -1;  // negative: iid
  int dcs = 1;

  // "iid" or "skew:p" with p in [0, 1]; dcs at least 1.
  static DataPartition parse(const std::string& spec, int dcs) {
    if (dcs < 1)
      throw std::invalid_argument("--dcs " + std::to_string(dcs) + ": must be at least 1");
    if (spec == "iid") return {-1, dcs};
    if (spec.starts_with("skew:")) {
      const std::string v = spec.substr(5);
      std::size_t used = 0;
      double p = -1;
      try {
        p = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (v.empty() || used != v.size() || !(p >= 0.0 && p <= 1.0))
        throw std::invalid_argument("--partition " + spec +
                                    ": p must be a number in [0, 1] (skew:p)");
      return {p, dcs};
    }
    throw std::invalid_argument("unknown --partition '" + spec + "' (iid, skew:p)");
  }
  bool iid() const { return skew < 0; }
  // The data center of rank r of n; n must be a multiple of dcs.
  int dc_of(int r, int n) const { return r / (n / dcs); }
  void check(int n) const {
    if (dcs < 1 || n % dcs != 0)
      throw std::invalid_argument("--dcs " + std::to_string(dcs) + " does not divide the " +
                                  std::to_string(n) + " workers into equal data centers (n = " +
                                  std::to_string(n) + ", D = " + std::to_string(dcs) + ")");
  }

  // Every worker's shard (sample indices in increasing order) of the first
  // labels.size() samples, the same on every worker.
  std::vector<std::vector<std::size_t>> shards(int n, std::span<const int> labels,
                                               std::uint64_t seed,
                                               int classes = Dataset::classes) const {
    check(n);
    const auto workers = static_cast<std::size_t>(n);
    std::vector<std::vector<std::size_t>> out(workers);
    if (iid()) {
      for (std::size_t i = 0; i < labels.size(); ++i) out[i % workers].push_back(i);
      return out;
    }
    // Each class's images, in the order drawn from (seed, class).
    std::vector<std::vector<std::size_t>> of_class(static_cast<std::size_t>(classes));
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] < 0 || labels[i] >= classes)
        throw std::invalid_argument("label " + std::to_string(labels[i]) + " at index " +
                                    std::to_string(i) + " is not one of the " +
                                    std::to_string(classes) + " classes");
      of_class[static_cast<std::size_t>(labels[i])].push_back(i);
    }
    std::vector<char> home(labels.size(), 0);
    const int per_dc = n / dcs;
    std::vector<std::size_t> dealt(static_cast<std::size_t>(dcs), 0);  // per data center
    for (int c = 0; c < classes; ++c) {
      auto& own = of_class[static_cast<std::size_t>(c)];
      dssync::CounterRng rng(dssync::detail::mix64(seed ^ 0x5c3e9a11ULL),
                             static_cast<std::uint64_t>(c));
      dssync::random_permute(std::span<std::size_t>(own), rng);
      const auto at_home =
          static_cast<std::size_t>(std::llround(skew * static_cast<double>(own.size())));
      const int dc = c % dcs;
      for (std::size_t k = 0; k < at_home; ++k) {
        const std::size_t worker =
            static_cast<std::size_t>(dc * per_dc) +
            dealt[static_cast<std::size_t>(dc)]++ % static_cast<std::size_t>(per_dc);
        out[worker].push_back(own[k]);
        home[own[k]] = 1;
      }
    }
    std::size_t spread = 0;
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (!home[i]) out[spread++ % workers].push_back(i);
    for (auto& shard : out) std::sort(shard.begin(), shard.end());
    return out;
  }
};

// Worker me's order for an epoch under a partition: its shard, reshuffled as
// epoch_order reshuffles today's (iid and skew:0 give epoch_order's bits).
inline std::vector<std::size_t> epoch_order(int me,
                                            const std::vector<std::vector<std::size_t>>& shards,
                                            std::uint64_t seed, int epoch) {
  return shuffle_shard(shards[static_cast<std::size_t>(me)], me, seed, epoch);
}

// Under a skewed partition the shards differ in size. Every worker still
// takes the same number of steps per epoch (the synchronizers step together):
// as many full batches as the smallest shard holds. A worker with a larger
// shard uses, each epoch, the first steps x batch images of its freshly
// reshuffled shard and leaves the rest for that epoch; the reshuffle picks
// other ones the next epoch. So under skew "every image once per epoch"
// holds of the shards (each image is in exactly one), not of every epoch.
inline std::size_t steps_per_epoch(const std::vector<std::vector<std::size_t>>& shards, int batch) {
  std::size_t smallest = std::numeric_limits<std::size_t>::max();
  for (const auto& shard : shards) smallest = std::min(smallest, shard.size());
  return shards.empty() ? 0 : smallest / static_cast<std::size_t>(batch);
}

// Time as the transport sees it: a simulated transport's virtual clock (its
// ranks share one thread, so wall time means nothing per rank), else the wall.
template <class T>
double now_seconds(const T& t) {
  if constexpr (requires { t.now(); })
    return t.now();
  else
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Bytes this rank has sent out of its rack (a data center), when the
// transport counts them (the simulator); NaN otherwise.
template <class T>
double uplink_bytes(const T& t) {
  if constexpr (requires { t.uplink_bytes(); })
    return t.uplink_bytes();
  else
    return std::numeric_limits<double>::quiet_NaN();
}

template <dssync::transport T, class Model>
std::vector<float> train_model(T& t, const Dataset& data, const Config& c,
                               const std::function<void(const EpochRecord&)>& on_epoch,
                               Model& model);

// Runs the training on this worker; calls on_epoch (on rank 0 only) for the
// starting point (epoch 0, no training loss) and after each record (each epoch,
// or evals_per_epoch times an epoch) with the figures of all workers, and
// returns this worker's final parameters. Every worker must call it with the
// same data and config.
template <dssync::transport T>
std::vector<float> train_worker(T& t, const Dataset& data, const Config& c,
                                const std::function<void(const EpochRecord&)>& on_epoch = {}) {
  if (c.model == "softmax") {
    if (c.norm != "none")
      throw std::invalid_argument("--norm " + c.norm +
                                  ": the softmax model has no hidden layer to normalize");
    Softmax model(SoftmaxShape{}, std::max(c.batch, 250));
    return train_model(t, data, c, on_epoch, model);
  }
  if (c.model != "mlp") throw std::invalid_argument("unknown model '" + c.model + "' (mlp, softmax)");
  Mlp model(Shape{.hidden = c.hidden, .norm = Norm::parse(c.norm)}, std::max(c.batch, 250));
  return train_model(t, data, c, on_epoch, model);
}

// The loop of train_worker, for either model.
template <dssync::transport T, class Model>
std::vector<float> train_model(T& t, const Dataset& data, const Config& c,
                               const std::function<void(const EpochRecord&)>& on_epoch,
                               Model& model) {
  using clock = std::chrono::steady_clock;
  const int n = t.size(), me = t.rank();
  if (c.batch < 1) throw std::invalid_argument("--batch must be at least 1");
  const std::size_t samples =
      c.train_limit ? std::min(c.train_limit, data.train.size()) : data.train.size();
  // iid keeps today's code path (epoch_order(me, n, samples, ...)); a skewed
  // partition deals the shards once and reshuffles this worker's each epoch.
  const DataPartition partition = DataPartition::parse(c.partition, c.dcs);
  partition.check(n);
  const std::vector<std::vector<std::size_t>> shards =
      partition.iid()
          ? std::vector<std::vector<std::size_t>>{}
          : partition.shards(n, std::span<const int>(data.train.y.data(), samples), c.seed);
  const std::size_t steps =
      partition.iid() ? steps_per_epoch(n, samples, c.batch) : steps_per_epoch(shards, c.batch);
  if (steps == 0) throw std::invalid_argument("fewer training samples per worker than one batch");

  if (static_cast<std::size_t>(model.shape().in) != data.train.features)
    throw std::invalid_argument("the model takes 784 features per sample");
  // SkewScout's probe: the first probe_samples images of this worker's shard
  // (a leader's shard holds its data center's data), fixed for the run.
  Split probe;
  if (c.sync.starts_with("skewscout")) {
    if (c.probe_samples < 1) throw std::invalid_argument("--probe-samples must be at least 1");
    const std::vector<std::size_t> mine =
        partition.iid() ? epoch_order(me, n, samples, c.seed, 0) : epoch_order(me, shards, c.seed, 0);
    const std::size_t m = std::min(mine.size(), static_cast<std::size_t>(c.probe_samples));
    probe.features = data.train.features;
    for (std::size_t k = 0; k < m; ++k) {
      const float* image = data.train.x.data() + mine[k] * data.train.features;
      probe.x.insert(probe.x.end(), image, image + data.train.features);
      probe.y.push_back(data.train.y[mine[k]]);
    }
  }
  Config with_period = c;  // SkewScout's period: once an epoch unless given
  if (with_period.scout_period == 0) with_period.scout_period = static_cast<int>(steps);
  // The parameters a gradient step changes: the MLP's without batch norm's
  // running statistics (make_sync).
  std::size_t trainable = model.params().size();
  if constexpr (requires { model.shape().trainable(); }) trainable = model.shape().trainable();
  auto sync = make_sync(
      t, with_period, model.sfb_layers(), model.params().size(),
      [&](std::span<const float> p) {
        return static_cast<double>(model.evaluate(p, probe).correct) /
               static_cast<double>(probe.size());
      },
      trainable);

  // Outside the synchronizer: the averaged model and the figures, over the
  // whole world. Channel 127 of the tag space is one no synchronizer uses.
  const dssync::Partition world = dssync::Partition::whole(n);
  const dssync::tag_t tag = dssync::make_tag(0, 127);

  // Every worker starts from rank 0's parameters, sent to it: a worker that
  // initialized differently (another seed, another library's generator, a
  // checkpoint only rank 0 read) still starts from the same point. Momentum
  // starts at zero on every worker.
  if (me == 0) model.init(c.seed);
  dssync::AutoBroadcast().broadcast(t, world.group(0), model.params(), 0, tag);
  sync->start(model.params());
  dssync::RingReduce ring;
  dssync::RecursiveDoublingReduce small;
  std::vector<float> averaged(model.params().size());
  std::vector<float> batch_x(static_cast<std::size_t>(c.batch) * data.train.features);
  std::vector<int> batch_y(static_cast<std::size_t>(c.batch));

  // The learning rate at global step k of `total`: cosine annealing ends the
  // run at a small rate, so the final accuracy is that of a settled model and
  // not of one noisy step.
  const double total = static_cast<double>(steps) * c.epochs;
  if (c.schedule != "cosine" && c.schedule != "constant")
    throw std::invalid_argument("unknown schedule '" + c.schedule + "' (cosine, constant)");
  auto lr_at = [&](std::size_t k) {
    if (c.schedule == "constant") return c.lr;
    return static_cast<float>(0.5 * c.lr * (1.0 + std::cos(std::numbers::pi * static_cast<double>(k) / total)));
  };
  std::size_t global_step = 0;
  float last_lr = c.lr;
  bool finished = false;
  // A step's compute time on the simulator: C, times (1 + X J) with J ~ Exp(1)
  // drawn from (seed, rank, step) by a counter-based generator (the same on
  // every run and independent of the order the ranks run in), times the
  // straggler factor on rank 0.
  if (!(c.sim_jitter >= 0) || !(c.sim_straggler > 0))
    throw std::invalid_argument("--sim-jitter must be at least 0 and --sim-straggler positive");
  auto compute_time = [&](double base, std::size_t step) {
    double f = me == 0 ? c.sim_straggler : 1.0;
    if (c.sim_jitter > 0) {
      dssync::CounterRng rng(dssync::detail::mix64(c.seed ^ 0x6a177e5ULL),
                             (static_cast<std::uint64_t>(me) << 40) + step);
      const double u = static_cast<double>(rng.next() >> 11) * 0x1p-53;  // in [0, 1)
      f *= 1.0 + c.sim_jitter * -std::log1p(-u);
    }
    return base * f;
  };
  double wall = 0;
  if (c.evals_per_epoch < 1) throw std::invalid_argument("--evals-per-epoch must be at least 1");
  const auto parts = static_cast<std::size_t>(c.evals_per_epoch);
  // Epoch 0 is the common starting point: evaluated, not trained. Each epoch
  // is trained in `parts` pieces of whole steps with a record after each.
  // With stop_at, every worker stops after the same record (the accuracy is
  // all-reduced).
  bool reached = false;
  for (int epoch = 0; epoch <= c.epochs && !reached; ++epoch) {
    const std::vector<std::size_t> shard = partition.iid()
                                               ? epoch_order(me, n, samples, c.seed, epoch)
                                               : epoch_order(me, shards, c.seed, epoch);
    for (std::size_t part = epoch == 0 ? parts - 1 : 0; part < parts && !reached; ++part) {
      const std::size_t first = epoch == 0 ? 0 : steps * part / parts;
      const std::size_t last = epoch == 0 ? 0 : steps * (part + 1) / parts;
      const auto bytes_before = sync->stats().bytes_sent;
      const double wan_before = uplink_bytes(t);
      const auto [significant_before, considered_before] = sync->significance();
      double loss_sum = 0, in_sync = 0;
      // Time inside the synchronizer (virtual on the simulator).
      const auto sync_step = [&](auto&& f) {
        const double before = now_seconds(t);
        f();
        in_sync += now_seconds(t) - before;
      };
      const double start = now_seconds(t);
      for (std::size_t s = first; s < last; ++s) {
        [[maybe_unused]] const auto computing = clock::now();
        for (int j = 0; j < c.batch; ++j) {
          const std::size_t i = shard[s * static_cast<std::size_t>(c.batch) + static_cast<std::size_t>(j)];
          std::copy_n(data.train.x.data() + i * data.train.features, data.train.features,
                      batch_x.data() + static_cast<std::size_t>(j) * data.train.features);
          batch_y[static_cast<std::size_t>(j)] = data.train.y[i];
        }
        // At the parameters the synchronizer gives (older ones for StaleSync:
        // the training loss is then the stale points').
        loss_sum += model.compute_gradient(batch_x.data(), batch_y.data(), c.batch,
                                           sync->view(model.params()))
                        .loss_sum;
        const std::size_t k = global_step++;
        const float lr = lr_at(k);
        last_lr = lr;
        sync->learning_rate(c.lr > 0 ? static_cast<double>(lr) / static_cast<double>(c.lr) : 1.0);
        // On a simulated network the step's real compute time (the gradient and
        // the update) is spent in virtual time before the synchronization, or
        // a fixed time, which makes every virtual time reproducible to the bit.
        auto spend = [&] {
          if constexpr (requires { t.compute(1.0); })
            t.compute(compute_time(
                c.sim_compute > 0 ? c.sim_compute
                                  : std::chrono::duration<double>(clock::now() - computing).count(),
                k));
        };
        if (sync->on_gradients()) {
          spend();
          sync_step([&] {
            if (sync->wants_factors())
              sync->step_factors(model.gradient(), model.factors());
            else
              sync->step(model.gradient());
          });
          model.sgd_step(model.gradient(), lr, c.momentum);
        } else {
          model.sgd_step(model.gradient(), lr, c.momentum);
          spend();
          sync_step([&] { sync->step(model.params()); });
        }
      }
      // The run's last record: the background synchronizers end first, so
      // that it shows every worker's final parameters (and the time finishing
      // took). A run stopped early by stop_at finishes after the loop.
      if (epoch == c.epochs && part + 1 == parts) {
        sync_step([&] { sync->finish(model.params(), last_lr); });
        finished = true;
      }
      const double seconds = now_seconds(t) - start;
      const double wan = uplink_bytes(t) - wan_before;
      const auto [significant_after, considered_after] = sync->significance();

      // The averaged model and how far the workers are from it.
      std::copy(model.params().begin(), model.params().end(), averaged.begin());
      ring.all_reduce(t, world.group(0), std::span<float>(averaged), dssync::Average{}, tag);
      double dist = 0;
      for (std::size_t i = 0; i < averaged.size(); ++i) {
        const double d = static_cast<double>(model.params()[i]) - averaged[i];
        dist += d * d;
      }
      double own_acc = 1.0;
      if (c.evaluate_workers)
        own_acc = static_cast<double>(model.evaluate(model.params(), data.test).correct) /
                  static_cast<double>(data.test.size());
      BatchResult avg;
      if (me == 0) avg = model.evaluate(averaged, data.test);

      const RoundCounts counts = sync->rounds();
      double sums[] = {loss_sum, dist, avg.loss_sum, static_cast<double>(avg.correct), in_sync,
                       counts.rounds, counts.merges, counts.lag_steps, wan,
                       significant_after - significant_before, considered_after - considered_before};
      small.all_reduce(t, world.group(0), std::span<double>(sums), dssync::Sum{}, tag);
      double maxima[] = {seconds, static_cast<double>(sync->stats().bytes_sent - bytes_before)};
      small.all_reduce(t, world.group(0), std::span<double>(maxima), dssync::Max{}, tag);
      double minima[] = {own_acc};
      small.all_reduce(t, world.group(0), std::span<double>(minima), dssync::Min{}, tag);
      wall += maxima[0];
      // A diverged run (non-finite test loss) stops as well: it cannot come back.
      reached = c.stop_at > 0 && (sums[3] / static_cast<double>(data.test.size()) >= c.stop_at ||
                                  !std::isfinite(sums[2]));
      if (me == 0 && on_epoch) {
        EpochRecord r;
        r.epoch = epoch == 0 ? 0.0 : epoch - 1 + static_cast<double>(part + 1) / static_cast<double>(parts);
        r.train_loss = last == first ? std::numeric_limits<double>::quiet_NaN()
                                     : sums[0] / static_cast<double>((last - first) * static_cast<std::size_t>(c.batch) *
                                                                     static_cast<std::size_t>(n));
        r.consensus = sums[1] / n;
        r.test_loss_avg = sums[2] / static_cast<double>(data.test.size());
        r.test_acc_avg = sums[3] / static_cast<double>(data.test.size());
        r.test_acc_worst = c.evaluate_workers ? minima[0] : std::numeric_limits<double>::quiet_NaN();
        r.seconds = maxima[0];
        r.bytes_per_worker = sync->counts_bytes() ? maxima[1] : std::numeric_limits<double>::quiet_NaN();
        r.wall = wall;
        r.sync_seconds = sums[4] / n;
        r.rounds = sums[5] / n;
        r.merge_lag = sums[6] > 0 ? sums[7] / sums[6] : 0.0;
        r.wan_bytes = sums[8];
        r.steps = static_cast<double>(last - first);
        r.knob = sync->knob();
        r.estimate = sync->estimate();
        r.significant =
            sums[10] > 0 ? sums[9] / sums[10] : std::numeric_limits<double>::quiet_NaN();
        on_epoch(r);
      }
    }
  }
  if (!finished) sync->finish(model.params(), last_lr);
  return {model.params().begin(), model.params().end()};
}

}  // namespace train

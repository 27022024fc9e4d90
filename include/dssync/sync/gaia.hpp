#pragma once
// GaiaSync: training across data centers whose wide-area links are the
// bottleneck, after Gaia (Hsieh et al., NSDI'17). Inside a data center the
// workers average their parameters every step, as BSP on parameters would;
// across data centers only the updates that have become significant travel,
// and the rest wait in an accumulator until they are:
//
//   dssync::GaiaSync<dssync::InProcTransport> gaia(t, initial, dc_of_rank, {.threshold = 0.01});
//   for each step:
//     local SGD step on params;
//     gaia.step(params);           // params <- this data center's model
//
// Per step c, in data center d with m_d members of a world of n, whose model
// was x_ref after the last step:
//  1. x_bar = the mean of the members' parameters (an all-reduce inside d);
//  2. u = x_bar - x_ref, this data center's update; it is applied at home at
//     once with weight w (y = x_ref + w u) and added to the accumulator of
//     what the others have not yet received (acc += w u). w = m_d / n with
//     GaiaCombine::mean (so with threshold 0 every data center holds the
//     world's mean, and the learning rate means what it means for BSP), 1
//     with GaiaCombine::sum (Gaia's parameter-server semantics: every data
//     center's update counts fully);
//  3. the model is cut into m_min shards (m_min: the smallest data center's
//     size); member j < m_min of every data center owns shard j. The owner
//     keeps shard j's accumulator, picks the entries whose accumulated update
//     is significant beside y (the Filter, under this clock's threshold),
//     sends them to shard j's owners in the other data centers, as (index,
//     value) pairs or as the dense shard, whichever is smaller, and zeroes
//     them in its accumulator;
//  4. each owner sums what the other data centers sent, in data-center order,
//     into r (dense); an all-gather inside d gives every member all of r;
//     x = y + r, and x becomes x_ref.
// So after every exchange the sum of what has been applied somewhere and
// what waits in the accumulators is the sum of every update: nothing is
// lost, only delayed (with a period above 1 and the mean combine, between
// exchanges a data center's model holds its whole update, the part beyond
// its weight to be taken back at the exchange: see apply_at_home). One data
// center is AllReduceSync on parameters, bit for bit.
//
// The threshold of clock c is GaiaOptions::threshold (the knob, T0) times the
// trainer's learning-rate scale (GaiaSchedule::follow_lr, Gaia's default:
// set_lr_scale(lr(c) / lr(0)) each step), or T0 itself (constant), or T0
// moving linearly to `lower` over `iterations` clocks (linear).
//
// Every rank must pass the same initial model: it is every data center's
// first x_ref (Gaia's replicas start equal).
//
// Slack (Gaia's mirror clock): with GaiaOptions::slack = s >= 1, step 4 of
// clock c runs on the background channel, one clock at a time in order, and
// r lands at clock c + s; so no data center runs more than s clocks ahead of
// the slowest. finish() applies what is still in flight; steps may follow
// it, and the slack counts again from there.
//
// Period: with GaiaOptions::period = P, steps 3 and 4 run after every P
// clocks only, on what accumulated since. Across data centers an exchange
// costs 2 ceil(log2 D) wide-area latencies (Bruck's all-gather), which at 50
// ms against a clock of a few milliseconds no slack can hide when every
// clock exchanges; P clocks to an exchange, with slack s >= P on the
// background, can.
//
// Left out, and why: Gaia's selective barrier (it blocks reads of parameters
// whose significant updates are still on the wire when the wide-area network
// is saturated; here every significant update of clock c is applied at clock
// c + s everywhere, so there is nothing to block) and its bandwidth
// controller of the threshold (SkewScout's knob is the general form).
//
// Memory: the reference model and, per clock in flight, the received updates
// r and, on shard owners, the message buffers; the owner's accumulator. All
// allocated at construction; a step allocates nothing.

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/all_gather_v.hpp"
#include "dssync/collective/bruck_all_gather_v.hpp"
#include "dssync/collective/common.hpp"
#include "dssync/collective/ring.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/policy/grouping.hpp"
#include "dssync/policy/significance.hpp"
#include "dssync/sync/common.hpp"
#include "dssync/transport/background.hpp"

namespace dssync {

namespace detail {
// GaiaSync's background exchanges, on a transport that has channels.
template <class Tr>
struct jobs_for {
  using type = std::nullptr_t;
};
template <transport_with_channels Tr>
struct jobs_for<Tr> {
  using type = std::unique_ptr<InOrderJobs<Tr>>;
};
}  // namespace detail

enum class GaiaSchedule { constant, follow_lr, linear };
enum class GaiaCombine { mean, sum };

struct GaiaOptions {
  double threshold = 0.01;  // T0, the knob: Gaia's default initial 1 %
  GaiaSchedule schedule = GaiaSchedule::follow_lr;
  double lower = 0;              // linear: where the threshold ends
  std::uint64_t iterations = 0;  // linear: clocks to get there
  GaiaCombine combine = GaiaCombine::mean;
  // Gaia's mirror clock: the updates sent at clock c are applied at clock
  // c + slack, so a data center runs at most `slack` clocks ahead of the
  // slowest. 0 exchanges in the step; 1 and more on the background channel
  // `channel` (a transport with channels), while training goes on.
  int slack = 0;
  int channel = 1;
  // The owners exchange after every `period` clocks (clocks P - 1, 2P - 1,
  // ...), what accumulated since; the other clocks only average inside the
  // data center. 1: every clock, Gaia's. More: fewer, larger exchanges, for
  // wide-area links whose latency exceeds a clock (what Gaia's servers do
  // implicitly when the network is slower than the training).
  int period = 1;
  bool sparse = true;  // (index, value) pairs when smaller than the dense shard
  std::size_t bucket_bytes = default_bucket_bytes;  // the all-reduce inside a data center
  // Before each step every rank compares the synchronizer, its place, the
  // clock, the options and the data centers, and a NaN in this rank's update
  // is a configuration_error naming the element.
  bool checked = false;
  // The slack + 1 slots of the clocks in flight are allocated at
  // construction; more bytes than this is a configuration_error naming them.
  std::size_t max_history_bytes = std::size_t{1} << 30;
};

struct GaiaStats : SyncStats {
  std::uint64_t wan_bytes = 0;    // of bytes_sent: to ranks in other data centers
  std::uint64_t lan_bytes = 0;    // of bytes_sent: inside this rank's data center
  std::uint64_t significant = 0;  // entries this rank sent across (as an owner)
  std::uint64_t considered = 0;   // entries this rank's filter looked at
  double threshold = 0;           // the last step's
  double wait_seconds = 0;        // of seconds: waiting for the exchange of clock c - slack

  double significant_fraction() const noexcept {
    return considered == 0 ? 0.0
                           : static_cast<double>(significant) / static_cast<double>(considered);
  }
};

template <transport Transport, significance_filter Filter = RelativeSignificance,
          class Reduce = RingReduce, std::floating_point T = float>
  requires reduce_policy<Reduce, CountingTransport<Transport>, T>
class GaiaSync {
 public:
  using transport_type = Transport;
  using op_type = Average;
  using value_type = T;
  using Options = GaiaOptions;

  GaiaSync(Transport& t, std::span<const T> initial, const std::vector<std::string>& dc_of_rank,
           Options options = {}, Filter filter = {}, Reduce reduce = {})
      : transport_(t),
        options_(validated(options, t.rank())),
        filter_(std::move(filter)),
        reduce_(std::move(reduce)),
        ordinal_(options.checked ? detail::next_checked_ordinal(t) : 0),
        ref_(initial.begin(), initial.end()) {
    const int n = t.size(), me = t.rank();
    const auto here = error_context{}.with_rank(me);
    if (dc_of_rank.size() != static_cast<std::size_t>(n))
      throw configuration_error("GaiaSync has data-center labels for " +
                                    std::to_string(dc_of_rank.size()) + " ranks in a world of " +
                                    std::to_string(n),
                                here);
    if (initial.size() > std::numeric_limits<std::uint32_t>::max())
      throw configuration_error("GaiaSync indexes a shard with 32 bits; " +
                                    std::to_string(initial.size()) + " parameters are too many",
                                here);
    dcs_ = detail::ranks_by_label(dc_of_rank);
    m_min_ = n;
    for (std::size_t d = 0; d < dcs_.size(); ++d) {
      m_min_ = std::min(m_min_, static_cast<int>(dcs_[d].size()));
      for (int r : dcs_[d]) layout_ = detail::mix64(layout_ ^ (d * detail::golden_gamma + r));
      if (Group(dcs_[d]).contains(me)) dc_ = static_cast<int>(d);
    }
    const auto& mine = dcs_[static_cast<std::size_t>(dc_)];
    position_ = Group(mine).position_of(me);
    weight_ = options_.combine == GaiaCombine::sum || static_cast<int>(mine.size()) == n
                  ? 1.0
                  : static_cast<double>(mine.size()) / n;
    if (weight_ != 1.0 && options_.period > 1) excess_.assign(initial.size(), T{});
    // Shard j's owners, one per data center in data-center order. A member
    // that owns no shard keeps the empty block {0, 0}.
    const std::size_t len = initial.size();
    if (position_ < m_min_) {
      shard_ =
          detail::block(len, static_cast<std::size_t>(m_min_), static_cast<std::size_t>(position_));
      for (const auto& dc : dcs_) owners_.push_back(dc[static_cast<std::size_t>(position_)]);
      acc_.assign(shard_.length, T{});
    }
    for (int p = 0; p < static_cast<int>(mine.size()); ++p)
      dc_counts_.push_back(p < m_min_ ? detail::block(len, static_cast<std::size_t>(m_min_),
                                                      static_cast<std::size_t>(p))
                                            .length
                                      : 0);
    if (position_ < m_min_)
      across_.reserve<std::uint32_t>(dcs_.size(), dcs_.size() * dense_words(shard_.length));
    // One slot per clock that can be in flight: this one and the s before.
    // A slot holds the dense update r and, on an owner, its message, the
    // data centers' messages and their lengths.
    const std::size_t copies = static_cast<std::size_t>(options_.slack) + 1;
    const std::size_t slot_bytes =
        len * sizeof(T) + (position_ < m_min_ ? (dcs_.size() + 1) * dense_words(shard_.length) *
                                                        sizeof(std::uint32_t) +
                                                    dcs_.size() * sizeof(std::size_t)
                                              : 0);
    detail::check_history_bytes(
        "GaiaSync's slots (" + std::to_string(copies) + " slots of " + std::to_string(slot_bytes) +
            " bytes, for slack " + std::to_string(options_.slack) + ")",
        copies, slot_bytes, 1, options_.max_history_bytes, "max_history_bytes", here);
    slots_.resize(copies);
    for (Slot& slot : slots_) {
      if (position_ < m_min_) {
        slot.words.resize(dense_words(shard_.length));
        slot.gathered.reserve(dcs_.size() * dense_words(shard_.length));
        slot.counts.resize(dcs_.size());
      }
      slot.received.assign(len, T{});
    }
    if constexpr (transport_with_channels<Transport>) {
      if (options_.slack > 0) {
        jobs_ = std::make_unique<InOrderJobs<Transport>>(
            t, options_.channel,
            [this](Transport&, std::uint64_t c) { run_exchange(*channel_, c); },
            [this](std::uint64_t c) { count_background(c); });
        channel_.emplace(jobs_->transport());
      }
    } else if (options_.slack > 0) {
      throw configuration_error(
          "GaiaSync's slack " + std::to_string(options_.slack) +
              " needs a transport with channels (the exchange runs in the background); this one "
              "has none, so only slack 0 is possible",
          here);
    }
  }
  GaiaSync(const GaiaSync&) = delete;
  GaiaSync& operator=(const GaiaSync&) = delete;
  // A background exchange still running uses the slots: it ends first.
  ~GaiaSync() {
    if constexpr (transport_with_channels<Transport>)
      if (jobs_) jobs_->settle();
  }

  // Averages inside the data center and exchanges the significant updates
  // with the others (above); `params` becomes this data center's model.
  void step(std::span<T> params) {
    detail::StepScope scope(stats_, transport_.count());
    check_length(params.size(), "step()");
    const Group dc(dcs_[static_cast<std::size_t>(dc_)]);
    const double threshold = current_threshold();
    stats_.threshold = threshold;
    if (options_.checked) check(params);
    const TrafficCount start = transport_.count();
    detail::with_context(transport_.rank(), clock_, dc.ranks(), [&] {
      const std::span<T> one[] = {params};
      detail::for_each_bucket(
          std::span<const std::span<T>>(one), detail::bucket_elements<T>(options_.bucket_bytes),
          fusion_, [&](std::span<T> bucket, unsigned index) {
            reduce_.all_reduce(transport_, dc, bucket, Average{}, make_tag(clock_, index % 125));
          });
    });
    const bool exchange_clock = (clock_ + 1) % static_cast<std::uint64_t>(options_.period) == 0;
    apply_at_home(params, exchange_clock);
    stats_.lan_bytes += transport_.count().bytes_sent - start.bytes_sent;
    // Clock c's significant updates leave now; those of clock c - s arrive.
    Slot& slot = slots_[clock_ % slots_.size()];
    // An infinite threshold keeps every data center to itself: it is the same
    // on every rank, so no owner expects a message and none is sent. One
    // data center has no one to send to. Between exchanges (period) the
    // accumulators keep what the owners will send.
    slot.across = dcs_.size() > 1 && !std::isinf(threshold) && exchange_clock;
    if (slot.across && position_ < m_min_) pack(slot, params, threshold);
    if (options_.slack == 0) {
      run_exchange(transport_, clock_);
      count_exchange(slot);
      add_received(slot, params);
    } else if constexpr (transport_with_channels<Transport>) {
      jobs_->submit();
      // The exchange of clock applied_ lands once this clock is s past it
      // (clock c - s in a run; after finish() nothing is in flight, and the
      // count starts again).
      const auto s = static_cast<std::uint64_t>(options_.slack);
      if (clock_ - applied_ >= s) {
        stats_.wait_seconds += jobs_->wait_done(applied_ + 1);
        add_received(slots_[applied_ % slots_.size()], params);
        ++applied_;
      }
    }
    std::copy(params.begin(), params.end(), ref_.begin());
    ++clock_;
  }
  // Slack s >= 1: waits for the exchanges of the last s clocks and applies
  // them, so that every data center has received every significant update
  // sent so far (what the filters still hold back stays in the
  // accumulators). Every rank calls it, after its last step (or at any
  // clock, every rank at the same one); slack 0 has nothing in flight. With
  // a period P above 1 the models agree up to the filters only when the
  // last step was an exchange clock (the number of steps a multiple of P):
  // the updates of the clocks since wait for the next exchange.
  void finish(std::span<T> params) {
    check_length(params.size(), "finish()");
    if constexpr (transport_with_channels<Transport>) {
      if (!jobs_) return;
      stats_.wait_seconds += jobs_->wait_done(clock_);
      for (; applied_ < clock_; ++applied_) add_received(slots_[applied_ % slots_.size()], params);
      std::copy(params.begin(), params.end(), ref_.begin());
    }
  }
  template <std::ranges::contiguous_range R>
  void step(R& params) {
    step(std::span<T>(params));
  }

  // The trainer's learning rate of this clock over its first one
  // (GaiaSchedule::follow_lr). The same on every rank.
  void set_lr_scale(double scale) {
    if (!(scale >= 0) || !std::isfinite(scale))
      throw configuration_error(
          "GaiaSync's learning-rate scale must be at least 0 and finite, got " +
              std::to_string(scale),
          error_context{}.with_rank(transport_.rank()).with_iteration(clock_));
    lr_scale_ = scale;
  }
  // The communication knob (T0), for a controller such as SkewScout. Every
  // rank must set the same value before the same step.
  double knob() const noexcept { return options_.threshold; }
  void set_knob(double threshold) {
    check_threshold(threshold, "threshold", transport_.rank());
    options_.threshold = threshold;
  }

  // Whether the next step exchanges across data centers (every `period`
  // clocks), for a controller that estimates before a synchronization
  // (SkewScoutMoment::before_sync).
  bool synchronizes_next() const noexcept {
    return (clock_ + 1) % static_cast<std::uint64_t>(options_.period) == 0;
  }

  // The data centers (ranks in rank order, in order of the labels' first
  // appearance) and this rank's.
  const std::vector<std::vector<int>>& data_centers() const noexcept { return dcs_; }
  int data_center() const noexcept { return dc_; }
  // The updates this rank owns and has not yet sent (empty on non-owners).
  std::span<const T> pending() const noexcept { return acc_; }
  // Where they lie in the model.
  std::size_t pending_offset() const noexcept { return shard_.offset; }

  std::uint64_t iteration() const noexcept { return clock_; }
  const GaiaStats& stats() const noexcept { return stats_; }
  const Options& options() const noexcept { return options_; }

 private:
  static void check_threshold(double v, const char* what, int rank) {
    if (!(v >= 0))  // also NaN
      throw configuration_error(
          std::string("GaiaOptions::") + what + " must be at least 0, got " + std::to_string(v),
          error_context{}.with_rank(rank));
  }
  static Options validated(Options o, int rank) {
    check_threshold(o.threshold, "threshold", rank);
    if (o.schedule == GaiaSchedule::linear) check_threshold(o.lower, "lower", rank);
    if (o.slack < 0)
      throw configuration_error(
          "GaiaOptions::slack must be at least 0, got " + std::to_string(o.slack),
          error_context{}.with_rank(rank));
    if (o.period < 1)
      throw configuration_error(
          "GaiaOptions::period must be at least 1, got " + std::to_string(o.period),
          error_context{}.with_rank(rank));
    return o;
  }

  // An infinite threshold stays infinite (no learning-rate scale, not even 0,
  // and no clock of a linear move before its end makes it finite; the move
  // ends at `lower`), so it never becomes NaN.
  double current_threshold() const noexcept {
    const double t0 = options_.threshold;
    switch (options_.schedule) {
      case GaiaSchedule::follow_lr:
        return std::isinf(t0) ? t0 : t0 * lr_scale_;
      case GaiaSchedule::linear:
        if (clock_ >= options_.iterations) return options_.lower;
        if (clock_ == 0) return t0;
        if (std::isinf(t0) || std::isinf(options_.lower))
          return std::numeric_limits<double>::infinity();
        return t0 + (options_.lower - t0) * (static_cast<double>(clock_) / options_.iterations);
      case GaiaSchedule::constant:
        break;
    }
    return options_.threshold;
  }

  // A value of T in 32-bit words, and a shard's dense form in words.
  static_assert(sizeof(T) % sizeof(std::uint32_t) == 0,
                "GaiaSync's messages carry values in whole 32-bit words");
  static constexpr std::size_t value_words = sizeof(T) / sizeof(std::uint32_t);
  static constexpr std::size_t dense_words(std::size_t elements) noexcept {
    return elements * value_words;
  }

  // Step 2: the update of this data center applied at home with its weight,
  // and, on the owner of a shard, added to that shard's accumulator. With the
  // mean combine and a period P > 1, the clocks between exchanges keep the
  // whole update at home (y = x_bar: the data center trains as BSP inside it
  // would) and remember the part beyond its weight, (1 - w) u, in excess_;
  // the exchange clock takes it back, so that the models there are what
  // applying w u every clock gives. Applying only w u on every clock instead
  // would leave a data center's model almost still between exchanges while
  // its workers' momentum grows, and the P clocks' updates would land at the
  // exchange as one step of P times the learning rate. With P = 1 excess_ is
  // empty.
  void apply_at_home(std::span<T> params, bool exchange_clock) {
    const std::size_t lo = shard_.offset, hi = shard_.offset + shard_.length;
    if (weight_ == 1.0) {
      for (std::size_t i = lo; i < hi; ++i) acc_[i - lo] += params[i] - ref_[i];
      return;  // y = x_bar
    }
    const T w = static_cast<T>(weight_);
    const bool hold = !excess_.empty() && !exchange_clock;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const T u = params[i] - ref_[i];
      const T wu = w * u;
      if (i >= lo && i < hi) acc_[i - lo] += wu;
      if (hold) {
        excess_[i] += u - wu;  // y = x_bar
      } else if (excess_.empty()) {
        params[i] = ref_[i] + wu;
      } else {
        params[i] = ref_[i] + wu - excess_[i];
        excess_[i] = T{};
      }
    }
  }

  // What one clock's exchange needs: the owner's message, every data
  // center's messages and their lengths, and r, the sum of the others'.
  struct Slot {
    bool across = false;               // whether this clock exchanges at all
    std::vector<std::uint32_t> words;  // owner: this clock's message
    std::size_t sent_words = 0;
    std::vector<std::uint32_t> gathered;  // owner: every data center's message
    std::vector<std::size_t> counts;      // owner: their lengths, in words
    std::vector<T> received;              // r: the other data centers' updates, dense
    TrafficCount wan, lan;                // what the exchange sent, across and inside
  };

  // Step 3: the owner's significant entries into the slot's message (pairs,
  // or the dense shard when pairs would not be smaller), zeroed in the
  // accumulator.
  void pack(Slot& slot, std::span<const T> y, double threshold) {
    const std::size_t len = shard_.length;
    std::size_t picked = 0;
    for (std::size_t k = 0; k < len; ++k)
      if (filter_.significant(acc_[k], y[shard_.offset + k], threshold)) ++picked;
    stats_.considered += len;
    stats_.significant += picked;
    const std::size_t pair_words = picked * (1 + value_words);
    if (!options_.sparse || pair_words >= dense_words(len)) {
      // Dense: the significant entries, zeros elsewhere. Its length alone
      // (exactly dense_words) tells the receiver the form.
      for (std::size_t k = 0; k < len; ++k) {
        T v{};
        if (filter_.significant(acc_[k], y[shard_.offset + k], threshold)) std::swap(v, acc_[k]);
        std::memcpy(&slot.words[k * value_words], &v, sizeof(T));
      }
      slot.sent_words = dense_words(len);
      return;
    }
    std::size_t w = 0;
    for (std::size_t k = 0; k < len; ++k) {
      if (!filter_.significant(acc_[k], y[shard_.offset + k], threshold)) continue;
      slot.words[w++] = static_cast<std::uint32_t>(k);
      std::memcpy(&slot.words[w], &acc_[k], sizeof(T));
      w += value_words;
      acc_[k] = T{};
    }
    slot.sent_words = w;
  }

  // Step 4 of clock c, on the caller (slack 0) or the background: the owners
  // of each shard exchange their messages, and the data center gathers the
  // sums. Counts its traffic into the slot.
  void run_exchange(CountingTransport<Transport>& tr, std::uint64_t c) {
    Slot& slot = slots_[c % slots_.size()];
    slot.wan = slot.lan = TrafficCount{};
    if (!slot.across) return;
    const TrafficCount start = tr.count();
    if (position_ < m_min_)
      detail::with_context(tr.rank(), c, std::span<const int>(owners_),
                           [&] { exchange(tr, slot, c); });
    const TrafficCount wan = tr.count();
    const Group dc(dcs_[static_cast<std::size_t>(dc_)]);
    detail::with_context(tr.rank(), c, dc.ranks(), [&] {
      const std::span<T> r = std::span<T>(slot.received);
      gather_.all_gather_known(tr, dc, std::span<const T>(detail::sub(r, shard_)),
                               std::span<const std::size_t>(dc_counts_), r, make_tag(c, 126));
    });
    const TrafficCount end = tr.count();
    slot.wan = {wan.bytes_sent - start.bytes_sent, wan.messages_sent - start.messages_sent};
    slot.lan = {end.bytes_sent - wan.bytes_sent, end.messages_sent - wan.messages_sent};
  }

  // The caller's share of a foreground exchange (already in SyncStats).
  void count_exchange(const Slot& slot) {
    stats_.wan_bytes += slot.wan.bytes_sent;
    stats_.lan_bytes += slot.lan.bytes_sent;
  }
  // A background exchange has ended: its traffic, in every statistic.
  void count_background(std::uint64_t c) {
    const Slot& slot = slots_[c % slots_.size()];
    count_exchange(slot);
    stats_.bytes_sent += slot.wan.bytes_sent + slot.lan.bytes_sent;
    stats_.messages_sent += slot.wan.messages_sent + slot.lan.messages_sent;
  }

  void add_received(const Slot& slot, std::span<T> params) const {
    if (!slot.across) return;
    for (std::size_t i = 0; i < params.size(); ++i) params[i] += slot.received[i];
  }

  // The owners' exchange: every data center's message for this shard,
  // summed in data-center order (the own one left out) into the shard of r.
  void exchange(CountingTransport<Transport>& tr, Slot& slot, std::uint64_t c) {
    across_.all_gather_v(tr, Group(owners_),
                         std::span<const std::uint32_t>(slot.words.data(), slot.sent_words),
                         std::span<std::size_t>(slot.counts), slot.gathered, make_tag(c, 125));
    const std::span<T> r = detail::sub(std::span<T>(slot.received), shard_);
    std::fill(r.begin(), r.end(), T{});
    const std::size_t dense = dense_words(shard_.length);
    std::size_t at = 0;
    for (std::size_t d = 0; d < slot.counts.size(); ++d) {
      const std::size_t words = slot.counts[d];
      const std::uint32_t* msg = slot.gathered.data() + at;
      at += words;
      if (static_cast<int>(d) == dc_) continue;
      if (words == dense) {
        for (std::size_t k = 0; k < shard_.length; ++k) {
          T v;
          std::memcpy(&v, msg + k * value_words, sizeof(T));
          r[k] += v;
        }
        continue;
      }
      const auto where = error_context{}.with_rank(tr.rank()).with_peer(owners_[d]);
      if (words % (1 + value_words) != 0)
        throw size_mismatch_error("data center " + std::to_string(d) + " sent " +
                                      std::to_string(words) + " words for shard " +
                                      std::to_string(position_) +
                                      ", neither the dense shard nor whole (index, value) pairs",
                                  where);
      for (std::size_t w = 0; w < words; w += 1 + value_words) {
        const std::uint32_t k = msg[w];
        if (k >= shard_.length)
          throw size_mismatch_error("data center " + std::to_string(d) + " sent index " +
                                        std::to_string(k) + " for a shard of " +
                                        std::to_string(shard_.length) + " elements",
                                    where);
        T v;
        std::memcpy(&v, msg + w + 1, sizeof(T));
        r[k] += v;
      }
    }
  }

  void check_length(std::size_t got, const char* where) const {
    if (got != ref_.size())
      throw configuration_error(
          std::string(where) + " got " + std::to_string(got) +
              " elements, but this GaiaSync was made for " + std::to_string(ref_.size()) +
              " parameters",
          error_context{}.with_rank(transport_.rank()).with_iteration(clock_));
  }

  // Checked mode: the same synchronizer, clock, options and data centers on
  // every rank, and no NaN in this rank's update.
  void check(std::span<const T> params) {
    for (std::size_t i = 0; i < params.size(); ++i)
      if (std::isnan(params[i]) || std::isnan(ref_[i]))
        throw configuration_error(
            "the update of parameter " + std::to_string(i) + " is NaN",
            error_context{}.with_rank(transport_.rank()).with_iteration(clock_));
    const std::span<const T> one[] = {params};
    detail::CheckedState state = detail::tensor_layout(std::span<const std::span<const T>>(one));
    std::uint64_t h = detail::type_hash<GaiaSync>();
    for (const std::uint64_t v :
         {ordinal_, clock_, layout_, std::bit_cast<std::uint64_t>(options_.threshold),
          std::bit_cast<std::uint64_t>(lr_scale_), static_cast<std::uint64_t>(options_.schedule),
          static_cast<std::uint64_t>(options_.combine), static_cast<std::uint64_t>(options_.sparse),
          static_cast<std::uint64_t>(options_.slack), static_cast<std::uint64_t>(options_.period),
          std::bit_cast<std::uint64_t>(options_.lower), options_.iterations})
      h = detail::mix64(h ^ detail::mix64(v));
    state.schedule = h;
    detail::with_context(transport_.rank(), clock_, {},
                         [&] { check_.verify(transport_, clock_, state); });
  }

  CountingTransport<Transport> transport_;
  Options options_;
  Filter filter_;
  Reduce reduce_;
  // On the context that runs the exchanges (one at a time): across data
  // centers Bruck's rounds, 2 ceil(log2 D) wide-area latencies against the
  // ring's ceil(log2 D) + D - 1; inside one, the ring.
  BruckAllGatherV across_;
  RingAllGatherV gather_;
  detail::ConsistencyCheck check_;
  std::uint64_t ordinal_;
  std::vector<std::vector<int>> dcs_;
  std::uint64_t layout_ = 0;
  int dc_ = 0;
  int position_ = 0;
  int m_min_ = 0;
  double weight_ = 1;
  detail::Block shard_{0, 0};
  std::vector<int> owners_;             // shard position_'s owners, by data center
  std::vector<T> ref_;                  // this data center's model after the last step
  std::vector<T> acc_;                  // owner: the shard's updates not yet sent
  std::vector<T> excess_;               // (1 - w) u since the last exchange (mean, P > 1)
  std::vector<std::size_t> dc_counts_;  // the shards' lengths by position in the data center
  std::vector<Slot> slots_;             // clock c's in slot c % (slack + 1)
  detail::Scratch fusion_;
  double lr_scale_ = 1;
  std::uint64_t clock_ = 0;
  std::uint64_t applied_ = 0;  // slack >= 1: clocks [0, applied_) received and applied
  GaiaStats stats_;
  // Slack >= 1: the exchanges in clock order on the background channel, and
  // that channel counted. Declared last: destroyed first, while the slots live.
  std::optional<CountingTransport<Transport>> channel_;
  typename detail::jobs_for<Transport>::type jobs_;
};

}  // namespace dssync

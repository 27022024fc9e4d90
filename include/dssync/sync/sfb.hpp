#pragma once
// SFBSync: sufficient factor broadcasting (Xie et al. 2015) with Poseidon's
// per-layer choice (Zhang et al. 2017), on gradients.
//
// A fully connected layer's batch gradient is a sum of outer products,
// G = U Vᵀ with U rows x k and V cols x k (k the samples of the batch). Instead
// of all-reducing the rows x cols matrix, the ranks can all-gather their
// factors and each rebuild the mean (1/P) Σ_p U_p V_pᵀ itself. Which one sends
// fewer bytes depends on the layer and on the batch, so the choice is made per
// layer and per step from the sum of k over the ranks, the same number on every
// rank, so every rank makes the same choice.
//
// The rule, in bytes sent by all ranks together (the per-rank mean, times P):
//   ring all-reduce of the layer:   2 (P-1) rows cols       elements
//   ring all-gather of the factors: (P-1) Σk (rows + cols)  elements
// (each rank passes on every contribution but one: its right neighbour's).
// Factors iff Σk (rows + cols) < 2 rows cols, and P > 1: with one rank nothing
// moves either way. With equal k this is P k (rows + cols) < 2 rows cols. Ties
// go to the all-reduce, which has no reconstruction to pay for. The rule is
// kept in integers: factors iff Σk <= (2 rows cols - 1) / (rows + cols).
//
// A reconstructed layer is one kernel call over the factors of ranks 0..P-1
// concatenated in rank order, the same call with the same inputs on every
// rank, so the result is bitwise identical everywhere. The kernel is the
// user's (a BLAS or Eigen GEMM); the default is a plain blocked loop.
//
// In the background (SFBOptions::background_channel, on a transport with
// channels): once the k's have decided, the factor all-gathers and then the
// dense all-reduce run one after another on a channel of their own, in a
// second context of the rank (transport/background.hpp), while the caller runs
// the kernel on each layer as soon as its factors are in. Every kernel call
// then overlaps the traffic that follows it. The same collectives on the same
// data: the same bits and bytes as in sequence.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dssync/collective/all_gather_v.hpp"
#include "dssync/collective/bruck_all_gather.hpp"
#include "dssync/collective/ring.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/partition_cache.hpp"
#include "dssync/sync/common.hpp"
#include "dssync/transport/background.hpp"
#include "dssync/transport/counting.hpp"

namespace dssync {

// This rank's factors of one layer: its local gradient is U Vᵀ, U rows x k and
// V cols x k, both column-major, already carrying whatever scaling (1/k) the
// user wants in the local gradient. k may differ between ranks (a short last
// batch) and may be 0.
struct FactorView {
  int rows = 0, cols = 0, k = 0;
  const float* u = nullptr;
  const float* v = nullptr;
};

// Where a layer's weight gradient lives in the flat gradient: rows x cols,
// row-major, from `offset`. Everything no layer covers (biases, layers without
// factors) is all-reduced densely.
struct SFBLayer {
  int rows = 0, cols = 0;
  std::size_t offset = 0;
};

enum class SFBMode {
  dense,    // all-reduce everything (factors are not looked at; may be empty)
  factors,  // every layer from its factors
  hybrid,   // per layer and step, whichever sends fewer bytes
};

struct SFBOptions {
  SFBMode mode = SFBMode::hybrid;
  std::size_t bucket_bytes = default_bucket_bytes;  // for the dense part
  // As AllReduceSyncOptions::checked.
  bool checked = false;
  // The k a rank expects per layer (its batch size): the gather buffers are
  // reserved at construction for P times it. 0: in hybrid mode the largest
  // factors the rule can pick (under 2 rows cols elements a layer), in factors
  // mode whatever the first step needs. Larger k later grows them once.
  int expected_k = 0;
  // Where the traffic after the k's goes. 0: the caller's channel, each
  // layer gathered then rebuilt, then the dense part. c >= 1 (a transport
  // with channels, c below its channels()): channel c, in a background
  // context of the rank started at construction, while the caller rebuilds
  // each layer as soon as its factors are in (so the kernels overlap the
  // traffic). Channel c is then the synchronizer's: nothing else may use it.
  int background_channel = 0;
};

// g (row-major rows x cols) = alpha U Vᵀ, U column-major rows x k, V
// column-major cols x k. Each element sums its k products in order t = 0..k-1;
// tiles of 256 columns and 64 products keep a row segment in L1 and the V tile
// in L2.
struct BlockedReconstruct {
  void operator()(int rows, int cols, int k, const float* u, const float* v, float alpha,
                  float* g) const noexcept {
    constexpr int col_tile = 256, k_tile = 64;
    const auto ld_u = static_cast<std::size_t>(rows), ld_g = static_cast<std::size_t>(cols);
    for (int j0 = 0; j0 < cols; j0 += col_tile) {
      const int j1 = std::min(cols, j0 + col_tile);
      for (int i = 0; i < rows; ++i) std::fill(g + i * ld_g + j0, g + i * ld_g + j1, 0.0f);
      for (int t0 = 0; t0 < k; t0 += k_tile) {
        const int t1 = std::min(k, t0 + k_tile);
        for (int i = 0; i < rows; ++i) {
          float* __restrict row = g + i * ld_g;
          for (int t = t0; t < t1; ++t) {
            const float a = u[static_cast<std::size_t>(t) * ld_u + static_cast<std::size_t>(i)];
            const float* __restrict vt = v + static_cast<std::size_t>(t) * ld_g;
            for (int j = j0; j < j1; ++j) row[j] += a * vt[j];
          }
        }
      }
      for (int i = 0; i < rows; ++i)
        for (int j = j0; j < j1; ++j) g[i * ld_g + j] *= alpha;
    }
  }
};

// A reconstruction kernel: k(rows, cols, k, u, v, alpha, g) as BlockedReconstruct.
template <class K>
concept reconstruct_kernel =
    std::copy_constructible<K> && requires(const K& kernel, int n, const float* p, float a,
                                           float* g) { kernel(n, n, n, p, p, a, g); };

struct SFBLayerStats {
  std::uint64_t factor_steps = 0;  // steps that moved this layer as factors
  std::uint64_t factor_bytes = 0;  // bytes this rank sent in the layer's factor all-gathers
  std::uint64_t last_total_k = 0;  // Σk over the ranks at the latest step (0 in dense mode)
  bool last_factors = false;       // the latest step's choice
};

// SyncStats, and where the bytes went.
struct SFBStats : SyncStats {
  std::uint64_t k_bytes = 0;      // the exchange of every rank's k's
  std::uint64_t dense_bytes = 0;  // the all-reduce of what was not rebuilt from factors
  std::vector<SFBLayerStats> layers;
};

namespace detail {
// SFBSync's second context and its traffic count, on transports with
// channels; nothing on the others (a background_channel is refused there).
template <class Tr>
struct SFBBackground {
  SFBBackground(Tr&, int) {}
};
template <transport_with_channels Tr>
struct SFBBackground<Tr> {
  SFBBackground(Tr& t, int channel) : background(t, channel), counted(background.transport()) {}
  Background<Tr> background;
  CountingTransport<Tr> counted;
};
}  // namespace detail

template <transport Transport, class Reduce = RingReduce, class Reconstruct = BlockedReconstruct>
  requires reduce_policy<Reduce, CountingTransport<Transport>> && reconstruct_kernel<Reconstruct>
class SFBSync {
 public:
  using transport_type = Transport;
  using op_type = Average;
  using Options = SFBOptions;

  // The layers must be in increasing offset order and must not overlap
  // (configuration_error otherwise).
  SFBSync(Transport& t, std::vector<SFBLayer> layers, Options options = {},
          Reconstruct reconstruct = {}, Reduce reduce = {})
      : transport_(t), layers_(std::move(layers)), options_(options),
        reconstruct_(std::move(reconstruct)), reduce_(std::move(reduce)),
        world_(t),
        ordinal_(options.checked ? detail::next_checked_ordinal(t) : 0) {
    const auto where = error_context{}.with_rank(t.rank());
    std::size_t end = 0;
    config_ = detail::mix64(static_cast<std::uint64_t>(options_.mode) + 1);
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const SFBLayer& L = layers_[l];
      if (L.rows <= 0 || L.cols <= 0)
        throw configuration_error("SFBSync: layer " + std::to_string(l) + " is " +
                                      std::to_string(L.rows) + " x " + std::to_string(L.cols) +
                                      "; a layer needs at least one row and one column",
                                  where);
      if (L.offset < end)
        throw configuration_error(
            "SFBSync: layer " + std::to_string(l) + " starts at offset " +
                std::to_string(L.offset) + ", inside or before layer " + std::to_string(l - 1) +
                " (which ends at " + std::to_string(end) +
                "); layers must be in offset order and must not overlap",
            where);
      if (elements(L) > std::numeric_limits<std::size_t>::max() - L.offset)
        throw configuration_error("SFBSync: layer " + std::to_string(l) + " at offset " +
                                      std::to_string(L.offset) + " with " +
                                      std::to_string(elements(L)) +
                                      " elements ends beyond the largest size a buffer can have",
                                  where);
      end = L.offset + elements(L);
      const auto rc = static_cast<std::uint64_t>(L.rows) * static_cast<std::uint64_t>(L.cols);
      limit_.push_back((2 * rc - 1) / (static_cast<std::uint64_t>(L.rows) + L.cols));
      config_ = detail::mix64(config_ ^ detail::mix64(L.offset ^ (rc << 1)));
    }
    end_ = end;
    const auto n = static_cast<std::size_t>(t.size());
    table_.resize(n * layers_.size());
    counts_.resize(n);
    gaps_.reserve(layers_.size() + 1);
    rebuilt_.reserve(layers_.size());
    stats_.layers.resize(layers_.size());
    if (options_.background_channel != 0) {
      if constexpr (transport_with_channels<Transport>) {
        if (options_.background_channel < 0 || options_.background_channel >= t.channels())
          throw configuration_error("SFBSync: background_channel " +
                                        std::to_string(options_.background_channel) +
                                        " is not a channel of this transport (it has " +
                                        std::to_string(t.channels()) + ")",
                                    where);
        background_ = std::make_unique<detail::SFBBackground<Transport>>(t, options_.background_channel);
      } else {
        throw configuration_error("SFBSync: background_channel " +
                                      std::to_string(options_.background_channel) +
                                      " needs a transport with channels; this one has none",
                                  where);
      }
    }
    // The gather buffers, for the largest factors a step is expected to move.
    std::size_t most = 0, most_v = 0;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const auto expected = static_cast<std::uint64_t>(std::max(options_.expected_k, 0));
      std::uint64_t k = n * expected;
      if (options_.mode == SFBMode::hybrid) k = k ? std::min(k, limit_[l]) : limit_[l];
      if (options_.mode == SFBMode::dense) k = 0;
      const auto r = static_cast<std::size_t>(layers_[l].rows);
      const auto c = static_cast<std::size_t>(layers_[l].cols);
      most = std::max(most, static_cast<std::size_t>(k) * (r + c));
      most_v = std::max(most_v, static_cast<std::size_t>(k) * c);
    }
    gathered_[0].reserve<float>(most);
    if (background_) gathered_[1].reserve<float>(most);
    v_parts_.reserve<float>(most_v);
  }

  SFBSync(const SFBSync&) = delete;
  SFBSync& operator=(const SFBSync&) = delete;

  // gradient <- the mean over the ranks of their local gradients: the layers
  // chosen for factors rebuilt from every rank's factors (one view per layer,
  // in layer order), the rest all-reduced (Average).
  void step(std::span<float> gradient, std::span<const FactorView> factors) {
    detail::StepScope scope(stats_, transport_.count());
    const Group everyone = world_.get().group(0);
    detail::with_context(transport_.rank(), iteration_, everyone.ranks(),
                         [&] { run(gradient, factors, everyone); });
    ++iteration_;
  }

  // The hybrid's rule for layer `layer` when the ranks' k's sum to total_k
  // (in dense and factors mode: that mode's answer).
  bool uses_factors(int layer, std::uint64_t total_k) const {
    if (layer < 0 || static_cast<std::size_t>(layer) >= layers_.size())
      throw configuration_error("SFBSync::uses_factors: no layer " + std::to_string(layer) +
                                    " (there are " + std::to_string(layers_.size()) + ")",
                                error_context{}.with_rank(transport_.rank()));
    switch (options_.mode) {
      case SFBMode::dense: return false;
      case SFBMode::factors: return true;
      case SFBMode::hybrid: break;
    }
    return transport_.size() > 1 && total_k <= limit_[static_cast<std::size_t>(layer)];
  }

  // One group of everyone, at every iteration.
  Partition partition(std::uint64_t /*t*/) const { return world_.get(); }
  std::span<const SFBLayer> layers() const noexcept { return layers_; }
  std::uint64_t iteration() const noexcept { return iteration_; }
  const SFBStats& stats() const noexcept { return stats_; }

 private:
  // A view that does not fit its layer, sent in place of the k's so that every
  // rank learns of it in the same exchange and stops, instead of waiting for a
  // rank that stopped.
  static constexpr std::uint64_t bad_view = std::numeric_limits<std::uint64_t>::max();
  static constexpr std::uint64_t bad_count = bad_view - 1;     // wrong number of views
  static constexpr std::uint64_t bad_gradient = bad_view - 2;  // gradient shorter than the layers

  static std::size_t elements(const SFBLayer& L) noexcept {
    return static_cast<std::size_t>(L.rows) * static_cast<std::size_t>(L.cols);
  }

  // What is wrong with this rank's arguments, or "" (nothing); own_ gets the
  // k's or the markers this rank sends.
  std::string validate(std::span<const float> gradient, std::span<const FactorView> factors,
                       std::span<std::uint64_t> own) const {
    if (gradient.size() < end_) {
      std::fill(own.begin(), own.end(), bad_gradient);
      return "the gradient has " + std::to_string(gradient.size()) +
             " elements; the layers reach offset " + std::to_string(end_);
    }
    if (options_.mode == SFBMode::dense) return {};
    if (factors.size() != layers_.size()) {
      std::fill(own.begin(), own.end(), bad_count);
      return std::to_string(factors.size()) + " factor views for " +
             std::to_string(layers_.size()) + " layers";
    }
    std::string wrong;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const FactorView& f = factors[l];
      const SFBLayer& L = layers_[l];
      const bool fits = f.rows == L.rows && f.cols == L.cols && f.k >= 0 &&
                        (f.k == 0 || (f.u != nullptr && f.v != nullptr));
      own[l] = fits ? static_cast<std::uint64_t>(f.k) : bad_view;
      if (!fits && wrong.empty())
        wrong = "layer " + std::to_string(l) + "'s factors are " + std::to_string(f.rows) +
                " x " + std::to_string(f.cols) + " with k " + std::to_string(f.k) +
                (f.k > 0 && (!f.u || !f.v) ? " and a null factor" : "") + "; the layer is " +
                std::to_string(L.rows) + " x " + std::to_string(L.cols);
    }
    return wrong;
  }

  // The first rank whose row of the table carries a marker, and the layer.
  void raise_for_peers(std::size_t L) const {
    const int n = transport_.size();
    for (int p = 0; p < n; ++p)
      for (std::size_t l = 0; l < L; ++l) {
        const std::uint64_t k = table_[static_cast<std::size_t>(p) * L + l];
        if (k < bad_gradient) continue;
        const auto where = error_context{}
                               .with_rank(transport_.rank())
                               .with_peer(p)
                               .with_iteration(iteration_);
        const std::string who = "SFBSync: rank " + std::to_string(p);
        if (k == bad_gradient)
          throw configuration_error(who + "'s gradient is shorter than the layers", where);
        if (k == bad_count)
          throw configuration_error(who + " passed a factor view count other than " +
                                        std::to_string(L) + " (one per layer)",
                                    where);
        throw configuration_error(who + "'s factors for layer " + std::to_string(l) +
                                      " do not fit the layer",
                                  where);
      }
  }

  void run(std::span<float> gradient, std::span<const FactorView> factors, const Group& everyone) {
    const auto n = static_cast<std::size_t>(transport_.size());
    const auto me = static_cast<std::size_t>(transport_.rank());
    const std::size_t L = layers_.size();
    const bool exchange = options_.mode != SFBMode::dense && L > 0;
    const auto own = std::span<std::uint64_t>(table_).subspan(me * L, L);
    const std::string wrong = validate(gradient, factors, own);
    if (options_.checked) {
      detail::CheckedState state =
          detail::tensor_layout(std::span<const std::span<float>>(&gradient, 1));
      state.schedule = detail::mix64(detail::type_hash<SFBSync>() ^
                                     detail::mix64(ordinal_ ^ detail::mix64(iteration_ ^ config_)));
      check_.verify(transport_, iteration_, state);
    }
    const auto here = error_context{}.with_rank(static_cast<int>(me)).with_iteration(iteration_);
    if (!wrong.empty() && !exchange) throw configuration_error("SFBSync: " + wrong, here);
    if (first_) {
      fusion_.reserve<float>(std::min(gradient.size(), bucket_elems() ? bucket_elems()
                                                                         : gradient.size()));
      first_ = false;
    }

    // Every rank's k for every layer (or its markers): the decisions need Σk,
    // and the factor all-gathers need every contribution's length.
    if (exchange) {
      const auto before = transport_.count().bytes_sent;
      k_gather_.all_gather(transport_, everyone, std::span<const std::uint64_t>(own),
                           std::span<std::uint64_t>(table_), make_tag(iteration_, 0));
      stats_.k_bytes += transport_.count().bytes_sent - before;
      if (!wrong.empty()) throw configuration_error("SFBSync: " + wrong, here);
      raise_for_peers(L);
    }

    // The choices, and the dense part: what lies between rebuilt layers.
    gaps_.clear();
    rebuilt_.clear();
    std::size_t cursor = 0;
    for (std::size_t l = 0; l < L && exchange; ++l) {
      std::uint64_t total = 0;
      for (std::size_t p = 0; p < n; ++p) total += table_[p * L + l];
      SFBLayerStats& ls = stats_.layers[l];
      ls.last_total_k = total;
      ls.last_factors = uses_factors(static_cast<int>(l), total);
      if (!ls.last_factors) continue;
      rebuilt_.push_back({l, total});
      const SFBLayer& layer = layers_[l];
      if (layer.offset > cursor) gaps_.push_back(gradient.subspan(cursor, layer.offset - cursor));
      cursor = layer.offset + elements(layer);
    }
    if (cursor < gradient.size()) gaps_.push_back(gradient.subspan(cursor));

    if (background_) {
      pipeline(gradient, factors, everyone);
      return;
    }
    for (const auto& [l, total] : rebuilt_) {
      const auto before = transport_.count().bytes_sent;
      gather(transport_, l, total, factors[l], gathered_[0], everyone);
      count_factors(l, transport_.count().bytes_sent - before);
      const SFBLayer& layer = layers_[l];
      rebuild(l, total, gathered_[0], gradient.subspan(layer.offset, elements(layer)));
    }
    if (!gaps_.empty()) {
      const auto before = transport_.count().bytes_sent;
      dense(transport_, everyone);
      stats_.dense_bytes += transport_.count().bytes_sent - before;
    }
  }

  // Everything not rebuilt, fused into buckets as AllReduceSync does (one
  // bucket, in place, when no layer was rebuilt). Tags: 0 the k's, 1 the
  // factors, 2..126 the buckets; 127 is left to the caller (the training
  // example's own collectives use it).
  template <class Tr>
  void dense(Tr& t, const Group& everyone) {
    detail::for_each_bucket(std::span<const std::span<float>>(gaps_), bucket_elems(), fusion_,
                            [&](std::span<float> bucket, unsigned index) {
                              reduce_.all_reduce(t, everyone, bucket, Average{},
                                                 make_tag(iteration_, 2 + index % 125));
                            });
  }

  // The same work with the traffic in the background: job j < R (R rebuilt
  // layers) all-gathers rebuilt layer j into buffer j % 2, job R all-reduces
  // the dense part. As soon as job j has ended the caller starts job j + 1,
  // then rebuilds layer j from its buffer: each kernel call runs while the
  // next job's traffic is on the network.
  void pipeline(std::span<float> gradient, std::span<const FactorView> factors,
                const Group& everyone) {
    if constexpr (transport_with_channels<Transport>) {
      const std::size_t jobs = rebuilt_.size() + (gaps_.empty() ? 0 : 1);
      job_factors_ = factors;
      job_group_ = &everyone;
      auto start = [&](std::size_t j) {
        job_ = j;
        job_before_ = background_->counted.count();
        background_->background.start([this](Transport& /*channel*/) { run_job(); });
      };
      try {
        if (jobs > 0) start(0);
        for (std::size_t j = 0; j < jobs; ++j) {
          background_->background.get();
          count_job(j);
          if (j + 1 < jobs) start(j + 1);
          if (j < rebuilt_.size()) {
            const auto [l, total] = rebuilt_[j];
            const SFBLayer& layer = layers_[l];
            rebuild(l, total, gathered_[j % 2], gradient.subspan(layer.offset, elements(layer)));
          }
        }
      } catch (...) {
        // A running job writes into the gradient or a buffer: it must end
        // first. Its operations have deadlines, and a transport failure that
        // stopped the caller fails its channel too; its error is dropped.
        try {
          background_->background.get();
        } catch (...) {  // NOLINT(bugprone-empty-catch): the caller's error is the one to report
        }
        throw;
      }
    }
  }

  // Background job job_ (on the channel of background_).
  void run_job() {
    if constexpr (transport_with_channels<Transport>) {
      if (job_ < rebuilt_.size()) {
        const auto [l, total] = rebuilt_[job_];
        gather(background_->counted, l, total, job_factors_[l], gathered_[job_ % 2], *job_group_);
      } else {
        dense(background_->counted, *job_group_);
      }
    }
  }

  // What job j sent, into the stats (the caller's, read after the job ended).
  void count_job(std::size_t j) {
    if constexpr (transport_with_channels<Transport>) {
      const TrafficCount& now = background_->counted.count();
      const auto bytes = now.bytes_sent - job_before_.bytes_sent;
      if (j < rebuilt_.size())
        count_factors(rebuilt_[j].first, bytes);
      else
        stats_.dense_bytes += bytes;
      stats_.bytes_sent += bytes;
      stats_.messages_sent += now.messages_sent - job_before_.messages_sent;
    }
  }

  // One step of layer l moved as factors, `bytes` of them sent by this rank.
  void count_factors(std::size_t l, std::uint64_t bytes) noexcept {
    stats_.layers[l].factor_bytes += bytes;
    ++stats_.layers[l].factor_steps;
  }

  // Layer l's factors from every rank, [U_p | V_p] in rank order, into
  // `buffer`, over t.
  template <class Tr>
  void gather(Tr& t, std::size_t l, std::uint64_t total, const FactorView& mine,
              detail::Scratch& buffer, const Group& everyone) {
    const std::size_t n = counts_.size(), L = layers_.size();
    const auto me = static_cast<std::size_t>(transport_.rank());
    const auto r = static_cast<std::size_t>(layers_[l].rows);
    const auto c = static_cast<std::size_t>(layers_[l].cols);
    std::size_t own_at = 0;
    for (std::size_t p = 0; p < n; ++p) {
      counts_[p] = static_cast<std::size_t>(table_[p * L + l]) * (r + c);
      if (p < me) own_at += counts_[p];
    }
    const auto k = static_cast<std::size_t>(mine.k);
    const auto all = buffer.get<float>(static_cast<std::size_t>(total) * (r + c));
    const auto own = all.subspan(own_at, k * (r + c));
    if (k > 0) {
      std::copy(mine.u, mine.u + r * k, own.begin());
      std::copy(mine.v, mine.v + c * k, own.begin() + static_cast<std::ptrdiff_t>(r * k));
    }
    all_gather_.all_gather_known(t, everyone, std::span<const float>(own),
                                 std::span<const std::size_t>(counts_), all,
                                 make_tag(iteration_, 1));
  }

  // Layer l from the gathered factors: the U's to the front and the V's
  // apart, so that U = [U_0 .. U_P-1] (rows x Σk) and V likewise, and the
  // kernel writes (1/P) U Vᵀ into g.
  void rebuild(std::size_t l, std::uint64_t total, detail::Scratch& buffer, std::span<float> g) {
    const std::size_t n = counts_.size(), L = layers_.size();
    const auto r = static_cast<std::size_t>(layers_[l].rows);
    const auto c = static_cast<std::size_t>(layers_[l].cols);
    const auto all = buffer.get<float>(static_cast<std::size_t>(total) * (r + c));
    const auto v = v_parts_.get<float>(static_cast<std::size_t>(total) * c);
    std::size_t at = 0, u_at = 0, v_at = 0;
    for (std::size_t p = 0; p < n; ++p) {
      const auto kp = static_cast<std::size_t>(table_[p * L + l]);
      // U_p moves down to u_at <= at, over blocks already read, and ends
      // before V_p starts; std::copy allows an overlap with the destination
      // below the source.
      const auto block = all.begin() + static_cast<std::ptrdiff_t>(at);
      const auto u_end = block + static_cast<std::ptrdiff_t>(r * kp);
      std::copy(u_end, u_end + static_cast<std::ptrdiff_t>(c * kp),
                v.begin() + static_cast<std::ptrdiff_t>(v_at));
      if (u_at != at) std::copy(block, u_end, all.begin() + static_cast<std::ptrdiff_t>(u_at));
      at += (r + c) * kp;
      u_at += r * kp;
      v_at += c * kp;
    }
    reconstruct_(static_cast<int>(r), static_cast<int>(c), static_cast<int>(total), all.data(),
                 v.data(), 1.0f / static_cast<float>(n), g.data());
  }

  std::size_t bucket_elems() const noexcept {
    return detail::bucket_elements<float>(options_.bucket_bytes);
  }

  CountingTransport<Transport> transport_;
  std::vector<SFBLayer> layers_;
  Options options_;
  Reconstruct reconstruct_;
  Reduce reduce_;
  detail::WorldPartition world_;
  detail::ConsistencyCheck check_;
  std::uint64_t ordinal_;
  std::uint64_t config_ = 0;
  std::vector<std::uint64_t> limit_;  // per layer: the largest Σk that goes as factors
  std::size_t end_ = 0;               // where the last layer ends
  std::vector<std::uint64_t> table_;  // rank p's k for layer l at p * layers + l
  std::vector<std::size_t> counts_;
  std::vector<std::span<float>> gaps_;
  std::vector<std::pair<std::size_t, std::uint64_t>> rebuilt_;  // (layer, Σk) this step
  std::unique_ptr<detail::SFBBackground<Transport>> background_;      // background_channel != 0
  // The background job: which, its inputs, and the channel's count before it.
  std::size_t job_ = 0;
  std::span<const FactorView> job_factors_;
  const Group* job_group_ = nullptr;
  TrafficCount job_before_{};
  BruckAllGather k_gather_;
  RingAllGatherV all_gather_;
  detail::Scratch gathered_[2], v_parts_, fusion_;  // gathered_[1]: in the background only
  bool first_ = true;
  std::uint64_t iteration_ = 0;
  SFBStats stats_;
};

}  // namespace dssync

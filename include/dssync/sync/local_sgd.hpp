#pragma once
// LocalSGD: runs any synchronizer once every H steps; in between, ranks train
// alone. Inner's options pass through, e.g.
//   LocalSGD<DSSync<InProcTransport>> sync(t, {.period = 4, .inner = {.group_size = 2}});

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

template <class Inner>
class LocalSGD {
 public:
  using transport_type = typename Inner::transport_type;
  struct Options {
    int period = 1;  // H: synchronize on steps H-1, 2H-1, ... (after every H local steps)
    typename Inner::Options inner = {};
  };

  explicit LocalSGD(transport_type& t, Options options = {})
      : options_(options), world_size_(t.size()), inner_(t, options.inner) {
    if (options_.period < 1)
      throw configuration_error("LocalSGD period must be at least 1, got " +
                                    std::to_string(options_.period),
                                error_context{}.with_rank(t.rank()));
  }

  template <class Params>
  void step(Params&& params) {
    if (synchronizes(iteration_)) inner_.step(std::forward<Params>(params));
    ++iteration_;
  }

  bool synchronizes(std::uint64_t t) const noexcept {
    return (t + 1) % static_cast<std::uint64_t>(options_.period) == 0;
  }

  // At a synchronizing step, the inner synchronizer's partition for its own
  // iteration; otherwise every rank alone.
  Partition partition(std::uint64_t t) const
    requires requires(const Inner& s) { s.partition(t); }
  {
    if (synchronizes(t)) return inner_.partition(t / static_cast<std::uint64_t>(options_.period));
    const std::vector<int> ones(static_cast<std::size_t>(world_size_), 1);
    return Partition::contiguous(ones);
  }

  std::uint64_t iteration() const noexcept { return iteration_; }
  // The inner synchronizer's traffic and time, with steps counting this
  // synchronizer's step() calls (local ones included), as SyncStats says.
  SyncStats stats() const noexcept {
    SyncStats s = inner_.stats();
    s.steps = iteration_;
    return s;
  }
  const Inner& inner() const noexcept { return inner_; }

 private:
  Options options_;
  int world_size_;
  Inner inner_;
  std::uint64_t iteration_ = 0;
};

}  // namespace dssync

#pragma once
// What every synchronizer shares: its statistics, and the fusion of many
// tensors into a few buckets so that a model with hundreds of tensors costs a
// few collectives per step, not one per tensor.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dssync/collective/recursive_doubling.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/random.hpp"
#include "dssync/core/scratch.hpp"
#include "dssync/transport/counting.hpp"

namespace dssync {

// What a synchronizer has done on this rank since it was made.
struct SyncStats {
  std::uint64_t steps = 0;          // step() calls
  std::uint64_t bytes_sent = 0;     // payload bytes this rank sent
  std::uint64_t messages_sent = 0;
  double seconds = 0;               // wall time inside step()
};

// Default fusion bucket: tensors are packed into buffers of this many bytes
// and each bucket is one collective (Horovod fuses into 128 MB, PyTorch DDP into
// 25 MB buckets). 0 puts everything into one bucket.
inline constexpr std::size_t default_bucket_bytes = 64u << 20;

namespace detail {

// Times a step and folds the traffic it caused into the stats.
class StepScope {
 public:
  StepScope(SyncStats& stats, const TrafficCount& count) noexcept
      : stats_(stats), count_(count), before_(count), start_(std::chrono::steady_clock::now()) {}
  ~StepScope() {
    stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    stats_.bytes_sent += count_.bytes_sent - before_.bytes_sent;
    stats_.messages_sent += count_.messages_sent - before_.messages_sent;
    ++stats_.steps;
  }
  StepScope(const StepScope&) = delete;
  StepScope& operator=(const StepScope&) = delete;

 private:
  SyncStats& stats_;
  const TrafficCount& count_;
  TrafficCount before_;
  std::chrono::steady_clock::time_point start_;
};

// Tensors that share memory (one listed twice, tied weights, overlapping
// views) would be reduced once or twice depending on where the buckets cut:
// with Sum, n times too much. Refused. Sorts the tensors' extents in
// `scratch` (in place, no allocation once it has grown).
template <class T>
void require_disjoint(std::span<const std::span<T>> tensors, Scratch& scratch) {
  if (tensors.size() < 2) return;
  struct Extent {
    std::uintptr_t begin, end;
    std::size_t index;
  };
  const auto extents = scratch.get<Extent>(tensors.size());
  std::size_t k = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].empty()) continue;
    const auto b = reinterpret_cast<std::uintptr_t>(tensors[i].data());
    extents[k++] = {b, b + tensors[i].size_bytes(), i};
  }
  const auto used = extents.first(k);
  std::sort(used.begin(), used.end(),
            [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < k; ++i)
    if (used[i].begin < used[i - 1].end) {
      const std::size_t a = std::min(used[i - 1].index, used[i].index);
      const std::size_t b = std::max(used[i - 1].index, used[i].index);
      throw configuration_error("tensors " + std::to_string(a) + " and " + std::to_string(b) +
                                " of the step share memory: each element must be listed once");
    }
}

// Walks the concatenation of `tensors` in buckets of at most `bucket_elems`
// elements and calls run(bucket, index) on each, in the same order on every
// rank. A bucket that lies inside one tensor is that tensor's memory; one that
// spans several is packed into `fusion` and unpacked after run.
template <class T, class Run>
void for_each_bucket(std::span<const std::span<T>> tensors, std::size_t bucket_elems,
                     Scratch& fusion, Run&& run) {
  require_disjoint(tensors, fusion);
  std::size_t total = 0;
  for (const auto& t : tensors) total += t.size();
  if (bucket_elems == 0) bucket_elems = std::max<std::size_t>(total, 1);
  std::size_t ti = 0, off = 0;  // cursor: tensor index, offset in it
  unsigned index = 0;
  auto skip_empty = [&] {
    while (ti < tensors.size() && off == tensors[ti].size()) ++ti, off = 0;
  };
  skip_empty();
  if (ti == tensors.size()) {
    run(std::span<T>(), index);  // nothing to move, but the ranks still meet
    return;
  }
  std::size_t left = total;  // elements not yet run
  while (ti < tensors.size()) {
    // In place when the bucket is full from this tensor alone, or when the rest
    // of this tensor is all that is left (the common case: one flat buffer).
    const std::size_t rest = tensors[ti].size() - off;
    if (rest >= bucket_elems || rest == left) {
      const std::size_t n = std::min(rest, bucket_elems);
      run(tensors[ti].subspan(off, n), index++);
      off += n;
      left -= n;
      skip_empty();
      continue;
    }
    // Pack from the cursor until the bucket is full or the tensors end. The
    // buffer is as large as what goes into it: a small model never pays for a
    // whole bucket.
    auto buf = fusion.get<T>(std::min(bucket_elems, left));
    const std::size_t start_ti = ti, start_off = off;
    std::size_t used = 0;
    while (ti < tensors.size() && used < bucket_elems) {
      const std::size_t n = std::min(bucket_elems - used, tensors[ti].size() - off);
      copy(buf.subspan(used, n), std::span<const T>(tensors[ti].subspan(off, n)));
      used += n;
      off += n;
      skip_empty();
    }
    run(buf.first(used), index++);
    left -= used;
    // Unpack the same pieces.
    std::size_t ui = start_ti, uoff = start_off, done = 0;
    while (done < used) {
      const std::size_t n = std::min(used - done, tensors[ui].size() - uoff);
      copy(tensors[ui].subspan(uoff, n), std::span<const T>(buf.subspan(done, n)));
      done += n;
      uoff += n;
      if (uoff == tensors[ui].size()) ++ui, uoff = 0;
    }
  }
}

// The step() overloads every synchronizer offers, all funnelled into the
// derived class's step_tensors(std::span<const std::span<T>>): one buffer, a
// set of tensors, or any contiguous container of elements. The element type is
// checked here, at the API, with one message naming the concept that failed
// rather than a page of errors from inside a kernel. The derived class names
// its op as op_type.
template <class Derived>
class StepOverloads {
 public:
  template <class T>
  void step(std::span<const std::span<T>> tensors) {
    if constexpr (steppable<T>()) static_cast<Derived&>(*this).step_tensors(tensors);
  }
  template <class T>
  void step(std::span<std::span<T>> tensors) {
    step(std::span<const std::span<T>>(tensors));
  }
  template <class T>
  void step(std::span<T> params) {
    const std::span<T> one[] = {params};
    step(std::span<const std::span<T>>(one));
  }
  template <std::ranges::contiguous_range R>
  void step(R& params) {
    // Of dynamic extent: std::span(params) of a std::array or a C array would
    // have a fixed one, which no overload above takes.
    step(std::span<std::remove_reference_t<std::ranges::range_reference_t<R>>>(params));
  }

 private:
  // One static_assert fires at a time: the first that fails.
  template <class T>
  static constexpr bool steppable() {
    using Op = typename Derived::op_type;
    if constexpr (std::is_const_v<T>) {
      static_assert(!std::is_const_v<T>,
                    "dssync: step() averages the parameters in place; pass mutable elements "
                    "(std::span<float>, not std::span<const float>)");
      return false;
    } else if constexpr (!element<T>) {
      static_assert(element<T>,
                    "dssync: the parameters' type does not satisfy the concept dssync::element "
                    "(trivially copyable values; not bool, not a pointer)");
      return false;
    } else if constexpr (!reduce_op<Op, T>) {
      static_assert(reduce_op<Op, T>,
                    "dssync: the synchronizer's op cannot combine this element type (concept "
                    "dssync::reduce_op); Average takes floating point: for integers use Sum or "
                    "TruncatedAverage");
      return false;
    } else {
      return true;
    }
  }
};

// Runs f(); a dssync::error escaping it is rethrown with the rank, the
// iteration and the group filled in where it left them out: the transport
// below knows no iteration or group, and a policy (a shuffle, a topology, a
// chain) knows none of the three.
template <class F>
void with_context(int rank, std::uint64_t iteration, std::span<const int> group, F&& f) {
  try {
    f();
  } catch (const error& e) {
    const auto here = error_context{}.with_rank(rank).with_iteration(iteration);
    e.rethrow_with(group.empty() ? here : here.with_group(group));
  }
}

// Refuses, before anything is allocated, a history of `copies` copies of
// `count` items of `item_bytes` bytes that needs more bytes than `max_bytes`
// (the synchronizer's option named `option`) or than a size_t holds. `what`
// describes the history for the message, as in "StaleSync's history (3
// copies of 1000 parameters of 4 bytes)".
inline void check_history_bytes(const std::string& what, std::size_t copies, std::size_t count,
                                std::size_t item_bytes, std::size_t max_bytes,
                                std::string_view option, const error_context& at) {
  const std::size_t max = std::numeric_limits<std::size_t>::max();
  if (count != 0 && item_bytes != 0 && copies > max / item_bytes / count)
    throw configuration_error(what + " needs more bytes than a size_t holds", at);
  const std::size_t bytes = copies * count * item_bytes;
  if (bytes > max_bytes)
    throw configuration_error(what + " needs " + std::to_string(bytes) + " bytes, above " +
                                  std::string(option) + " = " + std::to_string(max_bytes),
                              at);
}

// A name for a type that is the same in every process built from the same
// source with the same compiler: the checked mode compares element types and
// ops by it.
template <class T>
constexpr std::uint64_t type_hash() noexcept {
  constexpr std::string_view name = __PRETTY_FUNCTION__;  // names T
  std::uint64_t h = 0xcbf29ce484222325ULL;                // FNV-1a
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return mix64(h ^ sizeof(T));
}

// Numbers the checked synchronizers a rank makes, in order: a rank's k-th
// checked synchronizer must meet the other ranks' k-th, or two synchronizers
// stepped in different orders on different ranks would mix their buffers.
// The four transports count per (rank, channel) in next_checked_ordinal()
// (transport/contract.hpp); a wrapper asks the transport it wraps; a user's
// transport without the member is counted per OS thread, which is right
// when each of its ranks and channels has a thread of its own.
template <class Transport>
std::uint64_t next_checked_ordinal(Transport& t) noexcept {
  if constexpr (requires { { t.next_checked_ordinal() } -> std::convertible_to<std::uint64_t>; }) {
    return t.next_checked_ordinal();
  } else if constexpr (requires { t.base(); }) {
    return next_checked_ordinal(t.base());
  } else {
    thread_local std::uint64_t next = 0;
    return next++;
  }
}

// What the checked mode compares across ranks before a step moves a byte.
struct CheckedState {
  std::uint64_t schedule;  // synchronizer, its ordinal, options, op, iteration, partition
  std::uint64_t layout;    // element type, the number and lengths of the tensors, in order
  std::uint64_t length;    // elements in all
};

// The layout half of CheckedState, from the tensors themselves.
template <class T>
CheckedState tensor_layout(std::span<const std::span<T>> tensors) noexcept {
  CheckedState s{0, type_hash<T>(), 0};
  for (const auto& x : tensors) {
    s.layout = mix64(s.layout ^ (x.size() * golden_gamma + 1));
    s.length += x.size();
  }
  s.layout = mix64(s.layout ^ tensors.size());
  return s;
}

// The checked mode's exchange: every rank's CheckedState reaches every rank
// through one all-reduce over the world, whatever the ranks believe about the
// partition, so a disagreement is reported on every rank and never deadlocks.
class ConsistencyCheck {
 public:
  // Nothing world-sized is held until the first verify: a synchronizer that
  // is not checked pays nothing for it (n ranks of one simulated world would
  // pay n x n).
  ConsistencyCheck() = default;

  template <transport Transport>
  void verify(Transport& t, std::uint64_t iteration, const CheckedState& mine) {
    if (table_.empty()) {
      world_ = Partition::whole(t.size());
      table_.resize(3 * static_cast<std::size_t>(t.size()));
    }
    const auto me = static_cast<std::size_t>(t.rank());
    std::fill(table_.begin(), table_.end(), 0);
    table_[3 * me] = mine.schedule;
    table_[3 * me + 1] = mine.layout;
    table_[3 * me + 2] = mine.length;
    // A fixed tag: ranks that disagree on the iteration must still meet here.
    reduce_.all_reduce(t, world_.group(0), std::span<std::uint64_t>(table_), Sum{}, max_tag);
    for (std::size_t r = 0; r < table_.size() / 3; ++r) {
      const auto where =
          error_context{}.with_rank(t.rank()).with_peer(static_cast<int>(r)).with_iteration(iteration);
      if (table_[3 * r] != mine.schedule)
        throw configuration_error(
            "ranks disagree on what this step is: a different synchronizer (or synchronizers "
            "stepped in another order), seed, group size, shuffle, op or iteration counter",
            where);
      if (table_[3 * r + 2] != mine.length)
        throw configuration_error("ranks synchronize buffers of different lengths (" +
                                      std::to_string(mine.length) + " elements here, " +
                                      std::to_string(table_[3 * r + 2]) + " on the peer)",
                                  where);
      if (table_[3 * r + 1] != mine.layout)
        throw configuration_error(
            "ranks pass different tensors: another element type, or tensors of other lengths "
            "or in another order",
            where);
    }
  }

 private:
  Partition world_;
  std::vector<std::uint64_t> table_;
  RecursiveDoublingReduce reduce_;
};

template <class T>
std::size_t bucket_elements(std::size_t bucket_bytes) noexcept {
  return bucket_bytes == 0 ? 0 : std::max<std::size_t>(1, bucket_bytes / sizeof(T));
}

}  // namespace detail
}  // namespace dssync

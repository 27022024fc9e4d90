#pragma once
// What every synchronizer shares: its statistics, and the fusion of many
// tensors into a few buckets so that a model with hundreds of tensors costs a
// few collectives per step, not one per tensor.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <type_traits>

#include "dssync/core/ops.hpp"
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

// Walks the concatenation of `tensors` in buckets of at most `bucket_elems`
// elements and calls run(bucket, index) on each, in the same order on every
// rank. A bucket that lies inside one tensor is that tensor's memory; one that
// spans several is packed into `fusion` and unpacked after run.
template <class T, class Run>
void for_each_bucket(std::span<const std::span<T>> tensors, std::size_t bucket_elems,
                     Scratch& fusion, Run&& run) {
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
    // Pack from the cursor until the bucket is full or the tensors end.
    auto buf = fusion.get<T>(bucket_elems);
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
// set of tensors, or any contiguous container of elements.
template <class Derived>
class StepOverloads {
 public:
  template <element T>
  void step(std::span<const std::span<T>> tensors) {
    static_cast<Derived&>(*this).step_tensors(tensors);
  }
  template <element T>
  void step(std::span<std::span<T>> tensors) {
    step(std::span<const std::span<T>>(tensors));
  }
  template <element T>
  void step(std::span<T> params) {
    const std::span<T> one[] = {params};
    step(std::span<const std::span<T>>(one));
  }
  template <std::ranges::contiguous_range R>
    requires element<std::ranges::range_value_t<R>> && (!std::is_const_v<std::remove_reference_t<std::ranges::range_reference_t<R>>>)
  void step(R& params) {
    step(std::span<std::ranges::range_value_t<R>>(params));
  }
};

template <class T>
std::size_t bucket_elements(std::size_t bucket_bytes) noexcept {
  return bucket_bytes == 0 ? 0 : std::max<std::size_t>(1, bucket_bytes / sizeof(T));
}

}  // namespace detail
}  // namespace dssync

#pragma once
// Reusable scratch memory: it grows to the largest request and stays, so a
// collective allocates on its first call and never in the steady state.

#include <cstddef>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <utility>

namespace dssync::detail {

class Scratch {
 public:
  Scratch() = default;
  // A copy starts empty: scratch is a cache, not a value.
  Scratch(const Scratch&) noexcept {}
  Scratch& operator=(const Scratch&) noexcept { return *this; }
  // A move leaves the source empty, its capacity 0 with its memory: a moved-from
  // scratch that kept its capacity would hand out spans of nothing.
  Scratch(Scratch&& o) noexcept
      : data_(std::move(o.data_)), capacity_(std::exchange(o.capacity_, 0)) {}
  Scratch& operator=(Scratch&& o) noexcept {
    if (this != &o) {
      data_ = std::move(o.data_);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }

  // Room for n elements of T, 64-byte aligned. Earlier contents are not kept.
  // A request whose bytes overflow is std::bad_array_new_length; a growth
  // that fails leaves the scratch empty (the old memory is freed first, so
  // that both are never held at once), never pointing at nothing.
  template <class T>
  std::span<T> get(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    if (bytes > capacity_) {
      data_.reset();
      capacity_ = 0;
      data_.reset(static_cast<std::byte*>(::operator new(bytes, std::align_val_t{64})));
      capacity_ = bytes;
    }
    return {reinterpret_cast<T*>(data_.get()), n};
  }

  // Grows to n elements of T now, so that later get()s up to that size never
  // allocate. Collectives reserve what any member position could need, so a
  // rank whose role changes from step to step does not allocate then.
  template <class T>
  void reserve(std::size_t n) {
    (void)get<T>(n);
  }

  std::size_t capacity_bytes() const noexcept { return capacity_; }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept { ::operator delete(p, std::align_val_t{64}); }
  };
  std::unique_ptr<std::byte, Free> data_;
  std::size_t capacity_ = 0;
};

}  // namespace dssync::detail

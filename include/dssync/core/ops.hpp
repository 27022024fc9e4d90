#pragma once
// Element-wise operations of a reduction, and the kernels that apply them to
// buffers.
//
// An op is any callable that combines two elements: op(a, b) -> T. It is
// assumed associative and commutative, as MPI assumes of its predefined ops.
// Every collective leaves bitwise identical results on every member of a group:
// each element is combined in one fixed order (recursive doubling puts the
// lower position on the left at every step; ring starts each block's running
// total at a different position), so results may differ between algorithms in
// the last bit, or in the sign of a zero, but never between members.
//
// An op may also finish the reduction: op.finish(std::span<T>, int group_size)
// runs once on the fully reduced elements (Average divides there).

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>

namespace dssync {

struct Sum {
  template <class T>
  constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a + b);
  }
};

// Sum, then divide by the number of contributions. Integer types divide with
// truncation toward zero, as integer division does.
struct Average {
  template <class T>
  constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a + b);
  }
  template <class T>
  void finish(std::span<T> data, int group_size) const noexcept {
    if (group_size == 1) return;
    const T n = static_cast<T>(group_size);
    // Division, not multiplication by 1/n: correctly rounded, and exact where
    // the mean is representable.
    for (T& x : data) x = static_cast<T>(x / n);
  }
};

// Max and Min return the left operand on ties: a fixed rule, so that +0 and -0
// come out the same on every member of a group.
struct Max {
  template <class T>
  constexpr T operator()(T a, T b) const noexcept {
    return a < b ? b : a;
  }
};

struct Min {
  template <class T>
  constexpr T operator()(T a, T b) const noexcept {
    return b < a ? b : a;
  }
};

// Elements a collective can move: copied byte for byte.
template <class T>
concept element = std::is_trivially_copyable_v<T> && !std::is_const_v<T>;

// op(a, b) combines two elements into one of the same type.
template <class Op, class T>
concept reduce_op = element<T> && std::copy_constructible<Op> &&
                    requires(const Op& op, T a, T b) {
                      { op(a, b) } -> std::convertible_to<T>;
                    };

namespace detail {

template <class Op, class T>
concept has_finish = requires(const Op& op, std::span<T> s, int n) { op.finish(s, n); };

// Runs the op's finishing step, if it has one.
template <class T, class Op>
void finish(const Op& op, std::span<T> data, int group_size) {
  if constexpr (has_finish<Op, T>) op.finish(data, group_size);
}

// acc[i] = op(acc[i], in[i]): the incoming block comes from a higher position.
// Plain indexed loops over restrict pointers: GCC and Clang vectorize them.
template <class T, class Op>
void combine_right(const Op& op, std::span<T> acc, std::span<const T> in) {
  T* __restrict a = acc.data();
  const T* __restrict b = in.data();
  const std::size_t n = acc.size();
  for (std::size_t i = 0; i < n; ++i) a[i] = op(a[i], b[i]);
}

// acc[i] = op(in[i], acc[i]): the incoming block comes from a lower position.
template <class T, class Op>
void combine_left(const Op& op, std::span<T> acc, std::span<const T> in) {
  T* __restrict a = acc.data();
  const T* __restrict b = in.data();
  const std::size_t n = acc.size();
  for (std::size_t i = 0; i < n; ++i) a[i] = op(b[i], a[i]);
}

// Combines in the order of the contributors' positions.
template <class T, class Op>
void combine(const Op& op, std::span<T> acc, std::span<const T> in, bool in_is_lower) {
  if (in_is_lower)
    combine_left(op, acc, in);
  else
    combine_right(op, acc, in);
}

template <class T>
void copy(std::span<T> dst, std::span<const T> src) noexcept {
  if (!src.empty()) std::memcpy(dst.data(), src.data(), src.size_bytes());
}

}  // namespace detail
}  // namespace dssync

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
// the last bit, or in the sign of a zero, but never between members. NaNs are
// the one input where IEEE addition is not commutative bit for bit (the result
// carries one operand's payload, and a compiler may swap the operands of a +
// b); where two members compute the same element independently, floating-point
// results that are NaN are replaced by one canonical quiet NaN.
//
// An op may also finish the reduction: op.finish(std::span<T>, int group_size)
// runs once on the fully reduced elements (Average divides there). An op that
// also has combine_finish(acc, in, in_is_lower, group_size) lets a collective
// fold that finishing step into its last combine: one pass over memory fewer,
// and the same operations in the same order, so the same bits.

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>

namespace dssync {

// Elements a collective can move and combine: copied byte for byte, so
// trivially copyable; mutable values, not views of something elsewhere. bool is
// left out on purpose: Sum and Average over bool would be a logical OR.
template <class T>
concept element = std::is_trivially_copyable_v<T> && std::same_as<T, std::remove_cvref_t<T>> &&
                  !std::same_as<T, bool> && !std::is_pointer_v<T> &&
                  !std::is_member_pointer_v<T> && !std::is_array_v<T>;

// op(a, b) combines two elements into one of the same type.
template <class Op, class T>
concept reduce_op = element<T> && std::copy_constructible<Op> &&
                    requires(const Op& op, T a, T b) {
                      { op(a, b) } -> std::convertible_to<T>;
                    };

namespace detail {
// A sum divided by n, as the division x / n would round it. For n a power of
// two the reciprocal is exact and x * (1/n) is the same correctly rounded
// value as x / n, so it multiplies (a multiplication is cheaper than a division).
template <std::floating_point T>
struct Divide {
  explicit Divide(int n) noexcept
      : divisor(static_cast<T>(n)), reciprocal(T(1) / static_cast<T>(n)),
        by_reciprocal(std::has_single_bit(static_cast<unsigned>(n))) {}
  T divisor;
  T reciprocal;
  bool by_reciprocal;
};

template <class T>
concept summable = requires(T a, T b) {
  { a + b } -> std::convertible_to<T>;
};
template <class T>
concept ordered = requires(T a, T b) {
  { a < b } -> std::convertible_to<bool>;
};
}  // namespace detail

struct Sum {
  template <detail::summable T>
  constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a + b);
  }
};

// Sum, then divide by the number of contributions, correctly rounded. Floating
// point only: the mean of integers is not an integer, and truncating it
// silently is how parameters drift. For integers say which rounding you want:
// TruncatedAverage, or Sum and divide yourself.
struct Average {
  template <std::floating_point T>
  constexpr T operator()(T a, T b) const noexcept {
    return a + b;
  }
  template <std::floating_point T>
  void finish(std::span<T> data, int group_size) const noexcept {
    if (group_size == 1) return;
    const detail::Divide<T> d(group_size);
    T* __restrict a = data.data();
    const std::size_t n = data.size();
    if (d.by_reciprocal)
      for (std::size_t i = 0; i < n; ++i) a[i] = a[i] * d.reciprocal;
    else
      for (std::size_t i = 0; i < n; ++i) a[i] = a[i] / d.divisor;
  }
  // acc = (in + acc) / group_size (in on the left when it comes from a lower
  // position), in one pass: the bits of a combine followed by finish.
  template <std::floating_point T>
  void combine_finish(std::span<T> acc, std::span<const T> in, bool in_is_lower,
                      int group_size) const noexcept {
    const detail::Divide<T> d(group_size);
    T* __restrict a = acc.data();
    const T* __restrict b = in.data();
    const std::size_t n = acc.size();
    // Four loops rather than one with branches inside, so that each vectorizes.
    if (in_is_lower) {
      if (d.by_reciprocal)
        for (std::size_t i = 0; i < n; ++i) a[i] = (b[i] + a[i]) * d.reciprocal;
      else
        for (std::size_t i = 0; i < n; ++i) a[i] = (b[i] + a[i]) / d.divisor;
    } else {
      if (d.by_reciprocal)
        for (std::size_t i = 0; i < n; ++i) a[i] = (a[i] + b[i]) * d.reciprocal;
      else
        for (std::size_t i = 0; i < n; ++i) a[i] = (a[i] + b[i]) / d.divisor;
    }
  }
};

// The integer mean, rounded toward zero as integer division rounds: an explicit
// choice for integer counters (e.g. averaged step counts), never a default.
struct TruncatedAverage {
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a + b);
  }
  // Divided in a wide type: the group size need not fit T (a group of 200
  // int8 counters, of 256 uint8 ones).
  template <std::integral T>
  void finish(std::span<T> data, int group_size) const noexcept {
    if (group_size == 1) return;
    using Wide = std::conditional_t<std::is_signed_v<T>, long long, unsigned long long>;
    const auto n = static_cast<Wide>(group_size);
    for (T& x : data) x = static_cast<T>(static_cast<Wide>(x) / n);
  }
};

// Max and Min return the left operand on ties: a fixed rule, so that +0 and -0
// come out the same on every member of a group.
struct Max {
  template <detail::ordered T>
  constexpr T operator()(T a, T b) const noexcept {
    return a < b ? b : a;
  }
};

struct Min {
  template <detail::ordered T>
  constexpr T operator()(T a, T b) const noexcept {
    return b < a ? b : a;
  }
};

namespace detail {

template <class Op, class T>
concept has_finish = requires(const Op& op, std::span<T> s, int n) { op.finish(s, n); };

template <class Op, class T>
concept has_combine_finish = requires(const Op& op, std::span<T> acc, std::span<const T> in,
                                      bool lower, int n) { op.combine_finish(acc, in, lower, n); };

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

// The last combine of a reduction, with the op's finishing step: fused into one
// pass when the op offers it, otherwise combine then finish.
template <class T, class Op>
void combine_finish(const Op& op, std::span<T> acc, std::span<const T> in, bool in_is_lower,
                    int group_size) {
  if constexpr (has_combine_finish<Op, T>)
    op.combine_finish(acc, in, in_is_lower, group_size);
  else {
    combine(op, acc, in, in_is_lower);
    finish(op, acc, group_size);
  }
}

// Replaces every NaN by the canonical quiet NaN (floating point only), so that
// members that computed an element independently hold the same bits.
template <class T>
void canonicalize_nans(std::span<T> data) noexcept {
  if constexpr (std::is_floating_point_v<T>) {
    constexpr T nan = std::numeric_limits<T>::quiet_NaN();
    T* __restrict a = data.data();
    const std::size_t n = data.size();
    for (std::size_t i = 0; i < n; ++i) a[i] = a[i] != a[i] ? nan : a[i];
  }
}

template <class T>
void copy(std::span<T> dst, std::span<const T> src) noexcept {
  if (!src.empty()) std::memcpy(dst.data(), src.data(), src.size_bytes());
}

}  // namespace detail
}  // namespace dssync

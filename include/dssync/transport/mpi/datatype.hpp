#pragma once
// How elements travel over MPI: the datatype of an element type, the element
// count one message may hold and the pieces of a longer buffer, and MPI's
// error codes as text. Includes <mpi.h> (without the deprecated C++ bindings)
// for the MPI transport's headers.

// The MPI-2 C++ bindings are deprecated and unused here; skipping them also
// keeps their warnings out of users' builds.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>

namespace dssync::detail {

// The predefined MPI datatype of an arithmetic element type (integers by size
// and signedness, since int64_t and long long are different types), or
// MPI_DATATYPE_NULL.
template <class T>
MPI_Datatype predefined_mpi_datatype() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<U, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<U, long double>) return MPI_LONG_DOUBLE;
  else if constexpr (std::is_integral_v<U> && !std::is_same_v<U, bool>) {
    constexpr bool s = std::is_signed_v<U>;
    if constexpr (sizeof(U) == 1) return s ? MPI_INT8_T : MPI_UINT8_T;
    else if constexpr (sizeof(U) == 2) return s ? MPI_INT16_T : MPI_UINT16_T;
    else if constexpr (sizeof(U) == 4) return s ? MPI_INT32_T : MPI_UINT32_T;
    else if constexpr (sizeof(U) == 8) return s ? MPI_INT64_T : MPI_UINT64_T;
    else return MPI_DATATYPE_NULL;
  } else return MPI_DATATYPE_NULL;
}

// The MPI datatype an element type travels as: its predefined type, or for any
// other trivially copyable type its bytes, as one committed contiguous type.
template <class T>
MPI_Datatype mpi_datatype() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, std::byte>) return MPI_BYTE;
  else if (const MPI_Datatype t = predefined_mpi_datatype<U>(); t != MPI_DATATYPE_NULL) return t;
  static const MPI_Datatype bytes = [] {
    MPI_Datatype t;
    MPI_Type_contiguous(static_cast<int>(sizeof(U)), MPI_BYTE, &t);
    MPI_Type_commit(&t);
    return t;
  }();
  return bytes;
}

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<std::size_t>(len));
}

// Elements per message: the count is an int.
inline constexpr std::size_t mpi_max_count = std::size_t{1} << 30;

// A buffer of n elements goes as ceil(n / 2^30) messages (one when empty).
inline std::size_t mpi_piece_count(std::size_t n) noexcept {
  return n == 0 ? 1 : (n + mpi_max_count - 1) / mpi_max_count;
}
struct MPIPiece {
  std::size_t offset;
  int count;
};
inline MPIPiece mpi_piece(std::size_t n, std::size_t p) noexcept {
  const std::size_t off = std::min(n, p * mpi_max_count);
  return {off, static_cast<int>(std::min(mpi_max_count, n - off))};
}
template <class F>
void mpi_for_each_piece(std::size_t n, F&& f) {
  for (std::size_t p = 0; p < mpi_piece_count(n); ++p) {
    const auto [off, count] = mpi_piece(n, p);
    f(off, count);
  }
}

}  // namespace dssync::detail

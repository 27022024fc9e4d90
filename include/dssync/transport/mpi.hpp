#pragma once
// MPITransport: the transport concept over a Boost.MPI communicator (the world
// by default). Needs Boost.MPI and an MPI library; link dssync::mpi.
//
// - The transport works on its own duplicate of the communicator, so its
//   messages can never match a receive of the user's program, and it sets
//   MPI_ERRORS_RETURN there so that failures become dssync errors instead of an
//   abort of the whole job.
// - Arrays of trivially copyable elements go as MPI datatypes (MPI_FLOAT, ...,
//   or a contiguous byte type for user structs), never through
//   Boost.Serialization.
// - Buffers longer than an int can count go as several messages.
// - MPI has no timeouts: a dead peer is handled by the MPI launcher, which ends
//   the job.

// The MPI-2 C++ bindings are deprecated and unused here; skipping them also
// keeps their warnings out of users' builds.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <boost/mpi/communicator.hpp>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "dssync/core/error.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/tag.hpp"

namespace dssync {

namespace detail {

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

}  // namespace detail

class MPITransport {
 public:
  // Over MPI_COMM_WORLD.
  MPITransport() : MPITransport(boost::mpi::communicator()) {}

  // Over any communicator; collective over it (it is duplicated).
  explicit MPITransport(const boost::mpi::communicator& comm)
      : comm_(comm, boost::mpi::comm_duplicate) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  }

  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }
  // The transport's private duplicate of the communicator it was given.
  const boost::mpi::communicator& communicator() const noexcept { return comm_; }

  template <class T>
    requires element<std::remove_const_t<T>>
  void send(int dst, std::span<T> data, tag_t tag) {
    check(dst, tag);
    for_each_piece(data.size(), [&](std::size_t off, int count) {
      call(MPI_Send(data.data() + off, count, detail::mpi_datatype<T>(), dst, tag, comm_), "MPI_Send",
           dst, tag);
    });
  }

  template <class T>
    requires element<T>
  void recv(int src, std::span<T> data, tag_t tag) {
    check(src, tag);
    for_each_piece(data.size(), [&](std::size_t off, int count) {
      MPI_Status status;
      const int rc =
          MPI_Recv(data.data() + off, count, detail::mpi_datatype<T>(), src, tag, comm_, &status);
      check_received<T>(rc, status, count, src, tag);
    });
  }

  // Full duplex: both directions are posted before either is waited for.
  template <class T, class U>
    requires element<std::remove_const_t<T>> && element<U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
    check(dst, tag);
    check(src, tag);
    const std::size_t pieces = std::max(piece_count(out.size()), piece_count(in.size()));
    for (std::size_t p = 0; p < pieces; ++p) {
      const auto [out_off, out_count] = piece(out.size(), p);
      const auto [in_off, in_count] = piece(in.size(), p);
      MPI_Request requests[2];
      int posted = 0;
      if (p < piece_count(in.size()))
        call(MPI_Irecv(in.data() + in_off, in_count, detail::mpi_datatype<U>(), src, tag, comm_,
                       &requests[posted++]),
             "MPI_Irecv", src, tag);
      if (p < piece_count(out.size()))
        call(MPI_Isend(out.data() + out_off, out_count, detail::mpi_datatype<T>(), dst, tag, comm_,
                       &requests[posted++]),
             "MPI_Isend", dst, tag);
      MPI_Status statuses[2];
      const int rc = MPI_Waitall(posted, requests, statuses);
      if (p < piece_count(in.size())) {
        const int recv_rc = rc == MPI_ERR_IN_STATUS ? statuses[0].MPI_ERROR : rc;
        check_received<U>(recv_rc, statuses[0], in_count, src, tag);
      }
      if (rc == MPI_ERR_IN_STATUS && posted == 2) call(statuses[1].MPI_ERROR, "MPI_Isend", dst, tag);
      else if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) call(rc, "MPI_Waitall", dst, tag);
    }
  }

 private:
  error_context where(int peer, tag_t tag) const { return detail::p2p_context(rank(), peer, tag); }
  void check(int peer, tag_t tag) const { detail::check_peer_and_tag(rank(), size(), peer, tag); }

  void call(int rc, const char* what, int peer, tag_t tag) const {
    if (rc != MPI_SUCCESS)
      throw peer_error(std::string(what) + " failed: " + detail::mpi_error_text(rc), where(peer, tag));
  }

  template <class T>
  void check_received(int rc, const MPI_Status& status, int expected, int src, tag_t tag) const {
    const std::size_t elem_bytes = sizeof(T);
    int error_class = MPI_SUCCESS;
    if (rc != MPI_SUCCESS) MPI_Error_class(rc, &error_class);
    if (error_class == MPI_ERR_TRUNCATE)
      throw size_mismatch_error("the peer sent more than the " +
                                    std::to_string(static_cast<std::size_t>(expected) * elem_bytes) +
                                    " bytes expected",
                                where(src, tag));
    call(rc, "MPI_Recv", src, tag);
    int received = 0;
    MPI_Get_count(&status, detail::mpi_datatype<T>(), &received);
    if (received != expected)
      throw size_mismatch_error("expected " +
                                    std::to_string(static_cast<std::size_t>(expected) * elem_bytes) +
                                    " bytes, the peer sent " +
                                    std::to_string(static_cast<std::size_t>(received) * elem_bytes),
                                where(src, tag));
  }

  // A buffer of n elements goes as ceil(n / 2^30) messages (one when empty).
  static std::size_t piece_count(std::size_t n) noexcept {
    return n == 0 ? 1 : (n + detail::mpi_max_count - 1) / detail::mpi_max_count;
  }
  struct Piece {
    std::size_t offset;
    int count;
  };
  static Piece piece(std::size_t n, std::size_t p) noexcept {
    const std::size_t off = std::min(n, p * detail::mpi_max_count);
    return {off, static_cast<int>(std::min(detail::mpi_max_count, n - off))};
  }
  template <class F>
  static void for_each_piece(std::size_t n, F&& f) {
    for (std::size_t p = 0; p < piece_count(n); ++p) {
      const auto [off, count] = piece(n, p);
      f(off, count);
    }
  }

  boost::mpi::communicator comm_;
};

}  // namespace dssync

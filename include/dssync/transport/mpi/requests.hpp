#pragma once
// How MPITransport ends its requests: a completed receive's status checked
// (MPI's error, or a length other than the receive's), and requests given up
// on without blocking.

#include "dssync/transport/mpi/datatype.hpp"  // first: <mpi.h> without the C++ bindings

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <thread>

#include "dssync/core/error.hpp"
#include "dssync/transport/contract.hpp"

namespace dssync::detail {

// A receive's status: MPI's error, or a length other than the receive's
// (in bytes: a message of another element size has no count in this one's).
// `at` names the receive (rank, peer, tag).
inline void mpi_check_received(int rc, const MPI_Status& status, int expected,
                               std::size_t elem_bytes, int src, const error_context& at) {
  const std::size_t expected_bytes = static_cast<std::size_t>(expected) * elem_bytes;
  int error_class = MPI_SUCCESS;
  if (rc != MPI_SUCCESS) MPI_Error_class(rc, &error_class);
  if (error_class == MPI_ERR_TRUNCATE)  // MPI does not say how much more
    throw size_mismatch_error(
        "expected " + std::to_string(expected_bytes) + " bytes, the peer sent more", at);
  if (rc != MPI_SUCCESS) throw peer_error("MPI_Irecv failed: " + mpi_error_text(rc), at);
  MPI_Count received = 0;
  MPI_Get_elements_x(&status, MPI_BYTE, &received);
  if (received < 0 || static_cast<std::size_t>(received) != expected_bytes)
    throw size_mismatch(expected_bytes, static_cast<std::size_t>(std::max<MPI_Count>(received, 0)),
                        src, at);
}

// Gives up on requests without blocking; the first `receives` are receives.
inline void mpi_abandon(std::span<MPI_Request> requests, int receives) noexcept {
  const auto r = static_cast<std::size_t>(receives);
  for (std::size_t i = 0; i < r; ++i)
    if (requests[i] != MPI_REQUEST_NULL) MPI_Cancel(&requests[i]);
  // A cancelled receive that nothing matched completes at once. One that a
  // large message already matched cannot be cancelled and completes only as
  // the sender goes on pushing data; it gets a short grace, then is freed,
  // and MPI may still write the rest of that message into the buffer.
  const auto grace_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  int done = r == 0;
  while (!done) {
    MPI_Testall(receives, requests.data(), &done, MPI_STATUSES_IGNORE);
    if (done || std::chrono::steady_clock::now() >= grace_end) break;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  // Open MPI does not cancel sends (MPI_Cancel on one is ignored), so they
  // are freed: an eager send has left already; a large one is finished or
  // dropped by the library, and may still be read from the caller's buffer
  // as MPI progresses if its receiver matched it (docs/design.md,
  // "Decisions": after a timeout on MPI).
  for (auto& q : requests)
    if (q != MPI_REQUEST_NULL) MPI_Request_free(&q);
}

}  // namespace dssync::detail

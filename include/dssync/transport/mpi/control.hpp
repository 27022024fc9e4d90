#pragma once
// The failure notices of MPITransport and the part of a transport that MPI
// points into: the notice buffers and requests, the sticky failure, the
// channels' communicators.

#include "dssync/transport/mpi/datatype.hpp"  // first: <mpi.h> without the C++ bindings

#include <algorithm>
#include <boost/mpi/communicator.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/transport/contract.hpp"
#include "dssync/transport/mpi/posted.hpp"

namespace dssync::detail {

// A failure notice: what a failing rank tells every other rank. Fixed size, so
// that one receive for it can always be posted.
struct MPINotice {
  // Which transport failed. MPI reuses a freed communicator's context id, so a
  // notice still in flight when its transport is destroyed could otherwise
  // reach a new transport of the same ranks.
  std::uint64_t transport = 0;
  std::int32_t rank = -1;
  std::int32_t length = 0;
  char text[max_failure_text] = {};
};
inline constexpr int mpi_notice_tag = 1;

// The part of an MPITransport that must not move: buffers MPI writes into or
// reads from while requests on them are pending.
struct MPIControl {
  MPI_Comm comm = MPI_COMM_NULL;  // private duplicate for notices only
  std::uint64_t id = 0;           // the same on every rank of one transport
  int rank = -1;                  // this rank and the world's size
  int size = 0;
  MPINotice incoming;
  MPI_Request incoming_request = MPI_REQUEST_NULL;
  std::unique_ptr<MPINotice> outgoing;
  std::vector<MPI_Request> outgoing_requests;
  StickyFailure failure;
  // The data communicators of channels 1, 2, ... (channel 0's is the
  // transport's own).
  std::vector<boost::mpi::communicator> channels;
  boost::mpi::communicator root;  // channel 0's, so that every handle reaches every channel
  CheckedOrdinals ordinals;       // per channel (transport/contract.hpp)
  // Per channel: its posted messages (mpi/posted.hpp). After the channels'
  // communicators, so that it goes first.
  std::vector<MPIPosted> posted;
  // Guards the notice requests and the failure: with channels, two threads
  // of a rank use them.
  std::mutex mu;

  // Posts the receive for the next notice.
  void post_notice_receive() {
    if (const int rc = MPI_Irecv(&incoming, sizeof(MPINotice), MPI_BYTE, MPI_ANY_SOURCE,
                                 mpi_notice_tag, comm, &incoming_request);
        rc != MPI_SUCCESS)
      throw peer_error("MPI_Irecv failed: " + mpi_error_text(rc), error_context{}.with_rank(rank));
  }

  // Whether the transport has failed (a notice for it has arrived, or
  // another channel failed it). Stale notices (another transport's) are
  // dropped.
  bool notice_arrived() {
    std::lock_guard lk(mu);
    return failure.failed() || notice_arrived_locked();
  }
  bool notice_arrived_locked() {
    while (incoming_request != MPI_REQUEST_NULL) {
      int got = 0;
      if (MPI_Test(&incoming_request, &got, MPI_STATUS_IGNORE) != MPI_SUCCESS || !got) return false;
      if (incoming.transport == id) {
        const auto len = static_cast<std::size_t>(
            std::clamp<std::int32_t>(incoming.length, 0, sizeof(incoming.text)));
        failure.record(incoming.rank, std::string(incoming.text, len));
        return true;
      }
      post_notice_receive();
    }
    return false;
  }

  // Tells every other rank that this one failed. Never blocks: the sends are
  // small, and whatever is still pending at destruction is freed. With the
  // lock held.
  void notify_others(std::string_view text) {
    if (outgoing) return;
    outgoing = std::make_unique<MPINotice>();
    auto& n = *outgoing;
    n.transport = id;
    n.rank = rank;
    const std::string_view cut = failure_text(text);
    const std::size_t len = cut.size();
    std::memcpy(n.text, cut.data(), len);
    n.length = static_cast<std::int32_t>(len);
    outgoing_requests.reserve(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
      if (r == rank) continue;
      MPI_Request q = MPI_REQUEST_NULL;
      if (MPI_Isend(&n, sizeof(n), MPI_BYTE, r, mpi_notice_tag, comm, &q) == MPI_SUCCESS)
        outgoing_requests.push_back(q);
    }
  }

  MPIControl() = default;
  MPIControl(const MPIControl&) = delete;
  MPIControl& operator=(const MPIControl&) = delete;

  // Never blocks: it may run while the peers are gone or stuck.
  ~MPIControl() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    // After MPI_Finalize no MPI call is allowed and nothing of MPI's runs any
    // more: the buffers can go, the communicators went with MPI.
    if (finalized) return;
    if (incoming_request != MPI_REQUEST_NULL) {
      // An unmatched receive is cancelled at once; a notice that already
      // matched is complete (it is small). Either way the test ends it.
      MPI_Cancel(&incoming_request);
      int done = 0;
      for (int i = 0; i < 100 && !done; ++i) MPI_Test(&incoming_request, &done, MPI_STATUS_IGNORE);
      if (!done) MPI_Request_free(&incoming_request);
    }
    if (!outgoing_requests.empty()) {
      int done = 0;
      MPI_Testall(static_cast<int>(outgoing_requests.size()), outgoing_requests.data(), &done,
                  MPI_STATUSES_IGNORE);
      if (!done) {
        // A receiver that never polls again leaves the send pending; MPI may
        // still read the buffer, so it stays allocated (about a kilobyte).
        for (auto& r : outgoing_requests)
          if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
        (void)outgoing.release();
      }
    }
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
};

}  // namespace dssync::detail

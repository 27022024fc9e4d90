#pragma once
// The failure notices of MPITransport and the part of a transport that MPI
// points into: the notice buffers and requests, the sticky failure, the
// channels' communicators.

#include "dssync/transport/mpi/datatype.hpp"  // first: <mpi.h> without the C++ bindings

#include <boost/mpi/communicator.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

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

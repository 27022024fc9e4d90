#pragma once
// MPIOptions: what an MPITransport is made with (transport/mpi.hpp).

#include <chrono>

#include "dssync/transport/contract.hpp"

namespace dssync {

struct MPIOptions {
  // How long one operation (send, recv, sendrecv, or a native collective) may
  // take from its start before it fails with timeout_error. Zero waits
  // without a deadline; failure notices from other ranks still end the wait.
  std::chrono::milliseconds timeout = default_timeout;
  // How long a constructor waits for the other ranks of the communicator to
  // construct theirs (the ranks agree on their options before anything else),
  // as TcpOptions::rendezvous_timeout. Zero waits without a deadline.
  std::chrono::milliseconds rendezvous_timeout = std::chrono::seconds(60);
  // How a waiting operation polls its requests: without pause (as
  // MPI_Waitall does) for `spin` plus the time its bytes could take at a
  // pessimistic 125 MB/s, then with sleeps between tests, 20 us at first and
  // doubling up to `max_sleep`. Open MPI's shared memory (without CMA) moves a
  // large message only while both sides call into MPI, so sleeping during a
  // transfer stalls it, while polling for a peer that is late costs a core.
  // A receive alone (recv) polls without pause for its message to arrive
  // for `spin` plus its bytes' time but at most `spin` plus 100 ms, and from
  // then on for `spin` plus its bytes' time again; a sendrecv, whose send
  // moves meanwhile, counts both from its start.
  // What this costs the ring, and what a waiting rank uses of a core:
  // docs/benchmarks.md, "Under MPI".
  // A receive posted with post_recv and finished alone on its channel
  // polls as a recv does. spin at least 0; max_sleep at least 1 us.
  std::chrono::microseconds spin{5000};
  std::chrono::microseconds max_sleep{1000};
  // How many channels (transport_with_channels): each one more duplicate of
  // the communicator. More than one needs MPI_THREAD_MULTIPLE.
  int channels = 1;
};

}  // namespace dssync

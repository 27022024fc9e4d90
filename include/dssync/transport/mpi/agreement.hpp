#pragma once
// The first step of an MPITransport's construction (transport/mpi.hpp): the
// ranks of the communicator agree that every rank's options passed its own
// checks and that they have the same channels, before the first collective
// that a rank throwing alone would leave the others in for good.

#include "dssync/transport/mpi/datatype.hpp"  // first: <mpi.h> without the C++ bindings

#include <algorithm>
#include <boost/mpi/communicator.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "dssync/core/error.hpp"
#include "dssync/transport/contract.hpp"
#include "dssync/transport/mpi/options.hpp"

namespace dssync::detail {

// What one rank can tell of its options alone: the text of their refusal,
// or nothing.
inline std::string mpi_refusal(const MPIOptions& o, int rank) {
  try {
    check_channels_and_timeout("MPIOptions", o.channels, o.timeout,
                               error_context{}.with_rank(rank));
  } catch (const configuration_error& e) {
    return e.message();
  }
  if (o.rendezvous_timeout.count() < 0)
    return "MPIOptions::rendezvous_timeout must be at least 0 ms (0: no deadline), got " +
           std::to_string(o.rendezvous_timeout.count()) + " ms";
  if (o.spin.count() < 0)
    return "MPIOptions::spin must be at least 0 us, got " + std::to_string(o.spin.count()) + " us";
  if (o.max_sleep.count() <= 0)
    return "MPIOptions::max_sleep must be at least 1 us (a waiting rank sleeps between its "
           "tests), got " +
           std::to_string(o.max_sleep.count()) + " us";
  if (o.channels > 1) {
    int provided = MPI_THREAD_SINGLE;
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_MULTIPLE)
      return "MPIOptions::channels = " + std::to_string(o.channels) +
             " needs MPI initialized with MPI_THREAD_MULTIPLE (two threads of a rank call MPI "
             "at once): boost::mpi::environment env(argc, argv, "
             "boost::mpi::threading::multiple), or MPI_Init_thread(..., MPI_THREAD_MULTIPLE, "
             "...); this MPI was initialized with level " +
             std::to_string(provided);
  }
  return {};
}

// The ranks of `comm` agree before the first duplicate (a rank that threw
// alone would leave the others in it for good): one nonblocking all-reduce
// of whether each rank's options were refused and of its channels, waited
// for until rendezvous_timeout. Returns `comm`.
inline const boost::mpi::communicator& mpi_agreed(const boost::mpi::communicator& comm,
                                                  const MPIOptions& o) {
  MPI_Comm c = comm;
  if (c == MPI_COMM_NULL)
    throw configuration_error(
        "MPITransport needs a communicator this rank is in, got MPI_COMM_NULL");
  int inter = 0;
  MPI_Comm_test_inter(c, &inter);
  if (inter)
    throw configuration_error(
        "MPITransport needs an intracommunicator, got an intercommunicator (MPI_Intercomm_merge "
        "makes one of it)");
  const int rank = comm.rank();
  const error_context at = error_context{}.with_rank(rank);
  const std::string refused = mpi_refusal(o, rank);
  // The most of: refused, channels, -channels.
  int votes[3] = {refused.empty() ? 0 : 1, o.channels, -o.channels};
  MPI_Request request = MPI_REQUEST_NULL;
  if (const int rc = MPI_Iallreduce(MPI_IN_PLACE, votes, 3, MPI_INT, MPI_MAX, c, &request);
      rc != MPI_SUCCESS)
    throw peer_error("MPI_Iallreduce failed: " + mpi_error_text(rc), at);
  // Refused options wait as long as the default does.
  const Deadline deadline(refused.empty() ? o.rendezvous_timeout : MPIOptions{}.rendezvous_timeout);
  auto nap = std::chrono::microseconds(20);
  for (;;) {
    int done = 0;
    if (const int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE); rc != MPI_SUCCESS)
      throw peer_error("MPI_Iallreduce failed: " + mpi_error_text(rc), at);
    if (done) break;
    // The request stays pending: MPI forbids freeing a collective's.
    if (deadline.passed())
      throw timeout_error(
          "the ranks' agreement on their MPIOptions, the first step of an "
          "MPITransport's construction, " +
              deadline.overdue_text() +
              ": a rank of the communicator did not construct its transport",
          at);
    std::this_thread::sleep_for(nap);
    nap = std::min(2 * nap, std::chrono::microseconds(1000));
  }
  if (!refused.empty()) throw configuration_error(refused, at);
  if (votes[0])
    throw configuration_error(
        "another rank's MPIOptions were refused (its error says why); no rank makes the "
        "transport",
        at);
  if (votes[1] != -votes[2])
    throw configuration_error("the ranks differ in MPIOptions::channels: from " +
                                  std::to_string(-votes[2]) + " to " + std::to_string(votes[1]) +
                                  " (this rank: " + std::to_string(o.channels) + ")",
                              at);
  return comm;
}

}  // namespace dssync::detail

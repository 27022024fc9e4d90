#pragma once
// MPINativeBroadcast and MPINativeAllGather: the MPI library's own MPI_Bcast,
// MPI_Allgather and MPI_Allgatherv behind the broadcast and all-gather faces,
// the baselines the generic algorithms are measured against. To stay simple
// they run on a group that is the transport's whole world, in its order (the
// transport's own communicator); any other group is a configuration_error
// (the generic algorithms run on any group).
//
// Deadline and errors: MPI does not compare counts between members (a
// broadcast of unequal lengths is erroneous and may truncate silently), and a
// blocking collective cannot be given up. So every call first runs one small
// nonblocking collective, waited for through MPITransport::wait under the
// transport's deadline: the members' lengths (MPI_Iallreduce of n and -n, or
// for all_gather_v MPI_Iallgather of every length). A member that never comes
// is a timeout_error there (and a notice to the others), unequal lengths are a
// size_mismatch_error on every member, and once it completes every member is
// inside this call. The data then go by the blocking collective, or, with
// Options::nonblocking, by MPI_Ibcast or MPI_Iallgather(v) waited for through
// the transport too (Open MPI's nonblocking collectives move data only while
// polled, and the transport's wait sleeps between polls, so blocking is the
// default; the measurements and their records:
// docs/experiments/collectives-2026-12-04/README.md). With MPIOptions::timeout
// 0 and no check asked for, the lengths are not compared.

#include "dssync/transport/mpi.hpp"  // first: it sets up <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/gather_common.hpp"
#include "dssync/collective/mpi_native.hpp"

namespace dssync {

namespace detail {

// A group the native gathers run on: the transport's whole world, in order.
template <class Transport>
void require_whole_world(const Transport& t, const Group& g, const char* who, tag_t tag) {
  bool whole = g.size() == t.size();
  for (int i = 0; whole && i < g.size(); ++i) whole = g[i] == i;
  if (!whole)
    throw configuration_error(std::string(who) +
                                  " runs on the whole world in rank order only; use a generic "
                                  "algorithm for other groups",
                              call_context(t, g, tag));
}

// Waits for a nonblocking data collective under the transport's deadline. On a
// failure the request (and the caller's buffer) stays MPI's until it completes.
inline void wait_native(MPITransport& mt, MPI_Request& request, int rc, const char* what,
                        const error_context& where, std::chrono::steady_clock::time_point start) {
  if (rc != MPI_SUCCESS)
    throw peer_error(std::string(what) + " failed: " + mpi_error_text(rc), where);
  mt.wait(std::span(&request, 1), where, start);
}

inline void check_native(int rc, const char* what, const error_context& where) {
  if (rc != MPI_SUCCESS)
    throw peer_error(std::string(what) + " failed: " + mpi_error_text(rc), where);
}

}  // namespace detail

class MPINativeBroadcast {
 public:
  struct Options {
    // The data by MPI_Ibcast waited for through the transport instead of the
    // blocking MPI_Bcast after the length check.
    bool nonblocking = false;
    // Compare lengths even over a transport without a timeout.
    bool check_lengths = false;
  };

  MPINativeBroadcast() = default;
  explicit MPINativeBroadcast(Options o) : options_(o) {}
  MPINativeBroadcast(const MPINativeBroadcast& o) : options_(o.options_) {}
  MPINativeBroadcast& operator=(const MPINativeBroadcast& o) {
    options_ = o.options_;
    return *this;
  }

  template <transport Transport, element T>
  void broadcast(Transport& t, const Group& g, std::span<T> data, int root, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    detail::root_position(t, g, root, tag);
    detail::require_whole_world(t, g, "MPINativeBroadcast", tag);
    if (m.size == 1) return;
    detail::with_group_on_error(t.rank(), g, tag, [&] { move(t, data, root, tag); });
  }

 private:
  template <transport Transport, element T>
  void move(Transport& t, std::span<T> data, int root, tag_t tag) {
    MPITransport& mt = detail::mpi_transport_of(t);
    const auto start = std::chrono::steady_clock::now();
    const error_context where = detail::rank_and_tag(t.rank(), tag);
    mt.check_usable(where);
    if (mt.options().timeout.count() > 0 || options_.check_lengths)
      detail::agree_on_count(mt, static_cast<MPI_Comm>(mt.communicator()), lengths_, data.size(),
                             where, start);
    const MPI_Comm comm = static_cast<MPI_Comm>(mt.communicator());
    // Counts are ints: a longer buffer goes in pieces.
    for (std::size_t off = 0; off < data.size(); off += detail::mpi_max_count) {
      const int count = static_cast<int>(std::min(detail::mpi_max_count, data.size() - off));
      if (options_.nonblocking) {
        MPI_Request request = MPI_REQUEST_NULL;
        const int rc =
            MPI_Ibcast(data.data() + off, count, detail::mpi_datatype<T>(), root, comm, &request);
        detail::wait_native(mt, request, rc, "MPI_Ibcast", where, start);
      } else {
        detail::check_native(
            MPI_Bcast(data.data() + off, count, detail::mpi_datatype<T>(), root, comm), "MPI_Bcast",
            where);
      }
    }
  }

  Options options_;
  std::unique_ptr<long long[]> lengths_ = std::make_unique<long long[]>(2);
};

class MPINativeAllGather {
 public:
  struct Options {
    // The data by MPI_Iallgather(v) waited for through the transport instead of
    // the blocking call after the length check.
    bool nonblocking = false;
    // Compare lengths even over a transport without a timeout (all_gather).
    bool check_lengths = false;
  };

  MPINativeAllGather() = default;
  explicit MPINativeAllGather(Options o) : options_(o) {}
  MPINativeAllGather(const MPINativeAllGather& o) : options_(o.options_) {}
  MPINativeAllGather& operator=(const MPINativeAllGather& o) {
    options_ = o.options_;
    return *this;
  }

  // As RingAllGather::all_gather, by MPI_Allgather.
  template <transport Transport, element T>
  void all_gather(Transport& t, const Group& g, std::span<const T> mine, std::span<T> out,
                  tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    detail::check_gather_output(t, g, mine.size(), out.size(), tag);
    detail::require_whole_world(t, g, "MPINativeAllGather", tag);
    if (mine.size() > detail::mpi_max_count)
      throw configuration_error("MPINativeAllGather takes at most 2^30 elements per member",
                                detail::call_context(t, g, tag));
    const std::size_t len = mine.size();
    const auto own = out.subspan(static_cast<std::size_t>(m.position) * len, len);
    if (mine.data() != own.data()) std::copy(mine.begin(), mine.end(), own.begin());
    if (m.size == 1) return;
    detail::with_group_on_error(t.rank(), g, tag, [&] {
      const error_context where = detail::rank_and_tag(t.rank(), tag);
      MPITransport& mt = detail::mpi_transport_of(t);
      const auto start = std::chrono::steady_clock::now();
      mt.check_usable(where);
      if (mt.options().timeout.count() > 0 || options_.check_lengths)
        detail::agree_on_count(mt, static_cast<MPI_Comm>(mt.communicator()), lengths_, len, where,
                               start);
      const MPI_Comm comm = static_cast<MPI_Comm>(mt.communicator());
      const int count = static_cast<int>(len);
      // In place: this member's block of `out` is already its contribution.
      if (options_.nonblocking) {
        MPI_Request request = MPI_REQUEST_NULL;
        const int rc = MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out.data(), count,
                                      detail::mpi_datatype<T>(), comm, &request);
        detail::wait_native(mt, request, rc, "MPI_Iallgather", where, start);
      } else {
        detail::check_native(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out.data(), count,
                                           detail::mpi_datatype<T>(), comm),
                             "MPI_Allgather", where);
      }
    });
  }

  // As RingAllGatherV::all_gather_v: the lengths by MPI_Iallgather waited for
  // under the deadline (it is the arrival check too), the data by
  // MPI_Allgatherv. The total must fit MPI's int counts and displacements.
  template <transport Transport, element T>
  void all_gather_v(Transport& t, const Group& g, std::span<const T> mine,
                    std::span<std::size_t> counts, std::vector<T>& out, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    detail::check_gather_counts(t, g, counts.size(), tag);
    detail::require_whole_world(t, g, "MPINativeAllGather", tag);
    if (m.size == 1) {
      counts[0] = mine.size();
      out.assign(mine.begin(), mine.end());
      return;
    }
    detail::with_group_on_error(t.rank(), g, tag, [&] { gather_v(t, m, mine, counts, out, tag); });
  }

 private:
  template <transport Transport, element T>
  void gather_v(Transport& t, detail::Member m, std::span<const T> mine,
                std::span<std::size_t> counts, std::vector<T>& out, tag_t tag) {
    const error_context where = detail::rank_and_tag(t.rank(), tag);
    const auto n = static_cast<std::size_t>(m.size);
    MPITransport& mt = detail::mpi_transport_of(t);
    const auto start = std::chrono::steady_clock::now();
    mt.check_usable(where);
    const MPI_Comm comm = static_cast<MPI_Comm>(mt.communicator());
    if (world_lengths_size_ < n) {
      world_lengths_ = std::make_unique<std::uint64_t[]>(n);
      world_lengths_size_ = n;
    }
    std::uint64_t* lengths = world_lengths_.get();
    lengths[static_cast<std::size_t>(m.position)] = mine.size();
    if (mt.options().timeout.count() == 0) {
      detail::check_native(
          MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, lengths, 1, MPI_UINT64_T, comm),
          "MPI_Allgather", where);
    } else {
      MPI_Request request = MPI_REQUEST_NULL;
      const int rc = MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, lengths, 1, MPI_UINT64_T,
                                    comm, &request);
      try {
        detail::wait_native(mt, request, rc, "MPI_Iallgather", where, start);
      } catch (...) {
        (void)world_lengths_.release();  // still MPI's
        world_lengths_size_ = 0;
        throw;
      }
      mt.check_usable(where);
    }
    const auto ints = ints_.get<int>(2 * n);  // counts, then displacements
    std::size_t total = 0;
    for (std::size_t q = 0; q < n; ++q) {
      counts[q] = static_cast<std::size_t>(lengths[q]);
      ints[q] = static_cast<int>(lengths[q]);
      ints[n + q] = static_cast<int>(total);
      total += counts[q];
      if (lengths[q] > detail::mpi_max_count || total > detail::mpi_max_count)
        throw configuration_error(
            "MPINativeAllGather::all_gather_v takes at most 2^30 elements in all", where);
    }
    out.resize(total);
    std::copy(
        mine.begin(), mine.end(),
        out.begin() + static_cast<std::ptrdiff_t>(ints[n + static_cast<std::size_t>(m.position)]));
    if (options_.nonblocking) {
      MPI_Request request = MPI_REQUEST_NULL;
      const int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out.data(), ints.data(),
                                     ints.data() + n, detail::mpi_datatype<T>(), comm, &request);
      detail::wait_native(mt, request, rc, "MPI_Iallgatherv", where, start);
    } else {
      detail::check_native(
          MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out.data(), ints.data(),
                         ints.data() + n, detail::mpi_datatype<T>(), comm),
          "MPI_Allgatherv", where);
    }
  }

  Options options_;
  std::unique_ptr<long long[]> lengths_ = std::make_unique<long long[]>(2);
  std::unique_ptr<std::uint64_t[]> world_lengths_;
  std::size_t world_lengths_size_ = 0;
  detail::Scratch ints_;
};

}  // namespace dssync

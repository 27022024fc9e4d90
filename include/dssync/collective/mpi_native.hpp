#pragma once
// MPINativeReduce: a Reduce policy that calls the MPI library's own
// MPI_Allreduce on a communicator for the group. It is the baseline the
// generic algorithms are measured against, and the right choice where the MPI
// library is faster (tuned shared-memory or network collectives).
//
// When it suits: a group that is the whole world uses the transport's
// communicator directly, at no cost. Any other group needs a communicator of
// its own, made with MPI_Comm_create_group (collective over the group's
// members only) and kept in a bounded cache; every use of a cached one costs
// one small agreement round among the members (their caches may differ).
// Schedules that revisit a few groups (ButterflyShuffle: log_g(n) groups per
// rank; NoShuffle; the two layouts of TopologyAwareGroups) pay for each group
// once. RandomShuffle makes a new group almost every step, and each costs a
// communicator creation, several latency-bound rounds: use RingReduce or
// AutoReduce there.
//
// Deadline: over a transport with a timeout (MPIOptions::timeout, the default),
// the members first agree on their lengths with MPI_Iallreduce in the
// transport's wait loop, so a member that never comes ends the call with
// timeout_error or peer_error like any transport operation; the data then go
// by the blocking MPI_Allreduce, which every member has by then entered.

#include "dssync/transport/mpi.hpp"  // first: it sets up <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "dssync/collective/common.hpp"
#include "dssync/collective/recursive_doubling.hpp"

namespace dssync {

namespace detail {

// The context a native call hands to the transport on every call: rank and
// tag, which allocate nothing. The group's text allocates once the group is
// long, so it is formatted only when an error leaves the call
// (with_group_on_error), not on every call.
inline error_context rank_and_tag(int rank, tag_t tag) {
  return error_context{}.with_rank(rank).with_tag(tag);
}

// Runs `body`; a dssync::error leaving it is rethrown, as its own kind, with
// the group (and the rank and tag, if it lacks them) added.
template <class Body>
void with_group_on_error(int rank, const Group& g, tag_t tag, Body&& body) {
  try {
    body();
  } catch (const error& e) {
    e.rethrow_with(error_context{}.with_rank(rank).with_group(g.ranks()).with_tag(tag));
  }
}

// The MPITransport under a transport or a chain of adapters over one.
template <class Transport>
MPITransport& mpi_transport_of(Transport& t) {
  if constexpr (std::is_same_v<std::remove_cv_t<Transport>, MPITransport>)
    return t;
  else if constexpr (requires { t.base(); })
    return mpi_transport_of(t.base());
  else
    static_assert(
        requires { t.base(); },
        "MPINativeReduce runs over an MPITransport (or an adapter with base())");
}

// A user op as an MPI op: MPI computes inout[i] = in[i] op inout[i], with `in`
// from the lower rank, the order the collectives here use too.
template <class Op, class T>
void mpi_user_function(void* in, void* inout, int* len, MPI_Datatype*) {
  const Op op{};
  auto* a = static_cast<const T*>(in);
  auto* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = op(a[i], b[i]);
}

// MPI's predefined op where one fits the element type, otherwise the op
// itself, registered with MPI_Op_create.
template <class Op, class T>
MPI_Op mpi_op() {
  constexpr bool numeric = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;
  if (numeric && predefined_mpi_datatype<T>() != MPI_DATATYPE_NULL) {
    if constexpr (std::is_same_v<Op, Sum> || std::is_same_v<Op, Average>) return MPI_SUM;
    if constexpr (std::is_same_v<Op, Max>) return MPI_MAX;
    if constexpr (std::is_same_v<Op, Min>) return MPI_MIN;
  }
  static_assert(std::is_default_constructible_v<Op>,
                "MPINativeReduce needs a stateless (default-constructible) op to hand to MPI");
  static const MPI_Op op = [] {
    MPI_Op o;
    MPI_Op_create(&mpi_user_function<Op, T>, /*commute=*/1, &o);
    return o;
  }();
  return op;
}

// Every member's length n on `comm`, MAX of (n, -n): equal everywhere or a
// size_mismatch_error. With a deadline this is also the arrival check that
// keeps a blocking collective after it from hanging: it runs as
// MPI_Iallreduce in the transport's wait loop, so a member that never comes
// is a timeout_error (and a notice to the others), and once it completes
// every member is inside the call and will enter the blocking collective.
// `storage` holds two words that a nonblocking request owns until it
// completes: on a failure they are left to MPI and replaced.
inline void agree_on_count(MPITransport& mt, MPI_Comm comm, std::unique_ptr<long long[]>& storage,
                           std::size_t n, const error_context& where,
                           std::chrono::steady_clock::time_point start) {
  long long* v = storage.get();
  v[0] = static_cast<long long>(n);
  v[1] = -static_cast<long long>(n);
  if (mt.options().timeout.count() == 0) {
    const int rc = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_LONG_LONG, MPI_MAX, comm);
    if (rc != MPI_SUCCESS) throw peer_error("MPI_Allreduce failed: " + mpi_error_text(rc), where);
  } else {
    MPI_Request request = MPI_REQUEST_NULL;
    const int rc = MPI_Iallreduce(MPI_IN_PLACE, v, 2, MPI_LONG_LONG, MPI_MAX, comm, &request);
    if (rc != MPI_SUCCESS) throw peer_error("MPI_Iallreduce failed: " + mpi_error_text(rc), where);
    try {
      mt.wait(std::span(&request, 1), where, start);
    } catch (...) {
      (void)storage.release();  // still MPI's
      storage = std::make_unique<long long[]>(2);
      throw;
    }
    // A member that timed out told everyone before it gave up; a notice behind
    // a completed check must not lead into the blocking call without it.
    mt.check_usable(where);
  }
  if (v[0] != static_cast<long long>(n) || -v[1] != static_cast<long long>(n))
    throw size_mismatch_error("members pass between " + std::to_string(-v[1]) + " and " +
                                  std::to_string(v[0]) + " elements, this rank " +
                                  std::to_string(n),
                              where);
}

}  // namespace detail

class MPINativeReduce {
 public:
  struct Options {
    // Communicators kept for groups other than the whole world; the least
    // recently used one is freed when a new group does not fit.
    std::size_t cache_size = 16;
    // MPI requires equal counts on all members and does not check them. With
    // this on, the members first compare lengths (one small all-reduce) and a
    // mismatch is a size_mismatch_error. Over a transport with a timeout they
    // always do: that all-reduce is also the arrival check under the deadline.
    bool check_lengths = false;
    // With an op that has a finishing step (Average), the buffer goes to
    // MPI_Allreduce in pieces of this many bytes, each finished while still in
    // cache. 0: one call for the whole buffer, then one finishing pass. Every
    // rank must use the same value (MPI requires equal counts per call).
    std::size_t finish_piece_bytes = 4u << 20;
  };

  MPINativeReduce() = default;
  explicit MPINativeReduce(Options o) : options_(o) {}
  MPINativeReduce(const MPINativeReduce& o) : options_(o.options_) {}  // the cache stays
  MPINativeReduce& operator=(const MPINativeReduce&) = delete;
  ~MPINativeReduce() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
      for (auto& e : cache_) MPI_Comm_free(&e.comm);
  }

  template <transport Transport, element T, reduce_op<T> Op = Sum>
  void all_reduce(Transport& t, const Group& g, std::span<T> data, Op op = {}, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    if (m.size == 1) {
      detail::finish(op, data, 1);
      return;
    }
    detail::with_group_on_error(t.rank(), g, tag, [&] {
      MPITransport& mt = detail::mpi_transport_of(t);
      const auto start = std::chrono::steady_clock::now();
      const error_context where = detail::rank_and_tag(t.rank(), tag);
      mt.check_usable(where);
      const MPI_Comm comm = communicator_for(t, static_cast<MPI_Comm>(mt.communicator()), g, tag);
      const bool deadline = mt.options().timeout.count() > 0;
      // The lengths first, under the deadline; the data then by the blocking
      // MPI_Allreduce. Not the data itself as MPI_Iallreduce: Open MPI 4.1's
      // nonblocking all-reduce (libnbc) moves data only while the caller
      // polls: polling without pause starves the other ranks on an
      // oversubscribed machine, and the transport's wait soon sleeps with a
      // backoff, during which nothing moves. It would also leave the buffer
      // MPI's after a timeout, since a collective cannot be cancelled
      // (docs/design.md, "MPINativeReduce"). The check costs one small
      // all-reduce per call.
      if (deadline || options_.check_lengths)
        detail::agree_on_count(mt, comm, lengths_, data.size(), where, start);
      // An op with a finishing step (Average's division) finishes each piece
      // right after MPI returns it, while it is still in cache, instead of in
      // one more pass over the whole buffer from memory.
      std::size_t piece = detail::mpi_max_count;
      if constexpr (detail::has_finish<Op, T>)
        if (options_.finish_piece_bytes > 0)
          piece = std::clamp<std::size_t>(options_.finish_piece_bytes / sizeof(T), 1, piece);
      for (std::size_t off = 0; off < data.size(); off += piece) {
        const std::size_t n = std::min(piece, data.size() - off);
        const int rc = MPI_Allreduce(MPI_IN_PLACE, data.data() + off, static_cast<int>(n),
                                     detail::mpi_datatype<T>(), detail::mpi_op<Op, T>(), comm);
        if (rc != MPI_SUCCESS)
          throw peer_error("MPI_Allreduce failed: " + detail::mpi_error_text(rc), where);
        detail::finish(op, data.subspan(off, n), m.size);
      }
    });
  }

  std::size_t cached_communicators() const noexcept { return cache_.size(); }

 private:
  struct Entry {
    std::vector<int> ranks;
    MPI_Comm comm;
    std::uint64_t last_use;
  };

  // The group's communicator. Each member's cache has its own history, so a
  // hit on one member may be a miss (or an eviction) on another; the members
  // first agree, with one small all-reduce of our own over the transport,
  // whether all of them hold it, and otherwise all make it anew together.
  template <class Transport>
  MPI_Comm communicator_for(Transport& t, MPI_Comm parent, const Group& g, tag_t tag) {
    int parent_size = 0;
    MPI_Comm_size(parent, &parent_size);
    bool whole = g.size() == parent_size;
    for (int i = 0; whole && i < g.size(); ++i) whole = g[i] == i;
    if (whole) return parent;

    ++clock_;
    auto hit = std::find_if(cache_.begin(), cache_.end(), [&](const Entry& e) {
      return std::equal(e.ranks.begin(), e.ranks.end(), g.begin(), g.end());
    });
    std::int32_t everyone_has_it[1] = {hit != cache_.end()};
    agree_.all_reduce(t, g, std::span<std::int32_t>(everyone_has_it), Min{}, tag);
    if (everyone_has_it[0]) {
      hit->last_use = clock_;
      return hit->comm;
    }
    if (hit != cache_.end()) {
      MPI_Comm_free(&hit->comm);
      cache_.erase(hit);
    }
    if (cache_.size() >= std::max<std::size_t>(1, options_.cache_size)) {
      // Evicting is local: a member that still holds this group later finds
      // that the others do not, and it is remade.
      auto lru = std::min_element(cache_.begin(), cache_.end(), [](const Entry& a, const Entry& b) {
        return a.last_use < b.last_use;
      });
      MPI_Comm_free(&lru->comm);
      cache_.erase(lru);
    }
    MPI_Group parent_group, group;
    MPI_Comm_group(parent, &parent_group);
    MPI_Group_incl(parent_group, g.size(), g.ranks().data(), &group);
    MPI_Comm comm;
    const int rc = MPI_Comm_create_group(parent, group, tag, &comm);
    MPI_Group_free(&group);
    MPI_Group_free(&parent_group);
    if (rc != MPI_SUCCESS)
      throw peer_error("MPI_Comm_create_group failed: " + detail::mpi_error_text(rc),
                       error_context{}.with_group(g.ranks()));
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    cache_.push_back({std::vector<int>(g.begin(), g.end()), comm, clock_});
    return comm;
  }

  Options options_;
  RecursiveDoublingReduce agree_;
  std::vector<Entry> cache_;
  std::uint64_t clock_ = 0;
  std::unique_ptr<long long[]> lengths_ = std::make_unique<long long[]>(2);
};

}  // namespace dssync

#pragma once
// The messages an MPITransport has posted (post_send, post_recv) on one
// channel and not yet finished: the receives themselves, and how many sends.
//
// A posted receive is not handed to MPI as an MPI_Irecv: Open MPI's
// single-copy shared memory (CMA) writes a message longer than the receive
// whole, past the end of the receive's buffer. Like a blocking receive, a
// posted one matches its message first (MPI_Improbe) and takes it
// (MPI_Imrecv) into the caller's buffer only when the lengths agree, into
// scratch otherwise. Every wait of the transport's channel matches what it can
// (the same progress a posted MPI_Irecv gets from the library), in posting
// order among receives from one peer with one tag, as MPI matches posted
// receives; a blocking receive from that peer with that tag waits until the
// posted ones before it have their messages. Only the channel's own waits
// match: a rank that posts receives and then waits elsewhere (another
// channel, MPI directly) leaves them unstarted, and a peer's large send to
// them waits as well.

#include "dssync/transport/mpi/datatype.hpp"  // first: <mpi.h> without the C++ bindings

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "dssync/core/tag.hpp"

namespace dssync::detail {

// Takes a matched message whose length is not the receive's into `scratch`
// (resized to it): a length from element types of 1 to 8 bytes, at most 2^30
// of them, goes in the largest unit that divides it.
inline int mpi_take_into_scratch(std::vector<std::byte>& scratch, MPI_Count sent,
                                 MPI_Message* message, MPI_Request* request) {
  const auto bytes = static_cast<std::size_t>(std::max<MPI_Count>(sent, 0));
  const std::size_t unit = bytes % 8 == 0 ? 8 : bytes % 4 == 0 ? 4 : bytes % 2 == 0 ? 2 : 1;
  const MPI_Datatype type = unit == 8   ? MPI_UINT64_T
                            : unit == 4 ? MPI_UINT32_T
                            : unit == 2 ? MPI_UINT16_T
                                        : MPI_BYTE;
  scratch.resize(bytes);
  return MPI_Imrecv(scratch.data(), static_cast<int>(bytes / unit), type, message, request);
}

// Leaves to MPI scratch that it may still write (a message given up before
// it was all in): its storage is never freed or reused. `scratch` is empty
// after.
inline void mpi_leave_scratch(std::vector<std::byte>& scratch) {
  if (!scratch.empty()) (void)new std::vector<std::byte>(std::move(scratch));
}

// One posted receive: where its message goes, and once matched, how long that
// message is and the request that takes it.
struct MPIPostedReceive {
  void* data = nullptr;
  int count = 0;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  std::size_t elem_bytes = 0;
  int src = -1;
  tag_t tag = 0;
  std::uint64_t serial = 0;  // the posting order; 0: the slot is free
  bool matched = false;
  int error = MPI_SUCCESS;  // MPI_Imrecv's, once matched
  bool taken = false;       // the message is all in (its request completed)
  MPI_Count sent = 0;       // the matched message's bytes
  MPI_Request request = MPI_REQUEST_NULL;
  std::vector<std::byte> scratch;  // holds a message of another length

  std::size_t expected() const noexcept { return static_cast<std::size_t>(count) * elem_bytes; }
  bool fits() const noexcept { return sent >= 0 && static_cast<std::size_t>(sent) == expected(); }
};

// A channel's posted messages: its receives in slots that are reused (after
// the first iterations of a collective, posting allocates nothing) and the
// number of its sends in flight. One thread uses a channel at a time, so
// there is no lock.
class MPIPosted {
 public:
  MPIPosted() = default;
  MPIPosted(MPIPosted&&) noexcept = default;
  MPIPosted& operator=(MPIPosted&&) = delete;
  // Never blocks; a request still pending at the end (a handle neither
  // finished nor forgotten) is cancelled and freed.
  ~MPIPosted() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    for (auto& r : slots_)
      if (r.request != MPI_REQUEST_NULL) {
        MPI_Cancel(&r.request);
        MPI_Request_free(&r.request);
      }
  }

  std::size_t add(int src, tag_t tag, void* data, int count, MPI_Datatype type,
                  std::size_t elem_bytes) {
    auto free = std::find_if(slots_.begin(), slots_.end(), [](const auto& r) { return !r.serial; });
    if (free == slots_.end()) free = slots_.emplace(slots_.end());
    MPIPostedReceive& r = *free;
    r.data = data;
    r.count = count;
    r.type = type;
    r.elem_bytes = elem_bytes;
    r.src = src;
    r.tag = tag;
    r.serial = next_serial_++;
    r.matched = false;
    r.error = MPI_SUCCESS;
    r.taken = false;
    r.sent = 0;
    r.request = MPI_REQUEST_NULL;
    ++unmatched_;
    ++receives_;
    return static_cast<std::size_t>(free - slots_.begin());
  }

  MPIPostedReceive& operator[](std::size_t slot) noexcept { return slots_[slot]; }

  // Frees the slot; its request must be complete or given up. A message of
  // another length that was given up before it was all in may still be
  // written by MPI: its scratch is left to MPI, never freed or reused.
  void release(std::size_t slot) noexcept {
    MPIPostedReceive& r = slots_[slot];
    if (!r.matched) --unmatched_;
    if (r.matched && !r.fits() && !r.taken) mpi_leave_scratch(r.scratch);
    r.scratch.clear();
    r.serial = 0;
    r.data = nullptr;
    --receives_;
  }

  // The sends in flight, counted as they are posted and finished or given up.
  void send_posted() noexcept { ++sends_; }
  void send_done() noexcept { --sends_; }

  // Whether nothing posted is in flight on the channel: no receive waits or
  // is being taken, no send is going.
  bool idle() const noexcept { return receives_ == 0 && sends_ == 0; }
  // Whether one receive is all that is in flight (the one being finished).
  bool alone() const noexcept { return receives_ == 1 && sends_ == 0; }

  // Whether a receive from `src` with `tag`, posted before `serial`, has no
  // message yet.
  bool waiting_before(int src, tag_t tag, std::uint64_t serial) const noexcept {
    if (!unmatched_) return false;
    return std::any_of(slots_.begin(), slots_.end(), [&](const auto& r) {
      return r.serial && !r.matched && r.serial < serial && r.src == src && r.tag == tag;
    });
  }
  bool waiting_before(int src, tag_t tag) const noexcept {
    return waiting_before(src, tag, UINT64_MAX);
  }

  // Matches every receive whose message has come and that no earlier
  // receive from its peer with its tag waits before, and starts taking it.
  // MPI_SUCCESS, or MPI_Improbe's error.
  int match(MPI_Comm comm) {
    if (!unmatched_) return MPI_SUCCESS;
    for (auto& r : slots_) {
      if (!r.serial || r.matched || waiting_before(r.src, r.tag, r.serial)) continue;
      int found = 0;
      MPI_Message message = MPI_MESSAGE_NULL;
      MPI_Status status;
      if (const int rc = MPI_Improbe(r.src, r.tag, comm, &found, &message, &status);
          rc != MPI_SUCCESS)
        return rc;
      if (!found) continue;
      r.matched = true;
      --unmatched_;
      MPI_Get_elements_x(&status, MPI_BYTE, &r.sent);
      r.error = r.fits() ? MPI_Imrecv(r.data, r.count, r.type, &message, &r.request)
                         : mpi_take_into_scratch(r.scratch, r.sent, &message, &r.request);
    }
    return MPI_SUCCESS;
  }

 private:
  std::vector<MPIPostedReceive> slots_;
  std::uint64_t next_serial_ = 1;
  std::size_t unmatched_ = 0;
  std::size_t receives_ = 0;  // slots in use
  std::size_t sends_ = 0;
};

}  // namespace dssync::detail

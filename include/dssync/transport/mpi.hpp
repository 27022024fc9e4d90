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
// - Buffers longer than an int can count go as several messages; sender and
//   receiver must then agree on the length (a disagreement on the number of
//   pieces is not detected: a piece left over is taken as the next message).
// - A receive matches its message first (MPI_Improbe) and takes it only if
//   the lengths agree; one of another length is taken into scratch and the
//   size_mismatch_error names both lengths. Posting the receive first let Open
//   MPI's single-copy shared memory (CMA) write a longer message past the end
//   of the buffer. Posted receives (post_recv, for the collectives that keep
//   segments in flight) are matched the same way, by every wait on their
//   channel (mpi/posted.hpp).
// - Nothing waits forever. MPI has no timeouts of its own, so every operation
//   posts non-blocking requests and polls them until MPIOptions::timeout has
//   passed since it began, then fails with timeout_error. Polling backs off
//   (growing sleeps, MPIOptions), so a rank waiting for a slow peer leaves its
//   core to others.
// - Failure notices. A rank whose operation times out tells every other rank
//   on a second private communicator before it throws; a rank waiting on
//   anything sees the notice and fails with peer_error naming that rank. A
//   job whose ranks disagree (different seeds, one more step() on one rank)
//   thus ends everywhere within about one timeout instead of hanging or
//   cascading. fail() sends the same notice for a failure of the program's own.
// - A transport that timed out or heard a notice is failed for good: every
//   later operation throws peer_error at once (like a revoked communicator).
//   Make a new transport to go on. An MPI call that fails fails it too.
//   size_mismatch_error and configuration_error leave it usable.
// - Channels (transport/background.hpp): MPIOptions::channels data
//   communicators, each a duplicate, so channel c matches only channel c.
//   More than one needs MPI initialized with MPI_THREAD_MULTIPLE (two
//   threads of a rank call MPI at once); the failure state and the notices
//   are shared by the channels under one mutex.

#include "dssync/transport/mpi/datatype.hpp"  // first: <mpi.h> without the C++ bindings

#include <algorithm>
#include <boost/mpi/communicator.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/tag.hpp"
#include "dssync/transport/contract.hpp"
#include "dssync/transport/mpi/agreement.hpp"
#include "dssync/transport/mpi/control.hpp"
#include "dssync/transport/mpi/options.hpp"
#include "dssync/transport/mpi/requests.hpp"

namespace dssync {

class MPITransport {
  using clock = std::chrono::steady_clock;

 public:
  // Over MPI_COMM_WORLD.
  explicit MPITransport(MPIOptions options = {})
      : MPITransport(boost::mpi::communicator(), options) {}

  // Over any intracommunicator; collective over it (it is duplicated: one
  // communicator for the data of each channel, one for failure notices).
  // Before anything else the ranks agree, within rendezvous_timeout:
  // where one rank's options are refused, or the ranks differ in channels,
  // every rank throws configuration_error, and a rank that never comes makes
  // the others throw timeout_error.
  explicit MPITransport(const boost::mpi::communicator& comm, MPIOptions options = {})
      : comm_(detail::mpi_agreed(comm, options), boost::mpi::comm_duplicate),
        options_(options),
        control_(std::make_shared<detail::MPIControl>()) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    control_->root = comm_;
    control_->ordinals = detail::CheckedOrdinals(static_cast<std::size_t>(options.channels));
    control_->posted.resize(static_cast<std::size_t>(options.channels));
    for (int c = 1; c < options.channels; ++c) {
      control_->channels.emplace_back(comm_, boost::mpi::comm_duplicate);
      MPI_Comm_set_errhandler(control_->channels.back(), MPI_ERRORS_RETURN);
    }
    call(MPI_Comm_dup(comm_, &control_->comm), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(control_->comm, MPI_ERRORS_RETURN);
    std::uint64_t id = 0;
    if (rank() == 0) {
      std::random_device entropy;
      id = (std::uint64_t{entropy()} << 32) ^ entropy() ^
           static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
    }
    call(MPI_Bcast(&id, 1, MPI_UINT64_T, 0, control_->comm), "MPI_Bcast");
    control_->id = id;
    control_->rank = rank();
    control_->size = size();
    control_->post_notice_receive();
  }

  // Movable (the parts MPI points into stay put), not copyable; channel()
  // makes another handle of the same transport.
  MPITransport(MPITransport&&) noexcept = default;
  MPITransport& operator=(MPITransport&&) noexcept = default;
  MPITransport(const MPITransport&) = delete;
  MPITransport& operator=(const MPITransport&) = delete;

  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }

  // Channels (transport_with_channels): channel c is the same rank on the
  // c-th duplicate communicator, sharing this transport's failure state.
  int channels() const noexcept { return options_.channels; }
  int channel_index() const noexcept { return channel_; }
  MPITransport channel(int c) const {
    detail::check_channel(rank(), channels(), c);
    const boost::mpi::communicator& data =
        c == 0 ? control_->root : control_->channels[static_cast<std::size_t>(c - 1)];
    return MPITransport(data, options_, control_, c);
  }
  // The checked mode's numbering of this rank's synchronizers on this channel
  // (transport/contract.hpp).
  std::uint64_t next_checked_ordinal() noexcept {
    return control_->ordinals.next(static_cast<std::size_t>(channel_));
  }
  // The transport's private duplicate of the communicator it was given.
  const boost::mpi::communicator& communicator() const noexcept { return comm_; }
  const MPIOptions& options() const noexcept { return options_; }

  // Whether this transport timed out, heard a failure notice, or was fail()ed;
  // then every operation throws peer_error.
  bool failed() const {
    std::lock_guard lk(control_->mu);
    return control_->failure.failed();
  }

  // For a program that catches an error of its own (or a size_mismatch_error,
  // which does not fail the transport) and cannot go on: tells every other
  // rank, whose waiting operations then end with peer_error naming this rank
  // and `reason`, and fails this transport. Never blocks; a second call does
  // nothing.
  void fail(std::string_view reason) {
    std::lock_guard lk(control_->mu);
    if (control_->failure.failed()) return;
    control_->notify_others(reason);
    control_->failure.record(rank(), std::string(detail::failure_text(reason)));
  }

  template <class T>
    requires element<std::remove_const_t<T>>
  void send(int dst, std::span<T> data, tag_t tag) {
    detail::check_send(rank(), size(), dst, tag);
    const auto start = clock::now();
    check_usable(where(dst, tag));
    detail::mpi_for_each_piece(data.size(), [&](std::size_t off, int count) {
      MPI_Request request = MPI_REQUEST_NULL;
      call(
          MPI_Isend(data.data() + off, count, detail::mpi_datatype<T>(), dst, tag, comm_, &request),
          "MPI_Isend", dst, tag);
      MPI_Status status;
      const int peer[1] = {dst};
      const int rc = wait_for({.requests = std::span(&request, 1),
                               .statuses = std::span(&status, 1),
                               .peers = peer,
                               .at = where(dst, tag),
                               .start = start,
                               .bytes = std::size_t(count) * sizeof(T)});
      if (rc == MPI_ERR_IN_STATUS) call(status.MPI_ERROR, "MPI_Isend", dst, tag);
    });
  }

  template <class T>
    requires element<T>
  void recv(int src, std::span<T> data, tag_t tag) {
    detail::check_recv(rank(), size(), src, tag);
    const auto start = clock::now();
    check_usable(where(src, tag));
    detail::mpi_for_each_piece(data.size(), [&](std::size_t off, int count) {
      MPI_Request request = MPI_REQUEST_NULL;
      const int peer[1] = {src};
      const Pending p{.requests = std::span(&request, 1),
                      .peers = peer,
                      .receives = 1,
                      .at = where(src, tag),
                      .start = start,
                      .bytes = std::size_t(count) * sizeof(T)};
      receive_matched(p, src, tag,
                      {data.data() + off, count, detail::mpi_datatype<T>(), sizeof(T)});
    });
  }

  // Full duplex: both directions are posted before either is waited for.
  // With this rank on both sides, a copy.
  template <class T, class U>
    requires element<std::remove_const_t<T>> && element<U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
    if (detail::check_sendrecv(rank(), size(), dst, src, tag)) {
      check_usable(where(src, tag));
      return detail::self_exchange(std::as_bytes(out), std::as_writable_bytes(in), rank(), tag);
    }
    const auto start = clock::now();
    check_usable(where(src, tag));
    const std::size_t pieces =
        std::max(detail::mpi_piece_count(out.size()), detail::mpi_piece_count(in.size()));
    // A piece whose receive does not fit ends the receiving, not the
    // sending: the rest of the send is still delivered (the contract), and
    // the mismatch is thrown after it.
    std::exception_ptr mismatch;
    for (std::size_t p = 0; p < pieces; ++p) {
      const auto [out_off, out_count] = detail::mpi_piece(out.size(), p);
      const auto [in_off, in_count] = detail::mpi_piece(in.size(), p);
      // The receive's request first (made when its message is matched),
      // then the send's.
      MPI_Request requests[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
      int peers[2] = {};
      const int receives = !mismatch && p < detail::mpi_piece_count(in.size()) ? 1 : 0;
      const int sends = p < detail::mpi_piece_count(out.size()) ? 1 : 0;
      if (receives) peers[0] = src;
      if (sends) {
        call(MPI_Isend(out.data() + out_off, out_count, detail::mpi_datatype<T>(), dst, tag, comm_,
                       &requests[receives]),
             "MPI_Isend", dst, tag);
        peers[receives] = dst;
      }
      const auto n = static_cast<std::size_t>(receives + sends);
      const Pending pending{
          .requests = std::span(requests, n),
          .peers = std::span<const int>(peers, n),
          .receives = receives,
          .at = where(src, tag),
          .start = start,
          .bytes = std::max(std::size_t(in_count) * sizeof(U), std::size_t(out_count) * sizeof(T))};
      if (receives) {
        try {
          receive_matched(pending, src, tag,
                          {in.data() + in_off, in_count, detail::mpi_datatype<U>(), sizeof(U)});
        } catch (const size_mismatch_error&) {
          mismatch = std::current_exception();
        }
      } else if (sends) {
        MPI_Status status;
        Pending send_only = pending;
        send_only.statuses = std::span(&status, 1);
        if (wait_for(send_only) == MPI_ERR_IN_STATUS) call(status.MPI_ERROR, "MPI_Isend", dst, tag);
      }
    }
    if (mismatch) std::rethrow_exception(mismatch);
  }

  // Posted messages (transport_with_posting): post_send and post_recv start
  // one message and return at once; finish() waits for it as send and recv
  // wait (the deadline runs from the post) and throws what they throw;
  // forget() gives up on the ones not finished, after an error, without
  // waiting for peers. Open MPI's shared memory moves a large message only
  // while its two ranks call into MPI, so a rank that keeps several messages
  // in flight lets its neighbours go on while it waits for one. A posted
  // receive is matched with its message before it is taken, as recv's is, by
  // whichever wait of its channel finds the message first (mpi/posted.hpp):
  // only this channel's waits start it, so a rank that waits elsewhere
  // (another channel, MPI directly) with receives posted leaves them, and a
  // peer's large send to them, waiting.
  struct posted {
    static constexpr std::size_t no_slot = SIZE_MAX;
    MPI_Request request = MPI_REQUEST_NULL;  // a send's
    std::size_t slot = no_slot;              // a receive's, in the channel's posted receives
    MPI_Datatype type = MPI_DATATYPE_NULL;
    std::size_t elem_bytes = 0;
    int peer = -1;
    int count = 0;
    tag_t tag = 0;
    bool receive = false;
    int channel = 0;  // whose posted messages hold it
    clock::time_point start{};

    bool pending() const noexcept { return request != MPI_REQUEST_NULL || slot != no_slot; }
  };

  template <class T>
    requires element<std::remove_const_t<T>>
  posted post_send(int dst, std::span<T> data, tag_t tag) {
    detail::check_send(rank(), size(), dst, tag);
    posted p = start_posted<T>(dst, data.size(), tag, false);
    call(MPI_Isend(data.data(), p.count, p.type, dst, tag, comm_, &p.request), "MPI_Isend", dst,
         tag);
    posted_messages().send_posted();
    return p;
  }

  template <class T>
    requires element<T>
  posted post_recv(int src, std::span<T> data, tag_t tag) {
    detail::check_recv(rank(), size(), src, tag);
    posted p = start_posted<T>(src, data.size(), tag, true);
    auto& messages = posted_messages();
    p.slot = messages.add(src, tag, data.data(), p.count, p.type, p.elem_bytes);
    // Matched at once if its message is here.
    if (const int rc = messages.match(comm_); rc != MPI_SUCCESS) {
      forget(std::span(&p, 1));
      call(rc, "MPI_Improbe", src, tag);
    }
    return p;
  }

  // Waits for a posted message (nothing if none is pending).
  void finish(posted& p) {
    if (!p.pending()) return;
    if (p.channel != channel_)
      throw configuration_error("a message posted on channel " + std::to_string(p.channel) +
                                    " is finished on channel " + std::to_string(channel_) +
                                    ": finish it with the handle that posted it",
                                where(p.peer, p.tag));
    MPI_Status status;
    const int peer[1] = {p.peer};
    Pending wait{.statuses = std::span(&status, 1),
                 .peers = peer,
                 .at = where(p.peer, p.tag),
                 .start = p.start,
                 .bytes = std::size_t(p.count) * p.elem_bytes};
    auto& messages = posted_messages();
    if (!p.receive) {
      // Complete or given up however this ends: no longer in flight.
      struct Done {
        detail::MPIPosted& messages;
        ~Done() { messages.send_done(); }
      } done{messages};
      wait.requests = std::span(&p.request, 1);
      if (wait_for(wait) == MPI_ERR_IN_STATUS) call(status.MPI_ERROR, "MPI_Isend", p.peer, p.tag);
      return;
    }
    // The slot is freed however this ends.
    struct Release {
      detail::MPIPosted& messages;
      posted& p;
      ~Release() {
        messages.release(p.slot);
        p.slot = posted::no_slot;
      }
    } release{messages, p};
    auto& r = messages[p.slot];
    wait.spin_start = clock::now();
    if (!r.matched) {
      Pending matching = wait;  // no requests yet
      matching.statuses = {};
      matching.awaited = &r;
      // Alone on its channel, it moves nothing while it waits for its
      // message: polled as a recv() alone is.
      if (messages.alone()) cap_matching_spin(matching);
      wait_for(matching);
      wait.spin_start = transfer_spin_start(matching);
    }
    wait.receives = 1;
    call(r.error, "MPI_Imrecv", p.peer, p.tag);
    wait.requests = std::span(&r.request, 1);
    const int rc = wait_for(wait);
    r.taken = true;
    if (!r.fits())
      throw detail::size_mismatch(
          r.expected(), static_cast<std::size_t>(std::max<MPI_Count>(r.sent, 0)), p.peer, wait.at);
    check_received(rc == MPI_ERR_IN_STATUS ? status.MPI_ERROR : rc, status, p.count, p.elem_bytes,
                   p.peer, where(p.peer, p.tag));
  }

  // Gives up on posted messages (as a failed operation gives up on its own):
  // receives are cancelled, sends released; a send may still be read from its
  // buffer, and a receive a large message already matched may still be
  // written, if the peer goes on.
  void forget(std::span<posted> ps) noexcept {
    for (posted& p : ps) {
      auto& messages = control_->posted[static_cast<std::size_t>(p.channel)];
      if (p.slot != posted::no_slot) {
        detail::mpi_abandon(std::span(&messages[p.slot].request, 1), 1);
        messages.release(p.slot);
        p.slot = posted::no_slot;
      }
      if (p.request != MPI_REQUEST_NULL) {
        detail::mpi_abandon(std::span(&p.request, 1), 0);
        messages.send_done();
      }
    }
  }

  // The hook for native collectives (MPINativeReduce): waits for `requests`
  // of nonblocking collectives on this transport's communicator or one made
  // from it, under the transport's rules: the deadline is `start` + timeout, a
  // failure notice ends the wait with peer_error, a timeout tells every other
  // rank and throws timeout_error. `where` names the operation in errors. On
  // failure the requests stay pending: MPI forbids cancelling or freeing a
  // nonblocking collective's request, so its buffers belong to MPI until it
  // completes or MPI is finalized.
  void wait(std::span<MPI_Request> requests, const error_context& where,
            std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now()) {
    const int rc =
        wait_for({.requests = requests, .collective = true, .at = where, .start = start});
    if (rc != MPI_SUCCESS)
      fail_with("a nonblocking collective failed: " + detail::mpi_error_text(rc), where);
  }

  // Throws peer_error if the transport has failed (a notice that arrived while
  // this rank was busy counts): what every operation checks first, and what a
  // native collective calls before it posts anything.
  void check_usable(const error_context& where) {
    auto& c = *control_;
    std::lock_guard lk(c.mu);
    if (!c.failure.failed()) c.notice_arrived_locked();
    c.failure.throw_if_failed(rank(), where);
  }

 private:
  // One operation's wait: its requests, the peer of each (receives first) or
  // none for a collective.
  struct Pending {
    std::span<MPI_Request> requests;
    std::span<MPI_Status> statuses;  // empty: MPI_STATUSES_IGNORE
    std::span<const int> peers;      // empty for a collective
    int receives = 0;                // the first `receives` requests are receives
    bool collective = false;
    error_context at;
    clock::time_point start;
    std::size_t bytes = 0;  // what the requests move, for the polling
    // When the polling without pause began (none: now). A receive's two
    // waits, for its message to be matched and for it to be taken, share one.
    clock::time_point spin_start{};
    // Set while a receive's message is being matched (MPI_Improbe) before it
    // is taken: the wait ends when it is matched, and a timeout names it.
    struct Probe {
      int src;
      tag_t tag;
      MPI_Message message = MPI_MESSAGE_NULL;
      MPI_Status status;
    }* probe = nullptr;
    // Set while a posted receive waits for its message: the wait ends when
    // the channel's matching has found it.
    const detail::MPIPostedReceive* awaited = nullptr;
  };

  // Where a receive puts its message: `count` elements of `type`.
  struct Into {
    void* data;
    int count;
    MPI_Datatype type;
    std::size_t elem_bytes;
  };

  // A receive (p's first request; a sendrecv's send, if any, is p's second,
  // already started). Its message is matched first and taken only if its
  // length is the receive's: a longer message never reaches the buffer (Open
  // MPI's single-copy transfer of shared memory writes a truncated message
  // past the end of the receive's buffer, corrupting the heap). A message of
  // another length is taken into scratch, the send is waited for (it is still
  // delivered), and the size_mismatch_error names both lengths.
  //
  // Polling: a sendrecv's two waits share one budget from its start (its send
  // moves while it waits to match). A receive alone (and nothing posted in
  // flight beside it) moves nothing before its message is matched: it polls
  // for its message as long as for its bytes (a peer is late by the
  // transfers before its send, which grow with the bytes) but at most
  // `match_spin_limit` more than `spin`; its transfer's budget starts where
  // transfer_spin_start() says.
  void receive_matched(const Pending& p, int src, tag_t tag, const Into& into) {
    Pending::Probe probe{.src = src, .tag = tag};
    Pending matching = p;
    // Alone: no send of its own, and nothing posted in flight on the channel,
    // whose bytes would move only while this rank polls.
    const bool alone = p.requests.size() == 1 && posted_messages().idle();
    matching.spin_start = clock::now();
    if (alone) cap_matching_spin(matching);
    matching.requests = p.requests.subspan(1);  // the send, driven meanwhile
    matching.peers = p.peers.subspan(1);
    matching.receives = 0;
    matching.probe = &probe;
    wait_for(matching);
    MPI_Count sent = 0;
    MPI_Get_elements_x(&probe.status, MPI_BYTE, &sent);
    const std::size_t expected = static_cast<std::size_t>(into.count) * into.elem_bytes;
    std::vector<std::byte> scratch;  // only for a message that does not fit
    const bool fits = sent >= 0 && static_cast<std::size_t>(sent) == expected;
    const int rc =
        fits ? MPI_Imrecv(into.data, into.count, into.type, &probe.message, &p.requests[0])
             : detail::mpi_take_into_scratch(scratch, sent, &probe.message, &p.requests[0]);
    if (rc != MPI_SUCCESS) detail::mpi_abandon(p.requests.subspan(1), 0);
    call(rc, "MPI_Imrecv", src, tag);
    MPI_Status statuses[2];
    Pending taking = p;
    taking.spin_start = alone ? transfer_spin_start(matching) : matching.spin_start;
    taking.statuses = std::span(statuses, p.requests.size());
    int done = MPI_SUCCESS;
    try {
      done = wait_for(taking);
    } catch (...) {
      if (!fits) detail::mpi_leave_scratch(scratch);  // given up before it was all in
      throw;
    }
    if (!fits)
      throw detail::size_mismatch(expected, static_cast<std::size_t>(std::max<MPI_Count>(sent, 0)),
                                  src, p.at);
    check_received(done == MPI_ERR_IN_STATUS ? statuses[0].MPI_ERROR : done, statuses[0],
                   into.count, into.elem_bytes, src, where(src, tag));
    if (done == MPI_ERR_IN_STATUS && p.requests.size() > 1)
      call(statuses[1].MPI_ERROR, "MPI_Isend", p.peers[1], tag);
  }

  // How long moving `bytes` could take at a pessimistic 125 MB/s (ranks
  // sharing cores with each other and with other work): the polling without
  // pause that a wait adds to `spin` for the bytes it moves.
  static constexpr std::int64_t transfer_ns_per_byte = 8;
  // The most a receive alone adds to `spin` while its message has not come
  // (the time of 12.5 MB): past it, a rank waiting for a peer that is late
  // with a large message sleeps between its tests.
  static constexpr std::chrono::milliseconds match_spin_limit{100};
  static std::chrono::nanoseconds transfer_time(std::size_t bytes) noexcept {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(bytes) * transfer_ns_per_byte);
  }

  // A receive alone waiting for its message polls without pause at most
  // `match_spin_limit` beyond `spin`.
  static void cap_matching_spin(Pending& matching) noexcept {
    if (transfer_time(matching.bytes) > match_spin_limit)
      matching.bytes = static_cast<std::size_t>(std::chrono::nanoseconds(match_spin_limit).count() /
                                                transfer_ns_per_byte);
  }

  // How long a wait polls without pause: `spin` and its bytes' time.
  clock::duration spin_time(const Pending& p) const noexcept {
    return options_.spin + transfer_time(p.bytes);
  }
  // Where the polling budget of a receive's transfer starts, once its
  // message is matched: with the matching's if the match came while that
  // wait still polled without pause (under oversubscription a longer spin
  // takes the cores from the ranks being waited for), from the match if it
  // came later (the bytes move only while both sides poll, and a rank that
  // had gone to sleeping between tests would take them with sleeps).
  clock::time_point transfer_spin_start(const Pending& matching) const noexcept {
    const auto now = clock::now();
    return now > matching.spin_start + spin_time(matching) ? now : matching.spin_start;
  }

  // The one wait loop. Returns MPI_SUCCESS, or MPI_ERR_IN_STATUS with the
  // statuses to read, once every request is complete; throws timeout_error or
  // peer_error after abandoning the requests.
  int wait_for(const Pending& p) {
    const int n = static_cast<int>(p.requests.size());
    MPI_Status* statuses = p.statuses.empty() ? MPI_STATUSES_IGNORE : p.statuses.data();
    // A large message moves only while both sides poll (Open MPI's shared
    // memory without CMA copies it in fragments), so the polling without pause lasts
    // as long as moving the operation's bytes could take at a pessimistic
    // 125 MB/s (ranks sharing cores with each other and with other work), on
    // top of `spin`.
    const auto spin_end =
        (p.spin_start == clock::time_point{} ? clock::now() : p.spin_start) + spin_time(p);
    auto nap = std::min<clock::duration>(std::chrono::microseconds(20), options_.max_sleep);
    const detail::Deadline deadline(options_.timeout, p.start);
    // Testing also drives Open MPI's progress engine, which moves the data.
    // While matching, the wait is for the message alone. Every test matches
    // the channel's posted receives first, and a receive's own matching waits
    // for those posted before it from its peer with its tag.
    auto& messages = posted_messages();
    int done = 0;
    const char* testing = "MPI_Testall";
    auto test = [&] {
      if (const int rc = messages.match(comm_); rc != MPI_SUCCESS) {
        testing = "MPI_Improbe";
        return rc;
      }
      if (p.awaited) {
        done = p.awaited->matched;
        return MPI_SUCCESS;
      }
      if (p.probe) {
        testing = "MPI_Improbe";
        if (messages.waiting_before(p.probe->src, p.probe->tag)) return MPI_SUCCESS;
        return MPI_Improbe(p.probe->src, p.probe->tag, comm_, &done, &p.probe->message,
                           &p.probe->status);
      }
      return MPI_Testall(n, p.requests.data(), &done, statuses);
    };
    for (unsigned round = 0;; ++round) {
      const int rc = test();
      if (rc == MPI_ERR_IN_STATUS || (rc == MPI_SUCCESS && done)) return rc;
      if (rc != MPI_SUCCESS) {
        abandon(p);
        fail_with(std::string(testing) + " failed: " + detail::mpi_error_text(rc), p.at);
      }
      const auto now = clock::now();
      const bool spinning = now < spin_end;
      // While spinning, the notice (which never hurries) is looked at every
      // 32nd round, so that the data's polling rate stays that of MPI_Waitall.
      if ((!spinning || round % 32 == 0) && control_->notice_arrived()) {
        abandon(p);
        std::lock_guard lk(control_->mu);
        throw control_->failure.during(p.at);
      }
      // Past the deadline, one more test first: what completed since the
      // last one (while this rank was descheduled, say) is not a timeout.
      if (deadline.passed(now)) {
        const int last = test();
        if (last == MPI_ERR_IN_STATUS || (last == MPI_SUCCESS && done)) return last;
        time_out(p, deadline, now);
      }
      if (!spinning) {
        std::this_thread::sleep_for(deadline.limited() ? std::min(nap, deadline.left(now)) : nap);
        nap = std::min<clock::duration>(2 * nap, options_.max_sleep);
      }
    }
  }

  [[noreturn]] void time_out(const Pending& p, const detail::Deadline& deadline,
                             clock::time_point now) {
    // Name the first request still pending (receives come first): with a
    // sendrecv whose receive arrived, it is the send's peer that is missing.
    // A collective names no peer.
    std::string what = "the collective";
    int peer = -1;
    if (p.probe) peer = p.probe->src, what = detail::receive_text(peer);
    if (p.awaited) peer = p.awaited->src, what = detail::receive_text(peer);
    for (std::size_t i = 0; peer < 0 && i < p.peers.size(); ++i) {
      int done = 0;
      MPI_Request_get_status(p.requests[i], &done, MPI_STATUS_IGNORE);
      if (done) continue;
      peer = p.peers[i];
      what =
          static_cast<int>(i) < p.receives ? detail::receive_text(peer) : detail::send_text(peer);
      break;
    }
    abandon(p);
    // Giving up a matched receive takes a short grace (mpi/requests.hpp):
    // the wait the error reports is the whole of it.
    now = clock::now();
    const timeout_error e = peer >= 0
                                ? detail::timed_out(what, deadline, peer, p.at, {}, now)
                                : timeout_error(what + " " + deadline.overdue_text(now), p.at);
    // The others learn what this rank saw, its message without the kind and
    // the place, as on every transport.
    const std::string_view text = e.message();
    std::lock_guard lk(control_->mu);
    control_->notify_others(text);
    control_->failure.record(rank(), std::string(detail::failure_text(text)));
    throw e;
  }

  // Gives up on an operation's requests without blocking.
  void abandon(const Pending& p) noexcept {
    // MPI forbids cancelling or freeing a nonblocking collective's request;
    // it stays pending (see wait()).
    if (!p.collective) detail::mpi_abandon(p.requests, p.receives);
  }
  error_context where(int peer, tag_t tag) const { return detail::p2p_context(rank(), peer, tag); }

  void call(int rc, const char* what, int peer, tag_t tag) {
    if (rc != MPI_SUCCESS)
      fail_with(std::string(what) + " failed: " + detail::mpi_error_text(rc), where(peer, tag));
  }
  // An MPI call failed: the transport fails for good, as on a timeout (the
  // other ranks hear of it, and failed() says so), and the caller gets
  // peer_error with `what`.
  [[noreturn]] void fail_with(const std::string& what, const error_context& at) {
    fail(what);
    throw peer_error(what, at);
  }
  // detail::mpi_check_received, whose MPI errors fail the transport (a
  // size_mismatch_error leaves it usable).
  void check_received(int rc, const MPI_Status& status, int count, std::size_t elem_bytes, int src,
                      const error_context& at) {
    try {
      detail::mpi_check_received(rc, status, count, elem_bytes, src, at);
    } catch (const size_mismatch_error&) {
      throw;
    } catch (const peer_error& e) {
      fail_with(e.message(), at);
    }
  }
  void call(int rc, const char* what) const {
    if (rc != MPI_SUCCESS)
      throw peer_error(std::string(what) + " failed: " + detail::mpi_error_text(rc),
                       error_context{}.with_rank(comm_.rank()));
  }

  detail::MPIPosted& posted_messages() noexcept {
    return control_->posted[static_cast<std::size_t>(channel_)];
  }

  template <class T>
  posted start_posted(int peer, std::size_t n, tag_t tag, bool receive) {
    const auto start = clock::now();
    check_usable(where(peer, tag));
    if (n > detail::mpi_max_count)
      throw configuration_error("a posted message holds at most 2^30 elements, this one " +
                                    std::to_string(n),
                                where(peer, tag));
    return {.type = detail::mpi_datatype<T>(),
            .elem_bytes = sizeof(T),
            .peer = peer,
            .count = static_cast<int>(n),
            .tag = tag,
            .receive = receive,
            .channel = channel_,
            .start = start};
  }

  // Another channel's handle.
  MPITransport(const boost::mpi::communicator& data, const MPIOptions& options,
               std::shared_ptr<detail::MPIControl> control, int channel)
      : comm_(data), options_(options), control_(std::move(control)), channel_(channel) {}

  boost::mpi::communicator comm_;
  MPIOptions options_;
  std::shared_ptr<detail::MPIControl> control_;
  int channel_ = 0;
};

}  // namespace dssync

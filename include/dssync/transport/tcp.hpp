#pragma once
// TcpTransport: the transport concept over plain TCP, with Boost.Asio. Link
// dssync::tcp.
//
// Start-up, the way torch.distributed's env:// does it. Every process knows its
// rank, the world size, the master's address and port and a job token
// (TcpOptions, or from_env(): DSSYNC_RANK, DSSYNC_WORLD_SIZE,
// DSSYNC_MASTER_ADDR, DSSYNC_MASTER_PORT, DSSYNC_JOB_TOKEN). Rank 0 serves a
// rendezvous on the master port; every rank listens on a port of its own,
// registers it there, and receives everyone's address. Then the ranks connect
// a full mesh, eagerly: rank i connects to every rank below it. Eager, because
// a job that cannot connect fails at start-up and not in its thousandth step,
// because the cost (n - 1 sockets a rank) is paid once, and because two ranks
// can never race to open the same connection. The constructor returns when
// this rank's n - 1 connections are up.
//
// Moving bytes. A background thread per transport runs the sockets: it writes
// queued messages, reads every connection all the time, and sends a heartbeat
// on a connection that has been idle. The calling thread hands it operations
// and sleeps on a condition variable until they are done: waiting never spins
// a core. sendrecv posts its receive and its send together, so both directions
// move at once. A message whose receive is already posted is read straight into
// the caller's buffer (no second copy). One that arrives first is kept if it is
// small (up to 64 KiB, in reused buffers); a large one waits in the socket
// until its receive is posted, and is then read into the buffer directly.
//
// Failures. Nothing waits forever:
// - every operation ends within TcpOptions::timeout from its start (zero: no
//   deadline), with timeout_error naming the peer it waited on, and what that
//   peer sent instead if anything (the contract: transport/contract.hpp);
// - a peer whose connection closes or resets without a goodbye, or that sends
//   nothing for peer_timeout (not even a heartbeat: it is stopped or cut off),
//   or that breaks the protocol, is dead: the transport fails, and every rank
//   that sees it tells the others, so that every waiting rank throws
//   peer_error naming the dead rank. A failed transport throws peer_error at
//   once on every later call; make a new one to go on.
// - a size mismatch throws size_mismatch_error and leaves the transport usable.
// - strangers: a connection with the wrong magic number, the wrong job token, a
//   rank outside the world or one already connected, or no hello at all within
//   a few seconds, is refused, closed and logged (TcpOptions::log), and the job
//   goes on. No length read from the network is allocated before it is checked
//   against a bound.
//
// One thread uses a transport at a time, as with the other transports.

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it
#include <boost/asio.hpp>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
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
#include "dssync/transport/tcp_options.hpp"
#include "dssync/transport/tcp_wire.hpp"

namespace dssync {

namespace detail {

namespace asio = boost::asio;
using asio::ip::tcp;

// One blocking call's share of work for the socket thread: a send or a
// receive of `bytes` bytes with one peer. The fields below `bytes` are written
// by the socket thread under TcpCore::mu once the operation ends.
struct TcpOp {
  bool receive = false;
  int peer = 0;
  std::uint16_t tag = 0;
  std::byte* in = nullptr;
  const std::byte* out = nullptr;
  std::size_t bytes = 0;

  enum class Result { pending, ok, mismatch, failed };
  Result result = Result::pending;
  std::uint64_t peer_bytes = 0;  // mismatch: what the peer sent
  std::string what;              // failed: why
};

inline wire::Address to_wire(const asio::ip::address& a) {
  wire::Address w;
  if (a.is_v4()) {
    w.family = 4;
    const auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), w.bytes.begin());
  } else {
    w.family = 6;
    const auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), w.bytes.begin());
  }
  return w;
}
inline asio::ip::address from_wire(const wire::Address& w) {
  if (w.family == 4) {
    asio::ip::address_v4::bytes_type b;
    std::copy_n(w.bytes.begin(), 4, b.begin());
    return asio::ip::address_v4(b);
  }
  asio::ip::address_v6::bytes_type b;
  std::copy_n(w.bytes.begin(), 16, b.begin());
  return asio::ip::address_v6(b);
}
inline std::string endpoint_text(const tcp::endpoint& e) {
  return e.address().to_string() + ":" + std::to_string(e.port());
}

// Everything the socket thread owns, and the little it shares with the
// calling thread (under mu). It does not move: handlers point into it.
class TcpCore {
  using clock = std::chrono::steady_clock;
  static constexpr std::size_t eager_limit = 64 << 10;
  // Reading into a caller's buffer, the socket thread is woken per this many
  // bytes (SO_RCVLOWAT), or the message's end. Against 256 KiB, 1 MiB made the
  // 8-process all-reduce of 16 MiB on loopback 1.5-8.6 % faster (ring and
  // halving-doubling, 4 runs of 12 interleaved pairs), 2 MiB and 4 MiB no faster
  // than 1 MiB, 64 KiB 7 % slower.
  static constexpr std::size_t read_piece = 1 << 20;

 public:
  explicit TcpCore(TcpOptions o)
      : options_(std::move(o)), rank_(options_.rank), size_(options_.world_size),
        token_(wire::token_hash(options_.job_token)), listener_(io_), heartbeat_(io_),
        setup_deadline_(io_), waker_(io_), work_(io_.get_executor()) {
    if (size_ < 1) throw configuration_error("the world size must be at least 1");
    if (rank_ < 0 || rank_ >= size_)
      throw configuration_error("rank " + std::to_string(rank_) + " is outside a world of " +
                                std::to_string(size_) + " ranks");
    if (options_.peer_timeout.count() <= 0)
      throw configuration_error("peer_timeout must be positive", where());
    peers_.reserve(std::size_t(size_));
    for (int r = 0; r < size_; ++r) peers_.push_back(std::make_unique<Peer>(io_, r));
    master_ = resolve(options_.master_addr, options_.master_port, "the master address");
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw configuration_error("eventfd failed", where());
    waker_.assign(fd);
    // Rank 0's rendezvous port is bound here, before the thread starts, so
    // that a port in use is an error of this constructor, said plainly.
    if (rank_ == 0) open_master();
    thread_ = std::thread([this] { io_.run(); });
    asio::post(io_, [this] { start(); });
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return setup_done_ || setup_error_; });
    if (setup_error_) {
      const auto e = setup_error_;
      lk.unlock();
      stop(false);
      std::rethrow_exception(e);
    }
  }

  TcpCore(const TcpCore&) = delete;
  TcpCore& operator=(const TcpCore&) = delete;
  ~TcpCore() { stop(true); }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  const TcpOptions& options() const noexcept { return options_; }
  std::size_t refused() const noexcept { return refused_.load(); }
  std::uint16_t listen_port() const noexcept { return me_.port(); }
  bool failed() const {
    std::lock_guard lk(mu_);
    return failure_.failed();
  }

  void fail(std::string_view reason) {
    asio::post(io_, [this, text = std::string(reason)] { fail_transport(rank_, text, true); });
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, std::chrono::seconds(1), [&] { return failure_.failed(); });
  }

  // Runs the operations to completion, or throws. The thread that owns the
  // transport calls this; it sleeps until the socket thread is done.
  // Nothing here allocates: the operations live on the caller's stack, and
  // the socket thread is woken through an eventfd.
  void run(TcpOp* first, TcpOp* second, const error_context& at) {
    const Deadline deadline(options_.timeout);
    check_usable(at);
    const std::array<TcpOp*, 2> list{first, second};
    const std::span<TcpOp* const> ops(list.data(), second ? 2 : 1);
    {
      std::lock_guard lk(mu_);
      for (TcpOp* op : ops) submitted_[submitted_count_++] = op;
    }
    wake();
    std::unique_lock lk(mu_);
    auto done = [&] {
      return std::all_of(ops.begin(), ops.end(),
                         [](const TcpOp* op) { return op->result != TcpOp::Result::pending; });
    };
    const bool finished = deadline.wait(cv_, lk, [&] { return done() || failure_.failed(); });
    if (!done()) {
      lk.unlock();
      if (!finished) {
        const Overdue late = abandon(ops, &deadline);
        throw timeout_error(late.text, at.with_peer(late.peer));
      }
      abandon(ops, nullptr);
      lk.lock();
      throw failure_.during(at);
    }
    for (const TcpOp* op : ops) {
      if (op->result == TcpOp::Result::mismatch)
        throw size_mismatch(op->bytes, op->peer_bytes, op->peer, at);
    }
    for (const TcpOp* op : ops) {
      if (op->result != TcpOp::Result::failed) continue;
      // The first failure the transport heard of is the cause (a notice
      // naming the dead rank comes before the notifier's own connection ends).
      if (failure_.failed()) throw failure_.during(at);
      throw peer_error(op->what, at.with_peer(op->peer));
    }
  }

  void check_usable(const error_context& at) {
    std::lock_guard lk(mu_);
    failure_.throw_if_failed(rank_, at);
  }

  error_context where() const { return error_context{}.with_rank(rank_); }

 private:
  struct Stashed {
    std::uint16_t tag;
    std::vector<std::byte> data;
  };
  struct Out {
    std::array<std::byte, wire::header_size> head{};
    const std::byte* data = nullptr;
    std::size_t bytes = 0;
    TcpOp* op = nullptr;           // a caller's send, or none (control frames)
    std::vector<std::byte> owned;  // the payload when the frame owns it
    bool end = false;              // not a frame: shut the sending side after what is queued
  };
  struct Peer {
    Peer(asio::io_context& io, int r) : rank(r), sock(io) {
      // At most one data frame of the caller, one abandoned half-written
      // frame and a few control frames are ever queued, and a message or two
      // kept: no allocation once running.
      out.reserve(16);
      stash.reserve(8);
    }
    int rank;
    tcp::socket sock;
    enum class State { none, open, left, dead } state = State::none;
    // Reading: a frame header, then its payload into one of several places.
    enum class Mode { header, user, stash, notice, discard, paused } mode = Mode::header;
    bool reading = false;
    int user_io = 0;  // pending reads or writes on a caller's memory
    std::array<std::byte, wire::header_size> head{};
    std::size_t head_got = 0;
    wire::Header frame;
    std::uint64_t got = 0;
    TcpOp* posted = nullptr;  // the receive waiting for this peer's next message
    TcpOp* target = nullptr;  // the receive the payload is going into
    std::vector<std::byte> buf;
    std::vector<Stashed> stash;
    // Writing, one frame at a time.
    std::vector<Out> out;  // a queue; its front may be in flight and never moves
    bool writing = false;
    std::size_t sent = 0;
    clock::time_point last_heard;
    bool claimed = false;  // a connection for this rank is in its handshake
    bool closing = false;  // this side said goodbye
    bool eof = false;
    int lowat = 1;  // SO_RCVLOWAT now set on the socket
    int queued_seen = 0;  // bytes waiting in the socket at the last heartbeat tick
  };

  // ------------------------------------------------------------ set-up --

  tcp::endpoint resolve(const std::string& host, std::uint16_t port, const char* what) {
    boost::system::error_code ec;
    tcp::resolver resolver(io_);
    const auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty())
      throw configuration_error(std::string("cannot resolve ") + what + " \"" + host +
                                    "\": " + ec.message(),
                                where());
    return results.begin()->endpoint();
  }

  void open_master() {
    boost::system::error_code ec;
    master_acceptor_.emplace(io_);
    master_acceptor_->open(master_.protocol(), ec);
    if (!ec) master_acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) master_acceptor_->bind(master_, ec);
    if (!ec) master_acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw configuration_error("cannot serve the rendezvous on " + endpoint_text(master_) + ": " +
                                    ec.message(),
                                where());
    registered_.resize(std::size_t(size_));
  }

  // Listens for peers on `address` (or listen_addr); returns an error text.
  std::string open_listener(const asio::ip::address& address) {
    boost::system::error_code ec;
    asio::ip::address a = address;
    if (!options_.listen_addr.empty()) {
      a = asio::ip::make_address(options_.listen_addr, ec);
      if (ec) return "bad listen address \"" + options_.listen_addr + "\": " + ec.message();
    }
    const tcp::endpoint e(a, options_.listen_port);
    listener_.open(e.protocol(), ec);
    if (!ec) listener_.bind(e, ec);
    if (!ec) listener_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return "cannot listen on " + endpoint_text(e) + ": " + ec.message();
    me_ = listener_.local_endpoint(ec);
    return {};
  }

  // The calling thread's doorbell: it queues operations under mu and writes
  // the eventfd; the socket thread takes them.
  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto r = ::write(waker_.native_handle(), &one, sizeof one);
  }
  void listen_for_work() {
    waker_.async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
      if (ec) return;
      std::uint64_t count = 0;
      [[maybe_unused]] const auto r = ::read(waker_.native_handle(), &count, sizeof count);
      take_submissions();
      listen_for_work();
    });
  }

  void take_submissions() {
    std::array<TcpOp*, 4> ops{};
    std::size_t n = 0;
    {
      std::lock_guard lk(mu_);
      n = std::exchange(submitted_count_, 0);
      std::copy_n(submitted_.begin(), n, ops.begin());
    }
    for (std::size_t i = 0; i < n; ++i) ops[i]->receive ? post_receive(*ops[i]) : post_send(*ops[i]);
  }

  void start() {
    listen_for_work();
    setup_deadline_.expires_after(options_.rendezvous_timeout);
    setup_deadline_.async_wait([this](boost::system::error_code ec) {
      if (!ec) setup_timed_out();
    });
    if (rank_ == 0) {
      if (const auto e = open_listener(master_.address()); !e.empty()) return setup_failed(e);
      auto& self = registered_[0];
      self.arrived = true;
      self.address = to_wire(me_.address());
      self.port = me_.port();
      accept(*master_acceptor_, wire::Purpose::rendezvous);
      accept(listener_, wire::Purpose::mesh);
      if (size_ == 1) setup_complete();
      return;
    }
    connect_to_master();
  }

  void connect_to_master() {
    auto sock = std::make_shared<tcp::socket>(io_);
    sock->async_connect(master_, [this, sock](boost::system::error_code ec) {
      if (setup_over()) return;
      if (ec) {
        // Rank 0 may not listen yet: try again shortly, until the deadline.
        last_setup_error_ = ec.message();
        auto retry = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
        retry->async_wait([this, retry](boost::system::error_code e) {
          if (!e && !setup_over()) connect_to_master();
        });
        return;
      }
      reached_master_ = true;
      sock->set_option(tcp::no_delay(true), ec);
      const auto local = sock->local_endpoint(ec);
      if (ec) return setup_failed("the connection to the rendezvous broke: " + ec.message());
      if (const auto e = open_listener(local.address()); !e.empty()) return setup_failed(e);
      accept(listener_, wire::Purpose::mesh);
      wire::Hello h{wire::Purpose::rendezvous, token_, std::uint32_t(size_), std::uint32_t(rank_),
                    me_.port(), to_wire(me_.address())};
      auto hello = std::make_shared<std::array<std::byte, wire::hello_size>>(wire::encode(h));
      asio::async_write(*sock, asio::buffer(*hello),
                        [this, sock, hello](boost::system::error_code e, std::size_t) {
                          if (setup_over()) return;
                          if (e) return setup_failed("the rendezvous closed the connection: " + e.message());
                          read_answer(sock, "the rendezvous at " + endpoint_text(master_),
                                      [this, sock] { read_table(sock); });
                        });
    });
  }

  // Reads a reply head; on acceptance calls `next`, on refusal reads the
  // reason and fails the set-up with it.
  template <class Next>
  void read_answer(std::shared_ptr<tcp::socket> sock, std::string who, Next next) {
    auto head = std::make_shared<std::array<std::byte, wire::reply_size + 2>>();
    asio::async_read(
        *sock, asio::buffer(head->data(), wire::reply_size),
        [this, sock, head, who, next](boost::system::error_code ec, std::size_t) {
          if (setup_over()) return;
          if (ec) return setup_failed(who + " closed the connection without an answer: " + ec.message());
          wire::Reply r;
          if (auto p = wire::decode(std::span<const std::byte, wire::reply_size>(head->data(), wire::reply_size), r))
            return setup_failed(who + " answered: " + *p);
          if (r.status == wire::Status::accepted) {
            if (r.token != token_) return setup_failed(who + " belongs to another job (its token differs)");
            return next();
          }
          asio::async_read(*sock, asio::buffer(head->data() + wire::reply_size, 2),
                           [this, sock, head, who, r](boost::system::error_code e, std::size_t) {
                             if (setup_over()) return;
                             std::size_t n = 0;
                             if (e || wire::decode_text_length(std::span<const std::byte, 2>(head->data() + wire::reply_size, 2), n))
                               return setup_failed(who + " refused this rank");
                             auto text = std::make_shared<std::string>(n, '\0');
                             asio::async_read(*sock, asio::buffer(*text),
                                              [this, sock, text, who, r](boost::system::error_code e2, std::size_t) {
                                                if (setup_over()) return;
                                                const std::string msg = who + (r.status == wire::Status::refused ? " refused this rank: " : " failed: ") + (e2 ? std::string("(no reason given)") : *text);
                                                if (r.status == wire::Status::failed) return setup_failed(msg, true);
                                                setup_failed(msg);
                                              });
                           });
        });
  }

  void read_table(std::shared_ptr<tcp::socket> sock) {
    auto table = std::make_shared<std::vector<std::byte>>(std::size_t(size_) * wire::entry_size);
    asio::async_read(*sock, asio::buffer(*table),
                     [this, sock, table](boost::system::error_code ec, std::size_t) {
                       if (setup_over()) return;
                       if (ec) return setup_failed("the rendezvous closed before sending the table: " + ec.message());
                       for (int r = 0; r < size_; ++r) {
                         auto& p = *peers_[std::size_t(r)];
                         wire::Address a;
                         std::uint16_t port = 0;
                         if (auto e = wire::decode(std::span<const std::byte, wire::entry_size>(table->data() + std::size_t(r) * wire::entry_size, wire::entry_size), a, port))
                           return setup_failed("the rendezvous sent a bad table: " + *e);
                         addresses_.emplace_back(from_wire(a), port);
                         (void)p;
                       }
                       got_table_ = true;
                       for (int r = 0; r < rank_; ++r) connect_to_peer(r);
                       maybe_complete();
                     });
  }

  void connect_to_peer(int r) {
    auto sock = std::make_shared<tcp::socket>(io_);
    const tcp::endpoint e = addresses_[std::size_t(r)];
    sock->async_connect(e, [this, sock, r, e](boost::system::error_code ec) {
      if (setup_over()) return;
      if (ec)
        return setup_failed("cannot connect to rank " + std::to_string(r) + " at " + endpoint_text(e) +
                            ": " + ec.message());
      sock->set_option(tcp::no_delay(true), ec);
      wire::Hello h{wire::Purpose::mesh, token_, std::uint32_t(size_), std::uint32_t(rank_), me_.port(),
                    to_wire(me_.address())};
      auto hello = std::make_shared<std::array<std::byte, wire::hello_size>>(wire::encode(h));
      asio::async_write(*sock, asio::buffer(*hello), [this, sock, hello, r](boost::system::error_code e2, std::size_t) {
        if (setup_over()) return;
        if (e2) return setup_failed("rank " + std::to_string(r) + " closed the connection: " + e2.message());
        read_answer(sock, "rank " + std::to_string(r), [this, sock, r] { open_peer(r, std::move(*sock)); });
      });
    });
  }

  // Accepts connections for as long as the transport lives: during set-up
  // they are ranks (or strangers); afterwards only strangers.
  void accept(tcp::acceptor& acceptor, wire::Purpose purpose) {
    acceptor.async_accept([this, &acceptor, purpose](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || stopping_) return;
      if (!ec) greet(std::make_shared<tcp::socket>(std::move(s)), purpose);
      accept(acceptor, purpose);
    });
  }

  // Reads the hello of an accepted connection, within a few seconds, and
  // admits or refuses it.
  void greet(std::shared_ptr<tcp::socket> sock, wire::Purpose purpose) {
    boost::system::error_code ec;
    const auto remote = sock->remote_endpoint(ec);
    const std::string from = ec ? std::string("an unknown address") : endpoint_text(remote);
    if (handshakes_ >= 32) return refuse_silently(*sock, from, "too many connections in their handshake");
    ++handshakes_;
    sock->set_option(tcp::no_delay(true), ec);
    auto hello = std::make_shared<std::array<std::byte, wire::hello_size>>();
    auto timer = std::make_shared<asio::steady_timer>(
        io_, std::min<clock::duration>(std::chrono::seconds(5), options_.rendezvous_timeout));
    auto finished = std::make_shared<bool>(false);
    timer->async_wait([this, sock, from, finished](boost::system::error_code e) {
      if (e || *finished) return;
      *finished = true;
      --handshakes_;
      refuse_silently(*sock, from, "no hello within the handshake time");
    });
    asio::async_read(*sock, asio::buffer(*hello), [=, this](boost::system::error_code e, std::size_t) {
      if (*finished) return;
      *finished = true;
      --handshakes_;
      timer->cancel();
      if (e) return refuse_silently(*sock, from, "closed before its hello was complete");
      wire::Hello h;
      if (auto p = wire::decode(std::span<const std::byte, wire::hello_size>(*hello), h))
        return refuse(sock, from, *p);
      wire::Admission a{token_, std::uint32_t(size_), purpose,
                        purpose == wire::Purpose::rendezvous ? 1u : std::uint32_t(rank_ + 1)};
      auto taken = [&](std::uint32_t r) {
        if (purpose == wire::Purpose::rendezvous) return setup_sent_ || registered_[r].arrived;
        return peers_[r]->claimed || peers_[r]->state != Peer::State::none;
      };
      if (auto p = wire::admit(h, a, taken)) return refuse(sock, from, *p);
      if (purpose == wire::Purpose::rendezvous) return register_rank(sock, h, remote_address(*sock));
      auto reply = std::make_shared<std::array<std::byte, wire::reply_size>>(
          wire::encode(wire::Reply{wire::Status::accepted, token_}));
      const int r = int(h.rank);
      peers_[std::size_t(r)]->claimed = true;
      asio::async_write(*sock, asio::buffer(*reply), [this, sock, reply, r](boost::system::error_code e2, std::size_t) {
        peers_[std::size_t(r)]->claimed = false;
        if (!e2 && !stopping_) open_peer(r, std::move(*sock));
      });
    });
  }

  static asio::ip::address remote_address(const tcp::socket& s) {
    boost::system::error_code ec;
    const auto e = s.remote_endpoint(ec);
    return ec ? asio::ip::address() : e.address();
  }

  void note_refusal(const std::string& from, const std::string& why) {
    ++refused_;
    const std::string line = "dssync: tcp rank " + std::to_string(rank_) + " refused a connection from " +
                             from + ": " + why;
    if (options_.log) options_.log(line);
    else std::fprintf(stderr, "%s\n", line.c_str());
  }

  void refuse_silently(tcp::socket& s, const std::string& from, const std::string& why) {
    note_refusal(from, why);
    boost::system::error_code ec;
    s.close(ec);
  }

  void refuse(std::shared_ptr<tcp::socket> sock, const std::string& from, const std::string& why) {
    note_refusal(from, why);
    send_text_and_close(sock, wire::Status::refused, why);
  }

  void send_text_and_close(std::shared_ptr<tcp::socket> sock, wire::Status status, const std::string& text) {
    auto msg = std::make_shared<std::string>();
    const auto head = wire::encode(wire::Reply{status, token_});
    msg->assign(reinterpret_cast<const char*>(head.data()), head.size());
    *msg += wire::encode_text(text);
    asio::async_write(*sock, asio::buffer(*msg), [sock, msg](boost::system::error_code, std::size_t) {
      boost::system::error_code ec;
      sock->close(ec);
    });
  }

  // Rank 0: a rank has registered for the rendezvous.
  void register_rank(std::shared_ptr<tcp::socket> sock, const wire::Hello& h, const asio::ip::address& seen) {
    auto& reg = registered_[h.rank];
    reg.arrived = true;
    reg.sock = sock;
    reg.address = h.address.family ? h.address : to_wire(seen);
    reg.port = h.port;
    if (std::all_of(registered_.begin(), registered_.end(), [](const Registration& x) { return x.arrived; })) {
      setup_sent_ = true;
      auto msg = std::make_shared<std::vector<std::byte>>(wire::reply_size + std::size_t(size_) * wire::entry_size);
      const auto head = wire::encode(wire::Reply{wire::Status::accepted, token_});
      std::copy(head.begin(), head.end(), msg->begin());
      for (int r = 0; r < size_; ++r)
        wire::encode(registered_[std::size_t(r)].address, registered_[std::size_t(r)].port,
                     msg->data() + wire::reply_size + std::size_t(r) * wire::entry_size);
      for (int r = 1; r < size_; ++r) {
        auto s = std::move(registered_[std::size_t(r)].sock);
        asio::async_write(*s, asio::buffer(*msg), [s, msg](boost::system::error_code, std::size_t) {
          boost::system::error_code ec;
          s->shutdown(tcp::socket::shutdown_send, ec);
          s->close(ec);
        });
      }
    }
  }

  void open_peer(int r, tcp::socket s) {
    auto& p = *peers_[std::size_t(r)];
    p.sock = std::move(s);
    if (options_.socket_buffer > 0) {
      boost::system::error_code ec;
      p.sock.set_option(asio::socket_base::send_buffer_size(int(options_.socket_buffer)), ec);
      p.sock.set_option(asio::socket_base::receive_buffer_size(int(options_.socket_buffer)), ec);
    }
    if (options_.unsent_limit > 0) {  // best effort, as the buffer sizes: a kernel without it sends anyway
      const int unsent = static_cast<int>(std::min<std::size_t>(options_.unsent_limit, 1u << 30));
      (void)setsockopt(p.sock.native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &unsent, sizeof unsent);
    }
    p.state = Peer::State::open;
    p.last_heard = clock::now();
    ++open_peers_;
    read_more(p);
    maybe_complete();
  }

  void maybe_complete() {
    if (setup_over()) return;
    if (open_peers_ == size_ - 1 && (rank_ == 0 || got_table_)) setup_complete();
  }

  void setup_complete() {
    setup_deadline_.cancel();
    schedule_heartbeat();
    std::lock_guard lk(mu_);
    setup_done_ = true;
    cv_.notify_all();
  }

  bool setup_over() const { return setup_done_ || setup_error_ || stopping_; }

  void setup_failed(const std::string& what, bool timeout = false) {
    if (setup_over()) return;
    std::lock_guard lk(mu_);
    setup_error_ = timeout ? std::make_exception_ptr(timeout_error(what, where()))
                           : std::make_exception_ptr(configuration_error(what, where()));
    cv_.notify_all();
  }

  void setup_timed_out() {
    if (setup_over()) return;
    const std::string limit = std::to_string(options_.rendezvous_timeout.count()) + " ms";
    std::string what;
    if (rank_ == 0 && !setup_sent_) {
      std::vector<int> missing;
      for (int r = 1; r < size_; ++r)
        if (!registered_[std::size_t(r)].arrived) missing.push_back(r);
      what = "the rendezvous on " + endpoint_text(master_) + " did not complete within " + limit +
             ": " + list_ranks(missing) + " never arrived";
      for (auto& reg : registered_)
        if (reg.sock) send_text_and_close(std::move(reg.sock), wire::Status::failed, what);
    } else if (rank_ != 0 && !reached_master_) {
      what = "could not reach the rendezvous at " + endpoint_text(master_) + " within " + limit +
             " (last error: " + last_setup_error_ + ")";
    } else if (rank_ != 0 && !got_table_ && !waited_for_verdict_) {
      // Rank 0 knows who is missing and says so to everyone registered: give
      // its answer two more seconds to arrive.
      waited_for_verdict_ = true;
      setup_deadline_.expires_after(std::chrono::seconds(2));
      setup_deadline_.async_wait([this](boost::system::error_code ec) {
        if (!ec) setup_timed_out();
      });
      return;
    } else if (rank_ != 0 && !got_table_) {
      what = "the rendezvous at " + endpoint_text(master_) + " did not send the table within " + limit +
             " (rank 0 is waiting for other ranks, or is stuck)";
    } else {
      std::vector<int> missing;
      for (int r = 0; r < size_; ++r)
        if (r != rank_ && peers_[std::size_t(r)]->state != Peer::State::open) missing.push_back(r);
      what = "the connections to " + list_ranks(missing) + " were not made within " + limit;
    }
    setup_failed(what, true);
  }

  static std::string list_ranks(const std::vector<int>& ranks) {
    std::string s = ranks.size() == 1 ? "rank " : "ranks ";
    for (std::size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
    return s;
  }

  // ------------------------------------------------------------ reading --

  // Issues the next read of a peer's stream, if none is pending.
  void read_more(Peer& p) {
    if (p.reading || p.state != Peer::State::open || p.eof) return;
    asio::mutable_buffer b;
    bool user = false;
    switch (p.mode) {
      case Peer::Mode::header:
        b = asio::buffer(p.head.data() + p.head_got, p.head.size() - p.head_got);
        break;
      case Peer::Mode::user:
        b = asio::buffer(p.target->in + p.got, p.target->bytes - p.got);
        user = true;
        break;
      case Peer::Mode::stash:
      case Peer::Mode::notice:
        b = asio::buffer(p.buf.data() + p.got, p.buf.size() - p.got);
        break;
      case Peer::Mode::discard:
        b = asio::buffer(discard_.data(), std::min<std::uint64_t>(discard_.size(), p.frame.length - p.got));
        break;
      case Peer::Mode::paused:
        return;
    }
    // Into a caller's buffer, the socket wakes this thread only when a good
    // piece has arrived (or the message's end), not for every segment.
    const int lowat = user ? static_cast<int>(std::min<std::uint64_t>(p.target->bytes - p.got, read_piece)) : 1;
    if (lowat != p.lowat) {
      if (setsockopt(p.sock.native_handle(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0) p.lowat = lowat;
    }
    p.reading = true;
    p.user_io += user;
    p.sock.async_read_some(b, [this, &p, user](boost::system::error_code ec, std::size_t n) {
      p.reading = false;
      p.user_io -= user;
      on_read(p, ec, n);
    });
  }

  void on_read(Peer& p, boost::system::error_code ec, std::size_t n) {
    if (p.state != Peer::State::open) return;
    if (ec == asio::error::operation_aborted) return read_more(p);  // cancelled to take a buffer back
    if (ec) return lost(p, ec);
    p.last_heard = clock::now();
    switch (p.mode) {
      case Peer::Mode::header:
        p.head_got += n;
        if (p.head_got == p.head.size()) {
          p.head_got = 0;
          if (auto problem = wire::decode(std::span<const std::byte, wire::header_size>(p.head), p.frame,
                                          options_.max_message))
            return violated(p, *problem);
          if (!on_header(p)) return;
        }
        break;
      case Peer::Mode::user:
        p.got += n;
        if (p.got == p.target->bytes) {
          TcpOp* op = std::exchange(p.target, nullptr);
          p.mode = Peer::Mode::header;
          complete(*op, TcpOp::Result::ok);
        }
        break;
      case Peer::Mode::stash:
        p.got += n;
        if (p.got == p.buf.size()) {
          p.stash.push_back({p.frame.tag, std::move(p.buf)});
          p.buf = {};
          p.mode = Peer::Mode::header;
          if (p.posted) deliver_from_stash(p);
        }
        break;
      case Peer::Mode::notice:
        p.got += n;
        if (p.got == p.buf.size()) {
          p.mode = Peer::Mode::header;
          std::uint32_t who = 0;
          std::string text;
          if (auto problem = wire::decode_notice(p.buf, std::uint32_t(size_), who, text))
            return violated(p, *problem);
          // Passed on: this rank's own connections may end before the
          // others hear of the cause, and they must blame the cause, not us.
          fail_transport(int(who), text, true);
        }
        break;
      case Peer::Mode::discard:
        p.got += n;
        if (p.got == p.frame.length) p.mode = Peer::Mode::header;
        break;
      case Peer::Mode::paused:
        break;
    }
    read_more(p);
  }

  // A frame header has arrived; returns false when the peer is gone.
  bool on_header(Peer& p) {
    p.got = 0;
    switch (p.frame.kind) {
      case wire::Kind::heartbeat:
        return true;
      case wire::Kind::bye:
        left(p);
        return false;
      case wire::Kind::notice:
        p.buf.resize(std::size_t(p.frame.length));  // at most wire::max_notice
        p.mode = Peer::Mode::notice;
        return true;
      case wire::Kind::data:
        place_frame(p);
        return true;
    }
    return true;
  }

  // Decides where the payload of p.frame goes.
  void place_frame(Peer& p) {
    if (p.closing) {
      p.mode = p.frame.length ? Peer::Mode::discard : Peer::Mode::header;
      return;
    }
    if (p.posted && p.posted->tag == p.frame.tag) {
      TcpOp* op = std::exchange(p.posted, nullptr);
      if (p.frame.length != op->bytes) {
        p.mode = p.frame.length ? Peer::Mode::discard : Peer::Mode::header;
        complete(*op, TcpOp::Result::mismatch, {}, p.frame.length);
      } else if (op->bytes == 0) {
        p.mode = Peer::Mode::header;
        complete(*op, TcpOp::Result::ok);
      } else {
        p.target = op;
        p.mode = Peer::Mode::user;
      }
      return;
    }
    const bool may_keep = stash_bytes_ + p.frame.length <= options_.max_unexpected;
    if (may_keep && (p.frame.length <= eager_limit || p.posted)) {
      // Small, or standing in the way of a receive that is posted: keep it.
      stash_bytes_ += std::size_t(p.frame.length);
      p.buf = take_buffer(std::size_t(p.frame.length));
      if (p.frame.length == 0) {
        p.stash.push_back({p.frame.tag, std::move(p.buf)});
        p.buf = {};
        p.mode = Peer::Mode::header;
      } else {
        p.mode = Peer::Mode::stash;
      }
      return;
    }
    p.mode = Peer::Mode::paused;  // waits in the socket for its receive
  }

  void deliver_from_stash(Peer& p) {
    TcpOp& op = *p.posted;
    const auto it = std::find_if(p.stash.begin(), p.stash.end(), [&](const Stashed& s) { return s.tag == op.tag; });
    if (it == p.stash.end()) return;
    p.posted = nullptr;
    const std::size_t n = it->data.size();
    if (n == op.bytes) {
      if (n) std::memcpy(op.in, it->data.data(), n);
      complete(op, TcpOp::Result::ok);
    } else {
      complete(op, TcpOp::Result::mismatch, {}, n);
    }
    stash_bytes_ -= n;
    give_buffer(std::move(it->data));
    p.stash.erase(it);
  }

  std::vector<std::byte> take_buffer(std::size_t n) {
    std::vector<std::byte> b;
    const auto it = std::find_if(pool_.begin(), pool_.end(), [&](const auto& v) { return v.capacity() >= n; });
    if (it != pool_.end()) {
      b = std::move(*it);
      pool_.erase(it);
    }
    b.resize(n);
    return b;
  }
  void give_buffer(std::vector<std::byte> b) {
    if (pool_.size() < 64) pool_.push_back(std::move(b));
  }

  void post_receive(TcpOp& op) {
    auto& p = *peers_[std::size_t(op.peer)];
    p.posted = &op;
    deliver_from_stash(p);
    if (p.posted && p.state != Peer::State::open) {
      p.posted = nullptr;
      return complete(op, TcpOp::Result::failed, gone_text(p));
    }
    if (p.posted && p.mode == Peer::Mode::paused) {
      place_frame(p);
      read_more(p);
    }
  }

  // ------------------------------------------------------------ writing --

  void post_send(TcpOp& op) {
    auto& p = *peers_[std::size_t(op.peer)];
    if (p.state != Peer::State::open) return complete(op, TcpOp::Result::failed, gone_text(p));
    Out& o = p.out.emplace_back();
    o.head = wire::encode(wire::Header{wire::Kind::data, op.tag, op.bytes});
    o.data = op.out;
    o.bytes = op.bytes;
    o.op = &op;
    write_more(p);
  }

  void queue_control(Peer& p, wire::Kind kind) {
    Out& o = p.out.emplace_back();
    o.head = wire::encode(wire::Header{kind, 0, 0});
    o.end = false;
    write_more(p);
    if (kind == wire::Kind::bye) queue_end(p);
  }

  void queue_end(Peer& p) {
    p.out.emplace_back().end = true;
    write_more(p);
  }

  void queue_notice(Peer& p, int who, const std::string& text) {
    Out& o = p.out.emplace_back();
    const std::string frame = wire::encode_notice(std::uint32_t(who), text);
    std::memcpy(o.head.data(), frame.data(), wire::header_size);
    o.owned.assign(reinterpret_cast<const std::byte*>(frame.data()) + wire::header_size,
                   reinterpret_cast<const std::byte*>(frame.data()) + frame.size());
    o.data = o.owned.data();
    o.bytes = o.owned.size();
    write_more(p);
  }

  void write_more(Peer& p) {
    if (p.writing || p.state != Peer::State::open || p.out.empty()) return;
    Out& o = p.out.front();
    if (o.end) {
      // Everything before it is written: no more frames from here; the
      // peer's stream is read until it closes.
      p.out.erase(p.out.begin());
      boost::system::error_code ec;
      p.sock.shutdown(tcp::socket::shutdown_send, ec);
      return;
    }
    std::array<asio::const_buffer, 2> b;
    if (p.sent < wire::header_size) {
      b = {asio::buffer(o.head.data() + p.sent, wire::header_size - p.sent), asio::buffer(o.data, o.bytes)};
    } else {
      const std::size_t off = p.sent - wire::header_size;
      b = {asio::buffer(o.data + off, o.bytes - off), asio::const_buffer()};
    }
    const bool user = o.op != nullptr;
    p.writing = true;
    p.user_io += user;
    // async_write_some, not async_write: the composed write hands the socket
    // at most 64 KiB a call, which made six times the system calls and
    // wake-ups of one write of all that is left (on_written goes on).
    p.sock.async_write_some(b, [this, &p, user](boost::system::error_code ec, std::size_t n) {
      p.writing = false;
      p.user_io -= user;
      on_written(p, ec, n);
    });
  }

  void on_written(Peer& p, boost::system::error_code ec, std::size_t n) {
    if (p.state != Peer::State::open) return;
    p.sent += n;
    if (ec == asio::error::operation_aborted) return write_more(p);
    if (ec) return lost(p, ec);
    Out& o = p.out.front();
    if (p.sent < wire::header_size + o.bytes) return write_more(p);
    p.sent = 0;
    TcpOp* op = o.op;
    p.out.erase(p.out.begin());
    if (op) complete(*op, TcpOp::Result::ok);
    write_more(p);
  }

  // ----------------------------------------------------------- failures --

  void complete(TcpOp& op, TcpOp::Result r, std::string what = {}, std::uint64_t peer_bytes = 0) {
    {
      std::lock_guard lk(mu_);
      op.result = r;
      op.what = std::move(what);
      op.peer_bytes = peer_bytes;
    }
    cv_.notify_all();
  }

  std::string gone_text(const Peer& p) const {
    if (p.state == Peer::State::left)
      return "rank " + std::to_string(p.rank) + " has closed its transport (left the job)";
    return "rank " + std::to_string(p.rank) + " is dead";
  }

  // Ends everything a peer's operations wait for. Messages it sent before a
  // goodbye stay receivable.
  void drop(Peer& p, const std::string& why, bool keep_stash = false) {
    boost::system::error_code ec;
    p.sock.close(ec);
    if (p.posted) complete(*std::exchange(p.posted, nullptr), TcpOp::Result::failed, why);
    if (p.target) complete(*std::exchange(p.target, nullptr), TcpOp::Result::failed, why);
    for (auto& o : p.out)
      if (o.op) complete(*o.op, TcpOp::Result::failed, why);
    p.out.clear();
    if (keep_stash) return;
    for (auto& s : p.stash) stash_bytes_ -= s.data.size();
    p.stash.clear();
    if (p.mode == Peer::Mode::stash) stash_bytes_ -= p.buf.size();
    p.buf = {};
  }

  // The connection ended or broke.
  void lost(Peer& p, boost::system::error_code ec) {
    if (p.closing) {
      // After our goodbye the peer closing is the expected end.
      p.eof = true;
      p.state = Peer::State::left;
      drop(p, gone_text(p));
      return closed_one();
    }
    p.state = Peer::State::dead;
    const std::string what = ec == asio::error::eof
                                 ? "its connection closed without a goodbye (the process ended or was killed)"
                                 : "its connection broke (" + ec.message() + ")";
    const std::string text = "rank " + std::to_string(p.rank) + " is dead: " + what + " (seen by rank " +
                             std::to_string(rank_) + ")";
    drop(p, text);
    fail_transport(p.rank, text, true);
  }

  void violated(Peer& p, const std::string& problem) {
    p.state = Peer::State::dead;
    const std::string text = "rank " + std::to_string(p.rank) + " broke the protocol: " + problem +
                             " (seen by rank " + std::to_string(rank_) + ")";
    drop(p, text);
    fail_transport(p.rank, text, true);
  }

  // The peer said goodbye. Operations that still needed it fail, and so does
  // the transport then: the ranks are out of step.
  void left(Peer& p) {
    p.state = Peer::State::left;
    const bool needed = p.posted || p.target || std::any_of(p.out.begin(), p.out.end(), [](const Out& o) { return o.op; });
    const std::string text = gone_text(p);
    drop(p, text, true);
    if (needed) fail_transport(p.rank, text + " while rank " + std::to_string(rank_) + " still needed it", true);
    if (stopping_) closed_one();
  }

  // Fails the transport for good: `who` failed, for the reason `text`. The
  // first failure sticks. With `tell`, every other open peer gets a notice.
  void fail_transport(int who, const std::string& text, bool tell) {
    {
      std::lock_guard lk(mu_);
      if (!failure_.record(who, std::string(failure_text(text)))) return;
    }
    cv_.notify_all();
    if (!tell) return;
    for (auto& q : peers_)
      if (q->state == Peer::State::open && q->rank != who && !q->closing) queue_notice(*q, who, text);
  }

  // The caller gives up on `ops` (its deadline passed, or the transport
  // failed): the socket thread lets go of their buffers (copying the rest of
  // a half-written send, so that the stream stays whole, and reading the rest
  // of a half-read receive into nothing) and answers once nothing touches the
  // caller's memory any more. On a timeout (`overdue`: the deadline that
  // passed) it says why, and fails the transport.
  struct Overdue {
    std::string text;  // the timeout's message
    int peer = -1;     // the peer of the first operation still pending
  };
  Overdue abandon(std::span<TcpOp* const> span, const Deadline* overdue) {
    auto answered = std::make_shared<bool>(false);
    auto why = std::make_shared<Overdue>();
    std::vector<TcpOp*> ops(span.begin(), span.end());
    const bool timed_out = overdue != nullptr;
    std::optional<Deadline> deadline;
    if (overdue) deadline = *overdue;
    asio::post(io_, [this, ops, timed_out, deadline, answered, why] {
      // Operations the caller handed over whose doorbell has not been
      // answered yet are taken first, so that they are let go of like the rest.
      take_submissions();
      std::vector<Peer*> touched;
      for (TcpOp* op : ops) {
        if (op->result != TcpOp::Result::pending) continue;
        auto& p = *peers_[std::size_t(op->peer)];
        if (timed_out && why->peer < 0) *why = {timeout_text(*op, p, *deadline), op->peer};
        if (op->receive) {
          if (p.posted == op) p.posted = nullptr;
          if (p.target == op) {
            p.target = nullptr;
            p.mode = Peer::Mode::discard;
          }
        } else {
          for (std::size_t i = 0; i < p.out.size(); ++i) {
            Out& o = p.out[i];
            if (o.op != op) continue;
            if (i == 0 && p.writing) {
              // Half written: the frame must go on whole, or the stream is
              // lost. It goes on from a copy; p.sent still counts from the
              // frame's start once the cancelled write has reported.
              o.owned.assign(o.data, o.data + o.bytes);
              o.data = o.owned.data();
              o.op = nullptr;
            } else {
              p.out.erase(p.out.begin() + std::ptrdiff_t(i));
            }
            break;
          }
        }
        touched.push_back(&p);
        complete(*op, TcpOp::Result::failed, "abandoned");
      }
      for (Peer* p : touched) {
        boost::system::error_code ec;
        if (p->user_io) p->sock.cancel(ec);
      }
      if (timed_out) fail_transport(rank_, why->text, true);
      answer_when_released(touched, answered);
    });
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, std::chrono::seconds(10), [&] { return *answered; });
    return *why;
  }

  void answer_when_released(std::vector<Peer*> touched, std::shared_ptr<bool> answered) {
    const bool busy = std::any_of(touched.begin(), touched.end(), [](const Peer* p) { return p->user_io > 0; });
    if (busy) {
      asio::post(io_, [this, touched, answered] { answer_when_released(touched, answered); });
      return;
    }
    {
      std::lock_guard lk(mu_);
      *answered = true;
    }
    cv_.notify_all();
  }

  std::string timeout_text(const TcpOp& op, const Peer& p, const Deadline& deadline) const {
    std::string s = (op.receive ? receive_text(op.peer) : send_text(op.peer)) + " " +
                    deadline.overdue_text();
    if (op.receive && p.mode == Peer::Mode::paused && p.frame.tag != op.tag)
      s += "; rank " + std::to_string(op.peer) + "'s next message has tag " + std::to_string(p.frame.tag) +
           " (expected " + std::to_string(op.tag) + ") and " + std::to_string(p.frame.length) +
           " bytes: the ranks are out of step";
    else if (op.receive)
      for (const auto& st : p.stash)
        if (st.tag != op.tag) {
          s += "; rank " + std::to_string(op.peer) + " sent a message with tag " + std::to_string(st.tag) +
               " (expected " + std::to_string(op.tag) + "): the ranks are out of step";
          break;
        }
    return s;
  }

  // ---------------------------------------------------------- heartbeat --

  void schedule_heartbeat() {
    heartbeat_.expires_after(std::max<clock::duration>(options_.peer_timeout / 5, std::chrono::milliseconds(1)));
    heartbeat_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      const auto now = clock::now();
      for (auto& q : peers_) {
        auto& p = *q;
        if (p.state != Peer::State::open || p.closing) continue;
        if (p.lowat > 1) {
          // Woken only per piece of a message: bytes that arrived below the
          // mark are signs of life too (a slow link is not a dead peer).
          int queued = 0;
          if (ioctl(p.sock.native_handle(), FIONREAD, &queued) == 0 && queued != p.queued_seen) {
            p.queued_seen = queued;
            p.last_heard = now;
          }
        }
        if (p.mode != Peer::Mode::paused && now - p.last_heard > options_.peer_timeout) {
          p.state = Peer::State::dead;
          const std::string text =
              "rank " + std::to_string(p.rank) + " is dead: it sent nothing, not even a heartbeat, for " +
              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - p.last_heard).count()) +
              " ms (it is stopped or cut off; seen by rank " + std::to_string(rank_) + ")";
          drop(p, text);
          fail_transport(p.rank, text, true);
          continue;
        }
        if (!p.writing && p.out.empty()) queue_control(p, wire::Kind::heartbeat);
      }
      schedule_heartbeat();
    });
  }

  // ----------------------------------------------------------- shutdown --

  // Says goodbye to every peer (unless the transport failed: the peers know),
  // waits up to a second for them to close, and stops the socket thread.
  void stop(bool goodbye) {
    if (!thread_.joinable()) return;
    asio::post(io_, [this, goodbye] {
      stopping_ = true;
      boost::system::error_code ec;
      listener_.close(ec);
      if (master_acceptor_) master_acceptor_->close(ec);
      heartbeat_.cancel();
      setup_deadline_.cancel();
      bool failed;
      {
        std::lock_guard lk(mu_);
        failed = failure_.failed();
      }
      for (auto& q : peers_) {
        auto& p = *q;
        if (p.state != Peer::State::open) continue;
        ++closing_;
        p.closing = true;
        if (p.mode == Peer::Mode::paused) p.mode = Peer::Mode::discard;
        if (goodbye && !failed) queue_control(p, wire::Kind::bye);
        else queue_end(p);  // after the notices still queued
      }
      if (closing_ == 0) return finish_stop();
      // A failed transport's peers are failing too: they close at once.
      auto grace = std::make_shared<asio::steady_timer>(
          io_, failed ? std::chrono::milliseconds(200) : std::chrono::milliseconds(1000));
      grace->async_wait([this, grace](boost::system::error_code) { finish_stop(); });
    });
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, std::chrono::seconds(3), [&] { return stopped_; });
    }
    io_.stop();
    thread_.join();
  }

  void closed_one() {
    if (--closing_ == 0) finish_stop();
  }

  void finish_stop() {
    boost::system::error_code ec;
    for (auto& q : peers_) q->sock.close(ec);
    {
      std::lock_guard lk(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
  }

  struct Registration {
    bool arrived = false;
    std::shared_ptr<tcp::socket> sock;
    wire::Address address;
    std::uint16_t port = 0;
  };

  const TcpOptions options_;
  const int rank_;
  const int size_;
  const std::uint64_t token_;

  asio::io_context io_;
  tcp::acceptor listener_;
  std::optional<tcp::acceptor> master_acceptor_;
  asio::steady_timer heartbeat_;
  asio::steady_timer setup_deadline_;
  asio::posix::stream_descriptor waker_;
  // Keeps run() going while nothing is pending (before start() is posted).
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::endpoint master_;
  tcp::endpoint me_;
  std::thread thread_;

  // Socket thread only.
  std::vector<std::unique_ptr<Peer>> peers_;
  std::vector<Registration> registered_;
  std::vector<tcp::endpoint> addresses_;
  int open_peers_ = 0;
  int handshakes_ = 0;
  int closing_ = 0;
  bool reached_master_ = false;
  bool got_table_ = false;
  bool waited_for_verdict_ = false;
  bool setup_sent_ = false;
  bool stopping_ = false;
  std::string last_setup_error_ = "none";
  std::size_t stash_bytes_ = 0;
  std::vector<std::vector<std::byte>> pool_;
  std::array<std::byte, 64 << 10> discard_{};
  std::atomic<std::size_t> refused_{0};

  // Shared with the calling thread.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::array<TcpOp*, 4> submitted_{};
  std::size_t submitted_count_ = 0;
  bool setup_done_ = false;
  std::exception_ptr setup_error_;
  bool stopped_ = false;
  StickyFailure failure_;  // the first failure; under mu_
};

}  // namespace detail

class TcpTransport {
 public:
  // Meets the other ranks (see the top of this file) and returns when this
  // rank is connected to all of them. Throws timeout_error naming the ranks
  // that did not arrive within rendezvous_timeout, or configuration_error.
  explicit TcpTransport(TcpOptions options) : core_(std::make_unique<detail::TcpCore>(std::move(options))) {}
  // From the DSSYNC_* environment variables (TcpOptions::from_env).
  TcpTransport() : TcpTransport(TcpOptions::from_env()) {}

  TcpTransport(TcpTransport&&) noexcept = default;
  TcpTransport& operator=(TcpTransport&&) noexcept = default;

  // Collectives send a block as one message (transport_segment_bytes): every
  // message is a hand-off to the socket thread and a wait, and cutting a
  // 2 MiB ring block into 256 KiB pieces made the 8-rank ring 1.3x slower.
  static constexpr std::size_t segment_bytes = SIZE_MAX;

  int rank() const noexcept { return core_->rank(); }
  int size() const noexcept { return core_->size(); }
  const TcpOptions& options() const noexcept { return core_->options(); }
  // Connections refused so far (strangers, wrong tokens, duplicate ranks).
  std::size_t refused_connections() const noexcept { return core_->refused(); }
  // The port this rank's peers connected to.
  std::uint16_t listen_port() const noexcept { return core_->listen_port(); }
  // Whether a peer died, a notice arrived, an operation timed out, or fail()
  // was called: then every operation throws peer_error.
  bool failed() const { return core_->failed(); }
  // Tells every other rank that this one failed for `reason`, and fails this
  // transport. For a program that catches an error of its own and cannot go on.
  void fail(std::string_view reason) { core_->fail(reason); }

  template <class T>
    requires element<std::remove_const_t<T>>
  void send(int dst, std::span<T> data, tag_t tag) {
    detail::check_send(rank(), size(), dst, tag);
    detail::TcpOp op = make(false, dst, tag, std::as_bytes(data));
    core_->run(&op, nullptr, where(dst, tag));
  }

  template <class T>
    requires element<T>
  void recv(int src, std::span<T> data, tag_t tag) {
    detail::check_recv(rank(), size(), src, tag);
    detail::TcpOp op = make_receive(src, tag, std::as_writable_bytes(data));
    core_->run(&op, nullptr, where(src, tag));
  }

  // Both directions at once. dst and src may both be this rank (a copy).
  template <class T, class U>
    requires element<std::remove_const_t<T>> && element<U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
    if (detail::check_sendrecv(rank(), size(), dst, src, tag))
      return detail::self_exchange(std::as_bytes(out), std::as_writable_bytes(in), rank(), tag);
    detail::TcpOp r = make_receive(src, tag, std::as_writable_bytes(in));
    detail::TcpOp s = make(false, dst, tag, std::as_bytes(out));
    core_->run(&r, &s, where(src, tag));
  }

 private:
  static detail::TcpOp make(bool receive, int peer, tag_t tag, std::span<const std::byte> out) {
    detail::TcpOp op;
    op.receive = receive;
    op.peer = peer;
    op.tag = static_cast<std::uint16_t>(tag);
    op.out = out.data();
    op.bytes = out.size();
    return op;
  }
  static detail::TcpOp make_receive(int peer, tag_t tag, std::span<std::byte> in) {
    detail::TcpOp op = make(true, peer, tag, {});
    op.in = in.data();
    op.bytes = in.size();
    return op;
  }
  error_context where(int peer, tag_t tag) const { return detail::p2p_context(rank(), peer, tag); }

  std::unique_ptr<detail::TcpCore> core_;
};

}  // namespace dssync

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
#include "dssync/transport/tcp/connection.hpp"
#include "dssync/transport/tcp/endpoint.hpp"
#include "dssync/transport/tcp/liveness.hpp"
#include "dssync/transport/tcp/op.hpp"
#include "dssync/transport/tcp/options.hpp"
#include "dssync/transport/tcp/tuning.hpp"
#include "dssync/transport/tcp/wire.hpp"

namespace dssync {

namespace detail {

// Everything the socket thread owns, and the little it shares with the
// calling thread (under mu). It does not move: handlers point into it.
class TcpCore final : ConnectionHost {
  using clock = std::chrono::steady_clock;

 public:
  explicit TcpCore(TcpOptions o)
      : options_(std::move(o)), rank_(options_.rank), size_(options_.world_size),
        token_(wire::token_hash(options_.job_token)), listener_(io_),
        setup_deadline_(io_), waker_(io_), work_(io_.get_executor()), budget_(options_.max_unexpected),
        liveness_(io_, peers_, *this, options_.peer_timeout, rank_) {
    if (size_ < 1) throw configuration_error("the world size must be at least 1");
    if (rank_ < 0 || rank_ >= size_)
      throw configuration_error("rank " + std::to_string(rank_) + " is outside a world of " +
                                std::to_string(size_) + " ranks");
    if (options_.peer_timeout.count() <= 0)
      throw configuration_error("peer_timeout must be positive", where());
    peers_.reserve(std::size_t(size_));
    const ConnectionContext context{*this, budget_, options_, rank_, size_};
    for (int r = 0; r < size_; ++r) peers_.push_back(std::make_unique<Connection>(io_, r, context));
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
    cv_.wait_for(lk, tcp_tuning::fail_wait, [&] { return failure_.failed(); });
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
    for (std::size_t i = 0; i < n; ++i) {
      Connection& c = *peers_[std::size_t(ops[i]->peer)];
      ops[i]->receive ? c.post_receive(*ops[i]) : c.post_send(*ops[i]);
    }
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
        auto retry = std::make_shared<asio::steady_timer>(io_, tcp_tuning::master_retry);
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
                         wire::Address a;
                         std::uint16_t port = 0;
                         if (auto e = wire::decode(std::span<const std::byte, wire::entry_size>(table->data() + std::size_t(r) * wire::entry_size, wire::entry_size), a, port))
                           return setup_failed("the rendezvous sent a bad table: " + *e);
                         addresses_.emplace_back(from_wire(a), port);
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
    if (handshakes_ >= tcp_tuning::max_handshakes) return refuse_silently(*sock, from, "too many connections in their handshake");
    ++handshakes_;
    sock->set_option(tcp::no_delay(true), ec);
    auto hello = std::make_shared<std::array<std::byte, wire::hello_size>>();
    auto timer = std::make_shared<asio::steady_timer>(
        io_, std::min<clock::duration>(tcp_tuning::greeting_time, options_.rendezvous_timeout));
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
        return !peers_[r]->vacant();
      };
      if (auto p = wire::admit(h, a, taken)) return refuse(sock, from, *p);
      if (purpose == wire::Purpose::rendezvous) return register_rank(sock, h, remote_address(*sock));
      auto reply = std::make_shared<std::array<std::byte, wire::reply_size>>(
          wire::encode(wire::Reply{wire::Status::accepted, token_}));
      const int r = int(h.rank);
      peers_[std::size_t(r)]->claim(true);
      asio::async_write(*sock, asio::buffer(*reply), [this, sock, reply, r](boost::system::error_code e2, std::size_t) {
        peers_[std::size_t(r)]->claim(false);
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
    peers_[std::size_t(r)]->open(std::move(s));
    ++open_peers_;
    maybe_complete();
  }

  void maybe_complete() {
    if (setup_over()) return;
    if (open_peers_ == size_ - 1 && (rank_ == 0 || got_table_)) setup_complete();
  }

  void setup_complete() {
    setup_deadline_.cancel();
    liveness_.start();
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
      setup_deadline_.expires_after(tcp_tuning::verdict_wait);
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
        if (r != rank_ && !peers_[std::size_t(r)]->is_open()) missing.push_back(r);
      what = "the connections to " + list_ranks(missing) + " were not made within " + limit;
    }
    setup_failed(what, true);
  }

  static std::string list_ranks(const std::vector<int>& ranks) {
    std::string s = ranks.size() == 1 ? "rank " : "ranks ";
    for (std::size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
    return s;
  }

  // ----------------------------------------------------------- failures --

  // ConnectionHost
  void complete(TcpOp& op, TcpOp::Result r, std::string what = {},
                std::uint64_t peer_bytes = 0) override {
    {
      std::lock_guard lk(mu_);
      op.result = r;
      op.what = std::move(what);
      op.peer_bytes = peer_bytes;
    }
    cv_.notify_all();
  }

  void fail_transport(int who, const std::string& text) override {
    fail_transport(who, text, true);
  }
  void closed_one() override {
    if (--closing_ == 0) finish_stop();
  }
  bool stopping() const override { return stopping_; }

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
      if (q->is_open() && q->rank() != who && !q->closing()) q->queue_notice(who, text);
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
      std::vector<Connection*> touched;
      for (TcpOp* op : ops) {
        if (op->result != TcpOp::Result::pending) continue;
        Connection& c = *peers_[std::size_t(op->peer)];
        if (timed_out && why->peer < 0) *why = {c.timeout_text(*op, *deadline), op->peer};
        c.let_go(*op);
        touched.push_back(&c);
        complete(*op, TcpOp::Result::failed, "abandoned");
      }
      for (Connection* c : touched) c->cancel_caller_io();
      if (timed_out) fail_transport(rank_, why->text, true);
      answer_when_released(touched, answered);
    });
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, tcp_tuning::abandon_bound, [&] { return *answered; });
    return *why;
  }

  void answer_when_released(std::vector<Connection*> touched, std::shared_ptr<bool> answered) {
    const bool busy = std::any_of(touched.begin(), touched.end(),
                                  [](const Connection* c) { return c->on_caller_memory(); });
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
      liveness_.stop();
      setup_deadline_.cancel();
      bool failed;
      {
        std::lock_guard lk(mu_);
        failed = failure_.failed();
      }
      for (auto& q : peers_) {
        if (!q->is_open()) continue;
        ++closing_;
        q->begin_close(goodbye && !failed);  // without a goodbye: after the notices still queued
      }
      if (closing_ == 0) return finish_stop();
      // A failed transport's peers are failing too: they close at once.
      auto grace = std::make_shared<asio::steady_timer>(
          io_, failed ? tcp_tuning::failed_grace : tcp_tuning::goodbye_grace);
      grace->async_wait([this, grace](boost::system::error_code) { finish_stop(); });
    });
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, tcp_tuning::stop_bound, [&] { return stopped_; });
    }
    io_.stop();
    thread_.join();
  }

  void finish_stop() {
    boost::system::error_code ec;
    for (auto& q : peers_) q->close_socket();
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
  asio::steady_timer setup_deadline_;
  asio::posix::stream_descriptor waker_;
  // Keeps run() going while nothing is pending (before start() is posted).
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::endpoint master_;
  tcp::endpoint me_;
  std::thread thread_;

  // Socket thread only.
  std::vector<std::unique_ptr<Connection>> peers_;
  StashBudget budget_;
  Liveness liveness_;
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
  // message is a hand-off to the socket thread and a wait (docs/benchmarks.md:
  // TCP segments).
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
    auto op = detail::TcpOp::send_of(dst, tag, std::as_bytes(data));
    core_->run(&op, nullptr, where(dst, tag));
  }

  template <class T>
    requires element<T>
  void recv(int src, std::span<T> data, tag_t tag) {
    detail::check_recv(rank(), size(), src, tag);
    auto op = detail::TcpOp::receive_into(src, tag, std::as_writable_bytes(data));
    core_->run(&op, nullptr, where(src, tag));
  }

  // Both directions at once. dst and src may both be this rank (a copy).
  template <class T, class U>
    requires element<std::remove_const_t<T>> && element<U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
    if (detail::check_sendrecv(rank(), size(), dst, src, tag))
      return detail::self_exchange(std::as_bytes(out), std::as_writable_bytes(in), rank(), tag);
    auto r = detail::TcpOp::receive_into(src, tag, std::as_writable_bytes(in));
    auto s = detail::TcpOp::send_of(dst, tag, std::as_bytes(out));
    core_->run(&r, &s, where(src, tag));
  }

 private:
  error_context where(int peer, tag_t tag) const { return detail::p2p_context(rank(), peer, tag); }

  std::unique_ptr<detail::TcpCore> core_;
};

}  // namespace dssync

#pragma once
// Rendezvous: how the ranks of a job find each other, the way
// torch.distributed's env:// does it. Rank 0 serves a rendezvous on the
// master port; every rank listens on a port of its own, registers it there,
// and receives everyone's address (the table). Then the ranks connect a full
// mesh, eagerly: rank i connects to every rank below it, so that a job that
// cannot connect fails at start-up, and two ranks never race to open the same
// connection.
//
// The steps, in order, on a rank other than 0:
//   connect_to_master -> send_registration -> read_answer -> read_table
//   -> connect_to_peer (each lower rank) -> read_answer -> open_peer
// and on rank 0: start -> register_rank (each rank) -> send_table; the
// Gatekeeper admits the mesh connections of the higher ranks (open_peer).
// The set-up is complete when all n - 1 connections are open; it fails,
// naming who is missing, at rendezvous_timeout.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "dssync/core/error.hpp"
#include "dssync/transport/tcp/admission.hpp"
#include "dssync/transport/tcp/connection.hpp"
#include "dssync/transport/tcp/endpoint.hpp"
#include "dssync/transport/tcp/options.hpp"
#include "dssync/transport/tcp/tuning.hpp"
#include "dssync/transport/tcp/wire.hpp"

namespace dssync::detail {

// Where the set-up stands, on the socket thread.
enum class SetupPhase {
  reaching_master,   // not rank 0: connecting to the rendezvous
  registering,       // not rank 0: registered, waiting for the table
  awaiting_verdict,  // not rank 0: past the deadline; rank 0 may still say who is missing
  gathering,         // rank 0: waiting for every rank to register
  connecting,        // the table is out: the mesh is being connected
  done,
};

// What the rendezvous reports to the transport.
class RendezvousHost {
 public:
  virtual bool stopping() const = 0;
  virtual void setup_complete() = 0;
  virtual void setup_failed(std::exception_ptr e) = 0;

 protected:
  ~RendezvousHost() = default;
};

class Rendezvous {
 public:
  Rendezvous(asio::io_context& io, const TcpOptions& options, std::uint64_t token,
             std::vector<std::unique_ptr<Connection>>& connections, Gatekeeper& gatekeeper,
             RendezvousHost& host)
      : io_(io),
        options_(options),
        rank_(options.rank),
        size_(options.world_size),
        token_(token),
        connections_(connections),
        gatekeeper_(gatekeeper),
        host_(host),
        listener_(io),
        deadline_(io),
        phase_(rank_ == 0 ? SetupPhase::gathering : SetupPhase::reaching_master) {}

  // On the calling thread, before the socket thread starts: rank 0's
  // rendezvous port is bound here, so that a port in use is an error of the
  // transport's constructor, said plainly.
  void resolve_master() {
    master_ = resolve(options_.master_addr, options_.master_port, "the master address");
  }
  void bind_master() {
    if (rank_ == 0) open_master();
  }

  std::uint16_t listen_port() const noexcept { return me_.port(); }

  void start() {
    // Zero: no deadline, as for every timeout of the transports.
    if (options_.rendezvous_timeout.count() > 0) {
      deadline_.expires_after(options_.rendezvous_timeout);
      deadline_.async_wait([this](boost::system::error_code ec) {
        if (!ec) timed_out();
      });
    }
    if (rank_ == 0) {
      if (const auto e = open_listener(master_.address()); !e.empty()) return fail(e);
      auto& self = registered_[0];
      self.arrived = true;
      self.address = to_wire(me_.address());
      self.port = me_.port();
      gatekeeper_.accept(*master_acceptor_, wire::Purpose::rendezvous);
      gatekeeper_.accept(listener_, wire::Purpose::mesh);
      if (size_ == 1) complete();
      return;
    }
    connect_to_master();
  }

  // The transport stops: no more connections, no more deadline.
  void close() {
    boost::system::error_code ec;
    listener_.close(ec);
    if (master_acceptor_) master_acceptor_->close(ec);
    deadline_.cancel();
  }

  // Rank 0: whether a rendezvous hello from `rank` is one too many.
  bool registration_taken(std::uint32_t rank) const {
    return phase_ != SetupPhase::gathering || registered_[rank].arrived;
  }

  // Rank 0: a rank has registered; once all have, each gets the table.
  void register_rank(std::shared_ptr<tcp::socket> sock, const wire::Hello& h,
                     const asio::ip::address& seen) {
    auto& reg = registered_[h.rank];
    reg.arrived = true;
    reg.sock = sock;
    reg.address = h.address.family ? h.address : to_wire(seen);
    reg.port = h.port;
    if (std::all_of(registered_.begin(), registered_.end(),
                    [](const Registration& x) { return x.arrived; }))
      send_table();
  }

  // A connection to `r` is admitted (either side).
  void open_peer(int r, tcp::socket s) {
    connections_[std::size_t(r)]->open(std::move(s));
    ++open_peers_;
    maybe_complete();
  }

 private:
  struct Registration {
    bool arrived = false;
    std::shared_ptr<tcp::socket> sock;
    wire::Address address;
    std::uint16_t port = 0;
  };

  error_context where() const { return error_context{}.with_rank(rank_); }

  tcp::endpoint resolve(const std::string& host, std::uint16_t port, const char* what) {
    boost::system::error_code ec;
    tcp::resolver resolver(io_);
    const auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty())
      throw configuration_error(
          std::string("cannot resolve ") + what + " \"" + host + "\": " + ec.message(), where());
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
      throw configuration_error(
          "cannot serve the rendezvous on " + endpoint_text(master_) + ": " + ec.message(),
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

  // ------------------------------------------------- a rank other than 0 --

  void connect_to_master() {
    auto sock = std::make_shared<tcp::socket>(io_);
    sock->async_connect(master_, [this, sock](boost::system::error_code ec) {
      if (over()) return;
      if (ec) {
        // Rank 0 may not listen yet: try again shortly, until the deadline.
        last_error_ = ec.message();
        auto retry = std::make_shared<asio::steady_timer>(io_, tcp_tuning::master_retry);
        retry->async_wait([this, retry](boost::system::error_code e) {
          if (!e && !over()) connect_to_master();
        });
        return;
      }
      phase_ = SetupPhase::registering;
      send_registration(sock);
    });
  }

  // Listens on the address that reached the master, and registers it.
  void send_registration(std::shared_ptr<tcp::socket> sock) {
    boost::system::error_code ec;
    sock->set_option(tcp::no_delay(true), ec);
    const auto local = sock->local_endpoint(ec);
    if (ec) return fail("the connection to the rendezvous broke: " + ec.message());
    if (const auto e = open_listener(local.address()); !e.empty()) return fail(e);
    gatekeeper_.accept(listener_, wire::Purpose::mesh);
    auto hello = std::make_shared<std::array<std::byte, wire::hello_size>>(
        wire::encode(hello_for(wire::Purpose::rendezvous)));
    asio::async_write(*sock, asio::buffer(*hello),
                      [this, sock, hello](boost::system::error_code e, std::size_t) {
                        if (over()) return;
                        if (e) return fail("the rendezvous closed the connection: " + e.message());
                        read_answer(sock, "the rendezvous at " + endpoint_text(master_),
                                    [this, sock] { read_table(sock); });
                      });
  }

  wire::Hello hello_for(wire::Purpose purpose) const {
    return wire::Hello{purpose,
                       token_,
                       std::uint32_t(size_),
                       std::uint32_t(rank_),
                       me_.port(),
                       to_wire(me_.address()),
                       std::uint8_t(options_.channels)};
  }

  // Reads a reply head; on acceptance calls `next`, on refusal reads the
  // reason and fails the set-up with it.
  template <class Next>
  void read_answer(std::shared_ptr<tcp::socket> sock, std::string who, Next next) {
    auto head = std::make_shared<std::array<std::byte, wire::reply_size + 2>>();
    asio::async_read(
        *sock, asio::buffer(head->data(), wire::reply_size),
        [this, sock, head, who, next](boost::system::error_code ec, std::size_t) {
          if (over()) return;
          if (ec) return fail(who + " closed the connection without an answer: " + ec.message());
          wire::Reply r;
          if (auto p = wire::decode(
                  std::span<const std::byte, wire::reply_size>(head->data(), wire::reply_size), r))
            return fail(who + " answered: " + *p);
          if (r.status == wire::Status::accepted) {
            if (r.token != token_) return fail(who + " belongs to another job (its token differs)");
            return next();
          }
          read_refusal(sock, head, who, r);
        });
  }

  void read_refusal(std::shared_ptr<tcp::socket> sock,
                    std::shared_ptr<std::array<std::byte, wire::reply_size + 2>> head,
                    std::string who, wire::Reply r) {
    asio::async_read(
        *sock, asio::buffer(head->data() + wire::reply_size, 2),
        [this, sock, head, who, r](boost::system::error_code e, std::size_t) {
          if (over()) return;
          std::size_t n = 0;
          if (e || wire::decode_text_length(
                       std::span<const std::byte, 2>(head->data() + wire::reply_size, 2), n))
            return fail(who + " refused this rank");
          auto text = std::make_shared<std::string>(n, '\0');
          asio::async_read(
              *sock, asio::buffer(*text),
              [this, sock, text, who, r](boost::system::error_code e2, std::size_t) {
                if (over()) return;
                const std::string msg =
                    who +
                    (r.status == wire::Status::refused ? " refused this rank: " : " failed: ") +
                    (e2 ? std::string("(no reason given)") : *text);
                if (r.status == wire::Status::failed) return fail(msg, true);
                fail(msg);
              });
        });
  }

  void read_table(std::shared_ptr<tcp::socket> sock) {
    auto table = std::make_shared<std::vector<std::byte>>(std::size_t(size_) * wire::entry_size);
    asio::async_read(
        *sock, asio::buffer(*table),
        [this, sock, table](boost::system::error_code ec, std::size_t) {
          if (over()) return;
          if (ec) return fail("the rendezvous closed before sending the table: " + ec.message());
          for (int r = 0; r < size_; ++r) {
            wire::Address a;
            std::uint16_t port = 0;
            const std::span<const std::byte, wire::entry_size> entry(
                table->data() + std::size_t(r) * wire::entry_size, wire::entry_size);
            if (auto e = wire::decode(entry, a, port))
              return fail("the rendezvous sent a bad table: " + *e);
            addresses_.emplace_back(from_wire(a), port);
          }
          phase_ = SetupPhase::connecting;
          for (int r = 0; r < rank_; ++r) connect_to_peer(r);
          maybe_complete();
        });
  }

  void connect_to_peer(int r) {
    auto sock = std::make_shared<tcp::socket>(io_);
    const tcp::endpoint e = addresses_[std::size_t(r)];
    sock->async_connect(e, [this, sock, r, e](boost::system::error_code ec) {
      if (over()) return;
      if (ec)
        return fail("cannot connect to rank " + std::to_string(r) + " at " + endpoint_text(e) +
                    ": " + ec.message());
      sock->set_option(tcp::no_delay(true), ec);
      auto hello = std::make_shared<std::array<std::byte, wire::hello_size>>(
          wire::encode(hello_for(wire::Purpose::mesh)));
      asio::async_write(
          *sock, asio::buffer(*hello),
          [this, sock, hello, r](boost::system::error_code e2, std::size_t) {
            if (over()) return;
            if (e2)
              return fail("rank " + std::to_string(r) + " closed the connection: " + e2.message());
            read_answer(sock, "rank " + std::to_string(r),
                        [this, sock, r] { open_peer(r, std::move(*sock)); });
          });
    });
  }

  // ------------------------------------------------------------- rank 0 --

  void send_table() {
    phase_ = SetupPhase::connecting;
    auto msg = std::make_shared<std::vector<std::byte>>(wire::reply_size +
                                                        std::size_t(size_) * wire::entry_size);
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

  // ------------------------------------------------------------ the end --

  bool over() const { return phase_ == SetupPhase::done || error_ || host_.stopping(); }

  void maybe_complete() {
    if (over()) return;
    if (open_peers_ == size_ - 1 && (rank_ == 0 || phase_ == SetupPhase::connecting)) complete();
  }

  void complete() {
    deadline_.cancel();
    phase_ = SetupPhase::done;
    host_.setup_complete();
  }

  void fail(const std::string& what, bool timeout = false) {
    if (over()) return;
    error_ = timeout ? std::make_exception_ptr(timeout_error(what, where()))
                     : std::make_exception_ptr(configuration_error(what, where()));
    host_.setup_failed(error_);
  }

  void timed_out() {
    if (over()) return;
    const std::string limit = std::to_string(options_.rendezvous_timeout.count()) + " ms";
    std::string what;
    switch (phase_) {
      case SetupPhase::gathering: {
        std::vector<int> missing;
        for (int r = 1; r < size_; ++r)
          if (!registered_[std::size_t(r)].arrived) missing.push_back(r);
        what = "the rendezvous on " + endpoint_text(master_) + " did not complete within " + limit +
               ": " + list_ranks(missing) + " never arrived";
        for (auto& reg : registered_)
          if (reg.sock)
            send_text_and_close(std::move(reg.sock), wire::Status::failed, token_, what);
        break;
      }
      case SetupPhase::reaching_master:
        what = "could not reach the rendezvous at " + endpoint_text(master_) + " within " + limit +
               " (last error: " + last_error_ + ")";
        break;
      case SetupPhase::registering:
        // Rank 0 knows who is missing and says so to everyone registered:
        // give its answer a little longer to arrive.
        phase_ = SetupPhase::awaiting_verdict;
        deadline_.expires_after(tcp_tuning::verdict_wait);
        deadline_.async_wait([this](boost::system::error_code ec) {
          if (!ec) timed_out();
        });
        return;
      case SetupPhase::awaiting_verdict:
        what = "the rendezvous at " + endpoint_text(master_) + " did not send the table within " +
               limit + " (rank 0 is waiting for other ranks, or is stuck)";
        break;
      case SetupPhase::connecting:
      case SetupPhase::done: {
        std::vector<int> missing;
        for (int r = 0; r < size_; ++r)
          if (r != rank_ && !connections_[std::size_t(r)]->is_open()) missing.push_back(r);
        what = "the connections to " + list_ranks(missing) + " were not made within " + limit;
        break;
      }
    }
    fail(what, true);
  }

  static std::string list_ranks(const std::vector<int>& ranks) {
    std::string s = ranks.size() == 1 ? "rank " : "ranks ";
    for (std::size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
    return s;
  }

  asio::io_context& io_;
  const TcpOptions& options_;
  const int rank_;
  const int size_;
  const std::uint64_t token_;
  std::vector<std::unique_ptr<Connection>>& connections_;
  Gatekeeper& gatekeeper_;
  RendezvousHost& host_;

  tcp::acceptor listener_;  // this rank's port for its peers, open for the transport's life
  std::optional<tcp::acceptor> master_acceptor_;  // rank 0
  asio::steady_timer deadline_;
  tcp::endpoint master_;
  tcp::endpoint me_;
  SetupPhase phase_;
  std::exception_ptr error_;  // the set-up failed
  std::string last_error_ = "none";
  std::vector<Registration> registered_;  // rank 0
  std::vector<tcp::endpoint> addresses_;  // the table
  int open_peers_ = 0;
};

}  // namespace dssync::detail

#pragma once
// Gatekeeper: what happens to a connection someone opened to this rank. It
// must send a hello within a few seconds; a stranger (wrong magic number,
// wrong job token, a rank outside the world or one already connected) is
// refused with a reason, closed and logged, and the job goes on.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "dssync/transport/tcp/endpoint.hpp"
#include "dssync/transport/tcp/options.hpp"
#include "dssync/transport/tcp/tuning.hpp"
#include "dssync/transport/tcp/wire.hpp"

namespace dssync::detail {

// Writes a reply head and a text, then closes: a refusal, or rank 0's
// verdict on a rendezvous that failed.
inline void send_text_and_close(std::shared_ptr<tcp::socket> sock, wire::Status status,
                                std::uint64_t token, const std::string& text) {
  auto msg = std::make_shared<std::string>();
  const auto head = wire::encode(wire::Reply{status, token});
  msg->assign(reinterpret_cast<const char*>(head.data()), head.size());
  *msg += wire::encode_text(text);
  asio::async_write(*sock, asio::buffer(*msg), [sock, msg](boost::system::error_code, std::size_t) {
    boost::system::error_code ec;
    sock->close(ec);
  });
}

// Where the admitted connections go.
class GatekeeperHost {
 public:
  virtual bool stopping() const = 0;
  // Whether `rank` has arrived already (or may not any more) for `purpose`.
  virtual bool taken(wire::Purpose purpose, std::uint32_t rank) const = 0;
  // Rank 0: a rank's rendezvous hello passed the checks.
  virtual void register_rank(std::shared_ptr<tcp::socket> sock, const wire::Hello& h,
                             const asio::ip::address& seen) = 0;
  // A rank's connection is in its handshake (claimed), or no longer is.
  virtual void claim(int rank, bool claimed) = 0;
  // A rank's connection is admitted and answered.
  virtual void open_peer(int rank, tcp::socket s) = 0;

 protected:
  ~GatekeeperHost() = default;
};

class Gatekeeper {
  using clock = std::chrono::steady_clock;

 public:
  Gatekeeper(asio::io_context& io, const TcpOptions& options, std::uint64_t token,
             GatekeeperHost& host)
      : io_(io), options_(options), token_(token), host_(host) {}

  // Connections refused so far.
  std::size_t refused() const noexcept { return refused_.load(); }

  // Accepts connections for as long as the transport lives: during set-up
  // they are ranks (or strangers); afterwards only strangers.
  void accept(tcp::acceptor& acceptor, wire::Purpose purpose) {
    acceptor.async_accept([this, &acceptor, purpose](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || host_.stopping()) return;
      if (!ec) greet(std::make_shared<tcp::socket>(std::move(s)), purpose);
      accept(acceptor, purpose);
    });
  }

 private:
  // Reads the hello of an accepted connection, within the greeting time, and
  // admits or refuses it.
  void greet(std::shared_ptr<tcp::socket> sock, wire::Purpose purpose) {
    boost::system::error_code ec;
    const auto remote = sock->remote_endpoint(ec);
    const std::string from = ec ? std::string("an unknown address") : endpoint_text(remote);
    if (handshakes_ >= tcp_tuning::max_handshakes)
      return refuse_silently(*sock, from, "too many connections in their handshake");
    ++handshakes_;
    sock->set_option(tcp::no_delay(true), ec);
    auto hello = std::make_shared<std::array<std::byte, wire::hello_size>>();
    const bool bounded = options_.rendezvous_timeout.count() > 0;  // zero: no deadline
    auto timer = std::make_shared<asio::steady_timer>(
        io_, bounded
                 ? std::min<clock::duration>(tcp_tuning::greeting_time, options_.rendezvous_timeout)
                 : clock::duration(tcp_tuning::greeting_time));
    auto finished = std::make_shared<bool>(false);
    timer->async_wait([this, sock, from, finished](boost::system::error_code e) {
      if (e || *finished) return;
      *finished = true;
      --handshakes_;
      refuse_silently(*sock, from, "no hello within the handshake time");
    });
    asio::async_read(
        *sock, asio::buffer(*hello), [=, this](boost::system::error_code e, std::size_t) {
          if (*finished) return;
          *finished = true;
          --handshakes_;
          timer->cancel();
          if (e) return refuse_silently(*sock, from, "closed before its hello was complete");
          on_hello(sock, from, purpose, *hello);
        });
  }

  void on_hello(std::shared_ptr<tcp::socket> sock, const std::string& from, wire::Purpose purpose,
                const std::array<std::byte, wire::hello_size>& bytes) {
    wire::Hello h;
    if (auto p = wire::decode(std::span<const std::byte, wire::hello_size>(bytes), h))
      return refuse(sock, from, *p);
    wire::Admission a{token_, std::uint32_t(options_.world_size), purpose,
                      purpose == wire::Purpose::rendezvous ? 1u : std::uint32_t(options_.rank + 1),
                      std::uint8_t(options_.channels)};
    auto taken = [&](std::uint32_t r) { return host_.taken(purpose, r); };
    if (auto p = wire::admit(h, a, taken)) return refuse(sock, from, *p);
    if (purpose == wire::Purpose::rendezvous)
      return host_.register_rank(sock, h, remote_address(*sock));
    auto reply = std::make_shared<std::array<std::byte, wire::reply_size>>(
        wire::encode(wire::Reply{wire::Status::accepted, token_}));
    const int r = int(h.rank);
    host_.claim(r, true);
    asio::async_write(*sock, asio::buffer(*reply),
                      [this, sock, reply, r](boost::system::error_code e, std::size_t) {
                        host_.claim(r, false);
                        if (!e && !host_.stopping()) host_.open_peer(r, std::move(*sock));
                      });
  }

  void note_refusal(const std::string& from, const std::string& why) {
    ++refused_;
    const std::string line = "dssync: tcp rank " + std::to_string(options_.rank) +
                             " refused a connection from " + from + ": " + why;
    if (options_.log)
      options_.log(line);
    else
      std::fprintf(stderr, "%s\n", line.c_str());
  }

  void refuse_silently(tcp::socket& s, const std::string& from, const std::string& why) {
    note_refusal(from, why);
    boost::system::error_code ec;
    s.close(ec);
  }

  void refuse(std::shared_ptr<tcp::socket> sock, const std::string& from, const std::string& why) {
    note_refusal(from, why);
    send_text_and_close(sock, wire::Status::refused, token_, why);
  }

  asio::io_context& io_;
  const TcpOptions& options_;
  const std::uint64_t token_;
  GatekeeperHost& host_;
  int handshakes_ = 0;
  std::atomic<std::size_t> refused_{0};
};

}  // namespace dssync::detail

#pragma once
// TcpOptions: how a TcpTransport starts and what it tolerates (transport/tcp.hpp says
// what it does with them): the rendezvous, the timeouts that end every wait,
// the bounds on what a peer may send, and the socket settings; from code or
// from the DSSYNC_* environment variables.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>

#include "dssync/core/error.hpp"
#include "dssync/transport/contract.hpp"

namespace dssync {

struct TcpOptions {
  int rank = -1;
  int world_size = 0;
  std::string master_addr = "127.0.0.1";
  std::uint16_t master_port = 0;
  std::string job_token;
  // Where this rank listens for its peers: empty means the address it reaches
  // the master from (rank 0: the master address); port 0 picks a free one.
  std::string listen_addr;
  std::uint16_t listen_port = 0;
  // How long one operation may take from its start (zero: forever; a dead
  // peer still ends the wait).
  std::chrono::milliseconds timeout = default_timeout;
  // A peer that sends nothing for this long is dead. Idle connections carry a
  // heartbeat every peer_timeout / 5.
  std::chrono::milliseconds peer_timeout = std::chrono::seconds(10);
  // How long the constructor may take to meet every rank (zero: no deadline).
  std::chrono::milliseconds rendezvous_timeout = std::chrono::seconds(60);
  // The largest message a peer may announce; a frame claiming more is a
  // protocol violation.
  std::uint64_t max_message = std::uint64_t{1} << 40;
  // At most this many bytes of messages that arrived before their receive are
  // held in memory; beyond it they wait in the socket.
  std::size_t max_unexpected = std::size_t{64} << 20;
  // Beyond max_unexpected, at most this many bytes are held of messages read
  // out of the way of a receive posted on another channel (left in the
  // socket, such a message could stall that receive for good: docs/design.md,
  // "Channels share one connection per pair"). A message that would pass it
  // fails the transport, naming its sender, channel and tag: the program
  // sends that much on one channel before it receives there. 0: no bound.
  std::size_t max_read_aside = std::size_t{1} << 30;
  // SO_SNDBUF and SO_RCVBUF of every connection between ranks; 0 leaves the
  // kernel's autotuning.
  std::size_t socket_buffer = 0;
  // At most about this many bytes of a connection's sends wait in the kernel
  // unsent (TCP_NOTSENT_LOWAT); 0 (the default) leaves the kernel's own
  // limit, as much as the send buffer holds (megabytes). A send is done when
  // its last byte is in the kernel, so without a limit the next message, to
  // another peer, starts while megabytes of this one still wait for a slow
  // link, and the two share it: the message a peer waits for arrives late.
  // Worth setting on slow links, not on loopback, where it costs wake-ups
  // (docs/benchmarks.md, "TCP unsent limit").
  std::size_t unsent_limit = 0;
  // How many channels the transport has (1..255; TcpTransport::channel(c),
  // transport/background.hpp): independent streams of messages between the
  // same ranks, one per execution context of a rank, over the same
  // connections. Every rank of a job must have the same count: a rank with
  // another is refused at its hello.
  int channels = 2;
  // Where refused connections are reported; empty: one line on stderr.
  std::function<void(const std::string&)> log;

  // The options from the environment: DSSYNC_RANK, DSSYNC_WORLD_SIZE,
  // DSSYNC_MASTER_PORT (required), DSSYNC_MASTER_ADDR (default 127.0.0.1),
  // DSSYNC_JOB_TOKEN (default empty), and optionally DSSYNC_TIMEOUT_MS,
  // DSSYNC_PEER_TIMEOUT_MS, DSSYNC_RENDEZVOUS_TIMEOUT_MS, DSSYNC_SOCKET_BUFFER
  // and DSSYNC_UNSENT_LIMIT (bytes), DSSYNC_CHANNELS. Throws configuration_error naming a
  // variable that is missing or malformed.
  static TcpOptions from_env() {
    TcpOptions o;
    o.rank = static_cast<int>(env_number("DSSYNC_RANK", true, 0, 1 << 30));
    o.world_size = static_cast<int>(env_number("DSSYNC_WORLD_SIZE", true, 1, 1 << 30));
    o.master_port = static_cast<std::uint16_t>(env_number("DSSYNC_MASTER_PORT", true, 1, 65535));
    if (const char* a = std::getenv("DSSYNC_MASTER_ADDR"); a && *a) o.master_addr = a;
    if (const char* t = std::getenv("DSSYNC_JOB_TOKEN")) o.job_token = t;
    auto ms = [](const char* name, std::chrono::milliseconds& field) {
      if (std::getenv(name))
        field = std::chrono::milliseconds(env_number(name, false, 0, std::int64_t{1} << 40));
    };
    ms("DSSYNC_TIMEOUT_MS", o.timeout);
    ms("DSSYNC_PEER_TIMEOUT_MS", o.peer_timeout);
    ms("DSSYNC_RENDEZVOUS_TIMEOUT_MS", o.rendezvous_timeout);
    if (std::getenv("DSSYNC_SOCKET_BUFFER"))
      o.socket_buffer = std::size_t(env_number("DSSYNC_SOCKET_BUFFER", false, 0, 1 << 30));
    if (std::getenv("DSSYNC_UNSENT_LIMIT"))
      o.unsent_limit = std::size_t(env_number("DSSYNC_UNSENT_LIMIT", false, 0, 1 << 30));
    if (std::getenv("DSSYNC_CHANNELS"))
      o.channels = static_cast<int>(env_number("DSSYNC_CHANNELS", false, 1, 255));
    return o;
  }

 private:
  static std::int64_t env_number(const char* name, bool required, std::int64_t lo,
                                 std::int64_t hi) {
    const char* v = std::getenv(name);
    if (!v || !*v) {
      if (required) throw configuration_error(std::string(name) + " is not set");
      return lo;
    }
    char* end = nullptr;
    const long long x = std::strtoll(v, &end, 10);
    if (*end != '\0' || x < lo || x > hi)
      throw configuration_error(std::string(name) + "=\"" + v + "\" is not a number in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
};

}  // namespace dssync

#pragma once
// Liveness: the heartbeats, and the verdict on a peer that went silent. A
// peer that sends nothing for peer_timeout (not even a heartbeat) is stopped
// or cut off; the socket thread, not the caller, decides it, so that a caller
// waiting on another rank still hears of it.

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "dssync/transport/tcp/connection.hpp"
#include "dssync/transport/tcp/tuning.hpp"

namespace dssync::detail {

class Liveness {
  using clock = std::chrono::steady_clock;

 public:
  Liveness(asio::io_context& io, std::vector<std::unique_ptr<Connection>>& connections,
           ConnectionHost& host, std::chrono::milliseconds peer_timeout, int self)
      : timer_(io),
        connections_(connections),
        host_(host),
        peer_timeout_(peer_timeout),
        self_(self) {}

  // Heartbeats from the start of the set-up: a rank still in its
  // constructor, waiting for a slow peer, is alive for those it has reached.
  void start() {
    timer_.expires_after(std::max<clock::duration>(
        peer_timeout_ / tcp_tuning::heartbeats_per_timeout, std::chrono::milliseconds(1)));
    timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || host_.stopping()) return;
      check(clock::now());
      start();
    });
  }
  // Verdicts on silence from the end of this rank's set-up.
  void judge() { judging_ = true; }
  void stop() { timer_.cancel(); }

 private:
  void check(clock::time_point now) {
    for (auto& c : connections_) {
      if (!c->is_open() || c->closing()) continue;
      c->note_bytes_below_mark(now);
      if (judging_ && !c->waiting_for_receive() && now - c->last_heard() > peer_timeout_) {
        const auto silent =
            std::chrono::duration_cast<std::chrono::milliseconds>(now - c->last_heard());
        const std::string text = "rank " + std::to_string(c->rank()) +
                                 " is dead: it sent nothing, not even a heartbeat, for " +
                                 std::to_string(silent.count()) +
                                 " ms (it is stopped or cut off; seen by rank " +
                                 std::to_string(self_) + ")";
        c->die(text);
        continue;
      }
      if (c->idle() && !c->peer_done_sending()) c->queue_heartbeat();
    }
  }

  asio::steady_timer timer_;
  std::vector<std::unique_ptr<Connection>>& connections_;
  ConnectionHost& host_;
  const std::chrono::milliseconds peer_timeout_;
  const int self_;
  bool judging_ = false;
};

}  // namespace dssync::detail

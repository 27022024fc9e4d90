#pragma once
// What a connection to one peer is given by the transport it belongs to: the
// host it reports to (completions, failures, closing), the count of receives
// posted on all connections, the stash budget, the options and the ranks.

#include <cstdint>
#include <string>
#include <vector>

#include "dssync/transport/tcp/op.hpp"
#include "dssync/transport/tcp/options.hpp"
#include "dssync/transport/tcp/stash.hpp"

namespace dssync::detail {

// What a connection needs from the transport it belongs to.
class ConnectionHost {
 public:
  // Ends a caller's operation, under the mutex it waits on.
  virtual void complete(TcpOp& op, TcpOp::Result r, std::string what = {},
                        std::uint64_t peer_bytes = 0) = 0;
  // Fails the whole transport: `who` failed for `text`; the others are told.
  virtual void fail_transport(int who, const std::string& text) = 0;
  // A connection that was closing has closed.
  virtual void closed_one() = 0;
  virtual bool stopping() const = 0;

 protected:
  ~ConnectionHost() = default;
};

// How many receives are posted, per channel, on all connections of a
// transport (socket thread only): a connection pauses a message only while
// none waits on another channel (tcp/connection.hpp, at its top).
struct PostedReceives {
  explicit PostedReceives(int channels) : per_channel(std::size_t(channels), 0) {}
  bool other_than(std::uint8_t channel) const { return total > per_channel[channel]; }
  std::vector<int> per_channel;
  int total = 0;
};

// Everything a connection is given; it outlives the connection.
struct ConnectionContext {
  ConnectionHost& host;
  PostedReceives& posted;
  StashBudget& budget;
  const TcpOptions& options;
  int self;  // this rank
  int world;
};

}  // namespace dssync::detail

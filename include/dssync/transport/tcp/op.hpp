#pragma once
// TcpOp: one blocking call's share of work for the socket thread.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "dssync/core/tag.hpp"

namespace dssync::detail {

// A send or a receive of `bytes` bytes with one peer. It lives on the
// caller's stack, so that a step allocates nothing. The fields below `bytes`
// are written by the socket thread under the transport's mutex once the
// operation ends.
struct TcpOp {
  bool receive = false;
  int peer = 0;
  std::uint8_t channel = 0;
  std::uint16_t tag = 0;  // a frame carries 16 bits: every tag in [0, max_tag] fits
  static_assert(max_tag >= 0 && max_tag <= 0xFFFF);
  std::byte* in = nullptr;
  const std::byte* out = nullptr;
  std::size_t bytes = 0;

  enum class Result { pending, ok, mismatch, failed };
  Result result = Result::pending;
  std::uint64_t peer_bytes = 0;  // mismatch: what the peer sent
  std::string what;              // failed: why

  static TcpOp send_of(int peer, int channel, tag_t tag, std::span<const std::byte> out) {
    TcpOp op;
    op.peer = peer;
    op.channel = static_cast<std::uint8_t>(channel);
    op.tag = static_cast<std::uint16_t>(tag);
    op.out = out.data();
    op.bytes = out.size();
    return op;
  }
  static TcpOp receive_into(int peer, int channel, tag_t tag, std::span<std::byte> in) {
    TcpOp op;
    op.receive = true;
    op.peer = peer;
    op.channel = static_cast<std::uint8_t>(channel);
    op.tag = static_cast<std::uint16_t>(tag);
    op.in = in.data();
    op.bytes = in.size();
    return op;
  }
};

}  // namespace dssync::detail

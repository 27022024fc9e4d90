#pragma once
// One fuzz input against TcpTransport's wire decoders (transport/tcp/wire.hpp):
// the hello and its admission, the reply head, a table entry, the text length,
// and a stream of frames read the way the socket thread reads them (header,
// then a notice's payload decoded or a data payload skipped by its length).
// Whatever decodes must encode back to the same bytes' meaning; nothing may
// crash, read out of bounds or allocate by a length it was handed (the
// sanitizers judge). Used by tests/fuzz/tcp_wire_fuzz.cpp (libFuzzer,
// scripts/fuzz) and by tests/tcp_wire.cpp (a fixed-seed corpus in the suite).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "dssync/transport/tcp/wire.hpp"

namespace dssync_fuzz {

namespace wire = dssync::detail::wire;

// Returns false when an invariant breaks (the caller aborts or fails).
inline bool run_one(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  if (in.size() >= wire::hello_size) {
    wire::Hello h;
    if (!wire::decode(in.first<wire::hello_size>(), h)) {
      const auto again = wire::encode(h);
      wire::Hello h2;
      if (wire::decode(std::span<const std::byte, wire::hello_size>(again), h2)) return false;
      if (h2.token != h.token || h2.rank != h.rank || h2.world != h.world || h2.port != h.port ||
          !(h2.address == h.address) || h2.purpose != h.purpose || h2.channels != h.channels ||
          h.channels == 0)
        return false;
      const wire::Admission a{wire::token_hash("fuzz"), 8, wire::Purpose::mesh, 3, 2};
      const auto verdict = wire::admit(h, a, [](std::uint32_t r) { return r == 5; });
      // Admitted means: our token, our purpose, our world and channel count, a free rank in range.
      if (!verdict && (h.token != a.token || h.purpose != a.purpose || h.world != 8 || h.rank < 3 ||
                       h.rank >= 8 || h.rank == 5 || h.channels != a.channels))
        return false;
    }
  }
  if (in.size() >= wire::reply_size) {
    wire::Reply r;
    if (!wire::decode(in.first<wire::reply_size>(), r) && r.status > wire::Status::failed) return false;
  }
  if (in.size() >= wire::entry_size) {
    wire::Address a;
    std::uint16_t port = 0;
    if (!wire::decode(in.first<wire::entry_size>(), a, port) && (port == 0 || (a.family != 4 && a.family != 6)))
      return false;
  }
  if (in.size() >= 2) {
    std::size_t n = 0;
    if (!wire::decode_text_length(in.first<2>(), n) && n > wire::max_text) return false;
  }
  // A stream of frames.
  const std::uint64_t max_message = std::uint64_t{1} << 20;
  const unsigned channels = 4;
  std::size_t at = 0;
  while (in.size() - at >= wire::header_size) {
    wire::Header h;
    if (wire::decode(std::span<const std::byte, wire::header_size>(in.data() + at, wire::header_size), h,
                     max_message, channels))
      break;
    at += wire::header_size;
    if (h.kind == wire::Kind::data && h.length > max_message) return false;
    if (h.channel >= channels || (h.channel != 0 && h.kind != wire::Kind::data)) return false;
    {
      // A header that decoded encodes back to the same header.
      const auto again = wire::encode(h);
      wire::Header h2;
      if (wire::decode(std::span<const std::byte, wire::header_size>(again), h2, max_message,
                       channels) ||
          h2.kind != h.kind || h2.tag != h.tag || h2.length != h.length || h2.channel != h.channel)
        return false;
    }
    if (h.length > in.size() - at) break;  // the rest is still on its way
    const auto payload = in.subspan(at, std::size_t(h.length));
    if (h.kind == wire::Kind::notice) {
      if (payload.size() > wire::max_notice) return false;
      std::uint32_t who = 0;
      std::string text;
      if (!wire::decode_notice(payload, 16, who, text) && (who >= 16 || text.size() > wire::max_text)) return false;
    }
    at += payload.size();
  }
  return true;
}

}  // namespace dssync_fuzz

#pragma once
// The bytes TcpTransport puts on the wire, and the checks on what it reads.
// Pure functions without sockets, so that a fuzzer can drive them directly
// (tests/fuzz/). Every integer is little-endian; every message has a fixed
// size or a length that is checked against a bound before anything is read
// or allocated for it.
//
// A connection starts with a hello from the side that connects, answered by a
// reply head from the side that accepts:
//
//   hello (48 bytes)        magic u32 | version u16 | purpose u16 | token hash u64
//                           | world size u32 | rank u32 | listen port u16
//                           | address family u8 (0 none, 4, 6) | channels u8 (1..255)
//                           | address 16 bytes | 0 u32
//   reply head (16 bytes)   magic u32 | status u16 | 0 u16 | token hash u64
//
// After an accepting reply to a rendezvous hello comes the table: one 20-byte
// entry per rank (family u8 | 0 u8 | port u16 | address 16 bytes). A refusal
// or failure reply is followed by a text: its length as a u16, then at most
// max_text bytes. Between the ranks of a running job every message is a frame:
//
//   frame header (16 bytes) magic u32 | kind u8 | channel u8 | tag u16
//                           | payload length u64
//
// followed by the payload: a data message's bytes, a notice (failed rank u32,
// then text), or nothing (heartbeat, bye). A data frame belongs to one of the
// job's channels (TcpOptions::channels); control frames are on channel 0.
// Every rank of a job has the same number of channels: a hello with another
// count is refused.
//
// Version 2 added the channels (version 1 had no channel count in the hello
// and a u16 kind in the frame header); a rank of another version is refused at
// its hello, so that builds of two versions never share a job.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "dssync/transport/contract.hpp"

namespace dssync::detail::wire {

inline constexpr std::uint32_t magic = 0x4e595344;  // "DSYN" as little-endian bytes
inline constexpr std::uint16_t version = 2;
inline constexpr unsigned max_channels = 255;
inline constexpr std::size_t hello_size = 48;
inline constexpr std::size_t reply_size = 16;
inline constexpr std::size_t entry_size = 20;
inline constexpr std::size_t header_size = 16;
inline constexpr std::size_t max_text = 1024;  // refusals and notices (notices: at most
                                               // max_failure_text, cut by the sender)
inline constexpr std::size_t max_notice = 4 + max_text;

// ------------------------------------------------------------ integers --

template <class U>
void put(std::byte* p, U v) noexcept {
  for (std::size_t i = 0; i < sizeof(U); ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
template <class U>
U get(const std::byte* p) noexcept {
  U v = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) v |= U(std::to_integer<unsigned>(p[i])) << (8 * i);
  return v;
}

// The job token is never sent, only this 64-bit hash of it (FNV-1a). It keeps
// other jobs and stray clients out; it is no protection against anyone who can
// read the traffic.
inline std::uint64_t token_hash(std::string_view token) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : std::string_view("dssync job token:"))
    h = (h ^ std::uint8_t(c)) * 0x100000001b3ull;
  for (const char c : token) h = (h ^ std::uint8_t(c)) * 0x100000001b3ull;
  return h;
}

// An IPv4 or IPv6 address as 16 bytes (IPv4 in the first 4), or none.
struct Address {
  std::uint8_t family = 0;  // 0 none, 4, 6
  std::array<std::uint8_t, 16> bytes{};
  bool operator==(const Address&) const = default;
};

// ------------------------------------------------------------ handshake --

enum class Purpose : std::uint16_t { rendezvous = 1, mesh = 2 };

struct Hello {
  Purpose purpose = Purpose::mesh;
  std::uint64_t token = 0;
  std::uint32_t world = 0;
  std::uint32_t rank = 0;
  std::uint16_t port = 0;
  Address address;  // where the rank listens; none: where it connected from
  std::uint8_t channels = 1;
};

inline std::array<std::byte, hello_size> encode(const Hello& h) noexcept {
  std::array<std::byte, hello_size> b{};
  put<std::uint32_t>(&b[0], magic);
  put<std::uint16_t>(&b[4], version);
  put<std::uint16_t>(&b[6], std::uint16_t(h.purpose));
  put<std::uint64_t>(&b[8], h.token);
  put<std::uint32_t>(&b[16], h.world);
  put<std::uint32_t>(&b[20], h.rank);
  put<std::uint16_t>(&b[24], h.port);
  b[26] = std::byte(h.address.family);
  b[27] = std::byte(h.channels);
  std::memcpy(&b[28], h.address.bytes.data(), 16);
  return b;
}

// What is wrong with a message, or nothing.
using Problem = std::optional<std::string>;

// Decodes a hello; the checks that need no state (magic, version, purpose,
// address family). Whether token, world and rank fit is the acceptor's call.
inline Problem decode(std::span<const std::byte, hello_size> b, Hello& h) {
  if (get<std::uint32_t>(&b[0]) != magic) return "not a dssync connection (wrong magic number)";
  if (const auto v = get<std::uint16_t>(&b[4]); v != version)
    return "protocol version " + std::to_string(v) + ", expected " + std::to_string(version);
  const auto purpose = get<std::uint16_t>(&b[6]);
  if (purpose != std::uint16_t(Purpose::rendezvous) && purpose != std::uint16_t(Purpose::mesh))
    return "unknown connection purpose " + std::to_string(purpose);
  const auto family = std::to_integer<std::uint8_t>(b[26]);
  if (family != 0 && family != 4 && family != 6)
    return "unknown address family " + std::to_string(family);
  const auto channels = std::to_integer<std::uint8_t>(b[27]);
  if (channels == 0) return std::string("a hello with 0 channels");
  h.purpose = Purpose(purpose);
  h.token = get<std::uint64_t>(&b[8]);
  h.world = get<std::uint32_t>(&b[16]);
  h.rank = get<std::uint32_t>(&b[20]);
  h.port = get<std::uint16_t>(&b[24]);
  h.address.family = family;
  h.channels = channels;
  std::memcpy(h.address.bytes.data(), &b[28], 16);
  return std::nullopt;
}

// What the acceptor of a hello knows: the job's token hash and world size,
// the ranks it accepts (lowest..world-1) and which are taken.
struct Admission {
  std::uint64_t token = 0;
  std::uint32_t world = 0;
  Purpose purpose = Purpose::mesh;
  std::uint32_t lowest = 0;
  std::uint8_t channels = 1;
};

// Why a decoded hello may not join, or nothing. `taken(rank)` says whether a
// rank already has its connection.
template <class Taken>
Problem admit(const Hello& h, const Admission& a, Taken&& taken) {
  if (h.token != a.token) return std::string("wrong job token");
  if (h.purpose != a.purpose)
    return std::string(h.purpose == Purpose::rendezvous ? "a rendezvous hello sent to a rank's port"
                                                        : "a rank's hello sent to the rendezvous");
  if (h.world != a.world)
    return "world size " + std::to_string(h.world) + ", this job has " + std::to_string(a.world);
  if (h.channels != a.channels)
    return std::to_string(h.channels) + " channels (TcpOptions::channels), this job has " +
           std::to_string(a.channels);
  if (h.rank < a.lowest || h.rank >= a.world)
    return "rank " + std::to_string(h.rank) + " is outside " + std::to_string(a.lowest) + ".." +
           std::to_string(a.world - 1);
  if (taken(h.rank)) return "rank " + std::to_string(h.rank) + " is already taken";
  return std::nullopt;
}

enum class Status : std::uint16_t { accepted = 0, refused = 1, failed = 2 };

struct Reply {
  Status status = Status::accepted;
  std::uint64_t token = 0;
};

inline std::array<std::byte, reply_size> encode(const Reply& r) noexcept {
  std::array<std::byte, reply_size> b{};
  put<std::uint32_t>(&b[0], magic);
  put<std::uint16_t>(&b[4], std::uint16_t(r.status));
  put<std::uint64_t>(&b[8], r.token);
  return b;
}

inline Problem decode(std::span<const std::byte, reply_size> b, Reply& r) {
  if (get<std::uint32_t>(&b[0]) != magic) return "the answer is not dssync's (wrong magic number)";
  const auto s = get<std::uint16_t>(&b[4]);
  if (s > std::uint16_t(Status::failed)) return "unknown reply status " + std::to_string(s);
  r.status = Status(s);
  r.token = get<std::uint64_t>(&b[8]);
  return std::nullopt;
}

// The text after a refusal or failure: a u16 length, then at most max_text
// bytes.
inline std::string encode_text(std::string_view text) {
  const std::size_t n = std::min(text.size(), max_text);
  std::string b(2 + n, '\0');
  put<std::uint16_t>(reinterpret_cast<std::byte*>(b.data()), std::uint16_t(n));
  std::memcpy(b.data() + 2, text.data(), n);
  return b;
}
inline Problem decode_text_length(std::span<const std::byte, 2> b, std::size_t& n) {
  n = get<std::uint16_t>(b.data());
  if (n > max_text)
    return "a text of " + std::to_string(n) + " bytes (at most " + std::to_string(max_text) + ")";
  return std::nullopt;
}

inline void encode(const Address& a, std::uint16_t port, std::byte* b) noexcept {
  b[0] = std::byte(a.family);
  b[1] = std::byte{0};
  put<std::uint16_t>(b + 2, port);
  std::memcpy(b + 4, a.bytes.data(), 16);
}
inline Problem decode(std::span<const std::byte, entry_size> b, Address& a, std::uint16_t& port) {
  const auto family = std::to_integer<std::uint8_t>(b[0]);
  if (family != 4 && family != 6)
    return "a table entry with address family " + std::to_string(family);
  a.family = family;
  port = get<std::uint16_t>(&b[2]);
  if (port == 0) return std::string("a table entry with port 0");
  std::memcpy(a.bytes.data(), &b[4], 16);
  return std::nullopt;
}

// ---------------------------------------------------------------- frames --

enum class Kind : std::uint8_t { data = 1, heartbeat = 2, notice = 3, bye = 4 };

struct Header {
  Kind kind = Kind::data;
  std::uint16_t tag = 0;
  std::uint64_t length = 0;
  std::uint8_t channel = 0;
};

inline std::array<std::byte, header_size> encode(const Header& h) noexcept {
  std::array<std::byte, header_size> b{};
  put<std::uint32_t>(&b[0], magic);
  b[4] = std::byte(h.kind);
  b[5] = std::byte(h.channel);
  put<std::uint16_t>(&b[6], h.tag);
  put<std::uint64_t>(&b[8], h.length);
  return b;
}

// Decodes a frame header and bounds its length: a data payload by
// `max_message`, a notice by max_notice, heartbeats and byes carry nothing;
// a data frame's channel by `channels`, the others are on channel 0. A
// stream that fails here is out of step or not ours, and is dropped.
inline Problem decode(std::span<const std::byte, header_size> b, Header& h,
                      std::uint64_t max_message, unsigned channels = 1) {
  if (get<std::uint32_t>(&b[0]) != magic) return std::string("a frame without the magic number");
  const auto kind = std::to_integer<std::uint8_t>(b[4]);
  const auto channel = std::to_integer<std::uint8_t>(b[5]);
  if (channel != 0 && (kind != std::uint8_t(Kind::data) || channel >= channels))
    return "a frame on channel " + std::to_string(channel) + " (the job has " +
           std::to_string(channels) + ")";
  const auto tag = get<std::uint16_t>(&b[6]);
  const auto length = get<std::uint64_t>(&b[8]);
  switch (kind) {
    case std::uint8_t(Kind::data):
      if (tag > max_tag) return "a data frame with tag " + std::to_string(tag);
      if (length > max_message)
        return "a data frame of " + std::to_string(length) + " bytes (the limit is " +
               std::to_string(max_message) + ")";
      break;
    case std::uint8_t(Kind::notice):
      if (length < 4 || length > max_notice)
        return "a notice of " + std::to_string(length) + " bytes";
      break;
    case std::uint8_t(Kind::heartbeat):
    case std::uint8_t(Kind::bye):
      if (length != 0)
        return "a control frame with a payload of " + std::to_string(length) + " bytes";
      break;
    default:
      return "a frame of unknown kind " + std::to_string(kind);
  }
  h.kind = Kind(kind);
  h.tag = tag;
  h.length = length;
  h.channel = channel;
  return std::nullopt;
}

// A notice: "rank `failed` failed: `text`", sent by a rank that saw it to every
// other rank.
inline std::string encode_notice(std::uint32_t failed, std::string_view text) {
  const std::size_t n = std::min(text.size(), max_text);
  std::string b(header_size + 4 + n, '\0');
  auto* p = reinterpret_cast<std::byte*>(b.data());
  const auto head = encode(Header{Kind::notice, 0, 4 + n});
  std::memcpy(p, head.data(), header_size);
  put<std::uint32_t>(p + header_size, failed);
  std::memcpy(p + header_size + 4, text.data(), n);
  return b;
}
inline Problem decode_notice(std::span<const std::byte> payload, std::uint32_t world,
                             std::uint32_t& failed, std::string& text) {
  if (payload.size() < 4 || payload.size() > max_notice)
    return std::string("a notice of bad length");
  failed = get<std::uint32_t>(payload.data());
  if (failed >= world)
    return "a notice about rank " + std::to_string(failed) + " outside the world";
  text.assign(reinterpret_cast<const char*>(payload.data()) + 4, payload.size() - 4);
  return std::nullopt;
}

}  // namespace dssync::detail::wire

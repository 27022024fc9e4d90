// TcpTransport's wire format: round trips, and the fuzz target over a
// fixed-seed corpus (random bytes, and valid messages with bytes flipped,
// truncated or lengths inflated), so that the suite replays a few thousand
// cases on every run; scripts/fuzz runs the same target under libFuzzer.

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "fuzz/tcp_wire_target.hpp"

namespace {

namespace wire = dssync::detail::wire;

std::vector<std::uint8_t> bytes_of(std::span<const std::byte> b) {
  std::vector<std::uint8_t> v(b.size());
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

TEST_CASE("wire: a hello and a frame header decode to what was encoded") {
  wire::Hello h{wire::Purpose::rendezvous, wire::token_hash("t"), 9, 4, 4242, {}};
  h.address.family = 4;
  h.address.bytes[0] = 10;
  const auto b = wire::encode(h);
  wire::Hello d;
  REQUIRE(!wire::decode(std::span<const std::byte, wire::hello_size>(b), d));
  CHECK(d.rank == 4);
  CHECK(d.world == 9);
  CHECK(d.port == 4242);
  CHECK(d.address == h.address);
  const auto f = wire::encode(wire::Header{wire::Kind::data, 32767, 12345});
  wire::Header g;
  REQUIRE(!wire::decode(std::span<const std::byte, wire::header_size>(f), g, 1 << 20));
  CHECK(g.length == 12345);
  CHECK(g.tag == 32767);
  const auto big = wire::encode(wire::Header{wire::Kind::data, 1, std::uint64_t{1} << 40});
  CHECK(wire::decode(std::span<const std::byte, wire::header_size>(big), g, 1 << 20)->find("limit") !=
        std::string::npos);
}

TEST_CASE("wire: channels in the hello and the frame header, and a version-1 hello is refused") {
  wire::Hello h{wire::Purpose::mesh, wire::token_hash("t"), 4, 2, 4242, {}, 3};
  auto b = wire::encode(h);
  wire::Hello d;
  REQUIRE(!wire::decode(std::span<const std::byte, wire::hello_size>(b), d));
  CHECK(d.channels == 3);
  const wire::Admission a{wire::token_hash("t"), 4, wire::Purpose::mesh, 1, 2};
  const auto refusal = wire::admit(d, a, [](std::uint32_t) { return false; });
  REQUIRE(refusal);
  CHECK(refusal->find("3 channels") != std::string::npos);
  CHECK(refusal->find("this job has 2") != std::string::npos);
  d.channels = 2;
  CHECK(!wire::admit(d, a, [](std::uint32_t) { return false; }));

  // A hello of the first version (no channel count) is refused, saying why.
  CHECK(wire::version == 2);
  wire::put<std::uint16_t>(&b[4], 1);
  const auto old = wire::decode(std::span<const std::byte, wire::hello_size>(b), d);
  REQUIRE(old);
  CHECK(*old == "protocol version 1, expected 2");

  // A data frame on channel 5 of 6; not on channel 6, and control frames only on channel 0.
  const auto f = wire::encode(wire::Header{wire::Kind::data, 77, 9, 5});
  wire::Header g;
  REQUIRE(!wire::decode(std::span<const std::byte, wire::header_size>(f), g, 1 << 20, 6));
  CHECK(g.channel == 5);
  CHECK(g.tag == 77);
  CHECK(g.length == 9);
  const auto p = wire::decode(std::span<const std::byte, wire::header_size>(f), g, 1 << 20, 5);
  REQUIRE(p);
  CHECK(p->find("channel 5") != std::string::npos);
  const auto hb = wire::encode(wire::Header{wire::Kind::heartbeat, 0, 0, 1});
  CHECK(wire::decode(std::span<const std::byte, wire::header_size>(hb), g, 1 << 20, 6));
}

TEST_CASE("wire: the fuzz target holds on a fixed-seed corpus of 5000 inputs") {
  std::mt19937_64 rng(20261125);
  std::vector<std::vector<std::uint8_t>> seeds;
  wire::Hello h{wire::Purpose::mesh, wire::token_hash("fuzz"), 8, 4, 1000, {}};
  seeds.push_back(bytes_of(wire::encode(h)));
  seeds.push_back(bytes_of(wire::encode(wire::Reply{wire::Status::refused, 7})));
  seeds.push_back(bytes_of(wire::encode(wire::Header{wire::Kind::data, 3, 8})));
  seeds.push_back(bytes_of(wire::encode(wire::Header{wire::Kind::data, 3, 8, 2})));
  seeds.push_back(bytes_of(wire::encode(wire::Hello{wire::Purpose::mesh, wire::token_hash("fuzz"), 8, 4,
                                                    1000, {}, 2})));
  const std::string notice = wire::encode_notice(3, "rank 3 is dead");
  seeds.emplace_back(notice.begin(), notice.end());
  std::size_t cases = 0;
  for (int i = 0; i < 5000; ++i) {
    std::vector<std::uint8_t> in;
    if (i % 2 == 0) {
      in.resize(rng() % 200);
      for (auto& b : in) b = std::uint8_t(rng());
    } else {
      // A valid message or two, then damage.
      for (int k = 0; k < 1 + int(rng() % 3); ++k) {
        const auto& s = seeds[rng() % seeds.size()];
        in.insert(in.end(), s.begin(), s.end());
        in.resize(in.size() + rng() % 12);
      }
      for (int k = 0; k < int(rng() % 4); ++k) in[rng() % in.size()] = std::uint8_t(rng());
      if (rng() % 4 == 0) in.resize(rng() % (in.size() + 1));
    }
    CHECK(dssync_fuzz::run_one(in.data(), in.size()));
    ++cases;
  }
  CHECK(cases == 5000);
}

}  // namespace

// InProcWorld and InProcTransport: delivery, matching, and every way a world
// can fail (size mismatch, a throwing rank, a returned rank, a timeout, bad
// arguments) ending in an exception instead of a hang.

#include <doctest/doctest.h>

#include "outcome.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dssync/core/concepts.hpp"
#include "dssync/transport/background.hpp"
#include "dssync/transport/counting.hpp"
#include "dssync/transport/inproc.hpp"

namespace {

using dssync::InProcTransport;
using dssync::InProcWorld;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

using dssync_test::classify;
using dssync_test::Outcome;

template <class F>
Outcome run_outcome(InProcWorld& world, F&& f) {
  try {
    world.run(std::forward<F>(f));
  } catch (...) {
    return classify(std::current_exception());
  }
  return {};
}

// Runs body on a rank and records how it ended; exceptions still propagate to
// run().
template <class Body>
void recorded(std::vector<Outcome>& outcomes, int rank, Body&& body) {
  try {
    body();
  } catch (...) {
    outcomes[static_cast<std::size_t>(rank)] = classify(std::current_exception());
    throw;
  }
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Bytes that differ per (message, byte): every bit pattern shows up, NaN
// payloads included for floating-point element types.
std::uint8_t pattern_byte(std::uint64_t message, std::uint64_t i) {
  std::uint64_t z = (message + 1) * 0x9e3779b97f4a7c15ULL + i * 0xbf58476d1ce4e5b9ULL;
  z ^= z >> 29;
  z *= 0x94d049bb133111ebULL;
  return static_cast<std::uint8_t>(z >> 56);
}

template <class T>
std::vector<T> patterned(std::size_t n, std::uint64_t message) {
  std::vector<std::uint8_t> bytes(n * sizeof(T));
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = pattern_byte(message, i);
  std::vector<T> v(n);
  if (n) std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// Waits (bounded) for a flag another rank sets: lets a test order ranks
// without sleeping for a guessed time.
void wait_for_flag(const std::atomic<bool>& flag) {
  const auto give_up = steady::now() + 20s;
  while (!flag.load() && steady::now() < give_up) std::this_thread::sleep_for(1ms);
}

struct user_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Triple {
  std::int32_t a;
  std::int32_t b;
  float c;
};

// ---------------------------------------------------------------- delivery --

TEST_CASE_TEMPLATE("send and recv deliver exact bytes", T, std::byte, char, std::int16_t,
                   float, double, std::int64_t, Triple) {
  const std::array<std::size_t, 5> sizes{0, 1, 3, 1000, std::size_t{1} << 20};
  InProcWorld world(2);
  std::vector<std::vector<T>> received(sizes.size());
  std::vector<std::vector<T>> echoed(sizes.size());
  world.run([&](InProcTransport& t) {
    for (std::size_t k = 0; k < sizes.size(); ++k) {
      const std::size_t n = sizes[k];
      if (t.rank() == 0) {
        const std::vector<T> out = patterned<T>(n, k);
        t.send(1, std::span<const T>(out), static_cast<int>(k));
        CHECK(same_bytes(out, patterned<T>(n, k)));  // the sender's buffer is untouched
        std::vector<T> back = patterned<T>(n, 1000 + k);
        t.recv(1, std::span<T>(back), static_cast<int>(k));
        echoed[k] = std::move(back);
      } else {
        std::vector<T> in = patterned<T>(n, 999);  // overwritten completely
        t.recv(0, std::span<T>(in), static_cast<int>(k));
        received[k] = in;
        t.send(0, std::span<T>(in), static_cast<int>(k));  // mutable span: sends too
      }
    }
  });
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    CAPTURE(sizes[k]);
    CHECK(same_bytes(received[k], patterned<T>(sizes[k], k)));
    CHECK(same_bytes(echoed[k], patterned<T>(sizes[k], k)));
  }
}

TEST_CASE("sendrecv moves different sizes and types each way") {
  InProcWorld world(2);
  std::vector<double> got_by_0;
  std::vector<std::int16_t> got_by_1;
  world.run([&](InProcTransport& t) {
    if (t.rank() == 0) {
      const auto out = patterned<std::int16_t>(777, 1);
      std::vector<double> in(5000);
      t.sendrecv(1, std::span<const std::int16_t>(out), 1, std::span<double>(in), 42);
      got_by_0 = in;
    } else {
      const auto out = patterned<double>(5000, 2);
      std::vector<std::int16_t> in(777);
      t.sendrecv(0, std::span<const double>(out), 0, std::span<std::int16_t>(in), 42);
      got_by_1 = in;
    }
  });
  CHECK(same_bytes(got_by_0, patterned<double>(5000, 2)));
  CHECK(same_bytes(got_by_1, patterned<std::int16_t>(777, 1)));
}

TEST_CASE("sendrecv with itself copies the buffer") {
  InProcWorld world(3);
  std::vector<std::vector<float>> got(3);
  world.run([&](InProcTransport& t) {
    const auto out = patterned<float>(4096, static_cast<std::uint64_t>(t.rank()));
    std::vector<float> in(4096);
    t.sendrecv(t.rank(), std::span<const float>(out), t.rank(), std::span<float>(in), 9);
    got[static_cast<std::size_t>(t.rank())] = in;
  });
  for (int r = 0; r < 3; ++r)
    CHECK(same_bytes(got[static_cast<std::size_t>(r)], patterned<float>(4096, std::uint64_t(r))));
}

TEST_CASE("messages with the same source and tag arrive in order") {
  constexpr int count = 300;
  InProcWorld world(2);
  std::vector<std::int64_t> seen;
  world.run([&](InProcTransport& t) {
    for (std::int64_t k = 0; k < count; ++k) {
      // Two interleaved streams on tags 7 and 8.
      const int tag = 7 + static_cast<int>(k % 2);
      std::array<std::int64_t, 2> v{k, -k};
      if (t.rank() == 0) {
        t.send(1, std::span<const std::int64_t>(v), tag);
      } else {
        t.recv(0, std::span<std::int64_t>(v), tag);
        seen.push_back(v[0]);
        CHECK(v[1] == -v[0]);
      }
    }
  });
  REQUIRE(seen.size() == std::size_t(count));
  for (std::int64_t k = 0; k < count; ++k) CHECK(seen[static_cast<std::size_t>(k)] == k);
}

TEST_CASE("a receive matches its source, skipping messages pending from others") {
  // Rank 1 takes everything from rank 2 first, although rank 0's first message
  // was posted before; then everything from rank 0, each stream in order.
  constexpr int count = 40;
  InProcWorld world(3);
  std::vector<int> order;
  world.run([&](InProcTransport& t) {
    if (t.rank() == 1) {
      for (int src : {2, 0}) {
        for (int k = 0; k < count; ++k) {
          int v = -1;
          t.recv(src, std::span<int>(&v, 1), 3);
          order.push_back(v);
        }
      }
    } else {
      for (int k = 0; k < count; ++k) {
        const int v = t.rank() * 1000 + k;
        t.send(1, std::span<const int>(&v, 1), 3);
      }
    }
  });
  REQUIRE(order.size() == std::size_t(2 * count));
  for (int k = 0; k < count; ++k) {
    CHECK(order[std::size_t(k)] == 2000 + k);
    CHECK(order[std::size_t(count + k)] == k);
  }
}

TEST_CASE("a receive with one tag never takes a pending message with another") {
  // Rank 0 posts a tag-5 message to rank 1, which waits for tag 6 from rank 0.
  // Rank 2 learns that the tag-5 message is posted (rank 0 receives from it in
  // the same sendrecv, after posting) and then fails the world. Rank 1 must end
  // with peer_error and an untouched buffer; a receive that ignored tags would
  // have taken the equally long tag-5 message and returned.
  InProcWorld world(3, {.timeout = 20s});
  std::vector<Outcome> outcome(3);
  std::array<float, 4> rank1_buffer{-1, -1, -1, -1};
  const Outcome result = run_outcome(world, [&](InProcTransport& t) {
    recorded(outcome, t.rank(), [&] {
      if (t.rank() == 0) {
        const std::array<float, 4> a{1, 2, 3, 4};
        int from_2 = 0;
        t.sendrecv(1, std::span<const float>(a), 2, std::span<int>(&from_2, 1), 5);
      } else if (t.rank() == 1) {
        t.recv(0, std::span<float>(rank1_buffer), 6);
      } else {
        const int token = 1;
        t.send(0, std::span<const int>(&token, 1), 5);
        throw std::runtime_error("rank 2 stops the world");
      }
    });
  });
  CHECK(result.kind == "std");
  CHECK(result.what == "rank 2 stops the world");
  CHECK(outcome[1].kind == "peer");
  CHECK(rank1_buffer == std::array<float, 4>{-1, -1, -1, -1});
  CHECK(outcome[0].kind == "peer");  // its tag-5 message was never taken
}

TEST_CASE("sendrecv around a ring of 2 to 16 ranks") {
  for (int n = 2; n <= 16; ++n) {
    CAPTURE(n);
    // Rank r sends 1000 + 17 r doubles; every shift s = 1..n-1 moves each
    // rank's buffer s places to the right.
    auto size_of = [](int r) { return std::size_t(1000 + 17 * r); };
    auto message = [](int from, int shift) { return std::uint64_t(from * 100 + shift); };
    InProcWorld world(n);
    std::vector<int> failures(std::size_t(n), 0);
    world.run([&](InProcTransport& t) {
      const int r = t.rank();
      for (int s = 1; s < n; ++s) {
        const int dst = (r + s) % n;
        const int src = (r + n - s) % n;
        const auto out = patterned<double>(size_of(r), message(r, s));
        std::vector<double> in(size_of(src));
        t.sendrecv(dst, std::span<const double>(out), src, std::span<double>(in), s);
        if (!same_bytes(in, patterned<double>(size_of(src), message(src, s))))
          ++failures[std::size_t(r)];
      }
    });
    for (int r = 0; r < n; ++r) CHECK(failures[std::size_t(r)] == 0);
  }
}

TEST_CASE("sendrecv_view lends the sender's own memory") {
  static_assert(dssync::transport_with_view<InProcTransport, float>);
  constexpr int n = 5;
  auto size_of = [](int r) { return std::size_t(300 + 11 * r); };
  std::array<const float*, n> sent_from{};  // each rank's outgoing buffer
  std::array<bool, n> same_bytes_seen{};
  std::array<bool, n> zero_copy{};
  std::array<int, n> calls{};
  InProcWorld world(n);
  world.run([&](InProcTransport& t) {
    const int r = t.rank();
    const int right = (r + 1) % n;
    const int left = (r + n - 1) % n;
    const auto out = patterned<float>(size_of(r), std::uint64_t(r));
    sent_from[std::size_t(r)] = out.data();  // published to the right by the post below
    t.sendrecv_view(
        right, std::span<const float>(out), left, size_of(left),
        [&](std::span<const float> in) {
          ++calls[std::size_t(r)];
          same_bytes_seen[std::size_t(r)] =
              same_bytes(std::vector<float>(in.begin(), in.end()),
                         patterned<float>(size_of(left), std::uint64_t(left)));
          // The lender stays blocked in its own call while this runs.
          zero_copy[std::size_t(r)] = in.data() == sent_from[std::size_t(left)];
        },
        4);
  });
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    CHECK(calls[std::size_t(r)] == 1);
    CHECK(same_bytes_seen[std::size_t(r)]);
    CHECK(zero_copy[std::size_t(r)]);
  }
}

TEST_CASE("sendrecv_view with a count the sender disagrees with fails the run") {
  InProcWorld world(2, {.timeout = 20s});
  bool used = false;
  const Outcome result = run_outcome(world, [&](InProcTransport& t) {
    const std::vector<double> out(t.rank() == 0 ? 6 : 7);
    const int peer = 1 - t.rank();
    t.sendrecv_view(
        peer, std::span<const double>(out), peer, 6,
        [&](std::span<const double>) {
          if (t.rank() == 0) used = true;  // rank 0 is sent 7, not 6
        },
        0);
  });
  CHECK(result.kind == "size_mismatch");
  CHECK_FALSE(used);
}

TEST_CASE("sendrecv_view of more bytes than a size_t holds is refused, not wrapped around") {
  // 2^61 + 1 doubles are 8 bytes in size_t arithmetic: the count must not
  // wrap to the sender's length and lend memory past its end.
  InProcWorld world(2, {.timeout = 20s});
  std::size_t lent = 0;
  const Outcome result = run_outcome(world, [&](InProcTransport& t) {
    const std::vector<double> out(1);
    const std::size_t count = t.rank() == 1 ? (std::size_t{1} << 61) + 1 : 1;
    t.sendrecv_view(
        1 - t.rank(), std::span<const double>(out), 1 - t.rank(), count,
        [&](std::span<const double> got) {
          if (t.rank() == 1) lent = got.size();
        },
        0);
  });
  CHECK(result.kind == "configuration");
  CHECK(result.what.find("more bytes than a size_t holds") != std::string::npos);
  CHECK(lent == 0);
}

TEST_CASE("a throwing sendrecv_view callback releases the lender") {
  InProcWorld world(2);
  std::vector<Outcome> outcome(2);
  const auto start = steady::now();
  bool caught = false;
  try {
    world.run([&](InProcTransport& t) {
      recorded(outcome, t.rank(), [&] {
        const std::array<int, 3> out{1, 2, 3};
        const int peer = 1 - t.rank();
        t.sendrecv_view(
            peer, std::span<const int>(out), peer, 3,
            [&](std::span<const int>) {
              if (t.rank() == 1) throw user_failure("callback failed");
            },
            0);
      });
    });
  } catch (const user_failure&) {
    caught = true;
  }
  CHECK(caught);
  CHECK(steady::now() - start < 60s);  // rank 0 was not left waiting for the timeout
  CHECK(outcome[1].kind == "std");
  // Rank 0 either finished (its view was done first) or learned of the failure.
  CHECK((outcome[0].kind == "none" || outcome[0].kind == "peer"));
}

TEST_CASE("every rank sees its own rank and the world size") {
  InProcWorld world(7);
  CHECK(world.size() == 7);
  std::vector<int> seen(7, 0);
  std::mutex mu;
  world.run([&](InProcTransport& t) {
    CHECK(t.size() == 7);
    std::lock_guard lk(mu);
    ++seen[std::size_t(t.rank())];
  });
  CHECK(seen == std::vector<int>(7, 1));
}

// ----------------------------------------------------------------- failure --

TEST_CASE("a size mismatch fails both sides") {
  struct Case {
    std::size_t receiver_bytes;
    std::size_t sender_bytes;
  };
  for (const Case c : {Case{8, 4}, Case{4, 8}, Case{1, 0}, Case{0, 1}}) {
    CAPTURE(c.receiver_bytes);
    CAPTURE(c.sender_bytes);
    InProcWorld world(2, {.timeout = 20s});
    std::vector<Outcome> outcome(2);
    const Outcome result = run_outcome(world, [&](InProcTransport& t) {
      recorded(outcome, t.rank(), [&] {
        if (t.rank() == 0) {
          std::vector<std::byte> in(c.receiver_bytes);
          t.recv(1, std::span<std::byte>(in), 0);
        } else {
          const std::vector<std::byte> out(c.sender_bytes);
          t.send(0, std::span<const std::byte>(out), 0);
        }
      });
    });
    CHECK(result.kind == "size_mismatch");
    CHECK(outcome[0].kind == "size_mismatch");
    CHECK(outcome[1].kind == "size_mismatch");
    const std::string expected = "expected " + std::to_string(c.receiver_bytes) +
                                 " bytes, the peer sent " + std::to_string(c.sender_bytes);
    CAPTURE(outcome[0].what);
    CHECK(contains(outcome[0].what, expected));
    CHECK(contains(outcome[0].what, "rank 0"));
    CHECK(contains(outcome[0].what, "peer 1"));
    CHECK(contains(outcome[1].what, "sent " + std::to_string(c.sender_bytes) +
                                        " bytes, the peer expected " +
                                        std::to_string(c.receiver_bytes)));
  }
}

TEST_CASE("a size mismatch inside sendrecv fails the run") {
  InProcWorld world(2, {.timeout = 20s});
  const Outcome result = run_outcome(world, [&](InProcTransport& t) {
    const std::vector<float> out(t.rank() == 0 ? 3 : 4);
    std::vector<float> in(3);
    const int peer = 1 - t.rank();
    t.sendrecv(peer, std::span<const float>(out), peer, std::span<float>(in), 1);
  });
  CHECK(result.kind == "size_mismatch");
}

TEST_CASE("a sendrecv whose receive does not fit still delivers its send to a third rank") {
  // Rank 0 sends to rank 2 and receives from rank 1, which sends one float
  // too many: rank 0 hears of the mismatch, rank 2 gets its message, as on
  // every other transport.
  std::vector<Outcome> outcome(3);
  std::vector<float> got(4);
  InProcWorld world(3, {.timeout = 20s});
  run_outcome(world, [&](InProcTransport& t) {
    const int r = t.rank();
    try {
      if (r == 0) {
        const std::vector<float> out = {1, 2, 3, 4};
        std::vector<float> in(4);
        t.sendrecv(2, std::span<const float>(out), 1, std::span<float>(in), 5);
      } else if (r == 1) {
        const std::vector<float> five(5, 9.0f);
        t.send(0, std::span<const float>(five), 5);
      } else {
        t.recv(0, std::span<float>(got), 5);
      }
    } catch (...) {
      outcome[static_cast<std::size_t>(r)] = classify(std::current_exception());
    }
  });
  CHECK(outcome[0].kind == "size_mismatch");
  CHECK(outcome[1].kind == "size_mismatch");
  CHECK(outcome[2].kind == "none");
  CHECK(got == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("a timeout fails the world: later calls and the other ranks hear of it") {
  std::atomic<bool> timed_out{false};
  std::vector<Outcome> first(2), later(2);
  InProcWorld world(2, {.timeout = 100ms});
  run_outcome(world, [&](InProcTransport& t) {
    std::vector<float> x(4);
    const int r = t.rank();
    if (r == 0) {
      try {
        t.recv(1, std::span<float>(x), 7);  // rank 1 never sends
      } catch (...) {
        first[0] = classify(std::current_exception());
      }
      timed_out = true;
    } else {
      wait_for_flag(timed_out);
    }
    try {
      t.recv(1 - r, std::span<float>(x), 8);
    } catch (...) {
      later[static_cast<std::size_t>(r)] = classify(std::current_exception());
    }
  });
  CHECK(first[0].kind == "timeout");
  for (int r : {0, 1}) {
    CAPTURE(r);
    CHECK(later[static_cast<std::size_t>(r)].kind == "peer");
    // Rank 0 in the words for its own failure, rank 1 in those for a peer's.
    CHECK(contains(later[static_cast<std::size_t>(r)].what,
                   r == 0 ? "this transport failed earlier (a receive from rank 1 did not complete"
                          : "rank 0 failed: a receive from rank 1 did not complete"));
    CHECK(contains(later[static_cast<std::size_t>(r)].what, "did not complete within 100 ms"));
  }
}

TEST_CASE("a throwing rank fails its peers and run() rethrows its exception") {
  InProcWorld world(5);
  std::vector<Outcome> outcome(5);
  const auto start = steady::now();
  bool caught_original = false;
  try {
    world.run([&](InProcTransport& t) {
      recorded(outcome, t.rank(), [&] {
        std::array<int, 3> buf{};
        switch (t.rank()) {
          case 0:  // waiting to receive from the rank that throws
          case 4:
            t.recv(2, std::span<int>(buf), 0);
            break;
          case 1:  // waiting for it to receive
            t.send(2, std::span<const int>(buf), 0);
            break;
          case 2:
            throw user_failure("rank two gave up");
          case 3:
            t.sendrecv(2, std::span<const int>(buf), 2, std::span<int>(buf), 0);
            break;
        }
      });
    });
  } catch (const user_failure& e) {
    caught_original = std::string(e.what()) == "rank two gave up";
  }
  CHECK(caught_original);
  CHECK(steady::now() - start < 60s);  // not the 2-minute timeout
  for (int r : {0, 1, 3, 4}) {
    CAPTURE(r);
    CAPTURE(outcome[std::size_t(r)].what);
    CHECK(outcome[std::size_t(r)].kind == "peer");
    CHECK(contains(outcome[std::size_t(r)].what, "rank 2 failed: rank two gave up"));
    CHECK(contains(outcome[std::size_t(r)].what, "(rank " + std::to_string(r) + ", peer 2"));
  }
  CHECK(outcome[2].kind == "std");
}

TEST_CASE("an exception not derived from std::exception is rethrown as is") {
  InProcWorld world(2);
  std::vector<Outcome> outcome(2);
  int thrown = 0;
  try {
    world.run([&](InProcTransport& t) {
      recorded(outcome, t.rank(), [&] {
        if (t.rank() == 1) throw 42;
        int v = 0;
        t.recv(1, std::span<int>(&v, 1), 0);
      });
    });
  } catch (int x) {
    thrown = x;
  }
  CHECK(thrown == 42);
  CHECK(outcome[0].kind == "peer");
  CHECK(contains(outcome[0].what, "an exception not derived from std::exception"));
}

TEST_CASE("a rank that returned fails its peers at once") {
  SUBCASE("a peer waiting to receive from it") {
    InProcWorld world(2);  // the default timeout is minutes: a quick failure is not a timeout
    std::vector<Outcome> outcome(2);
    const auto start = steady::now();
    const Outcome result = run_outcome(world, [&](InProcTransport& t) {
      recorded(outcome, t.rank(), [&] {
        if (t.rank() == 1) return;
        int v = 0;
        t.recv(1, std::span<int>(&v, 1), 0);
      });
    });
    CHECK(steady::now() - start < 60s);
    CHECK(result.kind == "peer");
    CHECK(outcome[0].kind == "peer");
    CHECK(contains(outcome[0].what, "returned without sending"));
    CHECK(outcome[1].kind == "none");
  }
  SUBCASE("a peer waiting for it to receive") {
    InProcWorld world(2);
    const auto start = steady::now();
    const Outcome result = run_outcome(world, [&](InProcTransport& t) {
      if (t.rank() == 1) return;
      const int v = 0;
      t.send(1, std::span<const int>(&v, 1), 0);
    });
    CHECK(steady::now() - start < 60s);
    CHECK(result.kind == "peer");
    CHECK(contains(result.what, "returned without receiving"));
  }
}

TEST_CASE("a wait that outlasts the timeout ends with timeout_error") {
  for (const bool receiving : {true, false}) {
    CAPTURE(receiving);
    // Rank 1 stays alive, doing nothing, until rank 0's call has ended: rank
    // 0 can only time out, whatever the scheduling.
    InProcWorld world(2, {.timeout = std::chrono::milliseconds(200)});
    std::atomic<bool> rank0_done{false};
    std::vector<Outcome> outcome(2);
    steady::duration waited{};
    const Outcome result = run_outcome(world, [&](InProcTransport& t) {
      if (t.rank() == 1) {
        wait_for_flag(rank0_done);
        return;
      }
      const auto start = steady::now();
      try {
        recorded(outcome, 0, [&] {
          std::array<double, 2> buf{};
          if (receiving)
            t.recv(1, std::span<double>(buf), 3);
          else
            t.send(1, std::span<const double>(buf), 3);
        });
      } catch (...) {
        waited = steady::now() - start;
        rank0_done = true;
        throw;
      }
      rank0_done = true;
    });
    CHECK(result.kind == "timeout");
    CAPTURE(result.what);
    CHECK(contains(result.what, "timeout"));
    CHECK(contains(result.what, "200 ms"));
    CHECK(contains(result.what, "rank 0"));
    CHECK(contains(result.what, "peer 1"));
    CHECK(contains(result.what, "tag 3"));
    CHECK(waited >= 200ms);
    CHECK(waited < 10s);
  }
  // timeout_error is a peer_error: code that handles dead peers handles slow ones.
  InProcWorld world(2, {.timeout = 50ms});
  std::atomic<bool> done{false};
  bool as_peer_error = false;
  try {
    world.run([&](InProcTransport& t) {
      if (t.rank() == 1) return wait_for_flag(done);
      int v = 0;
      try {
        t.recv(1, std::span<int>(&v, 1), 0);
      } catch (...) {
        done = true;
        throw;
      }
    });
  } catch (const dssync::peer_error& e) {
    as_peer_error = contains(e.what(), "timeout");
  }
  CHECK(as_peer_error);
}

TEST_CASE("a timeout names the rank stalled in its own code, not a waiting one") {
  // Rank 0 waits on rank 1, rank 1 waits on rank 2, and rank 2 is busy in its
  // own code past the timeout. Rank 0's message must name rank 2.
  InProcWorld world(3, {.timeout = 2s});
  std::atomic<bool> release{false};
  std::vector<Outcome> outcome(3);
  run_outcome(world, [&](InProcTransport& t) {
    int v = 0;
    if (t.rank() == 2) {
      wait_for_flag(release);  // the stall: no dssync call at all
      return;
    }
    // Rank 1 starts waiting a second later, so that rank 0's wait is the
    // first to end (with a second to spare either way, even under TSan).
    if (t.rank() == 1) std::this_thread::sleep_for(1s);
    try {
      recorded(outcome, t.rank(), [&] { t.recv(t.rank() + 1, std::span<int>(&v, 1), 5); });
    } catch (...) {
      if (t.rank() == 0) release = true;
      throw;
    }
  });
  CAPTURE(outcome[0].what);
  CHECK(outcome[0].kind == "timeout");
  CHECK(contains(outcome[0].what, "rank 1 waits on rank 2"));
  CHECK(contains(outcome[0].what, "rank 2 is stalled in its own code"));
}

TEST_CASE("a timeout between ranks that wait on each other says so") {
  // Both ranks receive first: a cycle of waits, nobody stalled in user code.
  // Rank 1 starts a second later, so that rank 0's wait ends first, while
  // rank 1 still waits on it (with a second to spare either way).
  InProcWorld world(2, {.timeout = 2s});
  std::vector<Outcome> outcome(2);
  run_outcome(world, [&](InProcTransport& t) {
    int v = 0;
    if (t.rank() == 1) std::this_thread::sleep_for(1s);
    recorded(outcome, t.rank(), [&] { t.recv(1 - t.rank(), std::span<int>(&v, 1), 1); });
  });
  const Outcome& first = outcome[0];
  CAPTURE(first.what);
  CHECK(first.kind == "timeout");
  CHECK(contains(first.what, "wait on each other"));
}

TEST_CASE("bad arguments throw configuration_error") {
  InProcWorld world(2);
  std::vector<Outcome> bad;
  std::array<int, 2> exchanged{};
  world.run([&](InProcTransport& t) {
    std::array<int, 2> buf{7, 8};
    const std::span<const int> out(buf);
    const std::span<int> in(buf);
    if (t.rank() == 0) {
      auto attempt = [&](auto&& call) {
        try {
          call();
          bad.push_back({});
        } catch (...) {
          bad.push_back(classify(std::current_exception()));
        }
      };
      attempt([&] { t.send(-1, out, 0); });
      attempt([&] { t.send(2, out, 0); });
      attempt([&] { t.recv(-1, in, 0); });
      attempt([&] { t.recv(2, in, 0); });
      attempt([&] { t.sendrecv(2, out, 1, in, 0); });
      attempt([&] { t.sendrecv(1, out, -5, in, 0); });
      attempt([&] { t.send(1, out, -1); });
      attempt([&] { t.recv(1, in, dssync::max_tag + 1); });
      attempt([&] { t.sendrecv(1, out, 1, in, -1); });
      attempt([&] { t.send(0, out, 0); });  // itself: a blocking send could never complete
      // The extreme valid tags work.
      t.send(1, out, 0);
      t.recv(1, std::span<int>(exchanged), dssync::max_tag);
    } else {
      t.recv(0, in, 0);
      buf[0] += 10;
      t.send(0, out, dssync::max_tag);
    }
  });
  REQUIRE(bad.size() == 10u);
  for (std::size_t i = 0; i < bad.size(); ++i) {
    CAPTURE(i);
    CAPTURE(bad[i].what);
    CHECK(bad[i].kind == "configuration");
    CHECK(contains(bad[i].what, "rank 0"));
  }
  CHECK(contains(bad[1].what, "peer 2 is outside the world of 2 ranks"));
  CHECK(contains(bad[6].what, "tag outside [0, 32767]"));
  CHECK(exchanged == std::array<int, 2>{17, 8});
}

TEST_CASE("options out of range are refused: channels beyond 1..255, a negative timeout") {
  for (const int channels : {0, 256}) {
    CAPTURE(channels);
    CHECK_THROWS_WITH_AS(InProcWorld(2, {.channels = channels}),
                         doctest::Contains("InProcOptions::channels must be in 1..255"),
                         dssync::configuration_error);
  }
  CHECK_THROWS_WITH_AS(InProcWorld(2, {.timeout = std::chrono::milliseconds(-100)}),
                       doctest::Contains("InProcOptions::timeout must be at least 0 ms"),
                       dssync::configuration_error);
}

TEST_CASE("a timeout longer than the clock can count is no deadline, not one already passed") {
  // start + timeout would overflow the steady clock's nanoseconds and wrap
  // into the past: the receive below must wait for the late send instead.
  for (const auto timeout :
       {std::chrono::milliseconds::max(), std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::hours(24 * 365 * 300))}) {
    CAPTURE(timeout.count());
    int got = 0;
    InProcWorld(2, {.timeout = timeout}).run([&](InProcTransport& t) {
      int v = 7;
      if (t.rank() == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        t.send(1, std::span<const int>(&v, 1), 1);
      } else {
        t.recv(0, std::span<int>(&got, 1), 1);
      }
    });
    CHECK(got == 7);
  }
}

TEST_CASE("worlds of fewer than one rank are refused") {
  CHECK_THROWS_AS(InProcWorld(0), dssync::configuration_error);
  CHECK_THROWS_AS(InProcWorld(-3), dssync::configuration_error);
  InProcWorld one(1);
  int ran = 0;
  one.run([&](InProcTransport& t) {
    CHECK(t.rank() == 0);
    CHECK(t.size() == 1);
    ++ran;
  });
  CHECK(ran == 1);
}

TEST_CASE("run() can be called again, also after a failed run") {
  InProcWorld world(4, {.timeout = 20s});
  auto exchange = [](std::vector<int>& got) {
    return [&got](InProcTransport& t) {
      const int n = t.size();
      const int mine = t.rank() * 10;
      int theirs = -1;
      t.sendrecv((t.rank() + 1) % n, std::span<const int>(&mine, 1), (t.rank() + n - 1) % n,
                 std::span<int>(&theirs, 1), 0);
      got[std::size_t(t.rank())] = theirs;
    };
  };
  std::vector<int> first(4, -1);
  world.run(exchange(first));
  CHECK(first == std::vector<int>{30, 0, 10, 20});

  const Outcome failed = run_outcome(world, [](InProcTransport& t) {
    if (t.rank() == 3) throw user_failure("once");
    int v = 0;
    t.recv(3, std::span<int>(&v, 1), 0);
  });
  CHECK(failed.kind == "std");

  std::vector<int> third(4, -1);
  world.run(exchange(third));
  CHECK(third == std::vector<int>{30, 0, 10, 20});
}

}  // namespace

TEST_CASE("Background: an error nobody got is rethrown by the next start(), which then starts nothing") {
  dssync::InProcWorld(2).run([](dssync::InProcTransport& t) {
    dssync::Background<dssync::InProcTransport> bg(t);
    CHECK(bg.transport().channel_index() == 1);
    bg.start([](dssync::InProcTransport&) { throw std::runtime_error("first job failed"); });
    CHECK(bg.wait(std::chrono::milliseconds(0)));
    bool ran = false;
    CHECK_THROWS_WITH(bg.start([&](dssync::InProcTransport&) { ran = true; }),
                      doctest::Contains("first job failed"));
    CHECK(bg.ready());
    CHECK_NOTHROW(bg.get());  // consumed by start()
    CHECK_FALSE(ran);
    bg.start([&](dssync::InProcTransport&) { ran = true; });
    bg.get();
    CHECK(ran);
  });
}

TEST_CASE(
    "Background: a negative timeout is refused; InOrderJobs goes on to the next job after one that "
    "failed") {
  dssync::InProcWorld(2).run([](dssync::InProcTransport& t) {
    {
      dssync::Background<dssync::InProcTransport> bg(t);
      bg.start([](dssync::InProcTransport&) {});
      // It had waited without a limit.
      CHECK_THROWS_WITH_AS(bg.wait(std::chrono::milliseconds(-1)),
                           doctest::Contains("at least 0 ms (0: no limit), got -1 ms"),
                           dssync::configuration_error);
      bg.get();
    }
    // Job 0 fails; job 1 runs next (job 0 had been run again, its error
    // rethrown by every wait after).
    std::vector<std::uint64_t> ran, ended;
    dssync::InOrderJobs<dssync::InProcTransport> jobs(
        t, 1,
        [&](dssync::InProcTransport&, std::uint64_t k) {
          ran.push_back(k);
          if (k == 0) throw std::runtime_error("job 0 failed");
        },
        [&](std::uint64_t k) { ended.push_back(k); });
    jobs.submit();
    jobs.submit();
    CHECK_THROWS_WITH(jobs.wait_done(1), doctest::Contains("job 0 failed"));
    CHECK(jobs.done() == 1);
    CHECK_NOTHROW(jobs.wait_done(2));
    CHECK(jobs.done() == 2);
    CHECK(ran == std::vector<std::uint64_t>{0, 1});
    CHECK(ended == std::vector<std::uint64_t>{0, 1});
  });
}

TEST_CASE(
    "CountingTransport counts a sendrecv's send that was delivered though its receive did not "
    "fit, and a sendrecv_view's") {
  for (const bool view : {false, true}) {
    CAPTURE(view);
    std::array<dssync::TrafficCount, 2> counts{};
    std::array<std::string, 2> kinds;
    InProcWorld(2).run([&](InProcTransport& base) {
      dssync::CountingTransport<InProcTransport> t(base);
      const int me = t.rank(), other = 1 - me;
      const std::vector<float> out(4, 1.0f);
      std::vector<float> in(me == 0 ? 3 : 4);  // rank 0's receive is one float short
      try {
        if (view)
          t.sendrecv_view(
              other, std::span<const float>(out), other, in.size(),
              [&](std::span<const float> got) { std::copy(got.begin(), got.end(), in.begin()); },
              3);
        else
          t.sendrecv(other, std::span<const float>(out), other, std::span<float>(in), 3);
        kinds[static_cast<std::size_t>(me)] = "none";
      } catch (const dssync::size_mismatch_error& e) {
        kinds[static_cast<std::size_t>(me)] = e.message();
      }
      counts[static_cast<std::size_t>(me)] = t.count();
    });
    // Rank 0's send reached rank 1; rank 1's was refused by rank 0's short receive.
    CHECK(kinds[0] == "expected 12 bytes, the peer sent 16");
    CHECK(kinds[1] == "sent 16 bytes, the peer expected 12");
    CHECK(counts[0].bytes_sent == 16);
    CHECK(counts[0].messages_sent == 1);
    CHECK(counts[1].bytes_sent == 0);
    CHECK(counts[1].messages_sent == 0);
  }
}

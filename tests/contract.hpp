#pragma once
// The transport contract suite (transport/contract.hpp says the contract): each
// case is written once against a Runner and runs on every transport, as Gloo's
// base test runs each test over every transport. tests/contract.cpp runs the
// cases on the in-process world, the simulator and TCP ranks as threads;
// tests/contract_ranks.cpp runs them as separate processes, under mpirun
// (MPITransport) and under the launcher (TcpTransport).
//
// A Runner has
//   static constexpr const char* name;
//   static constexpr bool wall_clock;  // deadlines in real time (the simulator
//                                      // has virtual time and finds deadlocks)
//   std::vector<End> run(int n, std::chrono::milliseconds timeout, F f);
//     f(auto& transport) on every rank of a world of n. A rank whose function
//     throws fails the transport (the in-process worlds do it themselves, the
//     others call fail()). Each rank's End; ranks of other processes: unknown.
//   static void pause(auto& t, std::chrono::milliseconds d);
//     a rank busy in its own code (the simulator: computing in virtual time).
// A case reports through a Report, so the same case runs under doctest and in
// a plain multi-process program.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "dssync/dssync.hpp"
#include "outcome.hpp"

namespace contract {

using ms = std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// How a rank's function ended (tests/outcome.hpp), or unknown: a rank of
// another process.
struct End : dssync_test::Outcome {
  bool known = true;
};
inline End unknown() {
  End e;
  e.known = false;
  return e;
}

inline End end_of(const std::exception_ptr& e) {
  End end;
  static_cast<dssync_test::Outcome&>(end) = dssync_test::classify(e);
  return end;
}

// Runs one operation and tells how it ended.
template <class F>
End attempt(F&& f) {
  try {
    f();
    return {};
  } catch (...) {
    return end_of(std::current_exception());
  }
}

struct Report {
  std::function<void(bool, const std::string&)> check;
  std::function<void(const std::string&)> skip;
};

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Checks a rank's End where it is known: its kind, its peer, words in its text.
inline void expect_end(Report& rep, const std::vector<End>& ends, int rank, const std::string& kind,
                       std::optional<int> peer = {}, const std::string& words = {}) {
  const End& e = ends[static_cast<std::size_t>(rank)];
  if (!e.known) return;
  const std::string who = "rank " + std::to_string(rank) + ": ";
  rep.check(e.kind == kind, who + "ended with " + e.kind + " (" + e.what + "), expected " + kind);
  if (peer)
    rep.check(e.peer == peer, who + "where().peer is " +
                                  (e.peer ? std::to_string(*e.peer) : std::string("empty")) +
                                  ", expected " + std::to_string(*peer) + " (" + e.what + ")");
  if (!words.empty())
    rep.check(contains(e.what, words), who + "\"" + e.what + "\" does not say \"" + words + "\"");
}

// Every case names the rank it checks from; a rank records what it saw into
// these slots (one per rank), and the case checks them after the run.
// (Not bool: std::vector<bool>'s elements share words, and ranks write at once.)
template <class T>
std::vector<T> slots(int n) {
  static_assert(!std::is_same_v<T, bool>, "use char: the ranks write their slots at once");
  return std::vector<T>(static_cast<std::size_t>(n));
}

// ---------------------------------------------------------------- cases --

// Messages between one pair with one tag arrive in the order sent; a receive
// from one source does not take another source's message.
template <class R>
void ordering_per_source_and_tag(R& runner, Report& rep) {
  auto got = slots<std::vector<int>>(3);
  const auto ends = runner.run(3, ms(20000), [&](auto& t) {
    if (t.rank() == 0) {
      for (int k = 1; k <= 3; ++k) {
        const std::vector<int> m(static_cast<std::size_t>(k), k);
        t.send(2, std::span<const int>(m), 5);
      }
    } else if (t.rank() == 1) {
      const std::vector<int> m{-6, -6};
      t.send(2, std::span<const int>(m), 5);
    } else {
      std::vector<int> all;
      std::vector<int> from1(2);
      t.recv(1, std::span<int>(from1), 5);
      all.insert(all.end(), from1.begin(), from1.end());
      for (int k = 1; k <= 3; ++k) {
        std::vector<int> m(static_cast<std::size_t>(k));
        t.recv(0, std::span<int>(m), 5);
        all.insert(all.end(), m.begin(), m.end());
      }
      got[2] = all;
    }
  });
  for (int r = 0; r < 3; ++r) expect_end(rep, ends, r, "none");
  if (ends[2].known)
    rep.check(got[2] == std::vector<int>({-6, -6, 1, 2, 2, 3, 3, 3}),
              "rank 2 received the messages out of order or mixed up");
}

// A receive with another tag never takes a message: it fails (no match, no
// size mismatch) and leaves the buffer alone.
template <class R>
void tags_do_not_see_each_other(R& runner, Report& rep) {
  auto untouched = slots<char>(2);
  const auto ends = runner.run(2, ms(500), [&](auto& t) {
    if (t.rank() == 0) {
      // Late, so that rank 1's receive is first to reach its deadline: where
      // sends wait for their receive (in-process), this one times out too.
      R::pause(t, ms(250));
      const std::vector<int> m{7};
      t.send(1, std::span<const int>(m), 1);
      R::pause(t, ms(1500));
    } else {
      std::vector<int> buf{-1, -1};  // another length: taking tag 1 would be a mismatch
      const End e = attempt([&] { t.recv(0, std::span<int>(buf), 2); });
      untouched[1] = buf == std::vector<int>{-1, -1};
      if (e.kind != "none") throw std::runtime_error("tag 2: " + e.kind + ": " + e.what);
    }
  });
  if (!ends[1].known) return;
  rep.check(untouched[1], "a receive with tag 2 wrote the tag-1 message into its buffer");
  rep.check(ends[1].kind == "std" && contains(ends[1].what, "tag 2: timeout"),
            "rank 1's receive with tag 2 ended with " + ends[1].what + ", expected a timeout");
}

// A length mismatch is size_mismatch_error naming the peer, on the receiver
// (shorter and longer), and the transport goes on.
template <class R>
void size_mismatch_both_sides(R& runner, Report& rep) {
  auto short_end = slots<End>(2), long_end = slots<End>(2), big_end = slots<End>(2);
  auto after = slots<std::vector<float>>(2);
  auto past = slots<std::size_t>(2);
  // A megabyte: large enough that Open MPI's shared memory moves it by a single
  // copy, which wrote a message that did not fit past the receive's buffer.
  constexpr std::size_t big = std::size_t{1} << 18;
  const auto ends = runner.run(2, ms(20000), [&](auto& t) {
    const int other = 1 - t.rank();
    const std::vector<float> four{1, 2, 3, 4};
    if (t.rank() == 0) {
      short_end[0] = attempt([&] { t.send(1, std::span<const float>(four), 1); });
      long_end[0] = attempt([&] { t.send(1, std::span<const float>(four), 2); });
      const std::vector<float> megabyte(big, 7.0f);
      big_end[0] = attempt([&] { t.send(1, std::span<const float>(megabyte), 4); });
    } else {
      std::vector<float> three(3), five(5);
      short_end[1] = attempt([&] { t.recv(0, std::span<float>(three), 1); });
      long_end[1] = attempt([&] { t.recv(0, std::span<float>(five), 2); });
      // The receive takes the first half; the second half must stay as it was.
      std::vector<float> halves(big, -1.0f);
      big_end[1] = attempt([&] { t.recv(0, std::span<float>(halves).first(big / 2), 4); });
      past[1] = std::size_t(std::count_if(halves.begin() + big / 2, halves.end(),
                                          [](float x) { return x != -1.0f; }));
    }
    std::vector<float> mine(1000, float(t.rank() + 1)), theirs(1000);
    t.sendrecv(other, std::span<const float>(mine), other, std::span<float>(theirs), 3);
    after[static_cast<std::size_t>(t.rank())] = theirs;
  });
  for (int r = 0; r < 2; ++r) expect_end(rep, ends, r, "none");
  if (ends[1].known) {
    std::vector<End> s{short_end[1]}, l{long_end[1]}, b{big_end[1]};
    expect_end(rep, s, 0, "size_mismatch", 0, "expected 12 bytes, the peer sent 16");
    expect_end(rep, l, 0, "size_mismatch", 0, "expected 20 bytes, the peer sent 16");
    expect_end(rep, b, 0, "size_mismatch", 0, "expected 524288 bytes, the peer sent 1048576");
    rep.check(past[1] == 0, "rank 1: " + std::to_string(past[1]) +
                                " floats written past the end of the receive's buffer");
    rep.check(after[1] == std::vector<float>(1000, 1.0f),
              "rank 1: the exchange after the mismatch");
  }
  if (ends[0].known) {
    // The sender learns of it only where the transport tells it (in-process).
    for (const End* e : {&short_end[0], &long_end[0]})
      rep.check(e->kind == "none" || (e->kind == "size_mismatch" && e->peer == 1 &&
                                      contains(e->what, "sent 16 bytes, the peer expected ")),
                "rank 0's send ended with " + e->what);
    rep.check(big_end[0].kind == "none" ||
                  (big_end[0].kind == "size_mismatch" && big_end[0].peer == 1 &&
                   contains(big_end[0].what, "sent 1048576 bytes, the peer expected 524288")),
              "rank 0's megabyte send ended with " + big_end[0].what);
    rep.check(after[0] == std::vector<float>(1000, 2.0f),
              "rank 0: the exchange after the mismatch");
  }
}

// A send to or a receive from oneself is refused at once; a sendrecv with
// oneself on both sides is a copy, on one side only refused at once. The
// deadline is long: a transport that waited it out would end with a timeout.
template <class R>
void self_rules(R& runner, Report& rep) {
  auto seen = slots<std::vector<End>>(2);
  auto copied = slots<char>(2);
  const auto ends = runner.run(2, ms(20000), [&](auto& t) {
    const int me = t.rank(), other = 1 - me;
    const std::vector<float> out{1, 2, 3};
    std::vector<float> in(3), two(2);
    auto& s = seen[static_cast<std::size_t>(me)];
    s.push_back(attempt([&] { t.send(me, std::span<const float>(out), 1); }));
    s.push_back(attempt([&] { t.recv(me, std::span<float>(in), 1); }));
    s.push_back(attempt(
        [&] { t.sendrecv(me, std::span<const float>(out), other, std::span<float>(in), 1); }));
    s.push_back(attempt(
        [&] { t.sendrecv(other, std::span<const float>(out), me, std::span<float>(in), 1); }));
    s.push_back(attempt(
        [&] { t.sendrecv(me, std::span<const float>(out), me, std::span<float>(two), 1); }));
    s.push_back(
        attempt([&] { t.sendrecv(me, std::span<const float>(out), me, std::span<float>(in), 1); }));
    copied[static_cast<std::size_t>(me)] = in == out;
    // Still usable.
    std::vector<float> theirs(3);
    t.sendrecv(other, std::span<const float>(out), other, std::span<float>(theirs), 2);
  });
  for (int r = 0; r < 2; ++r) {
    expect_end(rep, ends, r, "none");
    if (!ends[static_cast<std::size_t>(r)].known) continue;
    const auto& s = seen[static_cast<std::size_t>(r)];
    expect_end(rep, s, 0, "configuration", r, "send to the sending rank itself");
    expect_end(rep, s, 1, "configuration", r, "receive from the receiving rank itself");
    expect_end(rep, s, 2, "configuration", {}, "one side only");
    expect_end(rep, s, 3, "configuration", {}, "one side only");
    expect_end(rep, s, 4, "size_mismatch", r, "expected 8 bytes, the peer sent 12");
    expect_end(rep, s, 5, "none");
    rep.check(copied[static_cast<std::size_t>(r)], "a sendrecv with itself did not copy");
  }
}

// A receive that nothing matches ends with timeout_error naming the peer and
// the operation; so does a send nothing receives (a large one: small sends may
// be buffered, and the simulator buffers every send at the receiver).
template <class R>
void timeout_names_peer_and_operation(R& runner, Report& rep) {
  auto ends = runner.run(2, ms(300), [&](auto& t) {
    if (t.rank() == 0) {
      R::pause(t, ms(1500));
    } else {
      std::vector<float> in(4);
      t.recv(0, std::span<float>(in), 4);
    }
  });
  expect_end(rep, ends, 0, "none");
  expect_end(rep, ends, 1, "timeout", 0, "a receive from rank 0 ");
  if (R::wall_clock) {
    expect_end(rep, ends, 1, "timeout", 0, "did not complete within 300 ms");
    // The buffer is made before the ranks start, and the receiver stays away
    // ten times the timeout: under a sanitizer, making 32 MiB inside the rank
    // took long enough that rank 1 had left before rank 0's send timed out.
    const std::vector<float> big(std::size_t{8} << 20);  // 32 MiB
    ends = runner.run(2, ms(300), [&](auto& t) {
      if (t.rank() == 0) {
        t.send(1, std::span<const float>(big), 4);
      } else {
        R::pause(t, ms(3000));
      }
    });
    expect_end(rep, ends, 0, "timeout", 1, "a send to rank 1 did not complete within 300 ms");
  }
}

// A rank that fails is named, with its reason, by every rank waiting on
// anything (here: on each other, in a cycle), and a failed transport throws
// peer_error at once on every later call, a copy with itself included, in the
// words for a call made after the failure.
template <class R>
void failed_peer_named_everywhere(R& runner, Report& rep) {
  auto later = slots<End>(4);
  auto self = slots<End>(4);
  const auto ends = runner.run(4, ms(20000), [&](auto& t) {
    const int r = t.rank();
    if (r == 3) {
      R::pause(t, ms(200));
      throw std::runtime_error("rank 3 gives up");
    }
    std::vector<float> in(8);
    const End waiting = attempt([&] { t.recv((r + 1) % 3, std::span<float>(in), 6); });
    const std::vector<float> out(8, 1.0f);
    later[static_cast<std::size_t>(r)] =
        attempt([&] { t.send((r + 2) % 3, std::span<const float>(out), 7); });
    self[static_cast<std::size_t>(r)] =
        attempt([&] { t.sendrecv(r, std::span<const float>(out), r, std::span<float>(in), 7); });
    if (waiting.kind != "none")
      std::rethrow_exception(std::make_exception_ptr(dssync::peer_error(
          waiting.what, dssync::error_context{}.with_peer(waiting.peer.value_or(-1)))));
  });
  for (int r = 0; r < 3; ++r) {
    expect_end(rep, ends, r, "peer", 3, "rank 3 gives up");
    if (!ends[static_cast<std::size_t>(r)].known) continue;
    std::vector<End> l{later[static_cast<std::size_t>(r)], self[static_cast<std::size_t>(r)]};
    expect_end(rep, l, 0, "peer", 3, "(the transport stays failed; make a new one to go on)");
    expect_end(rep, l, 1, "peer", 3, "(the transport stays failed; make a new one to go on)");
  }
}

// A peer that returns while another still needs it fails the job, however
// late the call that needed it comes (TCP failed the transport only for a
// call already waiting as the peer left): the ranks are out of step. Rank 1
// asks rank 0 long after it returned; then ranks 1 and 2 find the transport
// failed. (MPI and the simulator end rank 1's receive by its deadline and by
// the deadlock, which fail the transport too.)
template <class R>
void departed_peer_fails_the_job(R& runner, Report& rep) {
  auto first = slots<End>(3), later = slots<End>(3);
  const auto ends = runner.run(3, ms(1000), [&](auto& t) {
    const int r = t.rank();
    if (r == 0) return;
    std::vector<float> in(4);
    const std::vector<float> out(4, 1.0f);
    if (r == 1) {
      R::pause(t, ms(300));
      first[1] = attempt([&] { t.recv(0, std::span<float>(in), 3); });
    } else {
      R::pause(t, ms(600));
    }
    const int other = 3 - r;
    later[static_cast<std::size_t>(r)] = attempt(
        [&] { t.sendrecv(other, std::span<const float>(out), other, std::span<float>(in), 4); });
  });
  for (int r = 0; r < 3; ++r) expect_end(rep, ends, r, "none");
  if (ends[1].known) {
    rep.check(first[1].kind == "peer" || first[1].kind == "timeout",
              "rank 1's receive from the departed rank 0 ended with " + first[1].kind + " (" +
                  first[1].what + ")");
    std::vector<End> l{later[1]};
    expect_end(rep, l, 0, "peer");
  }
  if (ends[2].known)
    rep.check(
        later[2].kind == "peer" || later[2].kind == "timeout",
        "rank 2's exchange with rank 1 ended with " + later[2].kind + " (" + later[2].what + ")");
}

// A rank's own timeout fails its transport too: a program that catches it
// finds every later call failed, a copy with itself included, in the words for
// its own failure. (On the simulator the timeout is the deadlock's: rank 0
// has returned.)
template <class R>
void own_timeout_sticks(R& runner, Report& rep) {
  auto later = slots<End>(2);
  auto self = slots<End>(2);
  auto first = slots<End>(2);
  const auto ends = runner.run(2, ms(300), [&](auto& t) {
    if (t.rank() == 0) return R::pause(t, ms(1500));
    std::vector<float> in(4);
    const std::vector<float> out(4, 1.0f);
    first[1] = attempt([&] { t.recv(0, std::span<float>(in), 4); });
    later[1] =
        attempt([&] { t.sendrecv(0, std::span<const float>(out), 0, std::span<float>(in), 5); });
    self[1] =
        attempt([&] { t.sendrecv(1, std::span<const float>(out), 1, std::span<float>(in), 5); });
  });
  expect_end(rep, ends, 0, "none");
  expect_end(rep, ends, 1, "none");
  if (!ends[1].known) return;
  std::vector<End> got{first[1], later[1], self[1]};
  expect_end(rep, got, 0, "timeout", 0, "a receive from rank 0 ");
  expect_end(rep, got, 1, "peer", 1, "this transport failed earlier (a receive from rank 0 ");
  expect_end(rep, got, 2, "peer", 1, "this transport failed earlier (a receive from rank 0 ");
}

// One deadline per operation, from its start: a sendrecv whose receive comes
// late and whose send is never taken fails one timeout after it began, not
// one timeout after the receive (the in-process world waited twice). The time
// checked is the one the timeout reports ("waited W ms"), taken when the
// deadline was seen: letting go of a 32 MiB send afterwards is slow under the
// sanitizers.
template <class R>
void deadline_from_operation_start(R& runner, Report& rep) {
  if (!R::wall_clock) return rep.skip("virtual time has no deadlines");
  // Filled before the ranks start: zeroing 32 MiB inside rank 0 took long
  // enough under ThreadSanitizer that rank 1's send (at 700 ms, a 1000 ms
  // deadline) expired before rank 0 had posted its receive.
  const std::vector<float> big(std::size_t{8} << 20);  // never received
  const auto ends = runner.run(2, ms(1000), [&](auto& t) {
    if (t.rank() == 0) {
      std::vector<float> in(1);
      const End e =
          attempt([&] { t.sendrecv(1, std::span<const float>(big), 1, std::span<float>(in), 9); });
      if (e.kind != "none")
        throw dssync::timeout_error(e.what, dssync::error_context{}.with_peer(e.peer.value_or(-1)));
    } else {
      R::pause(t, ms(700));
      const std::vector<float> one{5};
      t.send(0, std::span<const float>(one), 9);
      R::pause(t, ms(3000));
    }
  });
  expect_end(rep, ends, 0, "timeout", 1, "a send to rank 1 did not complete within 1000 ms");
  if (!ends[0].known) return;
  // A deadline restarted by the receive would be seen at 1,700 ms at the earliest.
  const std::string& what = ends[0].what;
  const auto at = what.find("(waited ");
  const long waited = at == std::string::npos ? -1 : std::atol(what.c_str() + at + 8);
  rep.check(waited >= 1000 && waited < 1600,
            "the timeout was seen after " + std::to_string(waited) + " ms: " + what);
}

// timeout = 0 is no deadline (the in-process world used to fail at once).
template <class R>
void zero_timeout_waits(R& runner, Report& rep) {
  if (!R::wall_clock) return rep.skip("virtual time has no deadlines");
  auto got = slots<float>(2);
  const auto ends = runner.run(2, ms(0), [&](auto& t) {
    std::vector<float> v{float(t.rank() + 10)};
    if (t.rank() == 0) {
      t.recv(1, std::span<float>(v), 3);
      got[0] = v[0];
    } else {
      R::pause(t, ms(600));
      t.send(0, std::span<const float>(v), 3);
    }
  });
  expect_end(rep, ends, 0, "none");
  expect_end(rep, ends, 1, "none");
  if (ends[0].known) rep.check(got[0] == 11.0f, "rank 0 received the wrong value");
}

// ----------------------------------------- synchronizers on every transport --

// Start values of a rank: reproducible and different per rank and tensor.
inline std::vector<float> start_values(int rank, int tensor, std::size_t count) {
  std::vector<float> v(count);
  std::uint64_t x = 0x9e3779b97f4a7c15ULL * std::uint64_t(rank * 7 + tensor + 1);
  for (auto& e : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    e = float(std::int64_t(x % 2001) - 1000) / 1000.0f;
  }
  return v;
}

// What each rank holds after a few steps of four synchronizers, with or
// without the checked mode: two tensors of odd lengths, the checked
// synchronizers made in the same order on every rank.
struct Steps {
  std::vector<float> a, b;
  bool operator==(const Steps& o) const {
    auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
      return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    return same(a, o.a) && same(b, o.b);
  }
};
template <class T>
Steps run_steps(T& t, bool checked, std::uint64_t seed) {
  Steps s{start_values(t.rank(), 0, 1001), start_values(t.rank(), 1, 37)};
  std::span<float> tensors[] = {std::span<float>(s.a), std::span<float>(s.b)};
  dssync::DSSync<T> ds(t, {.group_size = 2, .seed = seed, .checked = checked});
  dssync::AllReduceSync<T, dssync::RingReduce> all(t, {.checked = checked});
  dssync::DSSync<T, dssync::ButterflyShuffle, dssync::HalvingDoublingReduce> bf(
      t, {.group_size = 2, .seed = seed, .checked = checked});
  // Two places of unequal sizes, interleaved: columns, owners and a helper.
  dssync::AllReduceSync<T, dssync::HierarchicalReduce> hier(
      t, {.checked = checked},
      dssync::HierarchicalReduce(std::vector<std::string>{"a", "b", "a", "b", "b"}));
  for (int k = 0; k < 3; ++k) {
    ds.step(std::span<const std::span<float>>(tensors));
    bf.step(std::span<const std::span<float>>(tensors));
  }
  all.step(std::span<const std::span<float>>(tensors));
  hier.step(std::span<const std::span<float>>(tensors));
  ds.step(std::span<const std::span<float>>(tensors));
  return s;
}

// The same synchronizer runs give bitwise the same parameters on every
// transport (the reference: the in-process world), checked or not; the checked
// mode works on every transport (the simulator's fibers included) and stops
// every rank when one rank's seed differs.
template <class R>
void synchronizers_agree_bitwise(R& runner, Report& rep) {
  const int n = 5;
  auto want = slots<Steps>(n);
  dssync::InProcWorld(n).run([&](dssync::InProcTransport& t) {
    want[static_cast<std::size_t>(t.rank())] = run_steps(t, false, 7);
  });
  for (bool checked : {false, true}) {
    auto got = slots<Steps>(n);
    const auto ends = runner.run(n, ms(20000), [&](auto& t) {
      got[static_cast<std::size_t>(t.rank())] = run_steps(t, checked, 7);
    });
    for (int r = 0; r < n; ++r) {
      expect_end(rep, ends, r, "none");
      if (ends[static_cast<std::size_t>(r)].known)
        rep.check(got[static_cast<std::size_t>(r)] == want[static_cast<std::size_t>(r)],
                  "rank " + std::to_string(r) + (checked ? " (checked)" : "") +
                      ": the parameters differ from the in-process world's");
    }
  }
  // Every rank stops: with the checked mode's configuration_error, or, when
  // another rank's came first and failed the transport, with the peer_error
  // that carries it.
  const auto ends =
      runner.run(n, ms(20000), [&](auto& t) { run_steps(t, true, t.rank() == 2 ? 8 : 7); });
  for (int r = 0; r < n; ++r) {
    const End& e = ends[static_cast<std::size_t>(r)];
    if (!e.known) continue;
    rep.check((e.kind == "configuration" || e.kind == "peer") && contains(e.what, "ranks disagree"),
              "rank " + std::to_string(r) + " with one rank's seed different ended with " + e.what);
  }
}

// StaleSync on every transport: 20 trainer-like steps (params -= lr * the mean
// of gradients computed at the copy view() returns) with no delay, FixedDelay{0}
// and UniformDelay{0}, and with UniformDelay{3}, checked or not.
struct StaleSteps {
  std::vector<float> fixed0, uniform0, uniform3, bsp;
  bool operator==(const StaleSteps& o) const {
    auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
      return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    return same(fixed0, o.fixed0) && same(uniform0, o.uniform0) && same(uniform3, o.uniform3) &&
           same(bsp, o.bsp);
  }
};
template <class T>
StaleSteps run_stale_steps(T& t, bool checked) {
  constexpr std::size_t count = 1001;
  const int rank = t.rank();
  auto train = [&](auto& sync) {
    std::vector<float> x = start_values(rank, 2, count), g(count);
    for (int k = 0; k < 20; ++k) {
      std::span<const float> at(x);
      if constexpr (requires { sync.view(at); }) at = sync.view(at);
      for (std::size_t i = 0; i < count; ++i)
        g[i] = 0.5f * at[i] * at[i] - at[i] + 0.125f * float(rank + 1) * float(i % 5);
      sync.step(std::span<float>(g));
      for (std::size_t i = 0; i < count; ++i) x[i] -= 0.0625f * g[i];
    }
    return x;
  };
  StaleSteps s;
  dssync::StaleSync<T, dssync::FixedDelay> fixed0(t, count, {0}, {.checked = checked});
  s.fixed0 = train(fixed0);
  const dssync::StaleSyncOptions o{.seed = 9, .checked = checked};
  dssync::StaleSync<T, dssync::UniformDelay> uniform0(t, count, {0}, o);
  s.uniform0 = train(uniform0);
  dssync::StaleSync<T, dssync::UniformDelay> uniform3(t, count, {3}, o);
  s.uniform3 = train(uniform3);
  dssync::AllReduceSync<T, dssync::RingReduce, dssync::Average> bsp(t, {.checked = checked});
  s.bsp = train(bsp);
  return s;
}

// The same StaleSync runs give bitwise the in-process world's parameters on
// every transport, checked or not; with no delay they are AllReduceSync's on
// gradients, and with UniformDelay{3} they are not.
template <class R>
void stale_agrees_bitwise(R& runner, Report& rep) {
  const int n = 4;
  auto want = slots<StaleSteps>(n);
  dssync::InProcWorld(n).run([&](dssync::InProcTransport& t) {
    want[static_cast<std::size_t>(t.rank())] = run_stale_steps(t, false);
  });
  for (int r = 0; r < n; ++r) {
    const StaleSteps& w = want[static_cast<std::size_t>(r)];
    const std::string who = "rank " + std::to_string(r) + ": ";
    rep.check(StaleSteps{w.bsp, w.bsp, w.uniform3, w.bsp} == w,
              who + "StaleSync with no delay differs from AllReduceSync on gradients");
    rep.check(!(StaleSteps{w.fixed0, w.uniform0, w.bsp, w.bsp} == w),
              who + "StaleSync with UniformDelay{3} gave the undelayed result");
  }
  for (bool checked : {false, true}) {
    auto got = slots<StaleSteps>(n);
    const auto ends = runner.run(n, ms(20000), [&](auto& t) {
      got[static_cast<std::size_t>(t.rank())] = run_stale_steps(t, checked);
    });
    for (int r = 0; r < n; ++r) {
      expect_end(rep, ends, r, "none");
      if (ends[static_cast<std::size_t>(r)].known)
        rep.check(got[static_cast<std::size_t>(r)] == want[static_cast<std::size_t>(r)],
                  "rank " + std::to_string(r) + (checked ? " (checked)" : "") +
                      ": StaleSync's parameters differ from the in-process world's");
    }
  }
}

// SSPSync and ShadowSync on every transport (their rounds in the background,
// on channel 1): SSPSync at s = 0 and s = 2 (checked) for 20 steps and
// finish(); ShadowSync with model averaging and with DS-Sync rounds at lag
// bound 0 for 10 steps and finish(); AllReduceSync on gradients and on
// parameters beside them.
struct BesideSteps {
  std::vector<float> ssp0, ssp2, bsp_gradients, shadow_ma, shadow_ds, bsp_params;
  bool operator==(const BesideSteps& o) const {
    auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
      return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    return same(ssp0, o.ssp0) && same(ssp2, o.ssp2) && same(bsp_gradients, o.bsp_gradients) &&
           same(shadow_ma, o.shadow_ma) && same(shadow_ds, o.shadow_ds) &&
           same(bsp_params, o.bsp_params);
  }
};
template <class T>
BesideSteps run_beside_steps(T& t) {
  constexpr std::size_t count = 1001;
  const int rank = t.rank();
  auto gradient = [&](const std::vector<float>& x, std::vector<float>& g) {
    for (std::size_t i = 0; i < count; ++i)
      g[i] = 0.5f * x[i] * x[i] - x[i] + 0.125f * float(rank + 1) * float(i % 5);
  };
  auto on_gradients = [&](auto& sync) {
    std::vector<float> x = start_values(rank, 3, count), g(count);
    for (int k = 0; k < 20; ++k) {
      gradient(x, g);
      sync.step(std::span<float>(g));
      for (std::size_t i = 0; i < count; ++i) x[i] -= 0.0625f * g[i];
    }
    if constexpr (requires { sync.finish(std::span<float>(g)); }) {
      sync.finish(std::span<float>(g));
      for (std::size_t i = 0; i < count; ++i) x[i] -= 0.0625f * g[i];
    }
    return x;
  };
  auto on_params = [&](auto& sync) {
    std::vector<float> x = start_values(rank, 4, count), g(count);
    for (int k = 0; k < 10; ++k) {
      gradient(x, g);
      for (std::size_t i = 0; i < count; ++i) x[i] -= 0.0625f * g[i];
      sync.step(std::span<float>(x));
    }
    if constexpr (requires { sync.finish(std::span<float>(x)); }) sync.finish(std::span<float>(x));
    return x;
  };
  BesideSteps s;
  {
    dssync::SSPSync<T> ssp(t, count, {.staleness = 0});
    s.ssp0 = on_gradients(ssp);
  }
  {
    dssync::SSPSync<T> ssp(t, count, {.staleness = 2, .checked = true});
    s.ssp2 = on_gradients(ssp);
  }
  dssync::AllReduceSync<T, dssync::RingReduce, dssync::Average> bsp(t);
  s.bsp_gradients = on_gradients(bsp);
  {
    dssync::ShadowSync<T> shadow(t, count, {.max_lag = 0});
    s.shadow_ma = on_params(shadow);
  }
  {
    dssync::ShadowSync<T, dssync::ShadowDS> shadow(t, count, {.max_lag = 0}, {.seed = 5});
    s.shadow_ds = on_params(shadow);
  }
  dssync::AllReduceSync<T> params(t);
  s.bsp_params = on_params(params);
  return s;
}

// The same SSPSync and ShadowSync runs give bitwise the in-process world's
// parameters on every transport; SSPSync at s = 0 is AllReduceSync on
// gradients, and ShadowSync at lag bound 0 with model averaging is
// AllReduceSync on parameters followed by one more average.
template <class R>
void beside_agrees_bitwise(R& runner, Report& rep) {
  const int n = 4;
  auto want = slots<BesideSteps>(n);
  dssync::InProcWorld(n).run([&](dssync::InProcTransport& t) {
    want[static_cast<std::size_t>(t.rank())] = run_beside_steps(t);
  });
  for (int r = 0; r < n; ++r) {
    const BesideSteps& w = want[static_cast<std::size_t>(r)];
    const std::string who = "rank " + std::to_string(r) + ": ";
    rep.check(w.ssp0 == w.bsp_gradients, who + "SSPSync at s = 0 differs from AllReduceSync");
    rep.check(w.ssp2 != w.ssp0, who + "SSPSync at s = 2 gave the s = 0 result");
    rep.check(w.shadow_ma == want[0].shadow_ma && w.shadow_ds == want[0].shadow_ds,
              who + "ShadowSync's finish() left the ranks apart");
  }
  auto got = slots<BesideSteps>(n);
  const auto ends = runner.run(n, ms(20000), [&](auto& t) {
    got[static_cast<std::size_t>(t.rank())] = run_beside_steps(t);
  });
  for (int r = 0; r < n; ++r) {
    expect_end(rep, ends, r, "none");
    if (ends[static_cast<std::size_t>(r)].known)
      rep.check(got[static_cast<std::size_t>(r)] == want[static_cast<std::size_t>(r)],
                "rank " + std::to_string(r) +
                    ": SSPSync's or ShadowSync's parameters differ from the in-process world's");
  }
}

// GaiaSync on every transport: five ranks in data centers of 2 and 3 (one
// rank owns no shard), a few steps at a threshold that sends some updates
// and holds others, as pairs and as dense shards, with slack 0 (checked or
// not) and slack 1 (the exchange on the background channel).
struct GaiaSteps {
  std::vector<float> slack0, slack1;
  bool operator==(const GaiaSteps& o) const = default;
};
template <class T>
std::vector<float> run_gaia(T& t, int slack, bool checked) {
  const std::vector<std::string> dcs = {"a", "b", "a", "b", "b"};
  std::vector<float> x = start_values(0, 30, 513);
  dssync::GaiaSync<T> gaia(t, x, dcs,
                           {.threshold = 0.05, .slack = slack, .checked = checked});
  for (int step = 0; step < 5; ++step) {
    const std::vector<float> g = start_values(t.rank(), 31 + step, x.size());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] -= (step % 2 == 0 ? 0.25f : 0.01f) * g[i];
    gaia.step(x);
  }
  gaia.finish(x);
  return x;
}
template <class T>
GaiaSteps run_gaia_steps(T& t, bool checked) {
  return {run_gaia(t, 0, checked), run_gaia(t, 1, checked)};
}

// The same GaiaSync steps give bitwise the in-process world's models on
// every transport.
template <class R>
void gaia_agrees_bitwise(R& runner, Report& rep) {
  const int n = 5;
  auto want = slots<GaiaSteps>(n);
  dssync::InProcWorld(n).run([&](dssync::InProcTransport& t) {
    want[static_cast<std::size_t>(t.rank())] = run_gaia_steps(t, false);
  });
  for (int r = 0; r < n; ++r)
    rep.check(want[static_cast<std::size_t>(r)].slack0 != want[static_cast<std::size_t>(r)].slack1,
              "rank " + std::to_string(r) + ": GaiaSync's slack 1 gave the slack 0 result");
  for (bool checked : {false, true}) {
    auto got = slots<GaiaSteps>(n);
    const auto ends = runner.run(n, ms(20000), [&](auto& t) {
      got[static_cast<std::size_t>(t.rank())] = run_gaia_steps(t, checked);
    });
    for (int r = 0; r < n; ++r) {
      expect_end(rep, ends, r, "none");
      if (ends[static_cast<std::size_t>(r)].known)
        rep.check(got[static_cast<std::size_t>(r)] == want[static_cast<std::size_t>(r)],
                  "rank " + std::to_string(r) + (checked ? " (checked)" : "") +
                      ": GaiaSync's models differ from the in-process world's");
    }
  }
}

// GADMM on every transport: a few iterations of a quadratic local problem per
// rank, f_r(θ) = c_r/2 ||θ - a_r||², on the static chain and on a chain
// redrawn every other iteration (D-GADMM), checked or not.
struct AdmmQuadratic {
  double c;
  std::vector<double> a;
  std::size_t dim() const { return a.size(); }
  void solve(std::span<const double> mu, std::span<const double> sum, int k, double rho,
             std::span<double> theta) const {
    for (std::size_t i = 0; i < a.size(); ++i)
      theta[i] = (c * a[i] - mu[i] + rho * sum[i]) / (c + k * rho);
  }
};
struct AdmmResult {
  std::vector<double> theta, mu, dynamic_theta, dynamic_mu;
  bool operator==(const AdmmResult& o) const {
    auto same = [](const std::vector<double>& x, const std::vector<double>& y) {
      return x.size() == y.size() &&
             std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
    };
    return same(theta, o.theta) && same(mu, o.mu) && same(dynamic_theta, o.dynamic_theta) &&
           same(dynamic_mu, o.dynamic_mu);
  }
};
template <class T>
AdmmResult run_gadmm_iterations(T& t, bool checked) {
  const auto start = start_values(t.rank(), 3, 37);
  AdmmQuadratic problem{double(t.rank() + 1), std::vector<double>(start.begin(), start.end())};
  AdmmResult out;
  auto run = [&](auto&& g, std::vector<double>& theta, std::vector<double>& mu) {
    theta.assign(problem.dim(), 0.0);
    for (int k = 0; k < 7; ++k) g.iterate(problem, std::span<double>(theta));
    mu.assign(g.dual().begin(), g.dual().end());
  };
  run(dssync::GADMM<T>(t, problem.dim(), {.rho = 0.7, .checked = checked}), out.theta, out.mu);
  run(dssync::GADMM<T, dssync::RandomChain>(t, problem.dim(),
                                            {.rho = 0.7, .seed = 11, .checked = checked},
                                            dssync::RandomChain{2}),
      out.dynamic_theta, out.dynamic_mu);
  return out;
}

// The same GADMM iterations give bitwise the in-process world's models and
// duals on every transport, checked or not.
template <class R>
void gadmm_agrees_bitwise(R& runner, Report& rep) {
  const int n = 4;
  auto want = slots<AdmmResult>(n);
  dssync::InProcWorld(n).run([&](dssync::InProcTransport& t) {
    want[static_cast<std::size_t>(t.rank())] = run_gadmm_iterations(t, false);
  });
  for (bool checked : {false, true}) {
    auto got = slots<AdmmResult>(n);
    const auto ends = runner.run(n, ms(20000), [&](auto& t) {
      got[static_cast<std::size_t>(t.rank())] = run_gadmm_iterations(t, checked);
    });
    for (int r = 0; r < n; ++r) {
      expect_end(rep, ends, r, "none");
      if (ends[static_cast<std::size_t>(r)].known)
        rep.check(got[static_cast<std::size_t>(r)] == want[static_cast<std::size_t>(r)],
                  "rank " + std::to_string(r) + (checked ? " (checked)" : "") +
                      ": GADMM's models or duals differ from the in-process world's");
    }
  }
}

// SFBSync on every transport: four steps of gradients on three fully
// connected layers and the tensors around them, in hybrid, factors and dense
// mode, checked or not, and the hybrid with its traffic in the background on
// channel 1. Two ranks' k each step, then a short batch (k 1, 1, 1, 0) that
// moves every layer as factors in the hybrid too.
struct SfbSteps {
  std::vector<float> hybrid, factors, dense, background;
  bool operator==(const SfbSteps& o) const {
    auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
      return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    return same(hybrid, o.hybrid) && same(factors, o.factors) && same(dense, o.dense) &&
           same(background, o.background);
  }
};
template <class T>
SfbSteps run_sfb_steps(T& t, bool checked) {
  const std::vector<dssync::SFBLayer> layers = {{16, 24, 3}, {3, 5, 387}, {12, 12, 407}};
  constexpr std::size_t count = 555;
  const int rank = t.rank();
  auto train = [&](dssync::SFBMode mode, int background_channel = 0) {
    dssync::SFBSync<T> sync(t, layers,
                            {.mode = mode, .checked = checked, .background_channel = background_channel});
    std::vector<float> x(count, 0.0f);
    for (int step = 0; step < 4; ++step) {
      const int k = step < 3 ? 2 : (rank < 3 ? 1 : 0);
      std::vector<float> g = start_values(rank, 10 + step, count);
      std::vector<std::vector<float>> u, v;
      std::vector<dssync::FactorView> views;
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const auto [rows, cols, offset] = layers[l];
        const int tensor = 100 + 10 * step + static_cast<int>(l);
        u.push_back(start_values(rank, tensor, static_cast<std::size_t>(rows * k)));
        v.push_back(start_values(rank, tensor + 5, static_cast<std::size_t>(cols * k)));
        for (int i = 0; i < rows; ++i)
          for (int j = 0; j < cols; ++j) {
            float e = 0.0f;
            for (int q = 0; q < k; ++q)
              e += u[l][static_cast<std::size_t>(i + q * rows)] *
                   v[l][static_cast<std::size_t>(j + q * cols)];
            g[offset + static_cast<std::size_t>(i * cols + j)] = e;
          }
      }
      for (std::size_t l = 0; l < layers.size(); ++l)
        views.push_back({layers[l].rows, layers[l].cols, k, u[l].data(), v[l].data()});
      sync.step(std::span<float>(g), std::span<const dssync::FactorView>(views));
      for (std::size_t i = 0; i < count; ++i) x[i] -= 0.0625f * g[i];
    }
    return x;
  };
  SfbSteps out{train(dssync::SFBMode::hybrid), train(dssync::SFBMode::factors),
               train(dssync::SFBMode::dense), {}};
  // In the background on channel 1 when the caller is on channel 0 (run on channel 1,
  // the case has no third channel to put it on: it stands for the hybrid).
  out.background = out.hybrid;
  if constexpr (dssync::transport_with_channels<T>)
    if (t.channel_index() == 0 && t.channels() > 1) out.background = train(dssync::SFBMode::hybrid, 1);
  return out;
}

// The same SFBSync steps give bitwise the in-process world's parameters on
// every transport, checked or not.
template <class R>
void sfb_agrees_bitwise(R& runner, Report& rep) {
  const int n = 4;
  auto want = slots<SfbSteps>(n);
  dssync::InProcWorld(n).run([&](dssync::InProcTransport& t) {
    want[static_cast<std::size_t>(t.rank())] = run_sfb_steps(t, false);
  });
  for (bool checked : {false, true}) {
    auto got = slots<SfbSteps>(n);
    const auto ends = runner.run(n, ms(20000), [&](auto& t) {
      got[static_cast<std::size_t>(t.rank())] = run_sfb_steps(t, checked);
    });
    for (int r = 0; r < n; ++r) {
      expect_end(rep, ends, r, "none");
      if (ends[static_cast<std::size_t>(r)].known)
        rep.check(got[static_cast<std::size_t>(r)] == want[static_cast<std::size_t>(r)],
                  "rank " + std::to_string(r) + (checked ? " (checked)" : "") +
                      ": SFBSync's parameters differ from the in-process world's");
    }
  }
}

// ------------------------------------------------------------- channels --
// (transport/background.hpp) A transport with channels runs the cases above
// on channel 1 too (OnChannel below); these cases use two
// channels at once, from two contexts of each rank.

// Two contexts of every rank talk at once, with the same tags and peers, one
// on each channel: a ring all-reduce in the background on channel 1 beside
// one on channel 0, five rounds with one Background; every sum exact. Then a
// message on channel 1 and one on channel 0 with the same peer and tag, sent
// at once from two contexts, each received on its own channel.
template <class R>
void channels_apart(R& runner, Report& rep) {
  constexpr int n = 3;
  constexpr std::size_t len = 5003;  // odd: uneven ring blocks
  auto wrong = slots<int>(n);
  auto crossed = slots<int>(n);
  const auto ends = runner.run(n, ms(20000), [&](auto& t) {
    using Tr = std::remove_cvref_t<decltype(t)>;
    const int r = t.rank();
    const auto value = [](int rank, int round, int channel, std::size_t i) {
      return float((rank + 1) * (channel ? 1000 : 1) + round + int(i % 7));
    };
    std::vector<float> fg(len), bgv(len);
    // One collective object per context: a collective keeps its scratch.
    dssync::RingReduce ring, background_ring;
    const std::vector<int> all{0, 1, 2};
    {
      dssync::Background<Tr> bg(t);
      for (int round = 0; round < 5; ++round) {
        for (std::size_t i = 0; i < len; ++i) {
          fg[i] = value(r, round, 0, i);
          bgv[i] = value(r, round, 1, i);
        }
        bg.start([&](Tr& ch) {
          background_ring.all_reduce(ch, dssync::Group(all), std::span<float>(bgv), dssync::Sum{}, 4);
        });
        ring.all_reduce(t, dssync::Group(all), std::span<float>(fg), dssync::Sum{}, 4);
        bg.get();
        for (std::size_t i = 0; i < len; ++i) {
          float f = 0, b = 0;
          for (int q = 0; q < n; ++q) {
            f += value(q, round, 0, i);
            b += value(q, round, 1, i);
          }
          if (fg[i] != f || bgv[i] != b) ++wrong[static_cast<std::size_t>(r)];
        }
      }
      // The same peer and tag on both channels at once.
      std::vector<float> one(3), zero(3);
      if (r == 0) {
        const std::vector<float> x(3, 11.0f), y(3, 22.0f);
        bg.start([&](Tr& ch) { ch.send(1, std::span<const float>(x), 9); });
        t.send(1, std::span<const float>(y), 9);
        bg.get();
      } else if (r == 1) {
        bg.start([&](Tr& ch) { ch.recv(0, std::span<float>(one), 9); });
        t.recv(0, std::span<float>(zero), 9);
        bg.get();
        crossed[1] = (zero[0] != 22.0f) + (one[0] != 11.0f);
      }
    }
  });
  for (int r = 0; r < n; ++r) {
    expect_end(rep, ends, r, "none");
    if (!ends[static_cast<std::size_t>(r)].known) continue;
    rep.check(wrong[static_cast<std::size_t>(r)] == 0,
              "rank " + std::to_string(r) + ": " + std::to_string(wrong[static_cast<std::size_t>(r)]) +
                  " elements of the two all-reduces differ from their sums");
  }
  if (ends[1].known) rep.check(crossed[1] == 0, "rank 1: the two channels' messages crossed");
}

// A failure on one channel fails the rank on all of them: rank 0's background
// job waits on channel 1 for a message that never comes and times out;
// get() rethrows it on rank 0's trainer, which fails; rank 1, waiting on
// channel 0, hears that rank 0 failed and why. A background job that throws
// an error of its own is rethrown by get() with its context.
template <class R>
void channel_failure_fails_all(R& runner, Report& rep) {
  auto own = slots<End>(2);
  const auto ends = runner.run(2, ms(1000), [&](auto& t) {
    using Tr = std::remove_cvref_t<decltype(t)>;
    dssync::Background<Tr> bg(t);
    own[static_cast<std::size_t>(t.rank())] = attempt([&] {
      bg.start([](Tr& ch) {
        throw dssync::configuration_error("the job's own error",
                                          dssync::error_context{}.with_rank(ch.rank()).with_iteration(7));
      });
      bg.get();
    });
    std::vector<float> v(4);
    if (t.rank() == 0) {
      bg.start([&](Tr& ch) { ch.recv(1, std::span<float>(v), 3); });
      bg.get();
    } else {
      // Waits from 500 ms on, so that its own deadline is 500 ms after rank 0's.
      R::pause(t, ms(500));
      t.recv(0, std::span<float>(v), 3);
    }
  });
  for (int r = 0; r < 2; ++r) {
    if (!ends[static_cast<std::size_t>(r)].known) continue;
    std::vector<End> o{own[static_cast<std::size_t>(r)]};
    expect_end(rep, o, 0, "configuration", {}, "the job's own error");
    if (o[0].known)
      rep.check(contains(o[0].what, "rank " + std::to_string(r)) && contains(o[0].what, "iteration 7"),
                "the background error lost its context: " + o[0].what);
  }
  expect_end(rep, ends, 0, "timeout", 1, "a receive from rank 1");
  // Virtual time finds the deadlock on both ranks at once.
  if (R::wall_clock)
    expect_end(rep, ends, 1, "peer", 0, "a receive from rank 1");
  else
    expect_end(rep, ends, 1, "timeout", 0);
}

// The checked mode numbers a rank's checked synchronizers per channel, not per
// thread: made on one thread in a different order on each rank (one for
// channel 0, one for channel 1), each still meets its peers' and averages.
template <class R>
void checked_ordinals_per_channel(R& runner, Report& rep) {
  constexpr int n = 2;
  auto wrong = slots<int>(n);
  const auto ends = runner.run(n, ms(20000), [&](auto& t) {
    using Tr = std::remove_cvref_t<decltype(t)>;
    using Sync = dssync::AllReduceSync<Tr, dssync::RingReduce>;
    const int r = t.rank();
    Tr ch = t.channel(1);
    std::optional<Sync> zero, one;
    if (r == 0) {
      zero.emplace(t, dssync::AllReduceSyncOptions{.checked = true});
      one.emplace(ch, dssync::AllReduceSyncOptions{.checked = true});
    } else {
      one.emplace(ch, dssync::AllReduceSyncOptions{.checked = true});
      zero.emplace(t, dssync::AllReduceSyncOptions{.checked = true});
    }
    std::vector<float> x(5, float(r + 1)), y(5, float(10 * (r + 1)));
    zero->step(x);
    one->step(y);
    for (std::size_t i = 0; i < x.size(); ++i)
      wrong[static_cast<std::size_t>(r)] += (x[i] != 1.5f) + (y[i] != 15.0f);
  });
  for (int r = 0; r < n; ++r) {
    expect_end(rep, ends, r, "none");
    if (ends[static_cast<std::size_t>(r)].known)
      rep.check(wrong[static_cast<std::size_t>(r)] == 0,
                "rank " + std::to_string(r) + ": the two channels' averages are wrong");
  }
}

// Any runner, with every rank's function on channel 1 of its transport
// instead of channel 0 (transport/background.hpp): the contract holds per
// channel.
template <class R>
struct OnChannel : R {
  template <class F>
  std::vector<End> run(int n, ms timeout, F&& f) {
    return R::run(n, timeout, [&f](auto& t) {
      auto channel = t.channel(1);
      f(channel);
    });
  }
};

// Every case, by name, for the programs that run one case at a time
// ("channel-1/NAME" runs NAME through OnChannel).
template <class R>
using Case = void (*)(R&, Report&);
template <class R>
struct Named {
  const char* name;
  Case<R> run;
  int ranks;
};
template <class R>
std::vector<Named<R>> all_cases() {
  return {
      {"ordering", &ordering_per_source_and_tag<R>, 3},
      {"tags", &tags_do_not_see_each_other<R>, 2},
      {"size-mismatch", &size_mismatch_both_sides<R>, 2},
      {"self", &self_rules<R>, 2},
      {"timeout", &timeout_names_peer_and_operation<R>, 2},
      {"failed-peer", &failed_peer_named_everywhere<R>, 4},
      {"own-timeout", &own_timeout_sticks<R>, 2},
      {"departed-peer", &departed_peer_fails_the_job<R>, 3},
      {"deadline", &deadline_from_operation_start<R>, 2},
      {"zero-timeout", &zero_timeout_waits<R>, 2},
      {"synchronizers", &synchronizers_agree_bitwise<R>, 5},
      {"gadmm", &gadmm_agrees_bitwise<R>, 4},
      {"stale", &stale_agrees_bitwise<R>, 4},
      {"sfb", &sfb_agrees_bitwise<R>, 4},
      {"gaia", &gaia_agrees_bitwise<R>, 5},
      {"beside", &beside_agrees_bitwise<R>, 4},
      {"channels", &channels_apart<R>, 3},
      {"channel-failure", &channel_failure_fails_all<R>, 2},
      {"checked-ordinals", &checked_ordinals_per_channel<R>, 2},
  };
}

}  // namespace contract

// A program outside dssync: 4 ranks as threads sum a buffer with RingReduce and
// check the closed form. Built by tests/install/run.cmake against the installed
// package, through add_subdirectory and through FetchContent.
#include <atomic>
#include <cstdio>
#include <exception>
#include <span>
#include <vector>

#include <dssync/dssync.hpp>

int main() {
  constexpr int ranks = 4;
  constexpr int n = 1000;
  // Rank r holds (r + 1) * (i + 1) at i, so the sum is 10 * (i + 1): exact in float.
  constexpr float rank_factor_sum = ranks * (ranks + 1) / 2;
  const std::vector<int> members{0, 1, 2, 3};
  std::atomic<int> wrong{0};
  try {
    dssync::InProcWorld world(ranks);
    world.run([&](dssync::InProcTransport& t) {
      std::vector<float> data(n);
      for (int i = 0; i < n; ++i) data[std::size_t(i)] = float(t.rank() + 1) * float(i + 1);
      dssync::RingReduce ring;
      ring.all_reduce(t, dssync::Group(members), std::span<float>(data), dssync::Sum{});
      for (int i = 0; i < n; ++i)
        if (data[std::size_t(i)] != rank_factor_sum * float(i + 1)) ++wrong;
    });
  } catch (const std::exception& e) {
    std::printf("dssync consumer: FAILED with %s\n", e.what());
    return 1;
  }
  if (wrong != 0) {
    std::printf("dssync consumer: FAILED, %d wrong elements\n", wrong.load());
    return 1;
  }
  std::printf("dssync consumer: ring all-reduce over %d ranks OK, sum[%d] = %g\n", ranks, n - 1,
              double(rank_factor_sum * n));
  return 0;
}

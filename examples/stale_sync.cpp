// StaleSync: gradient descent with stale gradients, emulated exactly. 4 ranks
// as threads minimize f(x) = x^2 / 2, each computing its gradient at the
// parameters of a few clocks ago. With FixedDelay{s} the run is the delayed
// recurrence x_{t+1} = x_t - k x_{t-s} bit for bit (docs/method.md,
// "Staleness emulation"); with UniformDelay{s} every rank can recompute every
// rank's delay from (seed, rank, clock), so the run can be replayed too.
#include <dssync/dssync.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

constexpr int ranks = 4, clocks = 60;
constexpr double k = 0.5;  // the step size; stable for s = 2 below 2 cos(2 pi / 5) = 0.618

// Runs the trainer's loop on every rank and returns rank 0's x at every clock.
template <class Delay>
std::vector<double> descend(Delay delay) {
  std::vector<double> xs;
  dssync::InProcWorld(ranks).run([&](dssync::InProcTransport& t) {
    using Sync = dssync::StaleSync<dssync::InProcTransport, Delay, dssync::RingReduce, double>;
    Sync sync(t, 1, delay, {.seed = 7});  // one parameter, in double
    std::vector<double> x{1.0}, gradient(1);
    for (int c = 0; c < clocks; ++c) {
      if (t.rank() == 0) xs.push_back(x[0]);
      const auto stale = sync.view(x);  // the parameters of clock c - r
      gradient[0] = stale[0];           // f'(x) = x, at the stale point
      sync.step(gradient);              // the mean over the ranks
      x[0] -= k * gradient[0];
    }
  });
  return xs;
}

int main() {
  bool ok = true;
  // Every worker s = 2 clocks behind: the scalar recurrence, bit for bit.
  const std::vector<double> fixed = descend(dssync::FixedDelay{2});
  for (int c = 1; c < clocks; ++c) {
    const double want = fixed[c - 1] - k * fixed[std::max(c - 1 - 2, 0)];
    ok = ok && fixed[c] == want;
  }
  std::printf("FixedDelay{2}:   x_59 = %.3e, the recurrence x_{t+1} = x_t - k x_{t-2}: %s\n",
              fixed.back(), ok ? "bit for bit" : "MISMATCH");

  // Each worker's delay drawn from {0, 1, 2} at every clock: replay the mean
  // of the four stale gradients from the delays alone.
  const dssync::UniformDelay uniform{2};
  const std::vector<double> drawn = descend(uniform);
  double worst = 0;
  for (int c = 1; c < clocks; ++c) {
    const auto clock = static_cast<std::uint64_t>(c - 1);
    double mean = 0;
    for (int r = 0; r < ranks; ++r)
      mean += drawn[std::max<int>(c - 1 - uniform.delay(7, r, clock), 0)] / ranks;
    worst = std::max(worst, std::abs(drawn[c] - (drawn[c - 1] - k * mean)));
  }
  std::printf("UniformDelay{2}: x_59 = %.3e, largest gap to the replayed delays: %.1e\n",
              drawn.back(), worst);
  ok = ok && worst < 1e-15 && std::abs(drawn.back()) < 1e-3;
  return ok ? 0 : 1;
}

#pragma once
// What the simulator's benchmarks share (speed.cpp, scale.cpp): their
// network, and a run of DSSync steps on every rank.

#include <cstddef>
#include <vector>

#include "dssync/dssync.hpp"
#include "dssync/transport/sim.hpp"

namespace bench {

// 10 Gbit/s, 5 us. A model of `virtual_bytes` carried in `real_bytes` of
// real floats per rank (byte_scale = virtual / real).
inline dssync::SimOptions sim_network(double real_bytes, double virtual_bytes) {
  return {.alpha = 5e-6, .bandwidth = 1.25e9, .byte_scale = virtual_bytes / real_bytes};
}

// `steps` DSSync steps (random shuffle, groups of g, seed 1) on every rank of
// the world, rank r averaging x[r].
inline dssync::SimResult dssync_steps(dssync::SimWorld& world, std::vector<std::vector<float>>& x, int g,
                                      int steps) {
  return world.run([&](dssync::SimTransport& t) {
    dssync::DSSync<dssync::SimTransport> sync(t, {.group_size = g, .seed = 1});
    for (int s = 0; s < steps; ++s) sync.step(x[static_cast<std::size_t>(t.rank())]);
  });
}

}  // namespace bench

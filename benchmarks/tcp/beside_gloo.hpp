#pragma once
// What the programs that time dssync beside Gloo in the same processes
// (gather.cpp, interleaved.cpp) share: their options, and every rank's
// TcpTransport, the group of the whole world and a Gloo context side by side.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dssync/tcp.hpp"

#include "common/cli.hpp"
#include "peers/gloo_runner.hpp"
#include "tcp/trials.hpp"

namespace bench {

// The options of the programs that time dssync beside Gloo in the same
// processes: --sizes B,B,..., --trials T and Gloo's place.
struct BesideGlooOptions {
  std::vector<std::string> sizes = {"16777216"};
  int trials = 15;
  GlooPlace place;

  // Reads argv[1..]; false (said on stderr) for an unknown option.
  bool parse(int argc, char** argv) {
    return options(argc, argv, 1, [&](const std::string& key, const std::string& value) {
      if (key == "--sizes") sizes = split(value);
      else if (key == "--trials") trials = std::max(1, std::atoi(value.c_str()));
      else return place.take(key, value);
      return true;
    });
  }
};

// Every rank's TcpTransport (DSSYNC_* from the launcher), the group of the
// whole world, and a Gloo context connected beside it.
struct BesideGloo {
  dssync::TcpTransport t;
  std::vector<int> ranks = every_rank(t);
  dssync::Group world{ranks};
  GlooWorld gloo;

  explicit BesideGloo(const GlooPlace& place) : gloo(connect_gloo(t.rank(), t.size(), place)) {}

  // Rank 0's first line: the peers, the world, `measured` (what the rows
  // time, with its leading punctuation) and how the trials go.
  void print_header(const char* measured, int trials) const {
    if (t.rank() != 0) return;
    std::printf("# dssync TcpTransport and Gloo %d.%d.%d (tcp device %s) in the same %d processes%s; per "
                "trial every method once, in a fresh random order; median of %d trials, each the slowest "
                "rank's time for R calls\n",
                GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR, GLOO_VERSION_PATCH, gloo.device.c_str(), t.size(),
                measured, trials);
    std::fflush(stdout);
  }
};

// A program's run(argc, argv): its options read, the world set up beside
// Gloo, then measure(options, beside); 2 on a bad option.
template <class Measure>
int run_beside_gloo(int argc, char** argv, Measure measure) {
  BesideGlooOptions o;
  if (!o.parse(argc, argv)) return 2;
  BesideGloo beside(o.place);
  return measure(o, beside);
}

}  // namespace bench

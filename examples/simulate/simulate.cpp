// simulate: synchronizers on a simulated network, in virtual time.
//
//   dssync_simulate --ranks 1024 --model-bytes 100e6 --sync ring,dssync --steps 20
//   dssync_simulate --ranks 64 --hosts-per-rack 8 --oversubscription 4 --sync dssync,dssync-topo,ring
//
// Every rank starts from its own random values (seeded) and runs --steps
// steps of each synchronizer named in --sync, one after the other, on a fresh
// SimWorld. The model is --model-bytes on the wire, carried in --real-bytes of
// real floats per rank (the byte scale is their ratio), so 1024 ranks of a
// 100 MB model fit in memory. Prints per step: the virtual time when the
// slowest rank finished it, the bytes a rank sent, and the consensus distance
// (mean over ranks of |x_i - mean|^2, relative to the start); writes every
// step to --csv, and draws time and consensus plots with gnuplot. --scalar
// gives every rank one N(0,1) value instead (the consensus protocol of the
// Moshpit SGD paper); the CSV's msd column is the absolute mean squared
// deviation.

#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <dssync/dssync.hpp>
#include <dssync/transport/sim.hpp>

#include "../cli_checks.hpp"

namespace {

using dssync::SimTransport;

struct Config {
  int ranks = 64;
  double model_bytes = 100e6;
  std::size_t real_bytes = 64 * 1024;
  double alpha = 5e-6;
  double bandwidth_gbit = 10;
  int ranks_per_host = 1;
  int hosts_per_rack = 0;
  dssync::Sharing sharing = dssync::Sharing::max_min;
  std::size_t stack_bytes = 256 * 1024;
  double oversubscription = 1;
  double uplink_alpha = 0;  // seconds more for a message between racks (the wide-area delay)
  double stragglers = 0;
  double straggler_slowdown = 2;
  double compute = 0;  // seconds per step
  int group_size = 2;
  int steps = 20;
  std::uint64_t seed = 1;
  bool scalar = false;  // one N(0,1) value per rank (Moshpit SGD's consensus protocol)
  int envoys = 1;       // dssync-racks: members per rack that cross the uplink each step
};

// One step's figures over all ranks.
struct StepRecord {
  double time = 0;   // the latest rank's virtual time at the end of the step
  double bytes = 0;  // virtual bytes sent per rank in the step (the most of any rank)
  double consensus = 0;  // relative to the start
  double msd = 0;        // mean squared deviation from the mean, absolute
};

// A synchronizer's run: its steps, and what the simulator did.
struct Outcome {
  std::vector<StepRecord> steps;
  dssync::SimResult sim;
  double wall_seconds = 0;
};

// Runs `steps` steps of the synchronizer that make(t) builds, on every rank.
template <class Make>
Outcome simulate(const Config& c, Make make) {
  const dssync::SimOptions o{
      .alpha = c.alpha,
      .bandwidth = c.bandwidth_gbit * 1e9 / 8,
      .ranks_per_host = c.ranks_per_host,
      .hosts_per_rack = c.hosts_per_rack,
      .uplink_bandwidth = c.hosts_per_rack > 0 ? c.hosts_per_rack * c.ranks_per_host * c.bandwidth_gbit * 1e9 / 8 /
                                                     c.oversubscription
                                               : 0,
      .uplink_alpha = c.uplink_alpha,
      .byte_scale = c.model_bytes / static_cast<double>(c.real_bytes),
      .straggler_fraction = c.stragglers,
      .straggler_slowdown = c.straggler_slowdown,
      .seed = c.seed,
      .stack_bytes = c.stack_bytes,
      .sharing = c.sharing,
  };
  const std::size_t len = c.real_bytes / sizeof(float);
  const auto steps = static_cast<std::size_t>(c.steps);
  // Per step: the sum of the ranks' vectors and of their squared norms, for
  // the consensus distance without keeping every rank's copy.
  std::vector<std::vector<double>> sum(steps + 1, std::vector<double>(len, 0.0));
  std::vector<double> sumsq(steps + 1, 0.0), time(steps + 1, 0.0), bytes(steps + 1, 0.0);
  auto record = [&](std::size_t s, const std::vector<float>& x) {
    double sq = 0;
    for (std::size_t i = 0; i < len; ++i) {
      sum[s][i] += x[i];
      sq += static_cast<double>(x[i]) * x[i];
    }
    sumsq[s] += sq;
  };
  Outcome outcome;
  const auto wall_start = std::chrono::steady_clock::now();
  outcome.sim = dssync::SimWorld(c.ranks, o).run([&](SimTransport& t) {
    dssync::CounterRng rng(c.seed, static_cast<std::uint64_t>(t.rank()) + 1);
    std::vector<float> x(len);
    if (c.scalar) {  // Box-Muller from two uniforms in (0, 1]
      const double u1 = (static_cast<double>(rng.next() >> 11) + 1) / 9007199254740992.0;
      const double u2 = static_cast<double>(rng.next() >> 11) / 9007199254740992.0;
      x[0] = static_cast<float>(std::sqrt(-2 * std::log(u1)) * std::cos(2 * 3.141592653589793 * u2));
    } else {
      for (float& v : x) v = static_cast<float>(rng.next() >> 40) / static_cast<float>(1 << 24) - 0.5f;
    }
    record(0, x);
    auto sync = make(t);
    for (std::size_t s = 1; s <= steps; ++s) {
      const auto before = sync.stats().bytes_sent;
      t.compute(c.compute);
      sync.step(x);
      record(s, x);
      time[s] = std::max(time[s], t.now());
      bytes[s] = std::max(bytes[s], static_cast<double>(sync.stats().bytes_sent - before) *
                                        c.model_bytes / static_cast<double>(c.real_bytes));
    }
  });
  outcome.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  auto distance = [&](std::size_t s) {
    double mean_sq = 0;
    for (double v : sum[s]) mean_sq += (v / c.ranks) * (v / c.ranks);
    return sumsq[s] / c.ranks - mean_sq;
  };
  const double d0 = distance(0);
  std::vector<StepRecord>& out = outcome.steps;
  out.resize(steps + 1);
  for (std::size_t s = 0; s <= steps; ++s) {
    const double d = std::max(0.0, distance(s));
    out[s] = {time[s], bytes[s], d0 > 0 ? d / d0 : 0, d};
  }
  return outcome;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= s.size()) {
    const std::size_t comma = std::min(s.find(',', at), s.size());
    if (comma > at) out.push_back(s.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

// The rack (or host) label of each rank, for TopologyAwareGroups, RackGroups
// and HierarchicalReduce.
std::vector<std::string> labels(const Config& c) {
  std::vector<std::string> l;
  for (int r = 0; r < c.ranks; ++r) {
    const int host = r / c.ranks_per_host;
    l.push_back(c.hosts_per_rack > 0 ? "rack" + std::to_string(host / c.hosts_per_rack)
                                     : "host" + std::to_string(host));
  }
  return l;
}

const std::vector<std::string> known_names = {
    "ring",        "hd",           "hier",   "dssync", "dssync-butterfly",
    "dssync-topo", "dssync-racks", "gossip", "onepeer"};

std::string known_list() {
  std::string l;
  for (const auto& n : known_names) l += (l.empty() ? "" : ", ") + n;
  return l;
}

// The synchronizers whose groups have --group-size members (dssync-topo's
// are the hosts).
bool takes_group_size(const std::string& name) {
  return name == "dssync" || name == "dssync-butterfly" || name == "dssync-racks";
}

// "dssync:4" is dssync with groups of 4, whatever --group-size says. Throws on
// an unknown name, and on a G that is not a whole positive int or is given to
// a synchronizer without groups of a size.
std::pair<std::string, int> parse_name(const std::string& spec, const Config& c) {
  const std::size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  if (std::find(known_names.begin(), known_names.end(), name) == known_names.end())
    throw std::invalid_argument("unknown synchronizer '" + name + "' in --sync (" + known_list() +
                                ")");
  if (colon == std::string::npos) return {spec, c.group_size};
  if (!takes_group_size(name))
    throw std::invalid_argument(
        "--sync '" + spec + "': " + name +
        " takes no group size (dssync, dssync-butterfly and dssync-racks do)");
  const std::string text = spec.substr(colon + 1);
  int g = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), g);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || g < 1)
    throw std::invalid_argument("--sync '" + spec + "': the group size G of " + name +
                                ":G must be a whole number from 1 to 2147483647");
  return {name, g};
}

// The fewest real floats a rank needs under this synchronizer for every
// block its collectives cut to hold one: the group's size (the world's for a
// full all-reduce and the label-driven groupings; at most 2g - 1 for random
// and butterfly groups of g; two for gossip).
std::size_t floor_floats(const std::string& name, int group_size, int ranks) {
  if (name == "dssync" || name == "dssync-butterfly") return static_cast<std::size_t>(std::min(ranks, 2 * group_size));
  if (name == "gossip" || name == "onepeer") return 2;
  return static_cast<std::size_t>(ranks);
}

Outcome run_named(const std::string& spec, const Config& given) {
  using namespace dssync;
  const auto [name, group_size] = parse_name(spec, given);
  Config c = given;
  if (!c.scalar) c.real_bytes = std::max(c.real_bytes, sizeof(float) * floor_floats(name, group_size, c.ranks));
  const DSSyncOptions ds{.group_size = group_size, .seed = c.seed};
  if (name == "ring") return simulate(c, [](SimTransport& t) { return AllReduceSync<SimTransport, RingReduce>(t); });
  if (name == "hd")
    return simulate(c, [](SimTransport& t) { return AllReduceSync<SimTransport, HalvingDoublingReduce>(t); });
  if (name == "hier")  // inside each rack (each host without racks), then across
    return simulate(c, [&](SimTransport& t) {
      return AllReduceSync<SimTransport, HierarchicalReduce>(t, {}, HierarchicalReduce(labels(c)));
    });
  if (name == "dssync")
    return simulate(c, [&](SimTransport& t) { return DSSync<SimTransport, RandomShuffle>(t, ds); });
  if (name == "dssync-butterfly")
    return simulate(c, [&](SimTransport& t) { return DSSync<SimTransport, ButterflyShuffle>(t, ds); });
  if (name == "dssync-topo")
    return simulate(c, [&](SimTransport& t) {
      return DSSync<SimTransport, NoShuffle, RingReduce, TopologyAwareGroups>(t, ds, {}, {},
                                                                              TopologyAwareGroups(labels(c)));
    });
  if (name == "dssync-racks")
    return simulate(c, [&](SimTransport& t) {
      return DSSync<SimTransport, NoShuffle, RingReduce, RackGroups>(t, ds, {}, {}, RackGroups(labels(c), c.envoys, c.seed));
    });
  if (name == "gossip") return simulate(c, [](SimTransport& t) { return GossipSync<SimTransport, RingTopology>(t); });
  if (name == "onepeer")
    return simulate(c, [](SimTransport& t) { return GossipSync<SimTransport, OnePeerExponentialTopology>(t); });
  throw std::invalid_argument("unknown synchronizer '" + name + "' (" + known_list() + ")");
}

std::string label(const std::string& spec, const Config& c) {
  const auto [name, group_size] = parse_name(spec, c);
  if (name.rfind("dssync", 0) == 0) return name + " g=" + std::to_string(group_size);
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Synchronizers on a simulated network, in virtual time"};
  Config c;
  std::string syncs = "ring,dssync";
  std::string csv = "simulate.csv";
  std::string plot;
  using namespace dssync_cli;
  app.add_option("--ranks", c.ranks)->capture_default_str()->check(FinitePositive);
  app.add_option("--model-bytes", c.model_bytes, "model size on the wire")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--real-bytes", c.real_bytes,
                 "real bytes per rank that carry it (whole floats: a multiple of 4)")
      ->capture_default_str()
      ->check(NotNegative);
  app.add_option("--alpha", c.alpha, "latency per message, seconds")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--bandwidth", c.bandwidth_gbit, "host link, Gbit/s each way")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--ranks-per-host", c.ranks_per_host)
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--hosts-per-rack", c.hosts_per_rack, "0: one rack, no uplinks")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--oversubscription", c.oversubscription,
                 "rack uplink = rack's host bandwidth / this")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--sharing", c.sharing,
                 "max-min: max-min fair rates (exact); per-link: each link's capacity over its flows, the least on the "
                 "path (cheaper behind shared uplinks, and slower)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, dssync::Sharing>{{"max-min", dssync::Sharing::max_min},
                                                 {"per-link", dssync::Sharing::per_link}}))
      ->capture_default_str();
  app.add_option("--stack-bytes", c.stack_bytes,
                 "each rank's fiber stack (at least 16 KiB; the run prints the most any used)")
      ->capture_default_str()
      ->check(NotNegative);
  app.add_option("--uplink-alpha", c.uplink_alpha,
                 "seconds added to the latency of a message between racks (the wide-area delay)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--stragglers", c.stragglers, "fraction of ranks that compute slower")
      ->capture_default_str()
      ->check(FiniteRange(0, 1));
  app.add_option("--straggler-slowdown", c.straggler_slowdown, "their compute time factor")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--compute", c.compute, "compute seconds per step")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--sync", syncs,
                 "ring, hd, hier, dssync, dssync-butterfly, dssync-topo, dssync-racks, gossip, onepeer; dssync:4 sets the "
                 "group size")
      ->capture_default_str();
  app.add_option("--group-size", c.group_size)->capture_default_str()->check(FinitePositive);
  app.add_option("--envoys", c.envoys,
                 "dssync-racks: members per rack that cross the uplink each step")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--steps", c.steps)->capture_default_str()->check(FinitePositive);
  app.add_option("--seed", c.seed)->capture_default_str()->check(NotNegative);
  app.add_option("--csv", csv)->capture_default_str();
  app.add_flag("--scalar", c.scalar, "one N(0,1) value per rank instead of a model (consensus rounds)");
  app.add_option("--plot", plot, "PNG prefix: <prefix>_time.png and <prefix>_consensus.png");
  CLI11_PARSE(app, argc, argv);
  // The ranks carry real_bytes / 4 floats: the byte scale must be theirs.
  if (c.real_bytes == 0 || c.real_bytes % sizeof(float) != 0) {
    std::fprintf(
        stderr, "simulate: --real-bytes must be a positive multiple of 4 (whole floats), got %zu\n",
        c.real_bytes);
    return 2;
  }
  if (c.stack_bytes < 16 * 1024) {
    std::fprintf(stderr, "simulate: --stack-bytes must be at least 16384 (16 KiB), got %zu\n",
                 c.stack_bytes);
    return 2;
  }
  // Each finite, the uplink's bytes/s need not be.
  if (!std::isfinite(c.bandwidth_gbit * 1e9 / 8 * c.ranks_per_host * std::max(1, c.hosts_per_rack) /
                     c.oversubscription)) {
    std::fprintf(stderr, "simulate: --bandwidth is too large for the uplinks' bytes/s\n");
    return 2;
  }
  // Every name and group size, before the first run writes to the CSV.
  const std::vector<std::string> names = split(syncs);
  if (names.empty()) {
    std::fprintf(stderr, "simulate: --sync names no synchronizer\n");
    return 2;
  }
  for (const auto& name : names) {
    try {
      parse_name(name, c);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "simulate: %s\n", e.what());
      return 2;
    }
  }
  if (c.scalar)
    c.real_bytes = sizeof(float);
  // A synchronizer whose blocks would be empty at this size runs on more
  // real floats (run_named): the ring's n blocks need n of them.

  try {
    std::ofstream out(csv);
    out << "label,step,virtual_seconds,bytes_per_rank,consensus,msd\n";
    std::printf("%d ranks, model %.3g bytes (%zu real bytes per rank, or as many as the blocks need), alpha %g s, %g Gbit/s", c.ranks,
                c.model_bytes, c.real_bytes, c.alpha, c.bandwidth_gbit);
    if (c.hosts_per_rack > 0)
      std::printf(", %d hosts per rack, uplinks %g:1 oversubscribed, %g s more between racks", c.hosts_per_rack,
                  c.oversubscription, c.uplink_alpha);
    if (c.sharing == dssync::Sharing::per_link) std::printf(", per-link sharing");
    std::printf("\n\n%-20s %6s %14s %14s %12s\n", "synchronizer", "step", "virtual s", "MB/rank",
                "consensus");
    for (const auto& name : names) {
      const Outcome run = run_named(name, c);
      const std::vector<StepRecord>& rec = run.steps;
      const std::string l = label(name, c);
      for (std::size_t s = 0; s < rec.size(); ++s) {
        out << '"' << l << "\"," << s << ',' << rec[s].time << ',' << rec[s].bytes << ',' << rec[s].consensus << ',' << rec[s].msd << '\n';
        if (s > 0 && (s <= 3 || s == rec.size() - 1 || s % 10 == 0))
          std::printf("%-20s %6zu %14.6f %14.3f %12.3g\n", l.c_str(), s, rec[s].time, rec[s].bytes / 1e6,
                      rec[s].consensus);
      }
      std::printf("%-20s  per step %.6f s\n", l.c_str(), rec.back().time / c.steps);
      std::printf("%-20s  simulated %llu messages in %.3f s of wall time (%.3g per second); stacks used %zu "
                  "bytes at most, %s\n",
                  l.c_str(), static_cast<unsigned long long>(run.sim.messages), run.wall_seconds,
                  static_cast<double>(run.sim.messages) / run.wall_seconds, run.sim.stack_bytes_used,
                  run.sim.stack_guard_pages ? "guard pages" : "canaries");
      // Who agrees first: the first step at which the consensus distance is
      // below 1e-6 of the start.
      const auto hit = std::find_if(rec.begin() + 1, rec.end(), [](const StepRecord& r) { return r.consensus < 1e-6; });
      if (hit != rec.end())
        std::printf("%-20s  consensus < 1e-6 at %.6f s (step %td)\n\n", l.c_str(), hit->time, hit - rec.begin());
      else
        std::printf("%-20s  consensus < 1e-6 not within %d steps\n\n", l.c_str(), c.steps);
    }
    out.close();
    std::printf("every step: %s\n", csv.c_str());
    if (!plot.empty()) {
      std::ofstream gp(plot + ".gp");
      // Consensus below 1e-12 is agreement to the floats' rounding: drawn at
      // the 1e-12 floor so that exact synchronizers show on the log scale.
      gp << "set datafile separator ','\nset terminal pngcairo size 900,560\nset key below\nset grid\n";
      // Dark2's colours, none too pale to see on white.
      int linetype = 0;
      for (const char* colour :
           {"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"})
        gp << "set linetype " << ++linetype << " lc rgb '" << colour << "'\n";
      for (const auto& [png, col, ylab, logscale] :
           {std::tuple{plot + "_time.png", 3, "virtual time (s)", false},
            std::tuple{plot + "_consensus.png", 5, "consensus distance (relative)", true}}) {
        gp << "set output '" << png << "'\nset xlabel '" << (col == 3 ? "step" : "virtual time (s)")
           << "'\nset ylabel '" << ylab << "'\n" << (logscale ? "set logscale y\n" : "unset logscale y\n") << "plot ";
        for (std::size_t i = 0; i < names.size(); ++i) {
          const std::string l = label(names[i], c);
          const std::string y = logscale ? "($" + std::to_string(col) + " < 1e-12 ? 1e-12 : $" + std::to_string(col) + ")"
                                         : std::to_string(col);
          gp << (i ? ", " : "") << "'" << csv << "' skip 1 using (strcol(1) eq '" << l << "' ? $"
             << (col == 3 ? 2 : 3) << " : NaN):" << y << " with linespoints title '" << l << "'";
        }
        if (logscale) gp << ", 1e-6 with lines dashtype 2 lc rgb 'gray' title '1e-6'";
        gp << "\n";
      }
      gp.close();
      if (std::system(("gnuplot '" + plot + ".gp'").c_str()) != 0)
        std::printf("gnuplot failed or is missing (Debian: gnuplot-nox); the script is %s.gp\n", plot.c_str());
      else
        std::printf("plots: %s_time.png %s_consensus.png\n", plot.c_str(), plot.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simulate: %s\n", e.what());
    return 1;
  }
  return 0;
}

// Data-parallel training of an MLP on Fashion-MNIST with a dssync
// synchronizer: DS-Sync against BSP, SFB, stale BSP, SSP, ShadowSync, gossip
// and local SGD.
//
//   train --sync dssync,allreduce --epochs 2            # 8 threads, one process
//   mpirun -np 8 train --transport mpi --sync dssync    # 8 processes
//   scripts/tools/dssync-run -n 8 train --transport tcp # 8 processes over TCP
//   train --dcs 4 --partition skew:0.8 --norm batch     # label-skewed data, batch norm
//
// Prints a line per epoch and a closing table; writes every epoch of every run
// to a CSV file and, with gnuplot installed, draws test accuracy and training
// loss against epoch and against training time, one line per synchronizer.

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>

#include <dssync/dssync.hpp>

#ifdef DSSYNC_TRAIN_WITH_MPI
#include <dssync/mpi.hpp>

#include <boost/mpi/environment.hpp>
#endif

#ifdef DSSYNC_TRAIN_WITH_TCP
#include <dssync/transport/tcp.hpp>
#endif
#ifdef DSSYNC_TRAIN_WITH_SIM
#include <dssync/transport/sim.hpp>
#endif

#include "../cli_checks.hpp"
#include "data.hpp"
#include "trainer.hpp"

namespace {

struct Run {
  std::string label;
  std::vector<train::EpochRecord> epochs;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// An accuracy to 4 places, or "-" when it was not measured (NaN: the workers'
// own evaluations skipped with --no-worst).
std::string accuracy(double a) {
  if (std::isnan(a)) return "-";
  char s[32];
  std::snprintf(s, sizeof s, "%.4f", a);
  return s;
}

void print_epoch(const std::string& label, int epochs, const train::EpochRecord& r) {
  if (r.epoch == 0) {
    std::printf("%-22s start          test acc %.4f\n", label.c_str(), r.test_acc_avg);
    return;
  }
  char when[32];
  if (r.epoch == std::floor(r.epoch))
    std::snprintf(when, sizeof when, "%2d/%d", static_cast<int>(r.epoch), epochs);
  else
    std::snprintf(when, sizeof when, "%.2f/%d", r.epoch, epochs);
  char mb[32] = "     -";  // not counted (SSP, ShadowSync)
  if (!std::isnan(r.bytes_per_worker)) std::snprintf(mb, sizeof mb, "%6.2f", r.bytes_per_worker / 1e6);
  std::printf("%-22s epoch %s  loss %.4f  test acc %.4f (worst worker %s)  consensus %.3g  "
              "%s MB/worker  %5.2f s\n",
              label.c_str(), when, r.train_loss, r.test_acc_avg, accuracy(r.test_acc_worst).c_str(),
              r.consensus, mb, r.seconds);
  std::fflush(stdout);
}

void write_csv(const std::filesystem::path& file, const std::vector<Run>& runs) {
  std::ofstream out(file);
  out << "label,epoch,train_loss,test_acc_avg,test_acc_worst,test_loss_avg,consensus,"
         "bytes_per_worker,seconds,wall_seconds,sync_seconds,rounds,merge_lag,wan_bytes,knob,"
         "significant,steps,estimate\n";
  for (const auto& run : runs)
    for (const auto& r : run.epochs)
      out << '"' << run.label << '"' << ',' << r.epoch << ',' << r.train_loss << ',' << r.test_acc_avg
          << ',' << r.test_acc_worst << ',' << r.test_loss_avg << ',' << r.consensus << ','
          << r.bytes_per_worker << ',' << r.seconds << ',' << r.wall << ',' << r.sync_seconds << ','
          << r.rounds << ',' << r.merge_lag << ',' << r.wan_bytes << ',' << r.knob << ',' << r.significant
          << ',' << r.steps << ',' << r.estimate << '\n';
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

// A string in gnuplot's single quotes, where a quote is doubled.
std::string gnuplot_quoted(const std::string& s) {
  std::string q = "'";
  for (const char ch : s) q += ch == '\'' ? std::string("''") : std::string(1, ch);
  return q + "'";
}

// Two PNGs: test accuracy and training loss against epoch, and against the
// cumulative training time; one line per run, and a dashed line at each target
// accuracy (the accuracy axis starts a little below the lowest target, where
// the runs differ, or below the lowest of the runs' best accuracies when that
// is lower, so that every run shows). Each run's figures are a data block of
// the script ($run1, $run2, ...: epoch, training loss, test accuracy,
// training time): a run's label is only a title and may hold any character.
// False when gnuplot is missing or fails (with a warning on stderr).
bool plot(const std::filesystem::path& prefix, const std::vector<Run>& runs,
          const std::string& title, const std::string& time_label,
          const std::vector<double>& targets) {
  const auto script = prefix.string() + ".gp";
  std::ofstream gp(script);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    gp << "$run" << i + 1 << " << EOD\n";
    for (const auto& r : runs[i].epochs) {
      const char* separator = "";
      for (const double v : {r.epoch, r.train_loss, r.test_acc_avg, r.wall}) {
        gp << separator;
        separator = " ";
        if (std::isfinite(v))
          gp << v;
        else
          gp << "NaN";  // undefined for gnuplot: no point
      }
      gp << "\n";
    }
    gp << "EOD\n";
  }
  gp << "set terminal pngcairo size 1200,480 font 'sans,11'\n"
        "set key bottom right\n"
        "set grid\n";
  // The accuracy axis's floor: 0.15 below the lowest target or the lowest of
  // the runs' best accuracies, whichever is lower, rounded down to 0.05.
  double lowest = targets.empty() ? 0.0 : *std::ranges::min_element(targets);
  for (const auto& run : runs) {
    double best = -1;
    for (const auto& r : run.epochs)
      if (std::isfinite(r.test_acc_avg)) best = std::max(best, r.test_acc_avg);
    if (best >= 0) lowest = std::min(lowest, best);
  }
  const double floor_acc =
      targets.empty() ? 0.0 : std::max(0.0, std::floor((lowest - 0.15) * 20) / 20);
  auto panels = [&](const std::string& png, int x_column, const std::string& x_label) {
    gp << "set output " << gnuplot_quoted(png) << "\n"
       << "set multiplot layout 1,2 title " << gnuplot_quoted(title) << " noenhanced\n"
       << "set xlabel " << gnuplot_quoted(x_label) << "\n";
    for (const auto& [column, y_label, key] :
         {std::tuple{3, "test accuracy (averaged model)", "bottom right"},
          std::tuple{2, "training loss", "top right"}}) {
      const bool accuracy = column == 3;
      gp << "set ylabel '" << y_label << "'\nset key " << key << "\n";
      if (accuracy) {
        gp << "set yrange [" << floor_acc << ":*]\n";
        for (const double target : targets)
          gp << "set arrow from graph 0, first " << target << " to graph 1, first " << target
             << " nohead dashtype 2 lc rgb 'gray40'\n";
      } else {
        gp << "set autoscale y\nunset arrow\n";
      }
      gp << "plot ";
      for (std::size_t i = 0; i < runs.size(); ++i)
        gp << (i ? ", " : "") << "$run" << i + 1 << " using " << x_column << ":" << column
           << " with linespoints lw 2 title " << gnuplot_quoted(runs[i].label) << " noenhanced";
      gp << "\n";
    }
    gp << "unset multiplot\n";
  };
  panels(prefix.string() + "_epoch.png", 1, "epoch");
  panels(prefix.string() + "_time.png", 4, time_label);
  gp.close();
  if (!gp) {
    std::fprintf(stderr, "train: warning: cannot write %s: no plots\n", script.c_str());
    return false;
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::printf("gnuplot is not installed (Debian: gnuplot-nox): no plots; the script is %s\n",
                script.c_str());
    return false;
  }
  // gnuplot's own messages (on stderr) after what this program printed.
  std::fflush(stdout);
  std::string quoted = "'";  // for the shell
  for (const char ch : script) quoted += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  const int status = std::system(("gnuplot " + quoted + "'").c_str());
  if (status != 0) {
    std::fprintf(stderr,
                 "train: warning: gnuplot failed (%s %d) on %s: the plots are missing or "
                 "incomplete; the training's results stand\n",
                 WIFEXITED(status) ? "exit status" : "wait status",
                 WIFEXITED(status) ? WEXITSTATUS(status) : status, script.c_str());
    return false;
  }
  return true;
}

// The closing table. "s to X": training time until the averaged model first
// reached test accuracy X at a record (-: never), one column per target.
void print_table(const std::vector<Run>& runs, const std::vector<double>& targets) {
  std::printf("\n%-22s %10s %12s %10s %14s %12s", "synchronizer", "test acc", "worst worker", "s/epoch",
              "MB/worker/ep", "consensus");
  for (const double target : targets) {
    char to[32];
    std::snprintf(to, sizeof to, "s to %.2f", target);
    std::printf(" %10s", to);
  }
  std::printf("\n");
  for (const auto& run : runs) {
    const auto& last = run.epochs.back();
    double seconds = 0, bytes = 0;
    for (const auto& r : run.epochs) seconds += r.seconds, bytes += r.bytes_per_worker;
    const double e = last.epoch > 0 ? last.epoch : 1.0;
    char mb[32] = "-";
    if (!std::isnan(bytes)) std::snprintf(mb, sizeof mb, "%.2f", bytes / e / 1e6);
    std::printf("%-22s %10.4f %12s %10.2f %14s %12.3g", run.label.c_str(), last.test_acc_avg,
                accuracy(last.test_acc_worst).c_str(), seconds / e, mb, last.consensus);
    for (const double target : targets) {
      const auto hit = std::find_if(run.epochs.begin(), run.epochs.end(),
                                    [target](const train::EpochRecord& r) { return r.test_acc_avg >= target; });
      char reached[32] = "-";
      if (hit != run.epochs.end()) std::snprintf(reached, sizeof reached, "%.2f", hit->wall);
      std::printf(" %10s", reached);
    }
    std::printf("\n");
  }
  // The background synchronizers' own figures, under the table.
  for (const auto& run : runs) {
    const bool ssp = run.label.starts_with("ssp");
    const bool shadow = run.label.starts_with("shadow");
    if (!ssp && !shadow) continue;
    double in_sync = 0, seconds = 0;
    for (const auto& r : run.epochs) in_sync += r.sync_seconds, seconds += r.seconds;
    const auto& last = run.epochs.back();
    if (ssp)
      std::printf("%-22s trainer waiting for means %.3f s a worker (%.1f%% of the training time)\n",
                  run.label.c_str(), in_sync, seconds > 0 ? 100 * in_sync / seconds : 0.0);
    else
      std::printf("%-22s %.0f rounds a worker (%.2f per epoch), mean merge lag %.2f steps, %.3f s a worker "
                  "in step() and finish()\n",
                  run.label.c_str(), last.rounds, last.epoch > 0 ? last.rounds / last.epoch : 0.0,
                  last.merge_lag, in_sync);
  }
}

// The channels the runs of `syncs` use on each rank, the most of any.
int channels_used(const std::vector<std::string>& syncs, const train::Config& c) {
  int most = 1;
  for (const auto& s : syncs) {
    train::Config rc = c;
    rc.sync = s;
    most = std::max(most, train::channels_used(rc));
  }
  return most;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dssync_cli;
  CLI::App app{"Data-parallel training of an MLP (by default 784-256-128-10) on Fashion-MNIST with dssync"};
  train::Config c;
  std::string syncs = "dssync";
  std::string transport = "inproc";
  std::string data_dir = train::default_data_dir;
  std::string csv = "train.csv";
  std::string plot_prefix = "train";
  int workers = 8;
  app.add_option("--sync", syncs,
                 "synchronizers, comma-separated, run one after the other: dssync, allreduce (BSP), "
                 "sfb (BSP by sufficient factor broadcasting, per layer the cheaper way), "
                 "sfb-factors (every layer as factors), stale (BSP on gradients computed at "
                 "parameters up to --staleness steps old: StaleSync), ssp (SSPSync: gradients all-reduced "
                 "in the background, step c applies the mean of step c - --staleness), shadow-ma, "
                 "shadow-bmuf, shadow-easgd, shadow-ds (ShadowSync: model averaging, BMUF, EASGD or a "
                 "DS-Sync step in background rounds beside local SGD), gossip, localsgd, gaia (GaiaSync: "
                 "an average inside each of the --dcs data centers, significant updates across), "
                 "skewscout (SkewScout turning gaia's threshold), skewscout-localsgd (SkewScout turning "
                 "localsgd's period), none")
      ->capture_default_str();
  app.add_option("--model", c.model, "mlp (784-hidden-10) or softmax (multiclass logistic regression)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mlp", "softmax"}));
  app.add_option("--hidden", c.hidden,
                 "the MLP's hidden widths, comma-separated, e.g. 128 or 256,256,128")
      ->capture_default_str()
      ->delimiter(',')
      ->check(FinitePositive);
  // A spec parsed by the trainer's own parser, so that --help and a bad value
  // give the same message the trainer would.
  const auto parsed_by = [](auto parse, const char* what) {
    return CLI::Validator(
        [parse](std::string& v) {
          try {
            parse(v);
            return std::string();
          } catch (const std::exception& e) {
            return std::string(e.what());
          }
        },
        what);
  };
  app.add_option("--norm", c.norm,
                 "the MLP's normalization after each hidden linear layer, before the ReLU: none, "
                 "batch (batch norm; running statistics for evaluation, averaged with the "
                 "parameters by parameter-averaging synchronizers, each worker's own under BSP, "
                 "shadow-bmuf and shadow-easgd) or group:G (group norm, G groups dividing every "
                 "hidden width)")
      ->capture_default_str()
      ->check(parsed_by([](const std::string& v) { train::Norm::parse(v); }, "none|batch|group:G"));
  app.add_option("--partition", c.partition,
                 "how the training set is split over the workers: iid (worker r holds samples "
                 "r, r + n, ...) or skew:p (a fraction p of each class's images in its home data "
                 "center, class c's being c mod --dcs; the rest spread evenly)")
      ->capture_default_str()
      ->check(
          parsed_by([](const std::string& v) { train::DataPartition::parse(v, 1); }, "iid|skew:p"));
  app.add_option("--dcs", c.dcs,
                 "data centers: consecutive blocks of n / D workers (D must divide n)")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--staleness", c.staleness, "stale, ssp: the delay bound s (steps)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--delay", c.delay, "stale: uniform (each worker's delay drawn in 0..s every step) or fixed (s)")
      ->capture_default_str()
      ->check(CLI::IsMember({"uniform", "fixed"}));
  app.add_option("--stop-at", c.stop_at,
                 "stop a run after the first record whose averaged model reaches this test "
                 "accuracy, or whose test loss is not finite (diverged) (0: never)")
      ->capture_default_str()
      ->check(FiniteRange(0, 1));
  app.add_option("--group-size", c.group_size, "DS-Sync group size")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--shuffle", c.shuffle,
                 "DS-Sync shuffle: random, butterfly, none, topology (TopologyAwareGroups over "
                 "--shuffle-racks), racks (RackGroups over --shuffle-racks with --envoys)")
      ->capture_default_str()
      ->check(CLI::IsMember({"random", "butterfly", "none", "topology", "racks"}));
  app.add_option("--sfb-background-channel", c.sfb_background_channel,
                 "sfb, sfb-factors: run the factor all-gathers and the dense all-reduce on this "
                 "channel, in a background context, while the trainer rebuilds each layer as its "
                 "factors arrive (0: everything in sequence on the trainer's channel)")
      ->capture_default_str()
      ->check(FiniteRange(0, 255));
  app.add_option("--max-lag", c.max_lag,
                 "shadow-*: steps a background round may stay in flight before step() waits for it "
                 "(default: no bound)")
      ->check(NotNegative);
  app.add_option(
         "--shadow-period", c.shadow_period,
         "shadow-*: steps from one background round's start to the next's, at least (0: start "
         "one as soon as the last has been merged)")
      ->capture_default_str()
      ->check(NotNegative);
  app.add_option(
         "--block-momentum", c.block_momentum,
         "shadow-bmuf: block momentum eta in [0, 1) (default: 1 - 1/n, the BMUF paper's rule)")
      ->check(FiniteRange(0, 1, Ends::open_above));
  app.add_option(
         "--easgd-alpha", c.easgd_alpha,
         "shadow-easgd: elastic pull alpha in (0, 2/n) (default: 0.9/n, EASGD's n alpha = 0.9)")
      ->check(FiniteRange(0, 2, Ends::open));
  app.add_option("--period", c.period, "local SGD: average every H steps")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--reduce", c.reduce,
                 "allreduce, localsgd, skewscout-localsgd, sfb*: the all-reduce (sfb*: of the layers that go dense): ring, hd "
                 "(halving-doubling) or hier (HierarchicalReduce "
                 "over the --dcs data centers: inside each, then across)")
      ->capture_default_str()
      ->check(CLI::IsMember({"ring", "hd", "hier"}));
  app.add_option("--gaia-threshold", c.gaia_threshold,
                 "gaia, skewscout: T0, an accumulated update is sent when |update| > T |value| "
                 "(T follows the learning rate's schedule)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option(
         "--gaia-slack", c.gaia_slack,
         "gaia, skewscout: updates of step c land at step c + slack (0: in the step; 1 and more: "
         "exchanged in the background)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option(
         "--gaia-period", c.gaia_period,
         "gaia, skewscout: exchange across data centers after every P steps, what accumulated "
         "since (1: every step)")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--scout-target", c.scout_target,
                 "skewscout*: the estimated accuracy loss to stay under")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--scout-period", c.scout_period,
                 "skewscout*: steps between estimates (0: once an epoch)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--scout-baseline", c.scout_baseline,
                 "skewscout*: what a travelled model is compared with on its host's probe: its accuracy "
                 "at home (visitor-home, the paper's) or the host's model (host-model)")
      ->capture_default_str()
      ->check(CLI::IsMember({"visitor-home", "host-model"}));
  app.add_option("--scout-moment", c.scout_moment,
                 "skewscout*: estimate after the step that ends a period (after-step) or before the "
                 "next synchronizing step, on the models it averages (before-sync)")
      ->capture_default_str()
      ->check(CLI::IsMember({"after-step", "before-sync"}));
  app.add_option("--scout-step", c.scout_step,
                 "skewscout*: the knob is multiplied by this factor to loosen and divided by it to "
                 "tighten (local SGD's period is rounded to a whole step)")
      ->capture_default_str()
      ->check(FiniteRange(1, 1e9, Ends::open_below));
  app.add_option(
         "--scout-min", c.scout_min,
         "skewscout*: the least the knob may be (0: 1 step for local SGD's period, 1e-4 for "
         "Gaia's threshold)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--probe-samples", c.probe_samples,
                 "skewscout*: images of each data center's own shard its leader scores models on")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--workers", workers, "workers (threads) with --transport inproc")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--epochs", c.epochs)->capture_default_str()->check(FinitePositive);
  app.add_option("--batch", c.batch, "batch per worker")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--lr", c.lr, "learning rate (the peak, with --schedule cosine)")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--schedule", c.schedule, "learning rate schedule: cosine (to 0 over the run), constant")
      ->capture_default_str()
      ->check(CLI::IsMember({"cosine", "constant"}));
  app.add_option("--momentum", c.momentum, "in [0, 1)")
      ->capture_default_str()
      ->check(FiniteRange(0, 1, Ends::open_above));
  app.add_option("--seed", c.seed, "model initialization, shuffles, data order")
      ->capture_default_str()
      ->check(NotNegative);
  app.add_option("--train-limit", c.train_limit, "use only the first N training images (0: all)")
      ->capture_default_str()
      ->check(NotNegative);
  app.add_option("--evals-per-epoch", c.evals_per_epoch,
                 "records (averaged model evaluated, not timed) per epoch, at even steps")
      ->capture_default_str()
      ->check(FinitePositive);
  std::vector<double> targets{0.85};
  app.add_option("--target,--targets", targets,
                 "test accuracies, comma-separated, whose times to reach the closing table gives")
      ->capture_default_str()
      ->delimiter(',')
      ->check(FiniteRange(0, 1, Ends::open_below));
  bool no_worst = false;
  app.add_flag("--no-worst", no_worst, "skip each worker's own test evaluation (the worst worker column): it costs "
               "a pass over the test set per worker per record, most of a many-worker simulated run");
  app.add_flag("--checked", c.checked, "checked mode: ranks compare what they synchronize");
  app.add_option("--transport", transport,
                 "inproc (threads), mpi (under mpirun), tcp (under scripts/tools/dssync-run) or sim "
                 "(a simulated network: times are virtual)")
      ->capture_default_str()
      ->check(CLI::IsMember({"inproc", "mpi", "tcp", "sim"}));
  double sim_gbit = 10, sim_alpha = 5e-6, sim_oversubscription = 1, sim_uplink_alpha = 0;
  int sim_hosts_per_rack = 0;
  app.add_option("--sim-bandwidth", sim_gbit, "sim: host link, Gbit/s")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--sim-alpha", sim_alpha, "sim: latency per message, s")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--sim-hosts-per-rack", sim_hosts_per_rack,
                 "sim: hosts (workers) per rack, 0: one rack")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--sim-oversubscription", sim_oversubscription,
                 "sim: rack uplink = rack bandwidth / this")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option(
         "--sim-uplink-alpha", sim_uplink_alpha,
         "sim: latency added to a message that leaves its rack, s (a wide-area one-way delay)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--sim-compute", c.sim_compute,
                 "sim: compute seconds per step in virtual time (0: each step's measured time)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option(
         "--sim-jitter", c.sim_jitter,
         "sim: each step's compute is C (1 + X J), J ~ Exp(1) drawn from (seed, rank, step)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--sim-straggler", c.sim_straggler,
                 "sim: rank 0 computes this many times slower, every step")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--shuffle-racks", c.rack_size, "ranks per rack for --shuffle topology or racks")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--envoys", c.envoys,
                 "--shuffle racks: members per rack that cross the uplink each step")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--data", data_dir, "directory with the four Fashion-MNIST IDX .gz files")
      ->capture_default_str();
  app.add_option("--csv", csv, "where to write every epoch of every run")->capture_default_str();
  app.add_option("--plot", plot_prefix, "PNG files <prefix>_epoch.png and <prefix>_time.png ('' for none)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  c.evaluate_workers = !no_worst;
  // The rate is a float: a finite double past its range would be infinite.
  if (!std::isfinite(c.lr) || !(c.lr > 0)) {
    std::fprintf(stderr, "train: --lr is out of a float's range\n");
    return 2;
  }
  // Each finite, their uplink's bytes/s need not be.
  if (!std::isfinite(sim_gbit * 1e9 / 8 * std::max(1, sim_hosts_per_rack) / sim_oversubscription)) {
    std::fprintf(stderr, "train: --sim-bandwidth is too large for its uplinks' bytes/s\n");
    return 2;
  }
  const std::vector<std::string> sync_list = split_list(syncs);

  try {
    // Every name and what it takes, before the data and the first run: a bad
    // one later in the list would otherwise end the program after the runs
    // before it, without their CSV.
    train::check_syncs(sync_list, c, transport == "inproc" || transport == "sim" ? workers : 0);
    std::vector<Run> runs;
    bool leader = true;
    int world = workers;
    std::string network;  // the simulated network, for the plots' title
    const auto record = [&](const train::EpochRecord& r) {
      runs.back().epochs.push_back(r);
      print_epoch(runs.back().label, c.epochs, r);
    };
    // The one place that knows the transports: every run goes through
    // train::train_worker<Transport>.
    auto each_run = [&](auto&& run_one) {
      for (const auto& s : sync_list) {
        train::Config rc = c;
        rc.sync = s;
        runs.push_back({rc.label(), {}});
        run_one(rc);
      }
    };
    // Workers that --dcs does not divide: said before the data is read (for
    // MPI and TCP the trainer says it, knowing the world's size).
    if (transport == "inproc" || transport == "sim")
      train::DataPartition::parse(c.partition, c.dcs).check(workers);
    const train::Dataset data = train::load_dataset(data_dir);
    if (transport == "inproc") {
      std::printf("%d workers as threads, %zu training and %zu test images, batch %d per worker\n",
                  workers, data.train.size(), data.test.size(), c.batch);
      each_run([&](const train::Config& rc) {
        dssync::InProcWorld(workers).run([&](dssync::InProcTransport& t) {
          train::train_worker(t, data, rc, record);
        });
      });
    } else if (transport == "sim") {
#ifdef DSSYNC_TRAIN_WITH_SIM
      const dssync::SimOptions o{
          .alpha = sim_alpha,
          .bandwidth = sim_gbit * 1e9 / 8,
          .hosts_per_rack = sim_hosts_per_rack,
          .uplink_bandwidth = sim_hosts_per_rack > 0 ? sim_hosts_per_rack * sim_gbit * 1e9 / 8 / sim_oversubscription : 0,
          .uplink_alpha = sim_uplink_alpha,
          .stack_bytes = 1 << 20,  // Eigen keeps GEMM blocks on the stack
      };
      char setting[128];
      if (sim_hosts_per_rack > 0)
        std::snprintf(setting, sizeof setting, ", simulated: %g Gbit/s links, racks of %d, %g:1 uplinks", sim_gbit,
                      sim_hosts_per_rack, sim_oversubscription);
      else
        std::snprintf(setting, sizeof setting, ", simulated: %g Gbit/s links", sim_gbit);
      network = setting;
      std::printf("%d workers on a simulated network (%g Gbit/s, %g s, %d hosts per rack, uplinks %g:1), "
                  "%zu training and %zu test images, batch %d per worker; times are virtual\n",
                  workers, sim_gbit, sim_alpha, sim_hosts_per_rack, sim_oversubscription, data.train.size(),
                  data.test.size(), c.batch);
      each_run([&](const train::Config& rc) {
        dssync::SimWorld(workers, o).run([&](dssync::SimTransport& t) { train::train_worker(t, data, rc, record); });
      });
#else
      std::fprintf(stderr, "this build has no simulated transport (Boost.Context was not found at configure time)\n");
      return 2;
#endif
    } else if (transport == "tcp") {
#ifdef DSSYNC_TRAIN_WITH_TCP
      // DSSYNC_* from the launcher; at least the channels the runs use
      // (two unless DSSYNC_CHANNELS says otherwise).
      dssync::TcpOptions to = dssync::TcpOptions::from_env();
      to.channels = std::max(to.channels, channels_used(sync_list, c));
      dssync::TcpTransport t(to);
      leader = t.rank() == 0;
      world = t.size();
      train::check_syncs(sync_list, c, world);
      if (leader)
        std::printf("%d workers as processes over TCP, %zu training and %zu test images, batch %d per worker\n",
                    world, data.train.size(), data.test.size(), c.batch);
      // A failure throws on every rank (the transport tells the others);
      // the launcher then ends the job with the first failing rank's code.
      each_run([&](const train::Config& rc) { train::train_worker(t, data, rc, record); });
#else
      std::fprintf(stderr, "this build has no TCP transport (Boost.Asio was not found at configure time)\n");
      return 2;
#endif
    } else {
#ifdef DSSYNC_TRAIN_WITH_MPI
      // SSP, ShadowSync, GaiaSync with slack and SFB in the background talk on another
      // channel from a second thread: MPI_THREAD_MULTIPLE and the channels
      // (train::channels_used), only when such a run is asked for.
      const int channels = channels_used(sync_list, c);
      std::optional<boost::mpi::environment> env;
      if (channels > 1)
        env.emplace(argc, argv, boost::mpi::threading::multiple);
      else
        env.emplace(argc, argv);
      dssync::MPITransport t(dssync::MPIOptions{.channels = channels});
      leader = t.rank() == 0;
      world = t.size();
      train::check_syncs(sync_list, c, world);
      if (leader)
        std::printf("%d workers as MPI processes, %zu training and %zu test images, batch %d per worker\n",
                    world, data.train.size(), data.test.size(), c.batch);
      try {
        each_run([&](const train::Config& rc) { train::train_worker(t, data, rc, record); });
      } catch (const dssync::error& e) {
        // Under MPI a failed rank must end the job: the others may wait on it.
        std::fprintf(stderr, "rank %d: %s\n", t.rank(), e.what());
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
#else
      std::fprintf(stderr, "this build has no MPI (dssync::mpi was not found at configure time)\n");
      return 2;
#endif
    }
    if (!leader) return 0;
    (void)world;
    print_table(runs, targets);
    write_csv(csv, runs);
    std::printf("\nevery epoch: %s\n", std::filesystem::absolute(csv).c_str());
    if (!plot_prefix.empty() &&
        plot(plot_prefix, runs,
             std::to_string(world) + " workers, batch " + std::to_string(c.batch) + " each, lr " +
                 std::to_string(c.lr).substr(0, 5) + network,
             transport == "sim" ? "virtual training time (s)" : "training time (s)", targets))
      std::printf("plots: %s_epoch.png %s_time.png\n",
                  std::filesystem::absolute(plot_prefix).c_str(),
                  std::filesystem::absolute(plot_prefix).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train: %s\n", e.what());
    return 1;
  }
  return 0;
}

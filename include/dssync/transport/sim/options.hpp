#pragma once
// SimOptions: the simulated network a SimWorld runs on (sim.hpp says what it
// does with them), and SimResult, what a run returns.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/transport/contract.hpp"

namespace dssync {

// How a fiber's stack overflow is caught.
//  - page: a guard page below each stack; an overflow is a segmentation
//    fault. Each stack takes two memory mappings, and a process may hold
//    vm.max_map_count of them (65530 by default): about 32,000 fibers.
//  - canary: the stacks in one mapping, each above a red page whose top
//    holds a pattern the scheduler checks whenever the fiber hands control
//    back; an overflow ends the process with a message naming the rank and
//    the stack size. It misses a frame that jumps the whole red page without
//    writing to its top, which a guard page would catch.
//  - automatic: page when the world's fibers fit in vm.max_map_count, canary
//    otherwise.
enum class StackGuard { automatic, page, canary };

// How flows that cross one link share it.
//  - max_min: max-min fairness (progressive filling): a flow held back
//    elsewhere leaves its part of a link to the others. Exact, and the
//    default; behind shared uplinks every flow that crosses them is in one
//    component of the rates, so an event costs in proportion to the flows in
//    flight.
//  - per_link: each flow moves at the least over its links of the link's
//    capacity over the flows that cross it; a part left unused is not handed
//    on. With the same flows in flight, each flow's rate is at most its
//    max-min rate (equal where every flow is held by the link that holds
//    the others), and an event costs only the flows of its own links.
enum class Sharing { max_min, per_link };

struct SimOptions {
  double alpha = 5e-6;                   // seconds of latency per message
  double bandwidth = 1.25e9;             // bytes/s of a host's link, each direction
  int ranks_per_host = 1;                // ranks 0..k-1 on host 0, and so on
  double local_bandwidth = 2e10;         // bytes/s between two ranks of one host
  int hosts_per_rack = 0;                // 0: one rack, no uplinks
  double uplink_bandwidth = 0;           // bytes/s of a rack's uplink each direction (0: unlimited)
  double uplink_alpha = 0;               // s more latency for a message that leaves its rack
  double byte_scale = 1.0;               // virtual bytes on the wire per real byte
  double straggler_fraction = 0;         // share of ranks whose compute is slower
  double straggler_slowdown = 2.0;       // their compute time factor
  std::uint64_t seed = 1;                // who straggles
  std::size_t stack_bytes = 256 * 1024;  // per fiber (a rank's, and each background one)
  StackGuard stack_guard = StackGuard::automatic;
  int channels = 2;                      // per rank (SimTransport::channel); they share its ports
  Sharing sharing = Sharing::max_min;    // how the flows of a link share it
};

struct SimResult {
  std::vector<double> finish;  // each rank's virtual time when its function returned
  double makespan = 0;         // the latest of them
  std::uint64_t messages = 0;
  // How many times the scheduler switched to a fiber (each fiber's start
  // included): a fiber runs again only when what it waits for is done.
  std::uint64_t switches = 0;
  double virtual_bytes = 0;  // on the wire, all ranks
  double uplink_bytes = 0;   // of them, those of messages that left their rack
  // The most stack any fiber used, in bytes (measured when the fiber ends:
  // the deepest byte written below the top of its stack).
  std::size_t stack_bytes_used = 0;
  bool stack_guard_pages = false;  // whether the stacks had guard pages (else canaries)
  // The message records the world holds, for this run and those before: the
  // most messages that were ever in flight at once (every record is free
  // again when a run starts, also those a failed run left unmatched).
  std::size_t message_records = 0;
};

namespace detail {

// A virtual time for a message, to nine significant digits (std::to_string's
// six decimals print 1e-7 s as 0.000000).
inline std::string virtual_seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", s);
  return text;
}

// A fiber's stack is at most 1 GiB, so that a world's stacks (2^31 ranks at
// the most, times the channels) are counted in a size_t without overflow.
inline constexpr std::size_t max_stack_bytes = std::size_t{1} << 30;

// Throws configuration_error naming the first option out of its range.
inline void validate(int n, const SimOptions& o) {
  if (n < 1)
    throw configuration_error("a simulated world needs at least one rank, got " +
                              std::to_string(n));
  auto positive = [](double v, const char* what) {
    if (!(v > 0) || !std::isfinite(v))
      throw configuration_error(std::string("SimOptions::") + what +
                                " must be positive and finite, got " + std::to_string(v));
  };
  positive(o.bandwidth, "bandwidth");
  positive(o.local_bandwidth, "local_bandwidth");
  positive(o.byte_scale, "byte_scale");
  if (!(o.alpha >= 0) || !std::isfinite(o.alpha))
    throw configuration_error("SimOptions::alpha must be at least 0, got " +
                              std::to_string(o.alpha));
  if (!(o.uplink_alpha >= 0) || !std::isfinite(o.uplink_alpha))
    throw configuration_error("SimOptions::uplink_alpha must be at least 0, got " +
                              std::to_string(o.uplink_alpha));
  if (o.uplink_bandwidth < 0 || !std::isfinite(o.uplink_bandwidth))
    throw configuration_error(
        "SimOptions::uplink_bandwidth must be at least 0 (0: unlimited), got " +
        std::to_string(o.uplink_bandwidth));
  if (o.stack_bytes < 16 * 1024 || o.stack_bytes > max_stack_bytes)
    throw configuration_error("SimOptions::stack_bytes must be between 16 KiB and 1 GiB, got " +
                              std::to_string(o.stack_bytes));
  if (o.channels < 1 || o.channels > max_channels)
    throw configuration_error("SimOptions::channels must be in 1.." + std::to_string(max_channels) +
                              ", got " + std::to_string(o.channels));
  if (o.ranks_per_host < 1 || o.hosts_per_rack < 0)
    throw configuration_error(
        "SimOptions: ranks_per_host must be at least 1 and hosts_per_rack at least 0");
  if (!(o.straggler_fraction >= 0 && o.straggler_fraction <= 1))
    throw configuration_error("SimOptions::straggler_fraction must be in [0, 1], got " +
                              std::to_string(o.straggler_fraction));
  positive(o.straggler_slowdown, "straggler_slowdown");
  // Enumerations cast from an integer the enum does not name.
  if (o.stack_guard != StackGuard::automatic && o.stack_guard != StackGuard::page &&
      o.stack_guard != StackGuard::canary)
    throw configuration_error("SimOptions::stack_guard must be automatic, page or canary, got " +
                              std::to_string(static_cast<int>(o.stack_guard)));
  if (o.sharing != Sharing::max_min && o.sharing != Sharing::per_link)
    throw configuration_error("SimOptions::sharing must be max_min or per_link, got " +
                              std::to_string(static_cast<int>(o.sharing)));
}

}  // namespace detail
}  // namespace dssync

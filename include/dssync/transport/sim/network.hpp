#pragma once
// The simulator's network: hosts with a link up and a link down each, a local
// link between the ranks of one host, and racks with uplinks. A message that
// moves is a flow over the links of its path; flows that share a link share
// it max-min fairly, the rates recomputed (progressive filling) whenever a
// flow starts or ends. FlowNetwork knows links, routes and rates; which
// message moves when (the ports) is the world's.

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

#include "dssync/transport/sim/message.hpp"
#include "dssync/transport/sim/options.hpp"

namespace dssync::detail {

class FlowNetwork {
 public:
  // Lays out the links of a world of n ranks; no flow moves.
  void reset(const SimOptions& o, int n) {
    ranks_per_host_ = o.ranks_per_host;
    hosts_per_rack_ = o.hosts_per_rack;
    uplinks_ = o.uplink_bandwidth > 0;
    hosts_ = (n + o.ranks_per_host - 1) / o.ranks_per_host;
    const int racks = o.hosts_per_rack > 0 ? (hosts_ + o.hosts_per_rack - 1) / o.hosts_per_rack : 1;
    links_.assign(static_cast<std::size_t>(3 * hosts_ + 2 * racks), Link{});
    for (int h = 0; h < hosts_; ++h) {
      link(host_up(h)).capacity = o.bandwidth;
      link(host_down(h)).capacity = o.bandwidth;
      link(host_local(h)).capacity = o.local_bandwidth;
    }
    const double uplink = uplinks_ ? o.uplink_bandwidth : std::numeric_limits<double>::infinity();
    for (int k = 0; k < racks; ++k) {
      link(rack_up(k)).capacity = uplink;
      link(rack_down(k)).capacity = uplink;
    }
    flows_.clear();
    changed_ = false;
  }

  // The links of m's path: the sender host's link up, the rack uplinks up and
  // down when it leaves its rack, the receiver host's link down; two ranks on
  // one host use the host's local link instead. Whether it leaves its rack is
  // recorded whether or not the uplinks limit bandwidth: the wide-area latency
  // (uplink_alpha) applies either way.
  void route(SimMessage& m) const {
    const int a = host_of(m.src), b = host_of(m.dst);
    m.leaves_rack = rack_of_host(a) != rack_of_host(b);
    if (a == b) {
      m.links[0] = host_local(a);
      return;
    }
    m.links[0] = host_up(a);
    m.links[1] = host_down(b);
    const int ra = rack_of_host(a), rb = rack_of_host(b);
    if (ra != rb && uplinks_) {
      m.links[2] = rack_up(ra);
      m.links[3] = rack_down(rb);
    }
  }

  // m starts to move `virtual_bytes` at time `now`.
  void start(SimMessage& m, double virtual_bytes, double now) {
    m.remaining = virtual_bytes;
    m.rate = 0;
    m.since = now;
    flows_.push_back(&m);
    changed_ = true;
  }

  // When the next flow ends (infinity: none moves). Brings the rates up to
  // date first if flows started or ended since.
  double next_finish(double now) {
    if (changed_) rates(now);
    double next = std::numeric_limits<double>::infinity();
    for (const SimMessage* m : flows_) next = std::min(next, finish_time(*m));
    return next;
  }

  // Ends the flows whose last byte has left by `now`, calling done(m) for each
  // in a fixed order. done may start new flows; one that ends at once (an
  // empty message) ends in this call too.
  template <class Done>
  void finish_until(double now, Done&& done) {
    for (std::size_t i = 0; i < flows_.size();) {
      SimMessage* m = flows_[i];
      if (finish_time(*m) <= now) {
        flows_[i] = flows_.back();
        flows_.pop_back();
        changed_ = true;
        done(*m);
      } else {
        ++i;
      }
    }
  }

 private:
  struct Link {
    double capacity = 0;  // bytes/s; infinity: not a constraint
    double residual = 0;
    int unfrozen = 0;
  };

  int host_of(int r) const { return r / ranks_per_host_; }
  int rack_of_host(int h) const { return hosts_per_rack_ > 0 ? h / hosts_per_rack_ : 0; }
  // Links: host h up 3h, down 3h+1, local 3h+2; then rack k up, down.
  int host_up(int h) const { return 3 * h; }
  int host_down(int h) const { return 3 * h + 1; }
  int host_local(int h) const { return 3 * h + 2; }
  int rack_up(int k) const { return 3 * hosts_ + 2 * k; }
  int rack_down(int k) const { return 3 * hosts_ + 2 * k + 1; }
  Link& link(int l) { return links_[static_cast<std::size_t>(l)]; }

  static double finish_time(const SimMessage& m) {
    return m.remaining <= 0 ? m.since : m.since + m.remaining / m.rate;
  }

  // Max-min fair rates by progressive filling: repeatedly the link whose
  // residual capacity per unfrozen flow is least fixes the rate of the flows
  // that cross it.
  void rates(double now) {
    changed_ = false;
    for (Link& l : links_) l.residual = l.capacity, l.unfrozen = 0;
    for (SimMessage* m : flows_)
      for (int l : m->links)
        if (l >= 0) ++link(l).unfrozen;
    std::vector<double>& rate = rate_scratch_;
    rate.assign(flows_.size(), -1.0);
    std::size_t left = flows_.size();
    while (left > 0) {
      double share = std::numeric_limits<double>::infinity();
      for (const Link& l : links_)
        if (l.unfrozen > 0) share = std::min(share, l.residual / l.unfrozen);
      for (std::size_t i = 0; i < flows_.size(); ++i) {
        if (rate[i] >= 0) continue;
        bool bottleneck = false;
        for (int l : flows_[i]->links)
          if (l >= 0) {
            const Link& k = link(l);
            bottleneck = bottleneck || k.residual / k.unfrozen <= share;
          }
        if (!bottleneck) continue;
        rate[i] = share;
        --left;
        for (int l : flows_[i]->links)
          if (l >= 0) {
            Link& k = link(l);
            k.residual -= share;
            --k.unfrozen;
          }
      }
    }
    for (std::size_t i = 0; i < flows_.size(); ++i) {
      SimMessage& m = *flows_[i];
      if (m.rate == rate[i]) continue;
      if (m.rate > 0) m.remaining = std::max(0.0, m.remaining - m.rate * (now - m.since));
      m.since = now;
      m.rate = rate[i];
    }
  }

  int ranks_per_host_ = 1;
  int hosts_per_rack_ = 0;
  bool uplinks_ = false;
  int hosts_ = 0;
  std::vector<Link> links_;
  std::vector<SimMessage*> flows_;
  std::vector<double> rate_scratch_;
  bool changed_ = false;
};

}  // namespace dssync::detail

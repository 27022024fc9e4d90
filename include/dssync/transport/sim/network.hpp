#pragma once
// The simulator's network: hosts with a link up and a link down each, a local
// link between the ranks of one host, and racks with uplinks. A message that
// moves is a flow over the links of its path; flows that share a link share
// it max-min fairly, the rates recomputed (progressive filling) whenever a
// flow starts or ends. FlowNetwork knows links, routes and rates; which
// message moves when (the ports) is the world's; the filling itself is
// filling.hpp's.
//
// The cost of an event does not grow with the world: the finish times are in
// a heap, and a change recomputes the rates of the flows it can affect only,
// the connected components (flows joined by sharing a link) of the flows that
// started, of the links of the flows that ended, and of the flows whose place
// in the list of flows moved. The rates are bit for bit those of progressive
// filling over every flow at once (kept as the reference mode, for the
// tests): a round of the global filling changes a component only when the
// component's own least share is the round's, and then performs exactly the
// component's own round, in the same order of flows; a component none of
// whose flows started, moved or lost a neighbour has the same flows in the
// same order as when its rates were last computed, so computing it again
// would give them again.
//
// Per-link sharing (Sharing::per_link) has no components: a flow's rate is
// the least over its links of capacity / flows, so a change recomputes the
// flows of the changed flows' links, and nothing else.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "dssync/transport/sim/filling.hpp"
#include "dssync/transport/sim/message.hpp"
#include "dssync/transport/sim/options.hpp"

namespace dssync::detail {

class FlowNetwork {
 public:
  // reference: recompute every flow's rate at every change and scan every
  // flow for the next finish, as the first engine did; the tests check the
  // component-wise engine against it bit for bit.
  explicit FlowNetwork(bool reference = false) : reference_(reference) {}

  // Lays out the links of a world of n ranks; no flow moves.
  void reset(const SimOptions& o, int n) {
    per_link_ = o.sharing == Sharing::per_link;
    ranks_per_host_ = o.ranks_per_host;
    hosts_per_rack_ = o.hosts_per_rack;
    uplinks_ = o.uplink_bandwidth > 0;
    // Rounded up as 1 + (x - 1) / k, which cannot overflow (x >= 1).
    hosts_ = 1 + (n - 1) / o.ranks_per_host;
    const int racks = o.hosts_per_rack > 0 ? 1 + (hosts_ - 1) / o.hosts_per_rack : 1;
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
    heap_.clear();
    touched_flows_.clear();
    touched_links_.clear();
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
    m.finish = finish_time(m);
    m.slot = static_cast<int>(flows_.size());
    flows_.push_back(&m);
    for (int j = 0; j < 4; ++j)
      if (m.links[j] >= 0) {
        SimList<SimMessage>& on = link(m.links[j]).flows;
        m.on_link[j] = static_cast<int>(on.size());
        on.push_back(&m);
      }
    m.heap = -1;
    if (!bulk_) heap_push(m);
    touched_flows_.push_back(&m);
    changed_ = true;
  }

  // When the next flow ends (infinity: none moves). Brings the rates up to
  // date first if flows started or ended since.
  double next_finish(double now) {
    if (changed_) rates(now);
    if (reference_) {
      double next = std::numeric_limits<double>::infinity();
      for (const SimMessage* m : flows_) next = std::min(next, finish_time(*m));
      return next;
    }
    return heap_.empty() ? std::numeric_limits<double>::infinity() : heap_.front().finish;
  }

  // Ends the flows whose last byte has left by `now`, calling done(m) for each
  // in a fixed order: that of a scan of the list of flows from its start, an
  // ended flow replaced in its place by the last one. done may start new
  // flows (at the end of the list); one that ends at once (an empty message)
  // ends in this call too.
  template <class Done>
  void finish_until(double now, Done&& done) {
    // Many flows due at once (as in a synchronous collective): the scan is
    // the cheapest way, the heap built again afterwards.
    const bool scan = reference_ || due_more_than(now, flows_.size() / 8);
    if (scan) {
      bulk_ = !reference_;
      for (std::size_t i = 0; i < flows_.size();) {
        SimMessage* m = flows_[i];
        if (finish_time(*m) <= now) {
          remove(*m);
          done(*m);
        } else {
          ++i;
        }
      }
      if (bulk_) rebuild_heap();
      bulk_ = false;
      return;
    }
    // The same order without the scan: the flows due, least place first; a
    // due flow moved into the place of one that ended is taken next, as the
    // scan would, and its entry for its old place is stale.
    due_.clear();
    take_due(now);
    while (!due_.empty()) {
      std::pop_heap(due_.begin(), due_.end(), std::greater<>{});
      const auto [place, m] = due_.back();
      due_.pop_back();
      if (m->slot != place || m->heap >= 0) continue;  // stale: it moved
      SimMessage* moved = remove(*m);
      if (moved && moved->finish <= now) {
        due_.emplace_back(moved->slot, moved);
        std::push_heap(due_.begin(), due_.end(), std::greater<>{});
      }
      done(*m);
      take_due(now);
    }
  }

  // The flows that move, in the order the rates are computed in (tests).
  const std::vector<SimMessage*>& flows() const noexcept { return flows_; }
  // How many rate computations found their rounds without the scan (tests).
  std::uint64_t fills_by_heap() const noexcept { return filling_.by_heap(); }
  // How many found every link crossed by one flow, and needed no rounds (tests).
  std::uint64_t fills_alone() const noexcept { return filling_.alone_fills(); }

 private:
  using Link = SimLink;

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

  // Takes m out of the list of flows (the last flow takes its place), its
  // links' lists and the heap; returns the flow that moved, if one did: its
  // component must be computed again, its order among its neighbours having
  // changed.
  SimMessage* remove(SimMessage& m) {
    const std::size_t i = static_cast<std::size_t>(m.slot);
    SimMessage* moved = nullptr;
    if (i + 1 < flows_.size()) {
      moved = flows_.back();
      flows_[i] = moved;
      moved->slot = m.slot;
      if (!per_link_) touched_flows_.push_back(moved);  // per link, order does not matter
    }
    flows_.pop_back();
    m.slot = -1;
    for (int j = 0; j < 4; ++j)
      if (m.links[j] >= 0) {
        SimList<SimMessage>& on = link(m.links[j]).flows;
        SimMessage* last = on.back();
        const int at = m.on_link[j];
        on[static_cast<std::size_t>(at)] = last;
        for (int k = 0; k < 4; ++k)
          if (last->links[k] == m.links[j]) last->on_link[k] = at;
        on.pop_back();
        touched_links_.push_back(m.links[j]);
      }
    if (bulk_)
      m.heap = -1;
    else
      heap_erase(m);
    changed_ = true;
    return moved;
  }

  // Moves the flows of the heap that end by `now` to the due list.
  void take_due(double now) {
    while (!heap_.empty() && heap_.front().finish <= now) {
      SimMessage* m = heap_.front().flow;
      heap_erase(*m);
      due_.emplace_back(m->slot, m);
      std::push_heap(due_.begin(), due_.end(), std::greater<>{});
    }
  }

  // ---- rates ----------------------------------------------------------------
  void rates(double now) {
    changed_ = false;
    if (per_link_) {
      per_link_rates(now);
      return;
    }
    if (reference_) {
      touched_flows_.clear();
      touched_links_.clear();
      comp_flows_ = flows_;
      comp_links_.clear();
      for (std::size_t l = 0; l < links_.size(); ++l) comp_links_.push_back(static_cast<int>(l));
      fill(now);
      return;
    }
    ++visit_;
    if (2 * touched_flows_.size() >= flows_.size()) {
      // Most flows are new or moved (a synchronous collective's step): one
      // filling over every flow, which is what the components would give.
      comp_flows_ = flows_;
      comp_links_.clear();
      for (SimMessage* m : flows_)
        for (int l : m->links)
          if (l >= 0 && link(l).seen != visit_) {
            link(l).seen = visit_;
            comp_links_.push_back(l);
          }
      fill(now);
      touched_flows_.clear();
      touched_links_.clear();
      return;
    }
    for (int l : touched_links_) component_of_link(l, now);
    for (SimMessage* m : touched_flows_)
      if (m->slot >= 0 && m->seen != visit_) {
        m->seen = visit_;
        comp_flows_.assign(1, m);
        comp_links_.clear();
        grow(now);
      }
    touched_flows_.clear();
    touched_links_.clear();
  }

  void component_of_link(int l, double now) {
    Link& k = link(l);
    if (k.seen == visit_) return;
    k.seen = visit_;
    comp_flows_.clear();
    comp_links_.assign(1, l);
    grow(now);
  }

  // Completes the component from comp_flows_ and comp_links_ (visited
  // already) and computes its rates.
  void grow(double now) {
    std::size_t f = 0, l = 0;
    while (f < comp_flows_.size() || l < comp_links_.size()) {
      for (; l < comp_links_.size(); ++l)
        for (SimMessage* m : link(comp_links_[l]).flows)
          if (m->seen != visit_) {
            m->seen = visit_;
            comp_flows_.push_back(m);
          }
      for (; f < comp_flows_.size(); ++f)
        for (int j : comp_flows_[f]->links)
          if (j >= 0 && link(j).seen != visit_) {
            link(j).seen = visit_;
            comp_links_.push_back(j);
          }
    }
    if (comp_flows_.empty()) return;
    // In the order of the list of flows: sorted, or, for a component of a
    // good part of the network, picked out of the list in one pass.
    if (8 * comp_flows_.size() < flows_.size()) {
      std::sort(comp_flows_.begin(), comp_flows_.end(),
                [](const SimMessage* a, const SimMessage* b) { return a->slot < b->slot; });
    } else {
      ++component_;
      for (SimMessage* m : comp_flows_) m->component = component_;
      comp_flows_.clear();
      for (SimMessage* m : flows_)
        if (m->component == component_) comp_flows_.push_back(m);
    }
    fill(now);
  }

  // The max-min rates of comp_flows_ over comp_links_ (filling.hpp), and
  // the flows whose rate changed brought up to date and moved in the heap.
  void fill(double now) {
    const std::vector<double>& rate = filling_.rates(comp_flows_, comp_links_, links_, reference_);
    for (std::size_t i = 0; i < comp_flows_.size(); ++i) set_rate(*comp_flows_[i], rate[i], now);
  }

  // Per-link sharing: every flow of a link that a flow started on or ended
  // on takes the least share of its own links. The reference mode computes
  // every flow's, which gives the same rates.
  void per_link_rates(double now) {
    ++visit_;
    auto visit = [&](int l) {
      Link& k = link(l);
      if (k.seen == visit_) return;
      k.seen = visit_;
      for (SimMessage* m : k.flows)
        if (m->seen != visit_) {
          m->seen = visit_;
          double rate = std::numeric_limits<double>::infinity();
          for (int j : m->links)
            if (j >= 0) rate = std::min(rate, link(j).capacity / static_cast<double>(link(j).flows.size()));
          set_rate(*m, rate, now);
        }
    };
    if (reference_) {
      for (std::size_t l = 0; l < links_.size(); ++l) visit(static_cast<int>(l));
    } else {
      for (SimMessage* m : touched_flows_)
        if (m->slot >= 0)
          for (int l : m->links)
            if (l >= 0) visit(l);
      for (int l : touched_links_) visit(l);
    }
    touched_flows_.clear();
    touched_links_.clear();
  }

  // m moves at `rate` from `now`: what it moved since its last change taken
  // off, and its place in the heap moved.
  void set_rate(SimMessage& m, double rate, double now) {
    if (m.rate == rate) return;
    if (m.rate > 0) m.remaining = std::max(0.0, m.remaining - m.rate * (now - m.since));
    m.since = now;
    m.rate = rate;
    m.finish = finish_time(m);
    heap_fix(m);
  }

  // ---- the heap of finish times (each flow knows its place; the key is kept
  // beside the pointer so that sifting does not chase it) ---------------------
  struct Entry {
    double finish;
    SimMessage* flow;
  };
  void heap_push(SimMessage& m) {
    m.heap = static_cast<int>(heap_.size());
    heap_.push_back({m.finish, &m});
    heap_up(m.heap);
  }
  void heap_erase(SimMessage& m) {
    const int i = m.heap;
    if (i < 0) return;
    const Entry last = heap_.back();
    heap_.pop_back();
    m.heap = -1;
    if (last.flow == &m) return;
    place(i, last);
    heap_up(i);
    heap_down(last.flow->heap);
  }
  // Whether more than `limit` flows end by `now`: a walk of the heap's top,
  // which stops once it has seen limit + 1.
  bool due_more_than(double now, std::size_t limit) {
    std::size_t seen = 0;
    walk_.clear();
    if (!heap_.empty()) walk_.push_back(0);
    while (!walk_.empty()) {
      const std::size_t i = walk_.back();
      walk_.pop_back();
      if (!(heap_[i].finish <= now)) continue;
      if (++seen > limit) return true;
      for (std::size_t c = 2 * i + 1; c <= 2 * i + 2; ++c)
        if (c < heap_.size()) walk_.push_back(c);
    }
    return false;
  }
  // Every flow into the heap at once (Floyd), after a scan.
  void rebuild_heap() {
    heap_.clear();
    for (SimMessage* m : flows_) {
      m->heap = static_cast<int>(heap_.size());
      heap_.push_back({m->finish, m});
    }
    for (int i = static_cast<int>(heap_.size()) / 2 - 1; i >= 0; --i) heap_down(i);
  }
  void heap_fix(SimMessage& m) {
    heap_[static_cast<std::size_t>(m.heap)].finish = m.finish;
    heap_up(m.heap);
    heap_down(m.heap);
  }
  void place(int i, Entry e) {
    heap_[static_cast<std::size_t>(i)] = e;
    e.flow->heap = i;
  }
  void heap_up(int i) {
    const Entry e = heap_[static_cast<std::size_t>(i)];
    while (i > 0) {
      const int parent = (i - 1) / 2;
      const Entry p = heap_[static_cast<std::size_t>(parent)];
      if (!(e.finish < p.finish)) break;
      place(i, p);
      i = parent;
    }
    place(i, e);
  }
  void heap_down(int i) {
    const int n = static_cast<int>(heap_.size());
    const Entry e = heap_[static_cast<std::size_t>(i)];
    for (;;) {
      int c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n &&
          heap_[static_cast<std::size_t>(c + 1)].finish < heap_[static_cast<std::size_t>(c)].finish)
        ++c;
      const Entry child = heap_[static_cast<std::size_t>(c)];
      if (!(child.finish < e.finish)) break;
      place(i, child);
      i = c;
    }
    place(i, e);
  }

  bool reference_;
  bool per_link_ = false;  // Sharing::per_link
  int ranks_per_host_ = 1;
  int hosts_per_rack_ = 0;
  bool uplinks_ = false;
  int hosts_ = 0;
  std::vector<Link> links_;
  std::vector<SimMessage*> flows_;  // every flow that moves; the order the rates see them in
  std::vector<Entry> heap_;         // the same flows, least finish time first
  std::vector<SimMessage*> touched_flows_;        // started or moved since the rates were computed
  std::vector<int> touched_links_;                // links of flows that ended since
  std::vector<std::pair<int, SimMessage*>> due_;  // finish_until: (place, flow), least first
  std::vector<SimMessage*> comp_flows_;           // the component being computed
  std::vector<int> comp_links_;
  std::uint64_t component_ = 0;  // grow: the component being picked out of the list
  MaxMinFilling filling_;
  std::vector<std::size_t> walk_;  // due_more_than's
  bool bulk_ = false;              // in a scan: the heap is built again after it
  std::uint64_t visit_ = 0;
  bool changed_ = false;
};

}  // namespace dssync::detail

#pragma once
// Max-min fair rates by progressive filling, the simulator's sharing of its
// links (network.hpp decides which flows and links a filling covers, and
// keeps the rates). Repeatedly the link whose residual capacity per unfrozen
// flow is least fixes the rate of the flows that cross it. The flows are
// taken in the order given (the network's list of flows), and a flow freezes
// in the round in which one of its links' share (after the freezes before it
// in that round) is at most the round's. The reference scans every link and
// every flow in every round (by_scan); the engine finds each round's links
// and flows without the scan (by_heap_fill), which gives the same rates bit
// for bit, or says that it cannot, and then the scan runs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include "dssync/transport/sim/message.hpp"

namespace dssync::detail {

// A link of the simulated network: one cache line.
struct alignas(64) SimLink {
  double capacity = 0;  // bytes/s; infinity: not a constraint
  SimList<SimMessage> flows;  // the flows that cross it, in no order
  std::uint64_t seen = 0;  // the network's: the last rate update that visited it
  // The filling's:
  double residual = 0;
  std::uint64_t round = 0;    // the last round it was among the round's links
  std::uint64_t touched = 0;  // the last round a frozen flow left it
  int unfrozen = 0;
  int bucket = -1;  // its bucket, while one flow crosses it
};
static_assert(sizeof(SimLink) == 64);

class MaxMinFilling {
 public:
  // The rates of `flows` over `links` (every link one of them crosses; the
  // other flows that cross those links are among `flows`), indexed like
  // flows. `all` holds every link of the network, by number. scan_only: the
  // reference.
  const std::vector<double>& rates(std::span<SimMessage* const> flows, std::span<const int> links,
                                   std::span<SimLink> all, bool scan_only) {
    flows_ = flows;
    links_ = links;
    all_ = all;
    prepare();
    if (!scan_only) {
      if (alone()) {
        ++alone_;
        return rate_;
      }
      if (by_heap_fill()) {
        ++by_heap_;
        return rate_;
      }
      prepare();  // the heap filling gave up part way
    }
    by_scan();
    return rate_;
  }
  // How many fillings found their rounds without the scan, and how many
  // needed no rounds, every link crossed by one flow (tests).
  std::uint64_t by_heap() const noexcept { return by_heap_; }
  std::uint64_t alone_fills() const noexcept { return alone_; }

 private:
  struct Bucket {  // links of one share that one flow each crosses
    double share = 0;
    std::vector<int> links;
    int alive = 0;  // those whose flow has not frozen
  };
  static constexpr std::size_t max_buckets = 4;
  struct Share {  // a link's share when it was pushed
    double share;
    int link;
    bool operator<(const Share& o) const { return share != o.share ? share < o.share : link < o.link; }
    bool operator>(const Share& o) const { return o < *this; }
  };

  SimLink& link(int l) { return all_[static_cast<std::size_t>(l)]; }

  void prepare() {
    for (int l : links_) link(l).residual = link(l).capacity, link(l).unfrozen = 0;
    for (SimMessage* m : flows_)
      for (int l : m->links)
        if (l >= 0) ++link(l).unfrozen;
    rate_.assign(flows_.size(), -1.0);
  }

  static double share_of(const SimLink& k) { return k.residual / k.unfrozen; }

  // When no link is crossed by two of the flows (a ring's step: each flow
  // alone on its sender's link up and its receiver's link down), a flow's
  // rate is the least capacity of its links: the rounds would freeze it at
  // that link's share, its capacity over one flow, and no other flow's
  // freezing changes its links. False, and nothing set, otherwise.
  bool alone() {
    for (int l : links_)
      if (link(l).unfrozen > 1) return false;
    for (std::size_t i = 0; i < flows_.size(); ++i) {
      double rate = std::numeric_limits<double>::infinity();
      for (int l : flows_[i]->links)
        if (l >= 0) rate = std::min(rate, link(l).capacity);
      rate_[i] = rate;
    }
    return true;
  }

  // Every round: the least share over every link, then every unfrozen flow
  // in order.
  void by_scan() {
    std::vector<double>& rate = rate_;
    std::size_t left = flows_.size();
    while (left > 0) {
      double share = std::numeric_limits<double>::infinity();
      for (int l : links_) {
        const SimLink& k = link(l);
        if (k.unfrozen > 0) share = std::min(share, share_of(k));
      }
      for (std::size_t i = 0; i < flows_.size(); ++i)
        if (rate[i] < 0 && bottlenecked(*flows_[i], share)) {
          rate[i] = share;
          --left;
          freeze(*flows_[i], share);
        }
    }
  }
  bool bottlenecked(const SimMessage& m, double share) {
    bool bottleneck = false;
    for (int l : m.links)
      if (l >= 0) bottleneck = bottleneck || share_of(link(l)) <= share;
    return bottleneck;
  }
  void freeze(const SimMessage& m, double share) {
    for (int l : m.links)
      if (l >= 0) {
        SimLink& k = link(l);
        k.residual -= share;
        --k.unfrozen;
      }
  }

  // The same rounds, each found without the scan: the round's share is the
  // least of the links' shares, its candidate flows those that cross a link
  // of that share, taken in order with the scan's test. A flow none of whose
  // links has the round's share cannot freeze in the round, since a link's
  // share only moves away from the round's when one of its flows freezes;
  // rounding could still bring one down to it, which the scan would see mid
  // round: then this returns false, and the caller fills by scan. The shares
  // are sorted once, and a share that changes goes to a heap; a link that
  // one flow crosses (a host's link, behind one port) keeps its share, its
  // capacity, until that flow freezes, so such links wait in a bucket per
  // capacity, and a round at a bucket's share takes the bucket whole. Each
  // round costs its own links and flows, not the whole component's.
  bool by_heap_fill() {
    std::vector<double>& rate = rate_;
    sorted_.clear();
    shares_.clear();
    std::size_t buckets = 0;
    for (int l : links_) {
      SimLink& k = link(l);
      k.bucket = -1;
      if (k.unfrozen == 0) continue;
      const double first = share_of(k);
      if (k.unfrozen == 1) {
        std::size_t b = 0;
        while (b < buckets && buckets_[b].share != first) ++b;
        if (b < max_buckets) {
          if (b == buckets) {
            if (buckets_.size() == b) buckets_.emplace_back();
            buckets_[b].share = first;
            buckets_[b].links.clear();
            buckets_[b].alive = 0;
            ++buckets;
          }
          k.bucket = static_cast<int>(b);
          buckets_[b].links.push_back(l);
          ++buckets_[b].alive;
          continue;
        }
      }
      sorted_.push_back({first, l});
    }
    std::sort(sorted_.begin(), sorted_.end(), std::less<>{});
    std::size_t next = 0;
    for (std::size_t i = 0; i < flows_.size(); ++i) flows_[i]->order = static_cast<int>(i);
    enlisted_.assign(flows_.size(), 0);
    // An entry is current while its link's share is still the one it holds.
    auto current = [this](const Share& e) {
      const SimLink& k = link(e.link);
      return k.unfrozen > 0 && share_of(k) == e.share;
    };
    // The least current entry of the sorted shares and the heap, or null.
    auto least = [&]() -> const Share* {
      while (next < sorted_.size() && !current(sorted_[next])) ++next;
      while (!shares_.empty() && !current(shares_.front())) {
        std::pop_heap(shares_.begin(), shares_.end(), std::greater<>{});
        shares_.pop_back();
      }
      const Share* a = next < sorted_.size() ? &sorted_[next] : nullptr;
      const Share* b = shares_.empty() ? nullptr : &shares_.front();
      return !a ? b : !b ? a : *b < *a ? b : a;
    };
    auto take = [&](const Share* e) {
      const int l = e->link;
      if (!shares_.empty() && e == &shares_.front()) {
        std::pop_heap(shares_.begin(), shares_.end(), std::greater<>{});
        shares_.pop_back();
      } else {
        ++next;
      }
      return l;
    };
    auto enlist = [&](int l) {
      SimLink& k = link(l);
      if (k.round == round_) return;
      k.round = round_;
      round_links_.push_back(l);
      for (const SimMessage* m : k.flows) {
        const auto i = static_cast<std::size_t>(m->order);
        if (rate[i] < 0 && enlisted_[i] != round_) {
          enlisted_[i] = round_;
          candidates_.push_back(m->order);
        }
      }
    };
    std::size_t left = flows_.size();
    while (left > 0) {
      const Share* first = least();
      double share = first ? first->share : std::numeric_limits<double>::infinity();
      for (std::size_t b = 0; b < buckets; ++b)
        if (buckets_[b].alive > 0) share = std::min(share, buckets_[b].share);
      if (!(share < std::numeric_limits<double>::infinity())) return false;
      ++round_;
      round_links_.clear();
      candidates_.clear();
      for (const Share* e = first; e && e->share <= share; e = least()) enlist(take(e));
      for (std::size_t b = 0; b < buckets; ++b)
        if (buckets_[b].alive > 0 && buckets_[b].share <= share)
          for (int l : buckets_[b].links)
            if (link(l).unfrozen > 0) enlist(l);
      std::sort(candidates_.begin(), candidates_.end());  // in the order of the flows
      const std::size_t before = left;
      for (int i : candidates_) {
        SimMessage& m = *flows_[static_cast<std::size_t>(i)];
        if (!bottlenecked(m, share)) continue;
        rate[static_cast<std::size_t>(i)] = share;
        --left;
        freeze(m, share);
        for (int l : m.links) {
          if (l < 0) continue;
          SimLink& k = link(l);
          if (k.bucket >= 0 && k.unfrozen == 0) --buckets_[static_cast<std::size_t>(k.bucket)].alive;
          if (k.round == round_) continue;
          if (k.unfrozen > 0 && share_of(k) <= share) return false;  // the scan would differ
          if (k.touched != round_) {
            k.touched = round_;
            round_links_.push_back(l);
          }
        }
      }
      if (left == before) return false;  // cannot be: the least share's link has a flow to freeze
      // The round's links and the links its flows left: their new shares.
      for (const int l : round_links_) {
        const SimLink& k = link(l);
        if (k.unfrozen > 0) {
          shares_.push_back({share_of(k), l});
          std::push_heap(shares_.begin(), shares_.end(), std::greater<>{});
        }
      }
    }
    return true;
  }

  std::span<SimMessage* const> flows_;
  std::span<const int> links_;
  std::span<SimLink> all_;
  std::vector<double> rate_;             // per flow; -1 while unfrozen
  std::vector<Share> sorted_;            // by_heap_fill: the links' first shares, least first
  std::vector<Share> shares_;            // by_heap_fill: the shares that changed, a heap
  std::vector<int> round_links_;         // by_heap_fill: the round's links, then those its flows left
  std::vector<int> candidates_;          // by_heap_fill: the round's flows, by place in flows_
  std::vector<Bucket> buckets_;          // by_heap_fill
  std::vector<std::uint64_t> enlisted_;  // by_heap_fill: per flow, the last round it was enlisted in
  std::uint64_t round_ = 0;
  std::uint64_t by_heap_ = 0;
  std::uint64_t alone_ = 0;
};

}  // namespace dssync::detail

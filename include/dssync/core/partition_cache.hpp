#pragma once
// One copy of a world-sized partition for all the ranks of one process.
//
// Every rank of a DS-Sync job computes the same partition of the world from
// (seed, iteration) alone, which is right when ranks are processes or
// threads: n ranks compute n partitions at once. When one process simulates
// the whole world (the simulator's fibers), the same work and memory become
// n x n: at 16,384 ranks, 16,384 copies of a 16,384-rank partition every
// step. A transport whose ranks share one address space and never run at
// the same instant offers a PartitionCache (`t.partition_cache()`); a
// synchronizer whose policies are stateless then fills a partition once per
// key and every rank reads that copy. What a rank computes is unchanged: the
// same policies fill the same partition, once instead of n times.
//
// Entries are counted: a rank acquires the partition of the iteration it
// steps and releases it when it takes the next. A rank may hold several
// synchronizers that ask for the same partitions (two DSSync with equal
// options); each takes a number, its instance, from the cache when it is
// made: the k-th such synchronizer of every rank has instance k, and the
// instance is part of the key. So each entry is acquired exactly once by
// each rank, and once as many acquisitions as the world has ranks were served
// and no rank holds it, every rank has passed it and none will ask again: it
// is recycled. (Counted without instances, two holders a rank would recycle
// an entry when half the ranks had passed it, and the copy the others filled
// again would never be.) Spent entries keep their storage, so a job
// allocates nothing once warm.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "dssync/core/group.hpp"

namespace dssync::detail {

class PartitionCache {
 public:
  // What identifies a partition: the policies (a hash of their types), the
  // synchronizer's seed and group size, the iteration; and which of a rank's
  // synchronizers with these three asks (instance()).
  struct Key {
    std::uint64_t policies = 0;
    std::uint64_t seed = 0;
    std::uint64_t group_size = 0;
    std::uint64_t iteration = 0;
    std::uint64_t instance = 0;
    friend bool operator==(const Key&, const Key&) = default;
  };

  class Entry {
   public:
    const Partition& partition() const noexcept { return partition_; }
    const Key& key() const noexcept { return key_; }

   private:
    friend class PartitionCache;
    Key key_;
    Partition partition_;
    int users_ = 0;            // ranks that hold it now
    std::int64_t served_ = 0;  // acquisitions so far
  };

  explicit PartitionCache(int world_size = 0) : world_(world_size) {}

  // The instance of a new synchronizer of `rank` that asks for the partitions
  // of `key` (its iteration and instance not used): how many of this rank's
  // synchronizers asked for the same policies, seed and group size before it
  // since the cache was last trimmed.
  std::uint64_t instance(int rank, const Key& key) {
    if (instances_.empty()) instances_.resize(static_cast<std::size_t>(world_));
    Key stream = key;
    stream.iteration = 0;
    stream.instance = 0;
    for (auto& [k, count] : instances_[static_cast<std::size_t>(rank)])
      if (k == stream) return count++;
    instances_[static_cast<std::size_t>(rank)].push_back({stream, 1});
    return 0;
  }

  // The partition of `key`, filled by fill(Partition&) if no rank holds it
  // yet. An exception from fill leaves no entry: the next rank fills again,
  // and fails the same way.
  template <class Fill>
  Entry* acquire(const Key& key, Fill&& fill) {
    for (const auto& e : live_)
      if (e->key_ == key) {
        ++e->users_;
        ++e->served_;
        return e.get();
      }
    std::unique_ptr<Entry> e;
    if (spare_.empty()) {
      // Room for every entry in spare_, so that retire() never allocates.
      spare_.reserve(live_.size() + 1);
      e = std::make_unique<Entry>();
    } else {
      e = std::move(spare_.back());
      spare_.pop_back();
    }
    try {
      fill(e->partition_);
    } catch (...) {
      spare_.push_back(std::move(e));
      throw;
    }
    e->key_ = key;
    e->users_ = 1;
    e->served_ = 1;
    live_.push_back(std::move(e));
    return live_.back().get();
  }

  // Gives back what acquire returned (nullptr: nothing).
  void release(Entry* entry) noexcept {
    if (entry == nullptr) return;
    --entry->users_;
    if (entry->users_ > 0 || entry->served_ < world_) return;
    for (std::size_t i = 0; i < live_.size(); ++i)
      if (live_[i].get() == entry) return retire(i);
  }

  // Forgets the entries no rank holds (after a run that ended early), and
  // the instances taken: a new run's synchronizers count from 0.
  void trim() {
    for (std::size_t i = live_.size(); i-- > 0;)
      if (live_[i]->users_ == 0) retire(i);
    for (auto& taken : instances_) taken.clear();
  }

  // Entries held or waiting for ranks that have not passed them (tests).
  std::size_t live() const noexcept { return live_.size(); }

 private:
  // Live entry i to the spare storage (the last live entry takes its place).
  void retire(std::size_t i) noexcept {
    std::swap(live_[i], live_.back());
    spare_.push_back(std::move(live_.back()));  // within the capacity acquire() reserved
    live_.pop_back();
  }

  int world_;
  // Per rank: the keys (iteration and instance 0) its synchronizers asked for,
  // and how many did.
  std::vector<std::vector<std::pair<Key, std::uint64_t>>> instances_;
  std::vector<std::unique_ptr<Entry>> live_;  // few: the iterations ranks are in
  std::vector<std::unique_ptr<Entry>> spare_;
};

// The transport's cache, or nullptr when its ranks do not share one (every
// transport but the simulator). Looks through wrappers that name their
// transport base().
template <class Transport>
PartitionCache* partition_cache_of(Transport& t) noexcept {
  if constexpr (requires {
                  { t.partition_cache() } -> std::convertible_to<PartitionCache*>;
                })
    return t.partition_cache();
  else if constexpr (requires { t.base(); })
    return partition_cache_of(t.base());
  else
    return nullptr;
}

// A rank's hold on one cache entry, given back when it takes another or ends.
class SharedPartition {
 public:
  SharedPartition() = default;
  SharedPartition(const SharedPartition&) = delete;
  SharedPartition& operator=(const SharedPartition&) = delete;
  SharedPartition(SharedPartition&& o) noexcept
      : cache_(std::exchange(o.cache_, nullptr)), entry_(std::exchange(o.entry_, nullptr)) {}
  SharedPartition& operator=(SharedPartition&& o) noexcept {
    if (this != &o) {
      drop();
      cache_ = std::exchange(o.cache_, nullptr);
      entry_ = std::exchange(o.entry_, nullptr);
    }
    return *this;
  }
  ~SharedPartition() { drop(); }

  // The partition held, or nullptr.
  const Partition* held() const noexcept { return entry_ ? &entry_->partition() : nullptr; }

  // The partition of `key` from `cache`, keeping the one held if it is that.
  template <class Fill>
  const Partition& get(PartitionCache& cache, const PartitionCache::Key& key, Fill&& fill) {
    if (entry_ != nullptr && cache_ == &cache && entry_->key() == key) return entry_->partition();
    PartitionCache::Entry* next = cache.acquire(key, fill);
    drop();
    cache_ = &cache;
    entry_ = next;
    return entry_->partition();
  }

 private:
  void drop() noexcept {
    if (cache_ != nullptr) cache_->release(entry_);
    cache_ = nullptr;
    entry_ = nullptr;
  }
  PartitionCache* cache_ = nullptr;
  PartitionCache::Entry* entry_ = nullptr;
};

// The whole world as one group (the full all-reduce's): the cache's copy
// when the transport has one, else this rank's own.
class WorldPartition {
 public:
  template <class Transport>
  explicit WorldPartition(Transport& t) {
    const int n = t.size();
    if (PartitionCache* cache = partition_cache_of(t)) {
      PartitionCache::Key key{.policies = 0x776f726c64ULL,
                              .group_size = static_cast<std::uint64_t>(n)};
      key.instance = cache->instance(t.rank(), key);
      shared_.get(*cache, key, [n](Partition& p) { p = Partition::whole(n); });
    } else
      own_ = Partition::whole(n);
  }
  const Partition& get() const noexcept {
    const Partition* p = shared_.held();
    return p ? *p : own_;
  }

 private:
  SharedPartition shared_;
  Partition own_;
};

}  // namespace dssync::detail

#pragma once
// The dssync::error family. Every failure the library detects is one of these,
// and its message names where it happened: rank, peer, group, iteration.

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

namespace dssync {

// Where a failure happened. Unknown fields stay empty and are left out of the
// message.
struct error_context {
  std::optional<int> rank;
  std::optional<int> peer;
  std::optional<std::uint64_t> iteration;
  std::optional<int> tag;
  std::string group;  // "[0 3 5]": formatted once, when the error is raised

  error_context with_rank(int r) const { return set(&error_context::rank, r); }
  error_context with_peer(int p) const { return set(&error_context::peer, p); }
  error_context with_iteration(std::uint64_t i) const { return set(&error_context::iteration, i); }
  error_context with_tag(int t) const { return set(&error_context::tag, t); }
  error_context with_group(std::span<const int> ranks) const {
    error_context c = *this;
    c.group = format_group(ranks);
    return c;
  }

  // Formats the ranks of a group as "[0 3 5]".
  static std::string format_group(std::span<const int> ranks) {
    std::string s = "[";
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      if (i) s += ' ';
      s += std::to_string(ranks[i]);
    }
    return s + "]";
  }

  std::string describe() const {
    std::string s;
    auto add = [&](const char* name, const std::string& value) {
      s += s.empty() ? " (" : ", ";
      s += name;
      s += ' ';
      s += value;
    };
    if (rank) add("rank", std::to_string(*rank));
    if (peer) add("peer", std::to_string(*peer));
    if (!group.empty()) add("group", group);
    if (iteration) add("iteration", std::to_string(*iteration));
    if (tag) add("tag", std::to_string(*tag));
    return s.empty() ? s : s + ")";
  }

 private:
  template <class Field, class V>
  error_context set(Field field, V v) const {
    error_context c = *this;
    c.*field = v;
    return c;
  }
};

// The root: catch dssync::error to catch everything the library throws on
// purpose.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what, error_context where = {})
      : std::runtime_error("dssync: " + what + where.describe()), where_(std::move(where)) {}

  const error_context& where() const noexcept { return where_; }

 private:
  error_context where_;
};

// The ranks were set up inconsistently or given bad options: a group that does
// not contain the calling rank, a group size of zero, a seed mismatch found by
// the checked mode.
class configuration_error : public error {
 public:
  explicit configuration_error(const std::string& what, error_context where = {})
      : error("configuration error: " + what, std::move(where)) {}
};

// Two ranks of one collective passed buffers of different lengths.
class size_mismatch_error : public error {
 public:
  explicit size_mismatch_error(const std::string& what, error_context where = {})
      : error("size mismatch: " + what, std::move(where)) {}
};

// A peer failed, exited or could not be reached: the operation cannot finish.
class peer_error : public error {
 public:
  explicit peer_error(const std::string& what, error_context where = {})
      : error("peer failure: " + what, std::move(where)) {}

 protected:
  struct raw_tag {};
  peer_error(raw_tag, const std::string& what, error_context where)
      : error(what, std::move(where)) {}
};

// A blocking operation did not complete within the transport's timeout. It is a
// peer failure too: a peer that is dead and one that is hopelessly slow look
// the same from here.
class timeout_error : public peer_error {
 public:
  explicit timeout_error(const std::string& what, error_context where = {})
      : peer_error(raw_tag{}, "timeout: " + what, std::move(where)) {}
};

}  // namespace dssync

#pragma once
// The dssync::error family. Every failure the library detects is one of these,
// and its message names where it happened: rank, peer, group, iteration.

#include <cstdint>
#include <exception>
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

// Fills the fields of `inner` that it leaves empty from `outer`: a transport
// knows rank, peer and tag, the synchronizer above it knows the iteration and
// the group, and the error a user sees names all of them.
inline error_context merge(error_context inner, const error_context& outer) {
  if (!inner.rank) inner.rank = outer.rank;
  if (!inner.peer) inner.peer = outer.peer;
  if (!inner.iteration) inner.iteration = outer.iteration;
  if (!inner.tag) inner.tag = outer.tag;
  if (inner.group.empty()) inner.group = outer.group;
  return inner;
}

// The root: catch dssync::error to catch everything the library throws on
// purpose.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what, error_context where = {})
      : error(raw_tag{}, "", what, std::move(where)) {}

  const error_context& where() const noexcept { return where_; }
  // The text of the failure alone, without its kind and its context.
  const std::string& message() const noexcept { return message_; }

  // Throws an error of this one's own kind and message, with the fields of
  // `outer` added where this one's context is empty. A layer that knows more
  // (the synchronizer knows the iteration and the group) catches, adds and
  // rethrows, and a catch clause for the kind still matches.
  [[noreturn]] virtual void rethrow_with(const error_context& outer) const {
    throw error(message_, merge(where_, outer));
  }

 protected:
  struct raw_tag {};
  error(raw_tag, const char* kind, const std::string& what, error_context where)
      : std::runtime_error("dssync: " + (kind + what) + where.describe()),
        message_(what), where_(std::move(where)) {}

 private:
  std::string message_;
  error_context where_;
};

// The ranks were set up inconsistently or given bad options: a group that does
// not contain the calling rank, a group size of zero, a seed mismatch found by
// the checked mode.
class configuration_error : public error {
 public:
  explicit configuration_error(const std::string& what, error_context where = {})
      : error(raw_tag{}, "configuration error: ", what, std::move(where)) {}
  [[noreturn]] void rethrow_with(const error_context& outer) const override {
    throw configuration_error(message(), merge(where(), outer));
  }
};

// Two ranks of one collective passed buffers of different lengths.
class size_mismatch_error : public error {
 public:
  explicit size_mismatch_error(const std::string& what, error_context where = {})
      : error(raw_tag{}, "size mismatch: ", what, std::move(where)) {}
  [[noreturn]] void rethrow_with(const error_context& outer) const override {
    throw size_mismatch_error(message(), merge(where(), outer));
  }
};

// A peer failed, exited or could not be reached: the operation cannot finish.
class peer_error : public error {
 public:
  explicit peer_error(const std::string& what, error_context where = {})
      : error(raw_tag{}, "peer failure: ", what, std::move(where)) {}
  [[noreturn]] void rethrow_with(const error_context& outer) const override {
    throw peer_error(message(), merge(where(), outer));
  }

 protected:
  peer_error(raw_tag, const char* kind, const std::string& what, error_context where)
      : error(raw_tag{}, kind, what, std::move(where)) {}
};

// A blocking operation did not complete within the transport's timeout. It is a
// peer failure too: a peer that is dead and one that is hopelessly slow look
// the same from here.
class timeout_error : public peer_error {
 public:
  explicit timeout_error(const std::string& what, error_context where = {})
      : peer_error(raw_tag{}, "timeout: ", what, std::move(where)) {}
  [[noreturn]] void rethrow_with(const error_context& outer) const override {
    throw timeout_error(message(), merge(where(), outer));
  }
};

namespace detail {
// What a rank threw, in words, for the error the others see.
inline std::string describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}
}  // namespace detail

}  // namespace dssync

#pragma once
// A transport adapter that counts what passes through it. Synchronizers run
// their collectives over one, so stats() reports the bytes a rank really sent,
// whatever algorithm moved them.

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"

namespace dssync {

struct TrafficCount {
  std::uint64_t bytes_sent = 0;
  std::uint64_t messages_sent = 0;
};

template <transport Base>
class CountingTransport {
 public:
  explicit CountingTransport(Base& base) noexcept : base_(&base) {}

  // Collectives cut blocks as the transport underneath prefers.
  static constexpr std::size_t segment_bytes = transport_segment_bytes<Base>();

  int rank() const { return base_->rank(); }
  int size() const { return base_->size(); }
  Base& base() const noexcept { return *base_; }
  const TrafficCount& count() const noexcept { return count_; }

  template <class T>
  void send(int dst, std::span<T> data, tag_t tag) {
    base_->send(dst, data, tag);
    add(data.size_bytes());
  }
  template <class T>
  void recv(int src, std::span<T> data, tag_t tag) {
    base_->recv(src, data, tag);
  }
  template <class T, class U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
    counting_send(out.size_bytes(), [&] { base_->sendrecv(dst, out, src, in, tag); });
  }
  template <class T, class Use>
    requires transport_with_view<Base, T>
  void sendrecv_view(int dst, std::span<const T> out, int src, std::size_t count, Use&& use,
                     tag_t tag) {
    counting_send(out.size_bytes(),
                  [&] { base_->sendrecv_view(dst, out, src, count, std::forward<Use>(use), tag); });
  }

 private:
  // Runs an exchange and counts its send of `bytes`: when it returns, and
  // when only its receive did not fit, since the send was still delivered
  // (the contract; a mismatch the sender learns of says "sent N bytes": the
  // one wording of transport/contract.hpp).
  template <class Exchange>
  void counting_send(std::size_t bytes, Exchange&& exchange) {
    try {
      exchange();
    } catch (const size_mismatch_error& e) {
      if (e.message().starts_with("expected ")) add(bytes);
      throw;
    }
    add(bytes);
  }

  void add(std::size_t bytes) noexcept {
    count_.bytes_sent += bytes;
    ++count_.messages_sent;
  }

  Base* base_;
  TrafficCount count_;
};

}  // namespace dssync

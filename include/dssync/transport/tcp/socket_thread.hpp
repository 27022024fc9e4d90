#pragma once
// SocketThread: the background thread that runs every socket of one
// transport (one io_context), and the doorbell through which the calling
// threads hand it operations: a few slots under the transport's mutex and an
// eventfd, so that handing over allocates nothing.

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>  // before Asio: Boost 1.74 uses std::exchange without it

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>

#include "dssync/transport/tcp/endpoint.hpp"
#include "dssync/transport/tcp/op.hpp"

namespace dssync::detail {

class SocketThread {
 public:
  // A blocking call hands over at most two operations (sendrecv); an
  // abandoned call's may still wait beside the next call's; one call runs
  // per channel at a time.
  static constexpr std::size_t slots_per_channel = 4;
  using Batch = std::vector<TcpOp*>;

  // `mu` guards the slots; it is the transport's mutex, under which the
  // calling threads also wait for their operations.
  SocketThread(std::mutex& mu, int channels)
      : mu_(mu),
        doorbell_(io_),
        work_(io_.get_executor()),
        submitted_(slots_per_channel * std::size_t(std::max(channels, 1))) {}
  SocketThread(const SocketThread&) = delete;
  SocketThread& operator=(const SocketThread&) = delete;

  asio::io_context& io() noexcept { return io_; }

  // Returns false if the kernel gives no eventfd.
  bool open_doorbell() {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return false;
    doorbell_.assign(fd);
    return true;
  }

  // Starts the thread; `first` runs on it, then `on_ring` whenever the
  // calling thread rings. An exception out of a handler (an allocation that
  // failed) goes to `on_error` with its text, on this thread, and the thread
  // runs on, so that the transport can fail and still close.
  void start(std::function<void()> first, std::function<void()> on_ring,
             std::function<void(std::string_view)> on_error) {
    on_ring_ = std::move(on_ring);
    on_error_ = std::move(on_error);
    thread_ = std::thread([this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          on_error_(e.what());
        } catch (...) {
          on_error_("an exception that is not a std::exception");
        }
      }
    });
    asio::post(io_, std::move(first));
  }
  bool running() const noexcept { return thread_.joinable(); }
  void join() {
    io_.stop();
    thread_.join();
  }

  // ------------------------------------------------- the calling thread --

  // Under mu.
  void submit(TcpOp* op) { submitted_[submitted_count_++] = op; }
  void ring() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto r = ::write(doorbell_.native_handle(), &one, sizeof one);
  }

  // ------------------------------------------------- the socket thread --

  // Takes what was handed over into `ops` (as large as the slots: see
  // batch()); returns how many.
  std::size_t take(Batch& ops) {
    std::lock_guard lk(mu_);
    const std::size_t n = std::exchange(submitted_count_, 0);
    std::copy_n(submitted_.begin(), n, ops.begin());
    return n;
  }
  Batch batch() const { return Batch(submitted_.size()); }

  // Waits for the doorbell, for as long as the thread runs.
  void listen() {
    doorbell_.async_wait(
        asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
          if (ec) return;
          std::uint64_t count = 0;
          [[maybe_unused]] const auto r = ::read(doorbell_.native_handle(), &count, sizeof count);
          on_ring_();
          listen();
        });
  }

 private:
  std::mutex& mu_;
  asio::io_context io_;
  asio::posix::stream_descriptor doorbell_;
  // Keeps run() going while nothing is pending (before the first work is posted).
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::function<void()> on_ring_;
  std::function<void(std::string_view)> on_error_;
  std::thread thread_;
  Batch submitted_{};
  std::size_t submitted_count_ = 0;  // under mu
};

}  // namespace dssync::detail

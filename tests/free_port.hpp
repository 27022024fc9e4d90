#pragma once
// A loopback port nobody listens on right now (the kernel's pick for an
// ephemeral bind), for tests that start TcpTransport ranks as threads.

#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it
#include <boost/asio.hpp>
#include <cstdint>

namespace dssync_test {

inline std::uint16_t free_port() {
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

}  // namespace dssync_test

#pragma once
// Addresses between Asio's types and the wire's, and as text for messages.

#include <algorithm>
#include <string>
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "dssync/transport/tcp/wire.hpp"

namespace dssync::detail {

namespace asio = boost::asio;
using asio::ip::tcp;

inline wire::Address to_wire(const asio::ip::address& a) {
  wire::Address w;
  if (a.is_v4()) {
    w.family = 4;
    const auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), w.bytes.begin());
  } else {
    w.family = 6;
    const auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), w.bytes.begin());
  }
  return w;
}

inline asio::ip::address from_wire(const wire::Address& w) {
  if (w.family == 4) {
    asio::ip::address_v4::bytes_type b;
    std::copy_n(w.bytes.begin(), 4, b.begin());
    return asio::ip::address_v4(b);
  }
  asio::ip::address_v6::bytes_type b;
  std::copy_n(w.bytes.begin(), 16, b.begin());
  return asio::ip::address_v6(b);
}

inline std::string endpoint_text(const tcp::endpoint& e) {
  return e.address().to_string() + ":" + std::to_string(e.port());
}

inline asio::ip::address remote_address(const tcp::socket& s) {
  boost::system::error_code ec;
  const auto e = s.remote_endpoint(ec);
  return ec ? asio::ip::address() : e.address();
}

}  // namespace dssync::detail

// libFuzzer entry point over TcpTransport's wire decoders; see
// tcp_wire_target.hpp and scripts/fuzz.
#include <cstdlib>

#include "tcp_wire_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (!dssync_fuzz::run_one(data, size)) std::abort();
  return 0;
}

#pragma once
// Runs f(transport) on every rank of a world of three in-process ranks, each
// rank keeping the configuration_error f throws; every rank's must hold
// `text` and name that rank and `iteration`. For errors that each rank finds
// by itself (a policy's, an argument's), which no transport below has named.

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/transport/inproc.hpp"

namespace dssync_test {

template <class F>
void each_rank_names(const char* text, std::uint64_t iteration, F f) {
  constexpr int n = 3;
  std::vector<std::string> what(n);
  std::vector<dssync::error_context> where(n);
  dssync::InProcWorld(n).run([&](dssync::InProcTransport& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    try {
      f(t);
      FAIL("no throw");
    } catch (const dssync::configuration_error& e) {
      what[r] = e.what();
      where[r] = e.where();
    }
  });
  for (int r = 0; r < n; ++r) {
    const auto i = static_cast<std::size_t>(r);
    CAPTURE(what[i]);
    CHECK(what[i].find(text) != std::string::npos);
    CHECK(where[i].rank == r);
    CHECK(where[i].iteration == iteration);
  }
}

}  // namespace dssync_test

#pragma once
// What a rank's function ended with, by kind of dssync error: the tests of the
// in-process and TCP transports compare these.

#include <exception>
#include <stdexcept>
#include <string>

#include "dssync/core/error.hpp"

namespace dssync_test {

struct Outcome {
  std::string kind = "none";
  std::string what;
};

inline Outcome classify(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const dssync::timeout_error& x) {
    return {"timeout", x.what()};
  } catch (const dssync::size_mismatch_error& x) {
    return {"size_mismatch", x.what()};
  } catch (const dssync::configuration_error& x) {
    return {"configuration", x.what()};
  } catch (const dssync::peer_error& x) {
    return {"peer", x.what()};
  } catch (const dssync::error& x) {
    return {"error", x.what()};
  } catch (const std::exception& x) {
    return {"std", x.what()};
  } catch (...) {
    return {"other", ""};
  }
}

}  // namespace dssync_test

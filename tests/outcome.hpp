#pragma once
// What a rank's function ended with, by kind of dssync error, and the peer its
// context names: the transports' tests and the contract suite compare these.

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

#include "dssync/core/error.hpp"

namespace dssync_test {

struct Outcome {
  std::string kind = "none";
  std::string what;
  std::optional<int> peer;  // where().peer of a dssync::error
};

inline Outcome classify(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const dssync::timeout_error& x) {
    return {"timeout", x.what(), x.where().peer};
  } catch (const dssync::size_mismatch_error& x) {
    return {"size_mismatch", x.what(), x.where().peer};
  } catch (const dssync::configuration_error& x) {
    return {"configuration", x.what(), x.where().peer};
  } catch (const dssync::peer_error& x) {
    return {"peer", x.what(), x.where().peer};
  } catch (const dssync::error& x) {
    return {"error", x.what(), x.where().peer};
  } catch (const std::exception& x) {
    return {"std", x.what()};
  } catch (...) {
    return {"other", ""};
  }
}

}  // namespace dssync_test

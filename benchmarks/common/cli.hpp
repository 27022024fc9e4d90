#pragma once
// What the measuring programs share: their command lines, "--key value" pairs
// and comma-separated lists.

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

namespace bench {

inline std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// The median of v (the upper one of an even count), as the programs report.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Calls per trial: about 256 MiB of buffer per trial, at least 5, at most `most`.
inline int reps_for(std::size_t bytes, int most) {
  return static_cast<int>(std::clamp<std::size_t>((256u << 20) / bytes, 5, static_cast<std::size_t>(most)));
}

// Reads the "--key value" pairs of argv[first..]. take(key, value) stores a
// value and returns false for a key it does not know. A key it does not know,
// or one without a value, is reported on stderr and the result is false.
template <class Take>
bool options(int argc, char** argv, int first, Take take) {
  for (int i = first; i < argc; i += 2) {
    if (i + 1 == argc) {
      std::fprintf(stderr, "%s needs a value\n", argv[i]);
      return false;
    }
    if (!take(std::string(argv[i]), std::string(argv[i + 1]))) {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return false;
    }
  }
  return true;
}

// The main() of a measuring program: run(argc, argv), and any exception
// reported on stderr under the program's name (exit status 1).
template <class Run>
int run_main(const char* name, Run run, int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace bench

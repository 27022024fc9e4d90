#pragma once
// What the measuring programs share: a comma-separated list from the command line.

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

}  // namespace bench

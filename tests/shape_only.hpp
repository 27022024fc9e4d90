#pragma once
// A transport that knows its shape and moves nothing: enough to build a
// synchronizer and ask it for partitions or its topology without starting any
// rank. Any attempt to move data is a test bug and throws.

#include <span>
#include <stdexcept>

#include "dssync/core/tag.hpp"

struct ShapeOnly {
  int n = 1;
  int r = 0;
  int rank() const { return r; }
  int size() const { return n; }
  template <class T>
  void send(int, std::span<T>, dssync::tag_t) {
    fail();
  }
  template <class T>
  void recv(int, std::span<T>, dssync::tag_t) {
    fail();
  }
  template <class T, class U>
  void sendrecv(int, std::span<T>, int, std::span<U>, dssync::tag_t) {
    fail();
  }
  [[noreturn]] static void fail() { throw std::logic_error("ShapeOnly moves no data"); }
};

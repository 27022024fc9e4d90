#pragma once
// dssync over TCP: everything in dssync/dssync.hpp and the TCP transport (Boost.Asio). Link dssync::tcp.

#include "dssync/dssync.hpp"

#include "dssync/transport/tcp.hpp"

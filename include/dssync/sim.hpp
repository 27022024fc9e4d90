#pragma once
// Everything in dssync.hpp, plus SimTransport and SimWorld (a simulated
// network in virtual time). Needs Boost.Context: link dssync::sim.

#include "dssync/dssync.hpp"
#include "dssync/transport/sim.hpp"

#pragma once
// dssync with MPI: everything in dssync/dssync.hpp, the MPI transport and the
// MPI library's own all-reduce, broadcast and all-gathers as policies. Link dssync::mpi.

#include "dssync/dssync.hpp"

#include "dssync/collective/mpi_native.hpp"
#include "dssync/collective/mpi_native_gather.hpp"
#include "dssync/transport/mpi.hpp"

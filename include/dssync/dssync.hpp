#pragma once
// Everything in dssync that needs only the standard library. MPI and TCP
// transports have their own headers: dssync/transport/mpi.hpp, tcp.hpp.

#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/random.hpp"
#include "dssync/core/tag.hpp"

#include "dssync/transport/background.hpp"
#include "dssync/transport/counting.hpp"
#include "dssync/transport/inproc.hpp"

#include "dssync/collective/all_gather_v.hpp"
#include "dssync/collective/auto.hpp"
#include "dssync/collective/auto_all_gather.hpp"
#include "dssync/collective/auto_broadcast.hpp"
#include "dssync/collective/barrier.hpp"
#include "dssync/collective/bruck_all_gather.hpp"
#include "dssync/collective/halving_doubling.hpp"
#include "dssync/collective/pipeline_broadcast.hpp"
#include "dssync/collective/recursive_doubling.hpp"
#include "dssync/collective/ring.hpp"
#include "dssync/collective/ring_all_gather.hpp"
#include "dssync/collective/scatter_allgather_broadcast.hpp"
#include "dssync/collective/tree.hpp"
#include "dssync/collective/tree_broadcast.hpp"

#include "dssync/policy/chain.hpp"
#include "dssync/policy/delay.hpp"
#include "dssync/policy/grouping.hpp"
#include "dssync/policy/shuffle.hpp"
#include "dssync/policy/topology.hpp"

#include "dssync/sync/allreduce.hpp"
#include "dssync/sync/dssync.hpp"
#include "dssync/sync/gadmm.hpp"
#include "dssync/sync/gossip.hpp"
#include "dssync/sync/local_sgd.hpp"
#include "dssync/sync/sfb.hpp"
#include "dssync/sync/stale.hpp"

#include "dssync/analysis/consensus.hpp"
#include "dssync/analysis/matrix.hpp"
#include "dssync/analysis/mixing.hpp"

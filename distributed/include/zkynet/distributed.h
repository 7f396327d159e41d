// zkynet and its distributed layer (MPI collectives as graph operators, data and pipeline
// parallelism), in one include; link zkynet::distributed.
#pragma once

#include <zkynet/zkynet.h>

#include <zkynet/distributed/communicator.h>
#include <zkynet/distributed/data_parallel.h>
#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>
#include <zkynet/distributed/pipeline.h>

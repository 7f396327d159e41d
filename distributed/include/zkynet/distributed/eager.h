// Collectives on plain tensors, outside any graph: what training loops use between steps
// (broadcasting parameters, averaging gradients). In place, on contiguous tensors.
#pragma once

#include <zkynet/distributed/communicator.h>
#include <zkynet/framework/tensor.h>

namespace zkynet::dist {

void allreduce_(Tensor& t, ReduceOp op = ReduceOp::Sum, const Communicator& comm = world());
void bcast_(Tensor& t, int root, const Communicator& comm = world());

}  // namespace zkynet::dist

// Everything zkynet offers a program, in one include (the distributed layer has its own:
// <zkynet/distributed.h>). CUDA users' .cu files add <zkynet/ops/jacobian_cuda.cuh>.
//
//   #include <zkynet/zkynet.h>
//   zkynet::nn::Linear layer(784, 10);
#pragma once

#include <zkynet/framework/allocator.h>
#include <zkynet/framework/compile.h>
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/dot.h>
#include <zkynet/framework/dtype.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/function.h>
#include <zkynet/framework/functional.h>
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/host_device.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/node.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/framework/session.h>
#include <zkynet/framework/shape.h>
#include <zkynet/framework/tensor.h>

#include <zkynet/ops/attention.h>
#include <zkynet/ops/bmm.h>
#include <zkynet/ops/compare.h>
#include <zkynet/ops/conv.h>
#include <zkynet/ops/dual.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/jacobian.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/linalg.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/normalization.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/optim_kernels.h>
#include <zkynet/ops/recurrent.h>
#include <zkynet/ops/select.h>
#include <zkynet/ops/strided.h>

#include <zkynet/nn/activation.h>
#include <zkynet/nn/checkpoint.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/dropout.h>
#include <zkynet/nn/embedding.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/normalization.h>
#include <zkynet/nn/pooling.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/nn/state.h>
#include <zkynet/nn/summary.h>
#include <zkynet/nn/transformer.h>

#include <zkynet/optim/adam.h>
#include <zkynet/optim/clip.h>
#include <zkynet/optim/optimizer.h>
#include <zkynet/optim/rmsprop.h>
#include <zkynet/optim/schedule.h>
#include <zkynet/optim/sgd.h>

#include <zkynet/data/dataloader.h>
#include <zkynet/data/dataset.h>
#include <zkynet/data/hdf5_dataset.h>
#include <zkynet/data/sequence.h>

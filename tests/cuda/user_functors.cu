// The CUDA registration of the test's own Jacobian-based functors, as a user's .cu would do it.
#include "user_functors.h"

#include <zkynet/ops/jacobian_cuda.cuh>

ZKYNET_CUDA_ELEMENTWISE(zkynet_test::Softplus, 1)
ZKYNET_CUDA_ELEMENTWISE(zkynet_test::MulAdd, 3)
ZKYNET_CUDA_JACOBIAN(zkynet_test::InnerProduct, 2)
ZKYNET_CUDA_JACOBIAN(zkynet_test::CumSum, 1)

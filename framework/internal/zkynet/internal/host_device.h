// ZKYNET_HD marks functions compiled for the host and, under nvcc, for the device too: one
// definition of a scalar function or an index computation serves the CPU and the CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define ZKYNET_HD __host__ __device__
#else
#define ZKYNET_HD
#endif

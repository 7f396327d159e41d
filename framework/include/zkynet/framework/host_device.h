// ZKYNET_HD marks functions compiled for the host and, under nvcc, for the device too: one
// definition of a scalar function, an index computation or a Jacobian-based operator's functor
// serves the CPU and the CUDA kernels (users' own .cu files included).
#pragma once

#if defined(__CUDACC__)
#define ZKYNET_HD __host__ __device__
#else
#define ZKYNET_HD
#endif

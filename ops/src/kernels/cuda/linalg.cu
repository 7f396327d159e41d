// GEMM on CUDA through cuBLAS, one handle per device bound to zkynet's stream for that device.
// Row-major C = A B is column-major C^T = B^T A^T: the operands swap, the shapes do not move.
#include "api.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <mutex>
#include <string>
#include <type_traits>

namespace zkynet::kernels::cuda {
namespace {

constexpr int kMaxDevices = 16;

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(std::string(what) + ": cuBLAS error " + cublasGetStatusName(status) + " (" +
                cublasGetStatusString(status) + ")");
  }
}

cublasHandle_t handle(Device device) {
  struct Slot {
    std::once_flag once;
    cublasHandle_t handle = nullptr;
  };
  static std::array<Slot, kMaxDevices> slots;
  if (device.index < 0 || device.index >= kMaxDevices) throw UsageError("matmul: no device " + device.str());
  Slot& slot = slots[static_cast<std::size_t>(device.index)];
  std::call_once(slot.once, [&] {
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device.index);
    check(cublasCreate(&slot.handle), "cublasCreate");
    check(cublasSetStream(slot.handle, static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device))),
          "cublasSetStream");
    cudaSetDevice(previous);
  });
  // NOTE: the handle is never destroyed: the CUDA runtime may be gone at static destruction.
  return slot.handle;
}

// The device's handle, ready for a GEMM in T: the device made current (cuBLAS runs there) and,
// for float32, TF32 allowed or not as zkynet::cuda::allow_tf32() says.
template <class T>
cublasHandle_t handle_for(Device device) {
  zkynet::detail::cuda_stream(device);
  cublasHandle_t h = handle(device);
  if constexpr (std::is_same_v<T, float>) {
    check(cublasSetMathMode(h, zkynet::cuda::allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
          "cublasSetMathMode");
  }
  return h;
}

}  // namespace

template <class T>
void gemm(Device device, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, T beta) {
  const cublasHandle_t h = handle_for<T>(device);
  const T alpha = T(1);
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const auto i = [](std::int64_t v) { return static_cast<int>(v); };
  if constexpr (std::is_same_v<T, float>) {
    check(cublasSgemm(h, op_b, op_a, i(n), i(m), i(k), &alpha, b, i(ldb), a, i(lda), &beta, c, i(ldc)), "cublasSgemm");
  } else {
    check(cublasDgemm(h, op_b, op_a, i(n), i(m), i(k), &alpha, b, i(ldb), a, i(lda), &beta, c, i(ldc)), "cublasDgemm");
  }
}

template <class T>
void gemm_strided_batched(Device device, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
                          std::int64_t lda, std::int64_t stride_a, const T* b, std::int64_t ldb, std::int64_t stride_b,
                          T* c, std::int64_t ldc, std::int64_t stride_c, std::int64_t count) {
  const cublasHandle_t h = handle_for<T>(device);
  const T alpha = T(1);
  const T beta = T(0);
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const auto i = [](std::int64_t v) { return static_cast<int>(v); };
  if constexpr (std::is_same_v<T, float>) {
    check(cublasSgemmStridedBatched(h, op_b, op_a, i(n), i(m), i(k), &alpha, b, i(ldb), stride_b, a, i(lda), stride_a,
                                    &beta, c, i(ldc), stride_c, i(count)),
          "cublasSgemmStridedBatched");
  } else {
    check(cublasDgemmStridedBatched(h, op_b, op_a, i(n), i(m), i(k), &alpha, b, i(ldb), stride_b, a, i(lda), stride_a,
                                    &beta, c, i(ldc), stride_c, i(count)),
          "cublasDgemmStridedBatched");
  }
}

template void gemm<float>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t,
                          const float*, std::int64_t, float*, std::int64_t, float);
template void gemm<double>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t,
                           const double*, std::int64_t, double*, std::int64_t, double);

template void gemm_strided_batched<float>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*,
                                         std::int64_t, std::int64_t, const float*, std::int64_t, std::int64_t, float*,
                                         std::int64_t, std::int64_t, std::int64_t);
template void gemm_strided_batched<double>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const double*,
                                          std::int64_t, std::int64_t, const double*, std::int64_t, std::int64_t,
                                          double*, std::int64_t, std::int64_t, std::int64_t);

}  // namespace zkynet::kernels::cuda

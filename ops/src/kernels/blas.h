// Row-major GEMM through OpenBLAS for the CPU kernels (conv, recurrent, attention, linear,
// matmul): one place for the CBLAS call, its k = 0 case and its threads.
// NOTE: OpenBLAS runs single-threaded (set once, at the first GEMM, for the whole process:
// numpy sharing the library gets one BLAS thread too) and a large GEMM is split over zkynet's
// own pool instead. OpenBLAS's idle workers spin in sched_yield for ~2^28 cycles after each
// call; on 2 cores they took the core the pool's next loop needed (30 % of the char GPT's step
// went to sched_yield), and its timeout can only be set by an environment variable read when
// the library loads.
#pragma once

#include <cblas.h>

#include <zkynet/framework/parallel.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <type_traits>

// Weak: with another BLAS behind cblas.h the symbol is absent (null) and its threads stay as they are.
extern "C" [[gnu::weak]] void openblas_set_num_threads(int num_threads);

namespace zkynet::kernels::detail {

inline void single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (openblas_set_num_threads != nullptr) openblas_set_num_threads(1);
  });
}

// One CBLAS call on the calling thread.
template <class T>
void blas_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
               std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  const auto tra = ta ? CblasTrans : CblasNoTrans;
  const auto trb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, tra, trb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
                static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
  } else {
    cblas_dgemm(CblasRowMajor, tra, trb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
                static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
  }
}

// C = alpha op(A) op(B) + beta C, op(A) m x k and op(B) k x n. With k = 0 it scales C by beta
// itself (0 where beta is 0) instead of handing BLAS leading dimensions it would refuse.
template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t lda,
          const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    }
    return;
  }
  single_threaded_blas();
  // OpenBLAS's own threshold for threading (M N K <= 65536 * 4 stays on one thread); above it
  // the larger of C's two axes is split in panels (multiples of 16 wide), one single-threaded
  // GEMM each.
  constexpr std::int64_t kThreadedWork = std::int64_t{65536} * 4;
  const std::int64_t threads = num_threads();
  if (threads < 2 || m * n * k <= kThreadedWork || std::max(m, n) < 32) {
    blas_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const bool by_rows = m >= n;
  const std::int64_t extent = by_rows ? m : n;
  const std::int64_t parts = std::min<std::int64_t>(threads, extent / 16);
  const std::int64_t panel = (extent / parts + 15) / 16 * 16;
  parallel_for(
      parts,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t part = begin; part < end; ++part) {
          const std::int64_t p0 = part * panel;
          const std::int64_t len = std::min(panel, extent - p0);
          if (len <= 0) continue;
          if (by_rows) {
            blas_gemm(ta, tb, len, n, k, alpha, ta ? a + p0 : a + p0 * lda, lda, b, ldb, beta, c + p0 * ldc, ldc);
          } else {
            blas_gemm(ta, tb, m, len, k, alpha, a, lda, tb ? b + p0 * ldb : b + p0, ldb, beta, c + p0, ldc);
          }
        }
      },
      1);
}

// C = op(A) op(B) + beta C.
template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda, const T* b,
          std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  gemm(ta, tb, m, n, k, T(1), a, lda, b, ldb, beta, c, ldc);
}

}  // namespace zkynet::kernels::detail

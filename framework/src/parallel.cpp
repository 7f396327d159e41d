#include <zkynet/framework/parallel.h>

#include <omp.h>

#include <algorithm>

namespace zkynet {

void parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& body, std::int64_t grain) {
  const int threads = static_cast<int>(std::min<std::int64_t>(omp_get_max_threads(), std::max<std::int64_t>(n / std::max<std::int64_t>(grain, 1), 1)));
  if (threads <= 1) {
    if (n > 0) body(0, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t t = omp_get_thread_num();
    const std::int64_t chunk = (n + threads - 1) / threads;
    const std::int64_t begin = std::min(n, t * chunk);
    const std::int64_t end = std::min(n, begin + chunk);
    if (begin < end) body(begin, end);
  }
}

int num_threads() { return omp_get_max_threads(); }
void set_num_threads(int n) { omp_set_num_threads(std::max(n, 1)); }

}  // namespace zkynet

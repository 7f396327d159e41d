// The global operator new of the training benchmarks, counting calls while g_count_news is set
// (see train_bench.h). A separate translation unit, so that the compiler does not pair an
// inlined malloc with a sized delete (GCC's -Wmismatched-new-delete).
#include <cstddef>
#include <cstdlib>
#include <new>

namespace zkynet::bench::train {
bool g_count_news = false;
std::size_t g_news = 0;
}  // namespace zkynet::bench::train

void* operator new(std::size_t n) {
  if (zkynet::bench::train::g_count_news) ++zkynet::bench::train::g_news;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

// The table of Jacobian-based functors' CUDA kernels (jacobian.h): filled at load time by the
// registrations of jacobian_cuda.cuh in .cu files (zkynet's own and users'), read by operators.
#include <zkynet/ops/jacobian.h>

#include <mutex>
#include <unordered_map>

namespace zkynet::detail {
namespace {

struct Registry {
  std::mutex mutex;
  std::unordered_map<std::type_index, const void*> kernels;
};

// A function-local static: registrations run in other libraries' static initializers, in any order.
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_device_kernels(std::type_index table, const void* kernels) {
  Registry& r = registry();
  const std::lock_guard lock(r.mutex);
  r.kernels[table] = kernels;
}

const void* find_device_kernels(std::type_index table) {
  Registry& r = registry();
  const std::lock_guard lock(r.mutex);
  const auto it = r.kernels.find(table);
  return it == r.kernels.end() ? nullptr : it->second;
}

}  // namespace zkynet::detail

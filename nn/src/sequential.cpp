#include <zkynet/nn/sequential.h>

#include <array>

namespace zkynet::nn {

NodeRef Sequential::call(const NodeRef& x) {
  NodeRef h = x;
  for (auto& layer : layers_) {
    const std::array<NodeRef, 1> in{h};
    h = layer->invoke(in).root();
  }
  return h;
}

}  // namespace zkynet::nn

// Sequential: single-input modules applied in order, registered as "0", "1", ...
//
//   nn::Sequential mlp;
//   mlp.add<nn::Linear>(784, 512);
//   mlp.add<nn::ReLU>();
//   mlp.add<nn::Linear>(512, 10);
//   ModuleGraph logits = mlp(x);
#pragma once

#include <zkynet/framework/module.h>

#include <memory>
#include <utility>
#include <vector>

namespace zkynet::nn {

class Sequential : public Module<Sequential> {
 public:
  Sequential() : Module({Variable("x")}) {}

  // Appends a module the Sequential shares ownership of; returns it.
  template <class M>
  M& append(std::shared_ptr<M> module) {
    register_module(std::to_string(layers_.size()), *module);
    layers_.push_back(module);
    return *module;
  }
  // Constructs and appends a module.
  template <class M, class... Args>
  M& add(Args&&... args) {
    return append(std::make_shared<M>(std::forward<Args>(args)...));
  }

  NodeRef call(const NodeRef& x);
  std::size_t size() const { return layers_.size(); }
  ModuleBase& operator[](std::size_t i) { return *layers_.at(i); }
  const std::shared_ptr<ModuleBase>& layer(std::size_t i) const { return layers_.at(i); }

 private:
  std::vector<std::shared_ptr<ModuleBase>> layers_;
};

}  // namespace zkynet::nn

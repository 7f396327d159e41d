// CallSessionManager: which call (and so which graph) new nodes belong to.
//
// The first function called with concrete values opens a call: a fresh call id and tape.
// Functions it calls join that tape, so the graph stays flat. The session also tracks the
// module path used in error messages ("MLP.l1 (Linear)").
//
//   {
//     zkynet::NoGradGuard no_grad;   // records nothing inside this scope
//     auto y = model(x);             // values only
//   }
#pragma once

#include <zkynet/framework/node.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zkynet {

class CallSessionManager {
 public:
  // The session of the calling thread.
  static CallSessionManager& current();

  const std::shared_ptr<Tape>& active_tape() const { return active_; }
  // A fresh tape with a new, process-wide unique call id.
  static std::shared_ptr<Tape> new_tape();
  // "MLP.l1 (Linear)"; empty outside module calls.
  std::string module_path() const;
  bool grad_enabled() const { return grad_enabled_; }

  // Makes `tape` active while a module runs; restores the previous state when destroyed.
  class Frame {
   public:
    Frame(std::shared_ptr<Tape> tape, std::string name, std::string functional_name);
    ~Frame();
    Frame(const Frame&) = delete;
    Frame& operator=(const Frame&) = delete;

   private:
    std::shared_ptr<Tape> previous_;
    int previous_invocation_ = -1;
  };

 private:
  friend class NoGradGuard;
  struct PathEntry {
    std::string name;
    std::string functional_name;
  };
  std::shared_ptr<Tape> active_;
  std::vector<PathEntry> path_;
  bool grad_enabled_ = true;
};

// Within its scope, operators compute values but record no nodes and no gradients.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace zkynet

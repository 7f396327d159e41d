// Capture and replay: compile(module), after Yota's compile! and tinygrad's TinyJit (a first
// version: correct, not yet optimized).
//
//   TrainLoss step(mlp);                       // a module: inputs x, y; returns the loss
//   CompiledModule fast = compile(step);       // or compile(step, {.check = true})
//   for (auto& [x, y] : batches) {
//     ModuleGraph g = fast(x, y);              // first call: a dynamic call, recorded
//     g.back();                                // later calls with the same signature: replays
//     g.grad(step.input("x"));  opt.step();  step.zero_grad();
//   }
//   std::cout << fast.last()->str();           // the schedule, one line per node
//   to_dot(fast.last()->graph());              // drawn like any graph
//
// The first call with a given Signature runs the module dynamically and keeps its Tape. A later
// call with the same signature replays that tape: the same Tape and node objects, each input
// node given the new argument, each parameter node its parameter's current value, each
// operator node recomputed from its parents' values in tape order (Tape::replay). No module
// code runs, no node is allocated, nothing is inferred beyond what the kernels check. The
// result is a ModuleGraph over that tape: value(), back(), grad(param), grad(input) as after a
// dynamic call, and bit for bit the same numbers (the same kernels on the same operands).
//
// Signature: each input's shape, dtype, device and requires_grad, the module's training mode
// and its structure_version() (register_parameter / register_module / register_buffer / to() /
// a mode switch anywhere in the module tree). A new signature captures again, into an LRU cache
// of CompileOptions::cache_size schedules. A schedule whose parameters changed shape, dtype,
// device or requires_grad (Parameter::set_value) is dropped and captured again: a stale
// schedule is never replayed.
//
// Calls that cannot be replayed run dynamically, uncached: under NoGradGuard, inside another
// module's call (the graph is that call's), with arguments that are nodes of a graph, or when
// the module returns a constant.
//
// What capture cannot see (each case is a test in tests/framework/test_compile.cpp):
//   1. Control flow on values: `if (x.value().item() > 0)` in call() is decided once, at
//      capture; replays silently run the captured branch. check = true re-traces every call,
//      compares the new graph with the schedule (operators, parents, shapes, dtypes, constants)
//      and throws a UsageError naming the first node that differs.
//   2. Constants are frozen at capture: a C++/Python number or tensor a call reads (a member,
//      a global, a Python attribute) keeps its value at capture. Change it: call clear(), or
//      make it a Parameter or an input.
//   3. Outputs are overwritten by the next replay: every ModuleGraph and NodeRef a replay
//      returns reads the schedule's nodes, which the next call with that signature recomputes
//      (g.value(), g.back(), g.grad() then answer for the new call). Keep what you need before
//      calling again: a Tensor taken from value() keeps its tensor (a replay stores new ones);
//      value().clone() for a copy of your own.
//   4. item() during capture: a number read from a value (x.value().item(), Python's float(n))
//      is a constant of the schedule, frozen (check mode reports it as a constant that differs).
//   5. State outside the graph: a stateful recurrent layer (its carried state is a constant of
//      each call) and dropout in training mode (a fresh mask each call) are refused at capture
//      with a UsageError, and so are communication operators (distributed/: not replayed in
//      this version) and BatchNorm's cumulative average (momentum = nullopt) in
//      training mode; with a fixed momentum (the default) replays update the running
//      statistics exactly as calls do, but num_batches_tracked stays where the capture left it.
//   6. Operators applied to a replayed result outside the module (a loss computed at top level)
//      would join the schedule's tape and grow it at every step: the next call refuses with a
//      UsageError. Compile a module that computes the loss too.
// check = true runs the module twice per call (once traced, once replayed): side effects in it
// (BatchNorm's running statistics) happen twice. A CompiledModule serves one thread at a time.
//
// Not in this version: fusion, common subexpressions, dead-node elimination, a memory plan
// (each replayed operator still allocates its result), the optimizer step inside the schedule,
// CUDA Graphs. Tape::replay() is the one loop they would change.
#pragma once

#include <zkynet/framework/dtype.h>
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/shape.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace zkynet {

struct CompileOptions {
  bool check = false;          // re-trace every call and compare with the schedule (see above)
  std::size_t cache_size = 8;  // schedules kept, least recently used dropped first (at least 1)
};

// What a schedule was captured for; equal signatures replay the same schedule.
struct InputSignature {
  std::string name;  // the declared input's
  Shape shape;
  DType dtype = DType::Float64;
  Device device;
  bool requires_grad = true;
  friend bool operator==(const InputSignature&, const InputSignature&) = default;
};

struct Signature {
  std::vector<InputSignature> inputs;  // one per declared input of the module
  bool training = true;
  std::uint64_t structure = 0;  // the module's structure_version()
  friend bool operator==(const Signature&, const Signature&) = default;
  // "x: (4,3) float32 cpu, y: (4,) int64 cpu no-grad; training; structure 17"
  std::string str() const;
};

// The signature of a call of `module` with `args` (values; nodes give their value's).
Signature signature_of(const ModuleBase& module, std::span<const NodeRef> args);

// One captured call: its tape, replayed by run().
class Schedule {
 public:
  // Keeps the tape of `captured`, a dynamic call of `module` with arguments of `signature`.
  Schedule(const ModuleBase& module, Signature signature, const ModuleGraph& captured);

  const Signature& signature() const { return signature_; }
  const Tape& tape() const { return *tape_; }
  std::size_t size() const { return size_; }  // nodes, replayed in order
  // Whether args, training mode and structure version give this signature (no allocation).
  bool matches(std::span<const NodeRef> args, bool training, std::uint64_t structure) const;
  // False once a parameter the schedule reads changed shape, dtype, device or requires_grad.
  bool parameters_match() const;
  // The replay: inputs and parameters set, operators recomputed (see the header comment).
  ModuleGraph run(std::span<const NodeRef> args);
  // The graph of the last run (or of the capture): for to_dot().
  ModuleGraph graph() const;
  // The schedule as text, one line per node after a line with the signature:
  //   %3 = mult(%1, %2)  (4,3) float32
  std::string str() const;

 private:
  friend class CompiledModule;
  std::string module_name_;
  Signature signature_;
  std::shared_ptr<Tape> tape_;
  Node* root_ = nullptr;
  std::size_t size_ = 0;
  std::vector<Node*> inputs_;  // the node of each declared input
  std::vector<std::pair<Node*, std::shared_ptr<InputData>>> parameters_;
  std::vector<Node*> frozen_;  // constants and inner variables grounded by constants
};

class CompiledModule {
 public:
  explicit CompiledModule(ModuleBase& module, CompileOptions options = {});

  template <class... Args>
  ModuleGraph operator()(Args&&... args) {
    const std::array<NodeRef, sizeof...(Args)> refs{NodeRef(std::forward<Args>(args))...};
    return call(refs);
  }
  ModuleGraph call(std::span<const NodeRef> args);

  struct Stats {
    std::size_t captures = 0;   // dynamic calls recorded into the cache
    std::size_t replays = 0;
    std::size_t dynamic = 0;    // calls run dynamically, uncached (see the header comment)
    std::size_t evictions = 0;  // schedules dropped: least recently used, or stale parameters
  };
  const Stats& stats() const { return stats_; }
  ModuleBase& module() const { return *module_; }
  const CompileOptions& options() const { return options_; }
  // The schedule the last call captured or replayed; null when it ran dynamically.
  const Schedule* last() const { return last_; }
  // The cached schedules, most recently used first.
  std::vector<const Schedule*> schedules() const;
  // Drops every schedule: the next call captures again.
  void clear();

 private:
  ModuleGraph capture(std::span<const NodeRef> args);
  ModuleGraph check(Schedule& schedule, std::span<const NodeRef> args);

  ModuleBase* module_;
  CompileOptions options_;
  std::list<std::unique_ptr<Schedule>> cache_;  // most recently used first
  const Schedule* last_ = nullptr;
  Stats stats_;
};

// The module must outlive the result.
CompiledModule compile(ModuleBase& module, CompileOptions options = {});

// gradcheck() for a compiled module: reverse-mode Jacobians from replays (vjp, one per output
// element) against central differences computed from replays. Floating inputs are converted to
// options.dtype; convert the module's parameters too (module.to(dtype)).
GradcheckResult gradcheck(CompiledModule& compiled, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace zkynet

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
// A whole training step compiles the same way: a module or Lambda whose call runs the model and
// the loss, back() and the optimizer (effects.h: back(), zero_grad, optimizer and scheduler steps
// and clip_grad_norm are recorded at capture and replayed in order, reading the optimizer's
// learning rate at each replay):
//
//   Lambda train_step({"x", "y"}, [&](std::span<const NodeRef> a) {
//     opt.zero_grad();
//     ModuleGraph loss = step(a[0], a[1]);  loss.back();  opt.step();
//     return loss.root();
//   });
//   CompiledModule fast_step = compile(train_step);
//   for (auto& [x, y] : batches) fast_step(x, y);   // replays: forward, backward, update
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
//   7. Effects of user code are not recorded: a parameter written by hand, a gradient read with
//      grad() and used outside the graph, a Python optimizer's own step() happen at capture only.
//      The library's effects (effects.h) are. The optimizer, scheduler and parameters a step's
//      effects use must outlive its CompiledModule.
// check = true runs the module twice per call (once traced, once replayed): side effects in it
// (BatchNorm's running statistics) happen twice. A step with effects is the exception: it is
// traced (its effects run once, then) and compared, graph and effects, but not replayed.
// A CompiledModule serves one thread at a time.
//
// Memory plan (CompileOptions::memory_plan, on by default; framework/src/replay_arena.h): the
// first replay of a schedule records its buffer requests and releases on the calling thread;
// later replays take every buffer that lives only within the replay (back()'s gradients, a
// kernel's scratch, an optimizer's temporaries) from one block, offsets assigned by lifetime
// (first fit over freed ranges). Buffers that outlive the replay (node values, kept by the tape
// and readable by the caller; gradients and optimizer state created on first use) are not in
// the block: they come from the caching allocator, so a tensor kept from value() stays intact.
// Each served request is checked (size, and that the planned range is free): a replay that
// departs from the plan drops it for this schedule, never handing out a buffer twice.
// Schedule::memory_plan() reports it.
//
// CUDA Graphs (not built: no GPU to test on): launch() is the one function that runs a replay,
// with no host decision between its kernels once the plan holds. A CUDA build would begin
// stream capture before launch(), end it after, and relaunch the graph while the plan holds:
// the block's addresses are fixed, node values would need the same (the next step of the plan:
// give escaping buffers fixed slots, alternating between two replays), and inputs would be
// copied into fixed input buffers first.
//
// Passes over the captured schedule (each keeps replays bit for bit the dynamic call's):
//   - dead-node elimination: operators that neither the result nor a back() root depends on
//     are not replayed (they keep their captured values; Schedule::eliminated()), unless
//     their forward has side effects (OperatorNode::has_side_effects: batch_norm's running
//     statistics in training mode);
//   - common subexpressions: an operator equal to an earlier one (the same operator with equal
//     attributes, OperatorNode::same_operation: attribute-free definitions, or those with
//     operator==) on the same parents takes that node's value (Schedule::merged()).
// str() and dot() show both ("dead", "= %k").
//
// Not in this version: fusion of elementwise chains; planned node values and pooled heap
// objects (a replay still makes ~3 heap allocations per tensor it creates: its Storage, shape
// and strides; tools/bench/bench_compile reports them per step); CUDA Graphs. Schedule::launch() is the
// one loop they would change.
#pragma once

#include <zkynet/framework/dot.h>
#include <zkynet/framework/dtype.h>
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/shape.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
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
  bool memory_plan = true;     // serve each replay's temporary buffers from one planned block
};

namespace detail {
class ReplayArena;
}

// A schedule's memory plan (see "Memory plan" above).
struct MemoryPlanStats {
  std::size_t planned_replays = 0;  // replays served by the plan from start to end
  std::size_t served = 0;           // buffers served from the block, all replays
  std::size_t planned_buffers = 0;  // buffers the plan serves per replay
  std::size_t escaping = 0;         // buffers per replay that outlive it: from the caching allocator
  std::size_t block_bytes = 0;      // the block (0: no plan yet, or nothing to plan)
  std::size_t planned_bytes = 0;    // the planned buffers' sizes added up: block_bytes is what reuse leaves
  bool dropped = false;             // a replay left the plan: later replays use the caching allocator
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

// An effect outside the graph recorded during a capture (effects.h): back() of a node of the
// call, or library code's work (an optimizer step, zero_grad, a scheduler step, clipping).
struct ScheduleEffect {
  std::size_t position = 0;  // runs before node %position is recomputed (after the last: size())
  std::string name;          // "back(%12)", "SGD.step", "zero_grad(l1.weight)"
  Node* root = nullptr;      // back(): the root, and the seed it was called with
  Tensor seed;
  std::function<void()> run;  // otherwise: the recorded work
};

// One captured call: its tape and effects, replayed by run().
class Schedule {
 public:
  // Keeps the tape of `captured`, a dynamic call of `module` with arguments of `signature`, and
  // the effects recorded during it.
  Schedule(const ModuleBase& module, Signature signature, const ModuleGraph& captured,
           std::vector<ScheduleEffect> effects = {}, bool memory_plan = true);
  ~Schedule();
  Schedule(const Schedule&) = delete;
  Schedule& operator=(const Schedule&) = delete;

  const Signature& signature() const { return signature_; }
  const Tape& tape() const { return *tape_; }
  std::size_t size() const { return size_; }  // nodes, replayed in order
  // Operators not replayed: neither the result nor a back() root depends on them (dead-node
  // elimination). They keep the values of the capture.
  std::size_t eliminated() const { return eliminated_; }
  bool live(const Node& node) const { return live_.at(node.index()); }
  // Operators merged into an earlier equal one (common subexpressions): they take its value.
  std::size_t merged() const { return merged_; }
  // back(), optimizer steps... in the order the capture ran them (a whole training step).
  const std::vector<ScheduleEffect>& effects() const { return effects_; }
  // Whether args, training mode and structure version give this signature (no allocation).
  bool matches(std::span<const NodeRef> args, bool training, std::uint64_t structure) const;
  // False once a parameter the schedule reads changed shape, dtype, device or requires_grad.
  bool parameters_match() const;
  // The replay: inputs and parameters set, operators recomputed (see the header comment).
  ModuleGraph run(std::span<const NodeRef> args);
  // The replay loop alone, inputs and parameters already set: every recomputation and effect
  // in order, no user code between them.
  void launch();
  MemoryPlanStats memory_plan() const;
  // The graph of the last run (or of the capture): for to_dot().
  ModuleGraph graph() const;
  // The schedule as text, one line per node after a line with the signature:
  //   %3 = mult(%1, %2)  (4,3) float32
  // with "dead" after eliminated operators, "= %k" after operators merged into node k, and
  // each effect on its own line where it runs.
  std::string str() const;
  // to_dot() of graph(), eliminated operators dashed grey ("dead"), merged ones blue ("= %k"),
  // the effects in a note.
  std::string dot(const DotOptions& options = {}) const;

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
  std::vector<ScheduleEffect> effects_;
  // The replay, flattened: an operator to recompute, or an effect to run (by index).
  struct Instruction {
    OperatorNode* op = nullptr;
    std::size_t effect = 0;
    const Node* same_as = nullptr;  // a merged operator: takes this node's value
  };
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  void merge_common();
  void mark_live();
  std::vector<std::size_t> same_as_;  // by node index: the node it was merged into, or kNone
  std::size_t merged_ = 0;
  std::vector<Instruction> program_;
  std::vector<bool> live_;  // by node index
  std::size_t eliminated_ = 0;
  std::unique_ptr<detail::ReplayArena> arena_;  // null: no memory plan
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

#include <zkynet/framework/compile.h>
#include <zkynet/framework/dot.h>
#include <zkynet/framework/effects.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/session.h>

#include "replay_arena.h"
#include "step_capture.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <unordered_map>

namespace zkynet {

namespace {

std::string device_suffix(const Tensor& t) { return t.device().is_cpu() ? "" : " " + t.device().str(); }

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// A constant as the schedule prints it: its elements when there are few.
std::string constant_text(const Tensor& t) {
  if (t.numel() > 4) return "const";
  const Tensor host = t.cpu();
  std::string s;
  for (double v : host.to_doubles()) s += (s.empty() ? "" : ", ") + number(v);
  return t.dim() == 0 ? s : "[" + s + "]";
}

// "%3 = mult(%1, %2)  (4,3) float32": one node of a tape, Yota's tape notation.
std::string node_line(const Node& n) {
  std::string s = "%" + std::to_string(n.index()) + " = ";
  switch (n.kind()) {
    case NodeKind::Variable: s += "input " + n.label(); break;
    case NodeKind::Parameter: {
      const auto& data = static_cast<const InputNode&>(n).input();
      s += "param " + (data->path.empty() ? data->name : data->path);
      break;
    }
    case NodeKind::Constant: s += "const " + constant_text(n.value()); break;
    case NodeKind::Operator: {
      s += n.label() + "(";
      const auto parents = static_cast<const OperatorNode&>(n).parents();
      for (std::size_t i = 0; i < parents.size(); ++i) s += (i ? ", %" : "%") + std::to_string(parents[i]->index());
      s += ")";
      break;
    }
  }
  return s + "  " + shape_str(n.value().shape()) + " " + std::string(dtype_name(n.value().dtype())) +
         device_suffix(n.value());
}

std::string invocation_path(const Tape& tape, int invocation) {
  std::string path;
  for (int i = invocation; i >= 0; i = tape.invocations()[static_cast<std::size_t>(i)].parent) {
    path = tape.invocations()[static_cast<std::size_t>(i)].name + (path.empty() ? "" : "." + path);
  }
  return path;
}

std::string where(const Tape& tape, const Node& n) {
  const std::string path = invocation_path(tape, n.invocation());
  return path.empty() ? "" : " in " + path;
}

// Same shape, dtype and bytes (NaNs compare by their bits).
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.cpu().contiguous();
  const Tensor y = b.cpu().contiguous();
  const auto bytes = static_cast<std::size_t>(x.numel()) * dtype_size(x.dtype());
  return bytes == 0 || std::memcmp(x.raw_data(), y.raw_data(), bytes) == 0;
}

// The first module in the tree (depth first) that refuses capture, with its reason.
std::string capture_refusal_in(const ModuleBase& module, const std::string& path) {
  const std::string own = module.capture_refusal();
  if (!own.empty()) return path + ": " + own;
  for (const auto& [name, child] : module.children()) {
    std::string r = capture_refusal_in(*child, path + "." + name);
    if (!r.empty()) return r;
  }
  return {};
}

InputSignature input_signature(std::string name, const Tensor& value, bool requires_grad) {
  return {std::move(name), value.shape(), value.dtype(), value.device(), requires_grad};
}

// The effects of the capture in progress on this thread (effects.h).
struct Recorder {
  std::vector<ScheduleEffect> effects;
  std::vector<const Tape*> tapes;  // the tape each effect was recorded on
};
thread_local Recorder* t_recorder = nullptr;

class RecordingScope {
 public:
  explicit RecordingScope(Recorder& r) : previous_(t_recorder) { t_recorder = &r; }
  ~RecordingScope() { t_recorder = previous_; }
  RecordingScope(const RecordingScope&) = delete;
  RecordingScope& operator=(const RecordingScope&) = delete;

 private:
  Recorder* previous_;
};

const Tape& recording_tape(const std::string& what) {
  const auto& tape = CallSessionManager::current().active_tape();
  if (!tape) {
    throw UsageError("compile: " + what + " ran during a capture but outside the compiled call's graph (under "
                     "no_grad?); a replay could not place it. Call it outside the compiled function");
  }
  return *tape;
}

// Effects at the same positions with the same names: the step did the same things.
bool same_effects(const std::vector<ScheduleEffect>& a, const std::vector<ScheduleEffect>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].position != b[i].position || a[i].name != b[i].name) return false;
  }
  return true;
}

std::string effect_list(const std::vector<ScheduleEffect>& effects) {
  std::string s;
  for (const auto& e : effects) s += (s.empty() ? "" : ", ") + e.name + " before %" + std::to_string(e.position);
  return s.empty() ? "none" : s;
}

}  // namespace

// ---- effects (effects.h) ------------------------------------------------------------------

bool capturing_effects() { return t_recorder != nullptr; }

void record_effect(std::string name, std::function<void()> effect) {
  if (t_recorder == nullptr) return;
  const Tape& tape = recording_tape(name);
  t_recorder->effects.push_back({tape.nodes().size(), std::move(name), nullptr, Tensor(), std::move(effect)});
  t_recorder->tapes.push_back(&tape);
}

namespace detail {

void record_backward(const NodeRef& root, const Tensor& seed) {
  if (t_recorder == nullptr) return;
  const Tape& tape = recording_tape("back()");
  if (!root.in_graph() || root.tape().get() != &tape) {
    throw UsageError("compile: back() during a capture on a graph that is not the compiled call's (a result "
                     "computed before or outside it); a replay would not recompute it. Compute it inside the "
                     "compiled function");
  }
  const Tensor& v = root.value();
  t_recorder->effects.push_back({tape.nodes().size(), "back(%" + std::to_string(root.node()->index()) + ")",
                                 root.node(), seed.to(v.device()).to(v.dtype()).clone(), {}});
  t_recorder->tapes.push_back(&tape);
}

void refuse_jacobians_in_capture() {
  throw UsageError("compile: back() without a seed on a non-scalar root during a capture (full Jacobians) is not "
                   "replayed; reduce to a scalar loss, or pass a seed: back(seed)");
}

}  // namespace detail

// ---- signatures ---------------------------------------------------------------------------

std::string Signature::str() const {
  std::string s;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const InputSignature& in = inputs[i];
    s += (i ? ", " : "") + (in.name.empty() ? "#" + std::to_string(i) : in.name) + ": " + shape_str(in.shape) + " " +
         std::string(dtype_name(in.dtype)) + " " + in.device.str() + (in.requires_grad ? "" : " no-grad");
  }
  return s + "; " + (training ? "training" : "eval") + "; structure " + std::to_string(structure);
}

Signature signature_of(const ModuleBase& module, std::span<const NodeRef> args) {
  Signature s;
  const auto& declared = module.inputs();
  for (std::size_t i = 0; i < args.size(); ++i) {
    const bool grad = i < declared.size() ? declared[i].data()->requires_grad : true;
    s.inputs.push_back(input_signature(i < declared.size() ? declared[i].name() : "", args[i].value(), grad));
  }
  s.training = module.is_training();
  s.structure = module.structure_version();
  return s;
}

// ---- schedules ----------------------------------------------------------------------------

Schedule::Schedule(const ModuleBase& module, Signature signature, const ModuleGraph& captured,
                   std::vector<ScheduleEffect> effects, bool memory_plan)
    : module_name_(module.functional_name()), signature_(std::move(signature)), tape_(captured.root().tape()),
      root_(captured.root().node()), effects_(std::move(effects)),
      arena_(memory_plan ? std::make_unique<detail::ReplayArena>() : nullptr) {
  size_ = tape_->nodes().size();
  // The call grounded its arguments first, in order: nodes 0..n-1. (Not tape->bound(input): a
  // module that calls itself rebinds its inputs to the inner call's arguments.)
  const auto nodes = tape_->nodes();
  for (std::size_t i = 0; i < module.inputs().size(); ++i) {
    Node* n = i < nodes.size() ? nodes[i].get() : nullptr;
    if (n == nullptr || n->kind() != NodeKind::Variable ||
        static_cast<const InputNode&>(*n).input()->uid != module.inputs()[i].uid()) {
      throw UsageError("compile(" + module_name_ + "): node %" + std::to_string(i) + " of the captured call is not "
                       "its input '" + module.inputs()[i].name() + "' (internal error)");
    }
    inputs_.push_back(n);
  }
  for (const auto& n : tape_->nodes()) {
    if (n->kind() == NodeKind::Parameter) {
      parameters_.emplace_back(n.get(), static_cast<const InputNode&>(*n).input());
    } else if (n->kind() == NodeKind::Constant ||
               (n->kind() == NodeKind::Variable && std::find(inputs_.begin(), inputs_.end(), n.get()) == inputs_.end())) {
      frozen_.push_back(n.get());
    }
  }
  merge_common();
  mark_live();
  std::size_t next = 0;
  for (const auto& n : tape_->nodes()) {
    for (; next < effects_.size() && effects_[next].position <= n->index(); ++next) program_.push_back({nullptr, next});
    if (n->kind() == NodeKind::Operator && live_[n->index()]) {
      const std::size_t a = same_as_[n->index()];
      program_.push_back({static_cast<OperatorNode*>(n.get()), 0, a == kNone ? nullptr : nodes[a].get()});
    }
  }
  for (; next < effects_.size(); ++next) program_.push_back({nullptr, next});
}

// Common subexpressions: an operator equal to an earlier one (same_operation: the same
// operator, equal attributes) on the same parents (parents already merged count as the node
// they were merged into), with a value of the same shape, dtype and device, takes that node's
// value at each replay instead of computing it again: the same tensor, so the same bits.
void Schedule::merge_common() {
  const auto nodes = tape_->nodes();
  same_as_.assign(nodes.size(), kNone);
  merged_ = 0;
  const auto canonical = [&](const Node* p) {
    const std::size_t a = same_as_[p->index()];
    return a == kNone ? p->index() : a;
  };
  std::unordered_map<std::string, std::vector<std::size_t>> seen;  // operator and parents -> nodes
  for (const auto& n : nodes) {
    if (n->kind() != NodeKind::Operator) continue;
    const auto& op = static_cast<const OperatorNode&>(*n);
    std::string key(op.op_name());
    for (const Node* p : op.parents()) key += "," + std::to_string(canonical(p));
    auto& candidates = seen[key];
    for (std::size_t j : candidates) {
      const auto& other = static_cast<const OperatorNode&>(*nodes[j]);
      const Tensor& a = other.value();
      const Tensor& b = op.value();
      if (a.shape() == b.shape() && a.dtype() == b.dtype() && a.device() == b.device() && other.same_operation(op)) {
        same_as_[n->index()] = j;
        ++merged_;
        break;
      }
    }
    if (same_as_[n->index()] == kNone) candidates.push_back(n->index());
  }
}

// Dead-node elimination: an operator is replayed only when the result or a back() root
// depends on it (back() reads the values of the root's ancestors only, so nothing else is
// ever read after a replay), or when its forward has side effects (running statistics).
void Schedule::mark_live() {
  const auto nodes = tape_->nodes();
  live_.assign(nodes.size(), false);
  live_[root_->index()] = true;
  for (const auto& e : effects_) {
    if (e.root != nullptr) live_[e.root->index()] = true;
  }
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i]->kind() == NodeKind::Operator && static_cast<const OperatorNode&>(*nodes[i]).has_side_effects()) {
      live_[i] = true;
    }
  }
  for (std::size_t i = nodes.size(); i-- > 0;) {
    if (!live_[i] || nodes[i]->kind() != NodeKind::Operator) continue;
    for (const Node* p : static_cast<const OperatorNode&>(*nodes[i]).parents()) live_[p->index()] = true;
    if (same_as_[i] != kNone) live_[same_as_[i]] = true;
  }
  eliminated_ = 0;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (!live_[i] && nodes[i]->kind() == NodeKind::Operator) ++eliminated_;
  }
}

std::string Schedule::dot(const DotOptions& options) const {
  std::string text = to_dot(graph(), options);
  std::string extra;
  for (std::size_t i = 0; i <= root_->index(); ++i) {
    if (!live_[i] && tape_->nodes()[i]->kind() == NodeKind::Operator) {
      extra += "  n" + std::to_string(i) + " [style=dashed, color=\"#999999\", fontcolor=\"#999999\", xlabel=\"dead\"];\n";
    } else if (same_as_[i] != kNone) {
      extra += "  n" + std::to_string(i) + " [color=\"#3366cc\", xlabel=\"= %" + std::to_string(same_as_[i]) + "\"];\n";
    }
  }
  if (!effects_.empty()) {
    std::string list;
    for (const auto& e : effects_) list += e.name + "\\l";
    extra += "  effects [shape=note, label=\"effects, in order:\\l" + list + "\"];\n";
  }
  const auto close = text.rfind('}');
  if (close != std::string::npos) text.insert(close, extra);
  return text;
}

bool Schedule::matches(std::span<const NodeRef> args, bool training, std::uint64_t structure) const {
  if (training != signature_.training || structure != signature_.structure || args.size() != inputs_.size()) {
    return false;
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const Tensor& v = args[i].value();
    const InputSignature& s = signature_.inputs[i];
    const bool grad = static_cast<const InputNode&>(*inputs_[i]).input()->requires_grad;
    if (v.shape() != s.shape || v.dtype() != s.dtype || v.device() != s.device || grad != s.requires_grad) return false;
  }
  return true;
}

bool Schedule::parameters_match() const {
  for (const auto& [node, data] : parameters_) {
    const Tensor& now = data->value;
    const Tensor& then = node->value();
    if (!now.defined() || now.shape() != then.shape() || now.dtype() != then.dtype() ||
        now.device() != then.device() || data->requires_grad != node->requires_grad()) {
      return false;
    }
  }
  return true;
}

ModuleGraph Schedule::run(std::span<const NodeRef> args) {
  Tape& tape = *tape_;
  if (tape.nodes().size() != size_) {
    throw UsageError("compile(" + module_name_ + "): the graph of the previous call was extended by " +
                     std::to_string(tape.nodes().size() - size_) +
                     " node(s) recorded outside the compiled module (an operator applied to its result, e.g. a "
                     "loss); a replay reuses that graph and cannot keep them. Compile a module that computes the "
                     "loss too, or call this module uncompiled (clear() drops the schedule)");
  }
  for (std::size_t i = 0; i < inputs_.size(); ++i) tape.set_value(*inputs_[i], args[i].value());
  for (const auto& [node, data] : parameters_) tape.set_value(*node, data->value);
  for (Node* node : frozen_) {  // unchanged, but written in place since: its version as of now
    if (node->value().version() != node->recorded_version()) tape.set_value(*node, Tensor(node->value()));
  }
  if (arena_) {
    detail::ReplayArena::Scope planned(*arena_);
    launch();
    planned.complete();
  } else {
    launch();
  }
  return ModuleGraph(NodeRef(tape_, root_));
}

Schedule::~Schedule() = default;

MemoryPlanStats Schedule::memory_plan() const {
  if (!arena_) return {};
  const auto& s = arena_->stats();
  return {s.planned_replays, s.served, s.planned_buffers, s.escaping, s.block_bytes, s.planned_bytes, s.dropped};
}

// The whole replay in one loop over a flat program: no user code runs between its entries.
void Schedule::launch() {
  Tape& tape = *tape_;
  for (const Instruction& in : program_) {
    if (in.op == nullptr) {
      const ScheduleEffect& e = effects_[in.effect];
      if (e.root != nullptr) {
        ModuleGraph(NodeRef(tape_, e.root)).back(e.seed);
      } else {
        e.run();
      }
      continue;
    }
    OperatorNode& op = *in.op;
    if (in.same_as != nullptr) {
      tape.set_value(op, in.same_as->value());
      continue;
    }
    try {
      tape.set_value(op, op.recompute());
    } catch (const Error& err) {
      if (err.has_location()) throw;
      const std::string path = invocation_path(tape, op.invocation());
      err.rethrow_at((path.empty() ? std::string() : path + ": ") + "replay of node %" + std::to_string(op.index()) +
                     " (" + std::string(op.op_name()) + ")");
    }
  }
}

ModuleGraph Schedule::graph() const { return ModuleGraph(NodeRef(tape_, root_)); }

std::string Schedule::str() const {
  std::string s = "schedule of " + module_name_ + " (" + signature_.str() + "), " + std::to_string(size_) +
                  " nodes, root %" + std::to_string(root_->index()) +
                  (eliminated_ > 0 ? ", " + std::to_string(eliminated_) + " dead (not replayed)" : std::string()) +
                  (merged_ > 0 ? ", " + std::to_string(merged_) + " merged (common subexpressions)" : std::string()) +
                  "\n";
  std::size_t next = 0;
  for (std::size_t i = 0; i < size_; ++i) {
    for (; next < effects_.size() && effects_[next].position <= i; ++next) s += "   " + effects_[next].name + "\n";
    const Node& n = *tape_->nodes()[i];
    s += node_line(n) + (!live_[i] && n.kind() == NodeKind::Operator ? "  dead" : "") +
         (live_[i] && same_as_[i] != kNone ? "  = %" + std::to_string(same_as_[i]) : "") + "\n";
  }
  for (; next < effects_.size(); ++next) s += "   " + effects_[next].name + "\n";
  return s;
}

// ---- compiled modules ---------------------------------------------------------------------

CompiledModule::CompiledModule(ModuleBase& module, CompileOptions options) : module_(&module), options_(options) {}

CompiledModule compile(ModuleBase& module, CompileOptions options) { return CompiledModule(module, options); }

std::vector<const Schedule*> CompiledModule::schedules() const {
  std::vector<const Schedule*> out;
  for (const auto& s : cache_) out.push_back(s.get());
  return out;
}

void CompiledModule::clear() {
  cache_.clear();
  last_ = nullptr;
}

ModuleGraph CompiledModule::call(std::span<const NodeRef> args) {
  last_ = nullptr;
  const auto& session = CallSessionManager::current();
  bool dynamic = !session.grad_enabled() || session.active_tape() || args.size() != module_->inputs().size();
  for (const NodeRef& a : args) dynamic = dynamic || !a.defined() || a.in_graph();
  if (dynamic) {
    ++stats_.dynamic;
    return module_->invoke(args);
  }
  const bool training = module_->is_training();
  const std::uint64_t structure = module_->structure_version();
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (!(*it)->matches(args, training, structure)) continue;
    if (!(*it)->parameters_match()) {  // Parameter::set_value changed a parameter: stale
      cache_.erase(it);
      ++stats_.evictions;
      break;
    }
    if (it != cache_.begin()) cache_.splice(cache_.begin(), cache_, it);
    Schedule& schedule = *cache_.front();
    ++stats_.replays;
    ModuleGraph result = options_.check ? check(schedule, args) : schedule.run(args);
    last_ = &schedule;
    return result;
  }
  return capture(args);
}

ModuleGraph CompiledModule::capture(std::span<const NodeRef> args) {
  const std::string refusal = capture_refusal_in(*module_, module_->name());
  if (!refusal.empty()) {
    throw UsageError("compile(" + module_->functional_name() + "): cannot capture a call: " + refusal +
                     ". Call the module uncompiled");
  }
  Recorder recorder;
  ModuleGraph g = [&] {
    const RecordingScope recording(recorder);
    return module_->invoke(args);
  }();
  if (!g.root().in_graph()) {  // a constant result: nothing to replay
    if (!recorder.effects.empty()) {
      throw UsageError("compile(" + module_->functional_name() + "): the captured call returned a constant, so its "
                       "effects (" + effect_list(recorder.effects) + ") cannot be replayed; return a node (the loss)");
    }
    ++stats_.dynamic;
    return g;
  }
  const Tape& tape = *g.root().tape();
  for (const Tape* t : recorder.tapes) {
    if (t != &tape) {
      throw UsageError("compile(" + module_->functional_name() + "): an effect ran in another graph than the one the "
                       "call returned; a replay could not place it. Call the module uncompiled");
    }
  }
  for (const auto& n : tape.nodes()) {
    if (n->kind() != NodeKind::Operator) continue;
    const auto& op = static_cast<const OperatorNode&>(*n);
    std::string_view why = op.capture_refusal();
    if (why.empty() && op.visit_without_gradient()) {
      why = "communication operators (MPI collectives, messages) are not replayed in this version";
    }
    if (why.empty()) continue;
    throw UsageError("compile(" + module_->functional_name() + "): cannot capture a call: node " + node_line(*n) +
                     where(tape, *n) + ": " + std::string(why) +
                     ". Call the module uncompiled, or compile it in evaluation mode");
  }
  cache_.push_front(std::make_unique<Schedule>(*module_, signature_of(*module_, args), g, std::move(recorder.effects),
                                               options_.memory_plan));
  ++stats_.captures;
  while (cache_.size() > std::max<std::size_t>(options_.cache_size, 1)) {
    cache_.pop_back();
    ++stats_.evictions;
  }
  last_ = cache_.front().get();
  return g;
}

// Check mode: trace the call again, compare its graph with the schedule, node by node; then
// replay, and compare every value with the trace's, bit for bit.
ModuleGraph CompiledModule::check(Schedule& schedule, std::span<const NodeRef> args) {
  const std::string head = "compile(" + module_->functional_name() + ", check=true): ";
  Recorder recorder;  // a step's effects run once, in this trace; the replay below is skipped for them
  ModuleGraph traced = [&] {
    const RecordingScope recording(recorder);
    return module_->invoke(args);
  }();
  if (!traced.root().in_graph()) {
    throw UsageError(head + "this call returned a constant, the captured one node %" +
                     std::to_string(schedule.root_->index()) + " of a graph");
  }
  const auto now = traced.root().tape()->nodes();
  const auto then = schedule.tape_->nodes().first(schedule.size_);
  const auto differ = [&](std::size_t i, const std::string& captured, const std::string& traced_line,
                          const std::string& why) {
    throw UsageError(head + "the call's graph differs from the captured schedule at node %" + std::to_string(i) +
                     (i < then.size() ? where(*schedule.tape_, *then[i]) : std::string()) + ": captured `" + captured +
                     "`, this call `" + traced_line + "`. " + why);
  };
  const std::string control_flow =
      "The module's control flow depends on values (or on state outside the graph); without check=true the "
      "replay would silently run the captured graph. Call this module uncompiled";
  for (std::size_t i = 0; i < std::max(now.size(), then.size()); ++i) {
    if (i >= then.size()) differ(i, "(none: the schedule ends)", node_line(*now[i]), control_flow);
    if (i >= now.size()) differ(i, node_line(*then[i]), "(none: the graph ends)", control_flow);
    const Node& a = *then[i];
    const Node& b = *now[i];
    bool same = a.kind() == b.kind() && a.label() == b.label() && a.value().shape() == b.value().shape() &&
                a.value().dtype() == b.value().dtype() && a.value().device() == b.value().device() &&
                a.requires_grad() == b.requires_grad();
    if (same && a.kind() == NodeKind::Operator) {
      const auto pa = static_cast<const OperatorNode&>(a).parents();
      const auto pb = static_cast<const OperatorNode&>(b).parents();
      same = pa.size() == pb.size();
      for (std::size_t j = 0; same && j < pa.size(); ++j) same = pa[j]->index() == pb[j]->index();
    }
    if (same && (a.kind() == NodeKind::Parameter || a.kind() == NodeKind::Variable)) {
      const auto& da = static_cast<const InputNode&>(a).input();
      const auto& db = static_cast<const InputNode&>(b).input();
      same = da->uid == db->uid;
    }
    if (!same) differ(i, node_line(a), node_line(b), control_flow);
    const bool frozen = a.kind() == NodeKind::Constant ||
                        (a.kind() == NodeKind::Variable &&
                         std::find(schedule.inputs_.begin(), schedule.inputs_.end(), &a) == schedule.inputs_.end());
    if (frozen && !same_bits(a.value(), b.value())) {
      differ(i, node_line(a), node_line(b),
             "A value frozen at capture differs: a number or tensor the call computed or read outside the graph "
             "(item(), a member, a global, a Python attribute) is a constant of the schedule. Make it an input or a "
             "Parameter, or call this module uncompiled");
    }
  }
  if (traced.root().node()->index() != schedule.root_->index()) {
    differ(traced.root().node()->index(), node_line(*schedule.root_), node_line(*traced.root().node()),
           "The call returned another node than the captured one");
  }
  if (!same_effects(schedule.effects_, recorder.effects)) {
    throw UsageError(head + "the call's effects differ from the captured schedule's: captured " +
                     effect_list(schedule.effects_) + "; this call " + effect_list(recorder.effects) +
                     ". The step's control flow depends on values; call it uncompiled");
  }
  // A step with effects (an optimizer update) ran them in the trace: replaying too would run
  // them twice, so the trace is the result.
  if (!schedule.effects_.empty()) return traced;
  // The replay must give the trace's values exactly.
  ModuleGraph replayed = schedule.run(args);
  for (std::size_t i = 0; i < then.size(); ++i) {
    if (schedule.live_[i] && !same_bits(then[i]->value(), now[i]->value())) {
      throw UsageError(head + "the replay computed node " + node_line(*then[i]) + where(*schedule.tape_, *then[i]) +
                       " differently from this call's trace (state outside the graph, e.g. a random draw, or an "
                       "operator whose forward depends on more than its inputs). Call this module uncompiled");
    }
  }
  return replayed;
}

// ---- gradcheck ----------------------------------------------------------------------------

GradcheckResult gradcheck(CompiledModule& compiled, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  if (!is_floating(options.dtype)) throw TypeError("gradcheck: options.dtype must be float32 or float64");
  ModuleBase& module = compiled.module();
  std::vector<Tensor> x;
  for (const Tensor& t : inputs) x.push_back(is_floating(t.dtype()) ? t.to(options.dtype).clone() : t);
  const auto call = [&]() {
    const std::vector<NodeRef> refs(x.begin(), x.end());
    return compiled.call(refs);
  };
  GradcheckResult result;
  // Analytic: one vjp per output element, each through a replay of its own.
  const Tensor out = call().value();
  const std::int64_t out_n = out.numel();
  std::vector<Tensor> jac(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (is_floating(x[i].dtype())) jac[i] = Tensor::zeros({out_n, x[i].numel()}, DType::Float64);
  }
  for (std::int64_t k = 0; k < out_n; ++k) {
    ModuleGraph g = call();
    Tensor seed = Tensor::zeros({out_n}, out.dtype());
    seed.slice(0, k, k + 1).fill_(1.0);
    g.vjp(seed.reshape(out.shape()));
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!jac[i].defined()) continue;
      const Tensor gi = g.grad(module.inputs()[i]).to(DType::Float64).reshape({1, x[i].numel()});
      jac[i].slice(0, k, k + 1).copy_(gi);
    }
  }
  // Numeric: central differences, every value from a replay.
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!jac[i].defined()) continue;
    const std::int64_t n = x[i].numel();
    Tensor flat = x[i].reshape({n});
    for (std::int64_t e = 0; e < n; ++e) {
      const double saved = flat.at({e});
      flat.slice(0, e, e + 1).fill_(saved + options.eps);
      const Tensor plus = call().value().to(DType::Float64).contiguous().clone();
      flat.slice(0, e, e + 1).fill_(saved - options.eps);
      const Tensor minus = call().value().to(DType::Float64).contiguous().clone();
      flat.slice(0, e, e + 1).fill_(saved);
      const double step = options.dtype == DType::Float64
                              ? 2 * options.eps
                              : static_cast<double>(static_cast<float>(saved + options.eps)) -
                                    static_cast<double>(static_cast<float>(saved - options.eps));
      for (std::int64_t k = 0; k < out_n; ++k) {
        const double numeric = (plus.data<double>()[k] - minus.data<double>()[k]) / step;
        const double got = jac[i].at({k, e});
        const double err = std::abs(got - numeric);
        result.max_error = std::max(result.max_error, err);
        if (err > options.atol + options.rtol * std::abs(numeric) && result.ok) {
          std::ostringstream os;
          os.precision(10);
          os << "input " << i << " element " << e << ", output element " << k << ": analytic " << got
             << " vs numeric " << numeric << " (error " << err << ")";
          result.ok = false;
          result.message = os.str();
        }
      }
    }
  }
  if (result.ok) result.message = "max error " + number(result.max_error);
  return result;
}

}  // namespace zkynet

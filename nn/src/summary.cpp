#include <zkynet/framework/error.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/summary.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <ostream>
#include <span>
#include <unordered_set>
#include <utility>

namespace zkynet::nn {

namespace {

// Puts every module of the tree in evaluation mode, and back as each was when destroyed.
class EvalScope {
 public:
  explicit EvalScope(ModuleBase& model) {
    collect(model);
    model.eval();
  }
  ~EvalScope() {
    // pre-order: a parent's train() resets its subtree, then each descendant gets its own flag back
    for (auto& [module, training] : saved_) module->train(training);
  }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  void collect(ModuleBase& m) {
    saved_.emplace_back(&m, m.is_training());
    for (const auto& [name, child] : m.children()) collect(*child);
  }
  std::vector<std::pair<ModuleBase*, bool>> saved_;
};

std::int64_t own_parameter_count(const ModuleBase& m) {
  std::unordered_set<std::uint64_t> in_children;
  for (const auto& [name, child] : m.children()) {
    for (const auto& [pname, p] : child->named_parameters()) in_children.insert(p.uid());
  }
  std::int64_t count = 0;
  for (const auto& [pname, p] : m.named_parameters()) {
    if (!in_children.contains(p.uid())) count += p.value().numel();
  }
  return count;
}

// What the example run recorded: the tape, and for each invocation the last node created
// while it (or a module it called) ran.
struct Recording {
  const Tape* tape = nullptr;
  std::vector<const Node*> last;
};

Shape output_shape(const Recording& rec, int invocation, const ModuleBase& module) {
  if (const Node* node = rec.last[static_cast<std::size_t>(invocation)]) return node->value().shape();
  // No node of its own: the module returned an input as it came (an identity).
  if (!module.inputs().empty()) {
    if (const Node* bound = rec.tape->bound(*module.inputs().front().data())) return bound->value().shape();
  }
  return {};
}

void walk(const ModuleBase& m, const std::string& path, int depth, const std::vector<int>& invocations,
          const Recording& rec, std::size_t first, std::vector<SummaryRow>& rows) {
  for (const auto& [name, child] : m.children()) {
    SummaryRow row;
    row.name = path.empty() ? name : path + "." + name;
    row.type = child->functional_name();
    row.params = own_parameter_count(*child);
    row.depth = depth;
    std::vector<int> calls;
    if (rec.tape) {
      const auto& invs = rec.tape->invocations();
      for (std::size_t j = first; j < invs.size(); ++j) {
        const Invocation& inv = invs[j];
        if (inv.name == child->name() && inv.functional_name == child->functional_name() &&
            std::find(invocations.begin(), invocations.end(), inv.parent) != invocations.end()) {
          calls.push_back(static_cast<int>(j));
          row.output_shapes.push_back(output_shape(rec, static_cast<int>(j), *child));
        }
      }
    }
    const std::string child_path = row.name;  // not a reference into `rows`, which grows below
    rows.push_back(std::move(row));
    walk(*child, child_path, depth + 1, calls, rec, first, rows);
  }
}

std::string grouped(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string shapes_cell(const std::vector<Shape>& shapes) {
  if (shapes.empty()) return "-";
  std::vector<Shape> distinct;
  for (const auto& s : shapes) {
    if (std::find(distinct.begin(), distinct.end(), s) == distinct.end()) distinct.push_back(s);
  }
  std::string cell;
  for (const auto& s : distinct) cell += (cell.empty() ? "" : ", ") + shape_str(s);
  if (shapes.size() > 1) cell += " [x" + std::to_string(shapes.size()) + "]";
  return cell;
}

std::string pad_right(const std::string& s, std::size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}
std::string pad_left(const std::string& s, std::size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

}  // namespace

ModelSummary summarize(ModuleBase& model, const std::vector<Tensor>& example_inputs) {
  auto& session = CallSessionManager::current();
  if (!session.grad_enabled()) {
    throw UsageError("nn::summary(" + model.functional_name() +
                     "): the example run must record its graph; call it outside NoGradGuard scopes");
  }
  ModelSummary out;
  out.model = model.name();
  for (const auto& t : example_inputs) {
    if (!t.defined()) throw UsageError("nn::summary(" + model.functional_name() + "): an example input is undefined");
    out.input_shapes.push_back(t.shape());
    out.input_dtypes.push_back(t.dtype());
  }

  const std::size_t first = session.active_tape() ? session.active_tape()->invocations().size() : 0;
  std::vector<NodeRef> args(example_inputs.begin(), example_inputs.end());
  std::vector<SummaryRow> rows;
  {
    EvalScope eval(model);
    const ModuleGraph graph = model.invoke(args);
    out.output_shape = graph.value().shape();
    out.output_dtype = graph.value().dtype();

    Recording rec;
    std::vector<int> root_calls;
    if (graph.root().in_graph()) {
      rec.tape = graph.root().tape().get();
      const auto& invs = rec.tape->invocations();
      rec.last.assign(invs.size(), nullptr);
      for (const auto& node : rec.tape->nodes()) {
        for (int k = node->invocation(); k >= 0; k = invs[static_cast<std::size_t>(k)].parent) {
          rec.last[static_cast<std::size_t>(k)] = node.get();
        }
      }
      if (first < invs.size()) root_calls.push_back(static_cast<int>(first));  // the model's own invocation
    }
    const std::int64_t own = own_parameter_count(model);
    if (own > 0 || model.children().empty()) {
      rows.push_back({model.name(), model.functional_name(), {out.output_shape}, own, 0});
    }
    walk(model, "", 1, root_calls, rec, first, rows);
  }
  out.rows = std::move(rows);
  for (const auto& [name, p] : model.named_parameters()) {
    out.total_params += p.value().numel();
    if (p.requires_grad()) out.trainable_params += p.value().numel();
  }
  return out;
}

ModelSummary summarize(ModuleBase& model, const Tensor& example_input) {
  return summarize(model, std::vector<Tensor>{example_input});
}

std::string summary(ModuleBase& model, const Tensor& example_input) { return summarize(model, example_input).str(); }

std::string summary(ModuleBase& model, const std::vector<Tensor>& example_inputs) {
  return summarize(model, example_inputs).str();
}

void print_summary(ModuleBase& model, const Tensor& example_input) { print_summary(model, example_input, std::cout); }

void print_summary(ModuleBase& model, const Tensor& example_input, std::ostream& os) {
  os << summarize(model, example_input);
}

std::string ModelSummary::str() const {
  const std::string h1 = "Layer (type)", h2 = "Output shape", h3 = "Param #";
  std::vector<std::array<std::string, 3>> cells;
  for (const auto& row : rows) {
    cells.push_back({row.name + " (" + row.type + ")", shapes_cell(row.output_shapes), grouped(row.params)});
  }
  std::size_t w1 = h1.size(), w2 = h2.size(), w3 = h3.size();
  for (const auto& c : cells) {
    w1 = std::max(w1, c[0].size());
    w2 = std::max(w2, c[1].size());
    w3 = std::max(w3, c[2].size());
  }
  const std::size_t width = w1 + 3 + w2 + 3 + w3;
  const auto line = [&](const std::string& a, const std::string& b, const std::string& c) {
    std::string l = pad_right(a, w1 + 3) + pad_right(b, w2 + 3) + pad_left(c, w3);
    return l + "\n";
  };

  std::string inputs;
  for (std::size_t i = 0; i < input_shapes.size(); ++i) {
    inputs += (i ? ", " : "") + shape_str(input_shapes[i]) + " " + std::string(dtype_name(input_dtypes[i]));
  }
  std::string s = model + ": input " + inputs + " -> output " + shape_str(output_shape) + " " +
                  std::string(dtype_name(output_dtype)) + "\n";
  s += std::string(width, '=') + "\n";
  s += line(h1, h2, h3);
  s += std::string(width, '-') + "\n";
  for (const auto& c : cells) s += line(c[0], c[1], c[2]);
  s += std::string(width, '=') + "\n";
  s += "Total params: " + grouped(total_params) + "\n";
  s += "Trainable params: " + grouped(trainable_params) + "\n";
  s += "Non-trainable params: " + grouped(total_params - trainable_params) + "\n";
  return s;
}

std::ostream& operator<<(std::ostream& os, const ModelSummary& summary) { return os << summary.str(); }

}  // namespace zkynet::nn

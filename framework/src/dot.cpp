#include <zkynet/framework/dot.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/session.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

extern char** environ;

namespace zkynet {
namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string brief(const Tensor& t) {
  if (!t.defined()) return "";
  if (t.numel() > 8) return "[" + std::to_string(t.numel()) + " values]";
  std::ostringstream os;
  const auto v = t.to_doubles();
  if (t.dim() == 0) {
    os << v[0];
  } else {
    os << "[";
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    os << "]";
  }
  return os.str();
}

// A constant's label: one value repeated as "zeros (1,32) float32", "ones ...", "full 0.5 ...";
// else its values when few ("2", "[1, 2]", "[1, 2, 3, 4] (2,2)"); else "const (3,4) float32".
std::string constant_text(const Tensor& t) {
  if (!t.defined()) return "const";
  const std::string shape_dtype = shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype()));
  if (t.numel() == 0) return "empty " + shape_dtype;
  constexpr std::int64_t kScanLimit = std::int64_t{1} << 20;  // larger ones are not read back
  if (t.numel() > 1 && t.numel() <= kScanLimit) {
    const auto v = t.to_doubles();
    if (std::all_of(v.begin(), v.end(), [&](double x) { return x == v[0]; })) {
      if (v[0] == 0) return "zeros " + shape_dtype;
      if (v[0] == 1) return "ones " + shape_dtype;
      return "full " + number(v[0]) + " " + shape_dtype;
    }
  }
  if (t.numel() <= 8) return brief(t) + (t.dim() > 1 ? " " + shape_str(t.shape()) : "");
  return "const " + shape_dtype;
}

// A node's shape, and its device when that is not the CPU: "(64,10)", "(64,10) cuda:0" (CPU
// graphs read as they always did).
std::string shape_on(const Tensor& t) {
  const std::string shape = shape_str(t.shape());
  return t.device().is_cpu() ? shape : shape + " " + t.device().str();
}

// Invocation chain from the top level down to `inv`.
std::vector<int> ancestry(const std::vector<Invocation>& invs, int inv) {
  std::vector<int> chain;
  for (int i = inv; i >= 0; i = invs[static_cast<std::size_t>(i)].parent) chain.insert(chain.begin(), i);
  return chain;
}

int common_ancestor(const std::vector<Invocation>& invs, int a, int b) {
  const auto ca = ancestry(invs, a);
  const auto cb = ancestry(invs, b);
  int common = -1;
  for (std::size_t i = 0; i < std::min(ca.size(), cb.size()) && ca[i] == cb[i]; ++i) common = ca[i];
  return common;
}

// The cluster each node is drawn in: where it was created, except that a parameter or
// input used by several invocations moves to their closest common invocation.
std::vector<int> placement(std::span<const std::unique_ptr<Node>> nodes, const std::vector<Invocation>& invs) {
  std::vector<int> where(nodes.size());
  std::vector<bool> placed_by_use(nodes.size(), false);
  for (const auto& n : nodes) where[n->index()] = n->invocation();
  for (const auto& n : nodes) {
    if (n->kind() != NodeKind::Operator) continue;
    for (const Node* p : static_cast<const OperatorNode&>(*n).parents()) {
      if (p->kind() != NodeKind::Parameter || p->index() >= nodes.size()) continue;
      auto& w = where[p->index()];
      w = placed_by_use[p->index()] ? common_ancestor(invs, w, n->invocation()) : n->invocation();
      placed_by_use[p->index()] = true;
    }
  }
  return where;
}

// Named chains: a node whose only consumer is an operator with it as its only parent and the
// same display name (slice "h_n", then reshape "h_n") is drawn as part of that consumer.
// Returns, for each node, the node that draws it.
std::vector<std::size_t> merged_chains(std::span<const std::unique_ptr<Node>> nodes, const Tape& tape,
                                       std::size_t root) {
  const std::size_t count = nodes.size();
  std::vector<int> consumers(count, 0);
  for (const auto& n : nodes) {
    if (n->kind() != NodeKind::Operator) continue;
    for (const Node* p : static_cast<const OperatorNode&>(*n).parents()) {
      if (p->index() < count) ++consumers[p->index()];
    }
  }
  std::vector<std::size_t> drawn_by(count);
  for (std::size_t i = 0; i < count; ++i) drawn_by[i] = i;
  for (const auto& n : nodes) {
    if (n->kind() != NodeKind::Operator) continue;
    const auto parents = static_cast<const OperatorNode&>(*n).parents();
    if (parents.size() != 1) continue;
    const Node& p = *parents[0];
    const std::string& name = tape.display_name(*n);
    if (name.empty() || p.index() == root || consumers[p.index()] != 1 || tape.display_name(p) != name) continue;
    if (p.kind() == NodeKind::Parameter || p.kind() == NodeKind::Variable) continue;
    drawn_by[p.index()] = n->index();
  }
  // Resolve chains (a parent always precedes its consumer, so one backward sweep suffices).
  for (std::size_t i = count; i-- > 0;) {
    if (drawn_by[i] != i) drawn_by[i] = drawn_by[drawn_by[i]];
  }
  return drawn_by;
}

std::string node_attributes(const Node& n, const std::vector<const Node*>& chain, const ModuleGraph& graph,
                            const DotOptions& options, bool is_root) {
  const Tape& tape = n.tape();
  const Node& head = *chain.front();
  const std::string& name = tape.display_name(n);
  std::string label;
  std::string style;
  std::string tooltip;
  switch (n.kind()) {
    case NodeKind::Variable: {
      const auto& data = *static_cast<const InputNode&>(n).input();
      label = escape(name.empty() ? data.name : name) + "\\n" +
              escape(data.owner.empty() ? data.name : data.owner + "." + data.name) + "\\n" +
              shape_on(n.value());
      style = "shape=ellipse, style=filled, fillcolor=\"#cfe2f3\"";
      break;
    }
    case NodeKind::Parameter: {
      const auto& data = *static_cast<const InputNode&>(n).input();
      label = escape(!name.empty() ? name : data.path.empty() ? data.name : data.path) + "\\n" +
              shape_on(n.value());
      tooltip = data.owner.empty() ? data.name : data.owner + "." + data.name;
      style = "shape=box, style=\"filled,rounded\", fillcolor=\"#f9cb9c\"";
      break;
    }
    case NodeKind::Constant:
      label = (name.empty() ? "" : escape(name) + "\\n") + escape(constant_text(n.value()));
      if (!n.value().device().is_cpu()) label += " " + n.value().device().str();
      style = name.empty() ? "shape=plaintext, fontcolor=\"#555555\""
                           : "shape=box, style=\"filled,dashed\", fillcolor=\"#fff2cc\"";
      break;
    case NodeKind::Operator:
      if (name.empty()) {
        label = escape(n.label()) + "\\n" + shape_on(n.value());
        style = "shape=box, style=filled, fillcolor=white";
      } else {
        // A named state: its name, the value a constant head starts from, the final shape.
        label = escape(name) + "\\n";
        if (head.kind() == NodeKind::Constant) label += escape(constant_text(head.value())) + "\\n";
        label += shape_on(n.value());
        for (const Node* c : chain) {
          if (c->kind() != NodeKind::Operator) continue;
          tooltip += (tooltip.empty() ? "" : " -> ") + c->label();
        }
        style = "shape=box, style=\"filled,dashed\", fillcolor=\"#fff2cc\"";
      }
      break;
  }
  if (options.show_values && n.kind() != NodeKind::Constant) label += "\\n= " + escape(brief(n.value()));
  if (options.show_gradients && graph.has_gradients() && n.requires_grad()) {
    NodeRef ref(std::const_pointer_cast<Tape>(graph.root().tape()), const_cast<Node*>(&n));
    label += "\\ngrad " + escape(brief(graph.grad(ref)));
  }
  std::string attrs = "label=\"" + label + "\", " + style;
  if (!tooltip.empty()) attrs += ", tooltip=\"" + escape(tooltip) + "\"";
  if (is_root) attrs += ", peripheries=2";
  return attrs;
}

}  // namespace

NodeRef named(const NodeRef& ref, std::string name) {
  if (ref.in_graph()) {
    ref.tape()->set_display_name(*ref.node(), std::move(name));
    return ref;
  }
  const auto& session = CallSessionManager::current();
  const auto& tape = session.active_tape();
  if (!ref.defined() || !tape || !session.grad_enabled()) return ref;
  Node* node = detail::node_on(*tape, ref);
  tape->set_display_name(*node, std::move(name));
  return NodeRef(tape, node);
}

std::string display_name(const NodeRef& ref) {
  return ref.in_graph() ? ref.tape()->display_name(*ref.node()) : std::string();
}

std::string to_dot(const ModuleGraph& graph, const DotOptions& options) {
  const auto nodes = graph.nodes();
  if (nodes.empty()) throw UsageError("to_dot: the graph was not recorded (no_grad, or constant result)");
  const Tape& tape = nodes.front()->tape();
  const auto& invs = tape.invocations();
  const auto where = placement(nodes, invs);
  const std::size_t root = graph.root().node()->index();
  const auto drawn_by = merged_chains(nodes, tape, root);
  std::vector<std::vector<const Node*>> chains(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) chains[drawn_by[i]].push_back(nodes[i].get());

  // Children of each invocation, and nodes of each cluster (-1 = outside every module).
  std::map<int, std::vector<int>> sub;
  std::map<int, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < invs.size(); ++i) sub[invs[i].parent].push_back(static_cast<int>(i));
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (drawn_by[i] == i) members[where[i]].push_back(i);
  }

  // Repeated calls of one module from one caller (micro-batches, a cell's steps): left to its
  // crossing minimisation, Graphviz shuffles them. It keeps them in call order, top to bottom,
  // with the minimisation cut short (mclimit), the out-edges of each node kept in declared
  // order (ordering=out), and clusters and edges declared last to first (LR layouts stack
  // the first declared at the bottom). Checked for pipelines of 2 to 4 stages and 1 to 5
  // micro-batches, and for calls on slices of one input.
  bool repeated_calls = false;
  for (const auto& [parent, children] : sub) {
    std::map<std::string, int> calls;
    for (int child : children) repeated_calls |= ++calls[invs[static_cast<std::size_t>(child)].functional_name] > 1;
  }

  std::ostringstream os;
  const std::string title = options.title.empty() ? "call #" + std::to_string(graph.call_id()) : options.title;
  os << "digraph \"" << escape(title) << "\" {\n"
     << "  label=\"" << escape(title) << "\";\n  labelloc=t;\n  rankdir=LR;\n"
     << (repeated_calls ? "  mclimit=0.05;\n  ordering=out;\n" : "")
     << "  node [fontname=\"Helvetica\", fontsize=10];\n  edge [color=\"#444444\"];\n";

  // Recursive cluster writer; every invocation that holds nodes gets a cluster.
  std::function<void(int, int)> write_cluster = [&](int inv, int depth) {
    const std::string pad(static_cast<std::size_t>(2 * depth + 2), ' ');
    if (inv >= 0) {
      const auto& rec = invs[static_cast<std::size_t>(inv)];
      os << pad << "subgraph cluster_" << inv << " {\n"
         << pad << "  label=\"" << escape(rec.name) << " (" << escape(rec.functional_name) << ") #" << inv << "\";\n"
         << pad << "  style=rounded; color=\"#888888\";\n";
    }
    // Graphviz's LR layout stacks what is declared first at the bottom: nodes and nested
    // calls are declared last to first, so that the picture reads top to bottom in call order
    // (micro-batch 0 above micro-batch 1; see repeated_calls).
    const auto& mine = members[inv];
    for (auto it = mine.rbegin(); it != mine.rend(); ++it) {
      os << pad << "  n" << *it << " [" << node_attributes(*nodes[*it], chains[*it], graph, options, *it == root)
         << "];\n";
    }
    const auto& children = sub[inv];
    for (auto it = children.rbegin(); it != children.rend(); ++it) write_cluster(*it, depth + 1);
    if (inv >= 0) os << pad << "}\n";
  };
  write_cluster(-1, -1);

  // Edges last to first, like the clusters (see repeated_calls).
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    const Node& n = **it;
    if (n.kind() != NodeKind::Operator) continue;
    const auto parents = static_cast<const OperatorNode&>(n).parents();
    for (auto p = parents.rbegin(); p != parents.rend(); ++p) {
      const std::size_t from = drawn_by[(*p)->index()], to = drawn_by[n.index()];
      if (from != to) os << "  n" << from << " -> n" << to << ";\n";
    }
  }
  os << "}\n";
  return os.str();
}

bool graphviz_available() {
  pid_t pid = 0;
  const char* argv[] = {"dot", "-V", nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  const int rc = posix_spawnp(&pid, "dot", &actions, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return false;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::vector<std::string> render_graph(const ModuleGraph& graph, const std::string& base, const DotOptions& options,
                                      const std::vector<std::string>& formats) {
  const std::string dot_path = base + ".dot";
  {
    std::ofstream out(dot_path);
    if (!out) throw UsageError("render_graph: cannot write " + dot_path);
    out << to_dot(graph, options);
  }
  std::vector<std::string> written{dot_path};
  if (!graphviz_available()) return written;
  for (const auto& format : formats) {
    const std::string target = base + "." + format;
    const std::string type = "-T" + format;
    const std::string output = "-o" + target;
    const char* argv[] = {"dot", type.c_str(), output.c_str(), dot_path.c_str(), nullptr};
    pid_t pid = 0;
    if (posix_spawnp(&pid, "dot", nullptr, nullptr, const_cast<char**>(argv), environ) != 0) continue;
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) written.push_back(target);
  }
  return written;
}

}  // namespace zkynet

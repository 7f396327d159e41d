#include <zkynet/framework/dot.h>
#include <zkynet/framework/error.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

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

std::string node_attributes(const Node& n, const ModuleGraph& graph, const DotOptions& options, bool is_root) {
  std::string label;
  std::string style;
  switch (n.kind()) {
    case NodeKind::Variable:
    case NodeKind::Parameter: {
      const auto& data = *static_cast<const InputNode&>(n).input();
      label = data.name + "\\n" + escape(data.owner.empty() ? data.name : data.owner + "." + data.name);
      style = n.kind() == NodeKind::Variable ? "shape=ellipse, style=filled, fillcolor=\"#cfe2f3\""
                                             : "shape=box, style=\"filled,rounded\", fillcolor=\"#f9cb9c\"";
      break;
    }
    case NodeKind::Constant:
      label = "const";
      style = "shape=plaintext, fontcolor=\"#555555\"";
      break;
    case NodeKind::Operator:
      label = escape(n.label());
      style = "shape=box, style=filled, fillcolor=white";
      break;
  }
  label += "\\n" + shape_str(n.value().shape());
  if (options.show_values || n.kind() == NodeKind::Constant) label += "\\n= " + escape(brief(n.value()));
  if (options.show_gradients && graph.has_gradients() && n.requires_grad()) {
    NodeRef ref(std::const_pointer_cast<Tape>(graph.root().tape()), const_cast<Node*>(&n));
    label += "\\ngrad " + escape(brief(graph.grad(ref)));
  }
  std::string attrs = "label=\"" + label + "\", " + style;
  if (is_root) attrs += ", peripheries=2";
  return attrs;
}

}  // namespace

std::string to_dot(const ModuleGraph& graph, const DotOptions& options) {
  const auto nodes = graph.nodes();
  if (nodes.empty()) throw UsageError("to_dot: the graph was not recorded (no_grad, or constant result)");
  const auto& invs = nodes.front()->tape().invocations();
  const auto where = placement(nodes, invs);

  // Children of each invocation, and nodes of each cluster (-1 = outside every module).
  std::map<int, std::vector<int>> sub;
  std::map<int, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < invs.size(); ++i) sub[invs[i].parent].push_back(static_cast<int>(i));
  for (std::size_t i = 0; i < nodes.size(); ++i) members[where[i]].push_back(i);

  std::ostringstream os;
  const std::string title = options.title.empty() ? "call #" + std::to_string(graph.call_id()) : options.title;
  os << "digraph \"" << escape(title) << "\" {\n"
     << "  label=\"" << escape(title) << "\";\n  labelloc=t;\n  rankdir=LR;\n"
     << "  node [fontname=\"Helvetica\", fontsize=10];\n  edge [color=\"#444444\"];\n";
  const std::size_t root = graph.root().node()->index();

  // Recursive cluster writer; every invocation that holds nodes gets a cluster.
  std::function<void(int, int)> write_cluster = [&](int inv, int depth) {
    const std::string pad(static_cast<std::size_t>(2 * depth + 2), ' ');
    if (inv >= 0) {
      const auto& rec = invs[static_cast<std::size_t>(inv)];
      os << pad << "subgraph cluster_" << inv << " {\n"
         << pad << "  label=\"" << escape(rec.name) << " (" << escape(rec.functional_name) << ") #" << inv << "\";\n"
         << pad << "  style=rounded; color=\"#888888\";\n";
    }
    for (std::size_t i : members[inv]) {
      os << pad << "  n" << i << " [" << node_attributes(*nodes[i], graph, options, i == root) << "];\n";
    }
    for (int child : sub[inv]) write_cluster(child, depth + 1);
    if (inv >= 0) os << pad << "}\n";
  };
  write_cluster(-1, -1);

  for (const auto& n : nodes) {
    if (n->kind() != NodeKind::Operator) continue;
    for (const Node* p : static_cast<const OperatorNode&>(*n).parents()) {
      os << "  n" << p->index() << " -> n" << n->index() << ";\n";
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

// Per-rank graphs of a small model over a ring of ranks, for tools/merge_rank_graphs.py.
//
// Each rank r runs the same module on its own weights:
//   x      = bcast(input, from 0)                       every rank starts from rank 0's input
//   h      = tanh(Linear(x))                            this rank's stage
//   handle = isend(h, to r+1)                           pass h on around the ring
//   prev   = recv(like h, from r-1)                     and take the previous rank's h
//   sent   = wait(handle)                               h once sent (joins the send to the root)
//   loss   = allreduce(sum((scale * prev + sent)^2))    the same total on every rank
// then back() on every rank (gradients flow back around the ring) and writes its graph to
// <outdir>/rank<r>.dot (and .png when Graphviz is installed).
//
//   mpiexec -n 3 ring_graph [outdir]      (default outdir: graphs)
//   /usr/bin/python3 tools/merge_rank_graphs.py graphs/rank*.dot -o graphs/merged.dot --png
#include <zkynet/distributed/ops.h>
#include <zkynet/framework/dot.h>
#include <zkynet/framework/module.h>
#include <zkynet/nn/linear.h>
#include <zkynet/ops/ops.h>

#include <filesystem>
#include <iostream>
#include <string>

using namespace zkynet;

class RingStage : public Module<RingStage> {
 public:
  RingStage(int rank, int size, Generator& gen)
      : Module({Variable("x")}, {Parameter("scale", Tensor::full({4}, 0.5 + 0.1 * rank, DType::Float32))}),
        next_((rank + 1) % size),
        prev_((rank + size - 1) % size),
        layer_(4, 4, {.generator = &gen}) {
    register_module("layer", layer_);
  }

  NodeRef call(const NodeRef& input) {
    const NodeRef x = dist::bcast(input, /*root=*/0);
    const NodeRef h = op::tanh(layer_(x));
    const dist::WaitHandle handle = dist::isend(h, next_, /*tag=*/0);
    const NodeRef prev = dist::recv(h, prev_, /*tag=*/0);
    const NodeRef sent = dist::wait(handle);
    const NodeRef local = op::sum(op::square(op::add(op::mult(param("scale"), prev), sent)));
    return dist::allreduce(local);
  }

 private:
  int next_, prev_;
  nn::Linear layer_;
};

int main(int argc, char** argv) {
  const std::filesystem::path out_dir = argc > 1 ? argv[1] : "graphs";
  const auto world = dist::world();
  const int rank = world.rank();
  std::filesystem::create_directories(out_dir);

  Generator gen(1234 + static_cast<std::uint64_t>(rank));
  RingStage stage(rank, world.size(), gen);
  ModuleGraph g = stage(Tensor::randn({2, 4}, gen, DType::Float32));
  g.back();

  const std::string base = (out_dir / ("rank" + std::to_string(rank))).string();
  const auto files = render_graph(g, base, {.title = "rank " + std::to_string(rank)});
  world.barrier();
  if (rank == 0) {
    std::cout << "loss (sum over ranks) " << g.value().item() << ", d loss / d scale on rank 0 "
              << g.grad(stage.param("scale")) << "\n"
              << "wrote " << world.size() << " graphs: " << files.front() << " ... " << out_dir.string() << "/rank"
              << world.size() - 1 << ".dot" << (files.size() > 1 ? " (and .png)" : "") << "\n"
              << "merge them: /usr/bin/python3 tools/merge_rank_graphs.py " << out_dir.string() << "/rank*.dot -o "
              << (out_dir / "merged.dot").string() << " --png\n";
  }
  return 0;
}

// Allreduce (SUM, float32) through zkynet against a raw MPI_Allreduce of the same buffer, on the
// ranks it is launched with:   mpiexec -n 2 bench_allreduce [--samples 25] [--warmup 3]
//                                                             [--max-mb 64] [--sizes 1K,1M,...]
// Per size (1 KB to 64 MB in powers of 4), interleaved sample by sample:
//   raw                MPI_Allreduce(in, out, ...) into a preallocated out buffer
//   raw_inplace        MPI_Allreduce(MPI_IN_PLACE, buf, ...)
//   op_fwd             dist::allreduce(NodeRef(x)) outside any call (forward, no graph); the
//                      op allocates its output (as the framework does)
//   op_fwdbwd          a zkynet::Lambda whose body is dist::allreduce(x): the call (records the
//                      graph), back(seed) (one more allreduce, on the backward communicator),
//                      graph destroyed. Two collectives: compared with 2 x raw
//   eager              dist::allreduce_(t), in place (compared with raw_inplace)
//   *_unchecked        the same with dist::set_checked(false) (no signature allreduce first)
// The variants take turns, in a new (seeded, the same on every rank) order each sample.
// A sample is the time of `calls` back-to-back calls (more for small sizes, so that one sample
// lasts about as long as a 256 KB call) divided by `calls`, after a barrier; the figure is
// the slowest rank's. Reported in us: median / min / max of --samples samples after
// --warmup, and the overheads (median vs median, %):
//   op_fwd_overhead_pct_SIZE            op_fwd vs raw (the headline: target <= 5 % at >= 1 MB)
//   op_fwd_unchecked_overhead_pct_SIZE  op_fwd_unchecked vs raw
//   op_fwdbwd_overhead_pct_SIZE         op_fwdbwd vs 2 x raw
//   eager_overhead_pct_SIZE             eager vs raw_inplace
// Results are checked against the expected sums before timing. One JSON line on rank 0.
// --device cuda[:N]: CUDA tensors staged through MPI against NCCL instead (bench_allreduce_cuda.cpp).
#include "bench_common.h"

#include <zkynet/distributed/communicator.h>
#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>
#include <zkynet/framework/module.h>

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace zkynet;
namespace zb = zkynet::bench;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "bench_allreduce: FAILED: %s\n", what.c_str());
  dist::abort("bench_allreduce failed", 1);
}

std::string size_name(std::int64_t bytes) {
  if (bytes >= (1 << 20)) return std::to_string(bytes >> 20) + "MB";
  return std::to_string(bytes >> 10) + "KB";
}

// "1K,64K,4M" -> bytes.
std::vector<std::int64_t> parse_sizes(const std::string& list) {
  std::vector<std::int64_t> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    std::int64_t n = std::stoll(item);
    const char unit = item.back();
    if (unit == 'K' || unit == 'k') n <<= 10;
    if (unit == 'M' || unit == 'm') n <<= 20;
    out.push_back(n);
  }
  return out;
}

void expect_all(const Tensor& t, float want, const std::string& what) {
  const float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if (p[i] != want) fail(what + ": element " + std::to_string(i) + " is " + std::to_string(p[i]) + ", expected " +
                           std::to_string(want));
  }
}

struct Variant {
  std::string name;
  std::function<void()> call;
  bool checked = true;
};

}  // namespace

int run_cuda(int argc, char** argv, const std::vector<std::int64_t>& sizes);  // bench_allreduce_cuda.cpp

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  if (zb::arg_str(argc, argv, "--device", "cpu") != "cpu") {
    return run_cuda(argc, argv, parse_sizes(zb::arg_str(argc, argv, "--sizes", "")));
  }
  const auto world = dist::world();
  const int rank = world.rank(), size = world.size();
  MPI_Comm comm = MPI_COMM_WORLD;

  const int samples = static_cast<int>(zb::arg_long(argc, argv, "--samples", 25));
  const int warmup = static_cast<int>(zb::arg_long(argc, argv, "--warmup", 3));
  const long max_mb = zb::arg_long(argc, argv, "--max-mb", 64);
  std::vector<std::int64_t> sizes = parse_sizes(zb::arg_str(argc, argv, "--sizes", ""));
  if (sizes.empty()) {
    for (std::int64_t b = 1024; b <= max_mb * (1 << 20); b *= 4) sizes.push_back(b);
  }
  const bool checked_default = dist::checked();

  zb::Object res, meta;
  std::string size_list, calls_list;
  for (const std::int64_t bytes : sizes) {
    const std::int64_t n = bytes / 4;
    const std::string sz = size_name(bytes);
    const int count = static_cast<int>(n);

    // Each rank contributes rank + 1: every sum is size * (size + 1) / 2.
    const float want = static_cast<float>(size * (size + 1) / 2);
    const Tensor x = Tensor::full({n}, rank + 1.0, DType::Float32);
    Tensor out = Tensor::empty({n}, DType::Float32);
    Tensor inplace = Tensor::zeros({n}, DType::Float32);  // stays 0: summing zeros never overflows
    Tensor eager = Tensor::zeros({n}, DType::Float32);
    const Tensor seed = Tensor::ones({n}, DType::Float32);
    Lambda module({"x"}, [](std::span<const NodeRef> in) { return dist::allreduce(in[0]); }, "AllreduceModule");

    // Correctness first (untimed): forward, eager, and the gradient (every rank's seed is 1,
    // so each rank's d/dx is `size`).
    expect_all(dist::allreduce(NodeRef(x)).value(), want, "dist::allreduce " + sz);
    {
      ModuleGraph g = module(x);
      g.back(seed);
      expect_all(g.value(), want, "graph forward " + sz);
      expect_all(g.grad(module.input("x")), static_cast<float>(size), "graph gradient " + sz);
    }
    {
      Tensor t = x.clone();
      dist::allreduce_(t);
      expect_all(t, want, "dist::allreduce_ " + sz);
    }

    std::vector<Variant> variants{
        {"raw", [&] { MPI_Allreduce(x.raw_data(), out.raw_data(), count, MPI_FLOAT, MPI_SUM, comm); }},
        {"raw_inplace", [&] { MPI_Allreduce(MPI_IN_PLACE, inplace.raw_data(), count, MPI_FLOAT, MPI_SUM, comm); }},
        {"op_fwd", [&] { NodeRef y = dist::allreduce(NodeRef(x)); }},
        {"op_fwd_unchecked", [&] { NodeRef y = dist::allreduce(NodeRef(x)); }, false},
        {"op_fwdbwd", [&] { module(x).back(seed); }},
        {"op_fwdbwd_unchecked", [&] { module(x).back(seed); }, false},
        {"eager", [&] { dist::allreduce_(eager); }},
        {"eager_unchecked", [&] { dist::allreduce_(eager); }, false},
    };

    // Enough calls per sample that a small one is not all barrier skew.
    const int calls = static_cast<int>(std::max<std::int64_t>(1, (256 << 10) / bytes));
    std::map<std::string, std::vector<double>> local;
    std::vector<std::size_t> order(variants.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937 shuffle_gen(12345);  // the same sequence on every rank
    for (int s = 0; s < warmup + samples; ++s) {
      // A new order each sample, so that no variant always follows the same one (caches, skew).
      std::shuffle(order.begin(), order.end(), shuffle_gen);
      for (const std::size_t k : order) {
        const Variant& v = variants[k];
        dist::set_checked(v.checked && checked_default);
        MPI_Barrier(comm);
        const double t0 = zb::now_us();
        for (int c = 0; c < calls; ++c) v.call();
        const double t = (zb::now_us() - t0) / calls;
        if (s >= warmup) local[v.name].push_back(t);
      }
    }
    dist::set_checked(checked_default);

    // The slowest rank's time, sample by sample.
    std::map<std::string, zb::Stats> st;
    for (const auto& v : variants) {
      std::vector<double>& mine = local[v.name];
      std::vector<double> slowest(mine.size());
      MPI_Reduce(mine.data(), slowest.data(), static_cast<int>(mine.size()), MPI_DOUBLE, MPI_MAX, 0, comm);
      st[v.name] = zb::stats(slowest);
      res.add(v.name + "_us_" + sz, st[v.name]);
    }
    auto pct = [&](const std::string& a, const std::string& b, double times) {
      return 100.0 * (st[a].median - times * st[b].median) / (times * st[b].median);
    };
    res.add_number("op_fwd_overhead_pct_" + sz, pct("op_fwd", "raw", 1))
        .add_number("op_fwd_unchecked_overhead_pct_" + sz, pct("op_fwd_unchecked", "raw", 1))
        .add_number("op_fwdbwd_overhead_pct_" + sz, pct("op_fwdbwd", "raw", 2))
        .add_number("eager_overhead_pct_" + sz, pct("eager", "raw_inplace", 1))
        .add_number("eager_unchecked_overhead_pct_" + sz, pct("eager_unchecked", "raw_inplace", 1));
    size_list += (size_list.empty() ? "" : ",") + zb::quoted(sz);
    calls_list += (calls_list.empty() ? "" : ",") + std::to_string(calls);
    if (rank == 0) {
      std::fprintf(stderr, "bench_allreduce: %s raw %.1f us, op %.1f us (%+.1f %%), unchecked %.1f us\n", sz.c_str(),
                   st["raw"].median, st["op_fwd"].median, pct("op_fwd", "raw", 1), st["op_fwd_unchecked"].median);
    }
  }

  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  std::string lib(version, static_cast<std::size_t>(len));
  if (const auto nl = lib.find('\n'); nl != std::string::npos) lib.resize(nl);
  for (char& c : lib) c = static_cast<unsigned char>(c) < 0x20 ? ' ' : c;  // JSON strings take no control characters
  const char* wait_env = std::getenv("ZKYNET_DIST_WAIT");
  meta.add_number("ranks", size)
      .add("sizes", "[" + size_list + "]")
      .add("calls_per_sample", "[" + calls_list + "]")
      .add_number("samples", samples)
      .add_number("warmup", warmup)
      .add_string("dtype", "float32")
      .add_string("op", "SUM")
      .add_string("figure", "slowest rank's time per call, us")
      .add_number("checked_default", checked_default ? 1 : 0)
      .add_string("ZKYNET_DIST_WAIT", wait_env ? wait_env : "")
      .add_string("mpi_library", lib)
      .add("env", zb::env_json());
  if (rank == 0) zb::emit("zkynet_allreduce", res, meta);
  return 0;
}

#include <zkynet/nn/checkpoint.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace zkynet;
using zkynet::testing::error_message;
namespace fs = std::filesystem;

// HDF5 1.10 leaks a few buffers inside the library when it rejects a damaged file (its error
// paths; fixed in later releases). Those leaks are HDF5's: that zkynet closes every handle is
// checked directly, with nn::detail::open_hdf5_objects(). Sanitizer builds read this hook.
extern "C" const char* __lsan_default_suppressions() { return "leak:libhdf5_serial.so\n"; }

namespace {

// A fresh directory per test case, removed afterwards.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("zkynet-checkpoint-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
    return out;
  }

 private:
  fs::path path_;
};

// Clears the fault hook when a test case ends, however it ends.
struct FaultHook {
  explicit FaultHook(std::function<void(std::string_view)> hook) { nn::detail::set_checkpoint_fault_hook(std::move(hook)); }
  ~FaultHook() { nn::detail::set_checkpoint_fault_hook({}); }
};

class Stats : public Module<Stats> {
 public:
  Stats() : Module({Variable("x")}) { register_buffer("running_mean", Tensor{0.0, 0.0}); }
  NodeRef call(const NodeRef& x) { return x; }
};

// Linear(3, 2) -> ReLU -> Linear(2, 1), float64, a 0-d buffer of its own and one in `stats`.
class Net : public Module<Net> {
 public:
  explicit Net(std::uint64_t seed = 1) : Module({Variable("x")}), gen_(seed) {
    register_module("l1", l1);
    register_module("l2", l2);
    register_module("stats", stats);
    register_buffer("count", Tensor::scalar(0.0));
  }
  NodeRef call(const NodeRef& x) { return l2(op::relu(l1(x))); }

  Generator gen_;
  nn::Linear l1{3, 2, {.dtype = DType::Float64, .generator = &gen_}};
  nn::Linear l2{2, 1, {.dtype = DType::Float64, .generator = &gen_}};
  Stats stats;
};

void perturb(Net& net) {
  for (auto& p : net.parameters()) {
    Tensor v = p.value();
    v.add_(Tensor::ones(v.shape()));
  }
  net.buffer("count").fill_(7.0);
  net.stats.buffer("running_mean").fill_(-1.0);
}

bool same_state(const nn::StateDict& a, const nn::StateDict& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first || a[i].second.dtype() != b[i].second.dtype() ||
        !allclose(a[i].second, b[i].second, 0.0, 0.0)) {
      return false;
    }
  }
  return true;
}

nn::StateDict without(nn::StateDict dict, const std::string& key) {
  std::erase_if(dict, [&](const auto& entry) { return entry.first == key; });
  return dict;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Debian's interpreter (where apt's python3-h5py lives), not the python3 first on PATH.
constexpr const char* kPython = "/usr/bin/python3";

bool have_h5py() {
  return fs::exists(kPython) && std::system((std::string(kPython) + " -c 'import h5py' >/dev/null 2>&1").c_str()) == 0;
}

// Runs a Python script with Debian's interpreter; returns (exit status, output).
std::pair<int, std::string> run_python(const TempDir& dir, const std::string& script, const std::string& arg) {
  const std::string script_path = dir.file("check.py");
  write_bytes(script_path, script);
  const std::string command = std::string(kPython) + " " + script_path + " " + arg + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// One tensor of each stored kind: float32, float64, int64, 0-d, and an empty one.
nn::StateDict mixed_state() {
  Tensor w32 = Tensor::from_vector<float>({0.1f, -2.5f, 3.0e-8f, 1.0e30f, -0.0f, 7.0f}, {2, 3});
  Tensor w64 = Tensor::from_vector<double>({1.0 / 3.0, -2.0e-300, 6.02214076e23, 0.5}, {2, 2, 1});
  Tensor ids = Tensor::from_vector<std::int64_t>({-9007199254740993LL, 0, 42, 9223372036854775807LL}, {4});
  return {{"enc.w32", w32},
          {"enc.w64", w64},
          {"ids", ids},
          {"step", Tensor::scalar(12.5)},
          {"empty", Tensor::zeros({0, 3}, DType::Float32)}};
}

// A stateful 2-layer LSTM (at "lstm") and a GRU that is stateful unless told otherwise (at
// "gru"), then a linear head; float64, over (seq, batch = 3, 2) series.
class Forecaster : public Module<Forecaster> {
 public:
  explicit Forecaster(std::uint64_t seed = 1, bool stateful_gru = true)
      : Module({Variable("x")}),
        gen_(seed),
        lstm(2, 5, {.num_layers = 2, .stateful = true, .dtype = DType::Float64, .generator = &gen_}),
        gru(5, 4, {.stateful = stateful_gru, .dtype = DType::Float64, .generator = &gen_}),
        head(4, 1, {.dtype = DType::Float64, .generator = &gen_}) {
    register_module("lstm", lstm);
    register_module("gru", gru);
    register_module("head", head);
  }
  NodeRef call(const NodeRef& x) { return head(gru(lstm(x))); }

  Generator gen_;
  nn::LSTM lstm;
  nn::GRU gru;
  nn::Linear head;
};

// series(shape, phase)[i] = sin(0.37 i + phase) over the flat index i.
Tensor series(const Shape& shape, double phase) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37 * static_cast<double>(i) + phase);
  return Tensor::from_vector(v, shape);
}

bool identical(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.to_doubles() == b.to_doubles();
}

}  // namespace

// ---- round trips -------------------------------------------------------------------------

TEST_CASE("load_checkpoint restores what save_checkpoint saved: parameters and buffers", "[checkpoint]") {
  TempDir dir;
  Net net;
  const nn::StateDict saved = nn::state_dict(net);
  nn::save_checkpoint(net, dir.file("net.h5"));
  perturb(net);
  REQUIRE_FALSE(same_state(nn::state_dict(net), saved));
  const auto result = nn::load_checkpoint(net, dir.file("net.h5"));
  CHECK(result.missing_keys.empty());
  CHECK(result.unexpected_keys.empty());
  CHECK(same_state(nn::state_dict(net), saved));
}

TEST_CASE("a checkpoint carries a model's function to another instance", "[checkpoint]") {
  TempDir dir;
  Net trained(1), fresh(2);
  const Tensor x = Tensor{{1.0, -2.0, 0.5}, {0.3, 0.2, 0.1}};
  REQUIRE_FALSE(allclose(trained(x).value(), fresh(x).value()));
  nn::save_checkpoint(trained, dir.file("trained.h5"));
  nn::load_checkpoint(fresh, dir.file("trained.h5"));
  CHECK(allclose(trained(x).value(), fresh(x).value(), 0.0, 0.0));
}

// ---- carried states of stateful recurrent layers ----------------------------------------

TEST_CASE("a checkpoint keeps the carried states: the loaded model continues the series as the saved one",
          "[checkpoint]") {
  TempDir dir;
  Forecaster model(1), fresh(2);
  model(series({5, 3, 2}, 0.0));
  nn::save_checkpoint(model, dir.file("model.h5"));
  const auto result = nn::load_checkpoint(fresh, dir.file("model.h5"));
  CHECK(result.missing_keys.empty());
  CHECK(result.unexpected_keys.empty());
  const Tensor continuation = model(series({5, 3, 2}, 1.0)).value();
  CHECK(identical(fresh(series({5, 3, 2}, 1.0)).value(), continuation));  // bitwise, float64
}

TEST_CASE("a checkpoint of stateful layers that carry nothing yet resets them when loaded", "[checkpoint]") {
  TempDir dir;
  Forecaster never_run;
  nn::save_checkpoint(never_run, dir.file("fresh.h5"));
  Forecaster model;
  const Tensor from_zeros = model(series({5, 3, 2}, 0.0)).value();
  nn::load_checkpoint(model, dir.file("fresh.h5"));
  CHECK_FALSE(model.lstm.carried_state().h.defined());
  CHECK_FALSE(model.gru.carried_state().h.defined());
  CHECK(identical(model(series({5, 3, 2}, 0.0)).value(), from_zeros));
}

TEST_CASE("a checkpoint without carried states (older files) loads and leaves the carried states as they are",
          "[checkpoint]") {
  TempDir dir;
  Forecaster model;
  nn::save_state(nn::state_dict(model), dir.file("old.h5"));  // what save_checkpoint wrote before
  model(series({5, 3, 2}, 0.0));
  const Tensor carried = model.lstm.carried_state().h.clone();
  const auto result = nn::load_checkpoint(model, dir.file("old.h5"));
  CHECK(result.missing_keys.empty());
  CHECK(identical(model.lstm.carried_state().h, carried));
}

TEST_CASE("load_state reads a checkpoint's state dict without its carried states", "[checkpoint]") {
  TempDir dir;
  Forecaster model;
  model(series({5, 3, 2}, 0.0));
  nn::save_checkpoint(model, dir.file("model.h5"));
  CHECK(same_state(nn::load_state(dir.file("model.h5")), nn::state_dict(model)));
}

TEST_CASE("load_checkpoint names carried states the module lacks, with the file, and changes nothing",
          "[checkpoint]") {
  TempDir dir;
  Forecaster saved(1), model(2, /*stateful_gru=*/false);
  saved(series({5, 3, 2}, 0.0));
  nn::save_checkpoint(saved, dir.file("model.h5"));
  const nn::StateDict before = nn::state_dict(model);
  CHECK_THAT(error_message<IndexError>([&] { nn::load_checkpoint(model, dir.file("model.h5")); }),
             Catch::Contains("load_checkpoint('" + dir.file("model.h5") + "'): recurrent_states: ") &&
                 Catch::Contains("unexpected key(s) 'gru.h'"));
  CHECK(same_state(nn::state_dict(model), before));
  CHECK_FALSE(model.lstm.carried_state().h.defined());
}

TEST_CASE("load_checkpoint without strict reports carried-state keys under recurrent_states/", "[checkpoint]") {
  TempDir dir;
  Forecaster saved(1, /*stateful_gru=*/false), model(2);
  saved(series({5, 3, 2}, 0.0));
  nn::save_checkpoint(saved, dir.file("model.h5"));
  const auto result = nn::load_checkpoint(model, dir.file("model.h5"), /*strict=*/false);
  CHECK(result.missing_keys == std::vector<std::string>{"recurrent_states/gru.h"});
  CHECK(result.unexpected_keys.empty());
  CHECK(identical(model.lstm.carried_state().h, saved.lstm.carried_state().h));
}

TEST_CASE("load_state returns every key in saved order with its dtype, shape and exact values", "[checkpoint]") {
  TempDir dir;
  const nn::StateDict state = mixed_state();
  nn::save_state(state, dir.file("state.h5"));
  const nn::StateDict loaded = nn::load_state(dir.file("state.h5"));
  REQUIRE(loaded.size() == state.size());
  for (std::size_t i = 0; i < state.size(); ++i) {
    INFO(state[i].first);
    CHECK(loaded[i].first == state[i].first);
    CHECK(loaded[i].second.dtype() == state[i].second.dtype());
    CHECK(loaded[i].second.shape() == state[i].second.shape());
  }
  // Bit-exact, including int64 values beyond double precision and float32's -0.
  CHECK(std::vector<float>(loaded[0].second.data<float>(), loaded[0].second.data<float>() + 6) ==
        std::vector<float>(state[0].second.data<float>(), state[0].second.data<float>() + 6));
  CHECK(std::signbit(loaded[0].second.data<float>()[4]));
  CHECK(allclose(loaded[1].second, state[1].second, 0.0, 0.0));
  CHECK(std::vector<std::int64_t>(loaded[2].second.data<std::int64_t>(), loaded[2].second.data<std::int64_t>() + 4) ==
        std::vector<std::int64_t>{-9007199254740993LL, 0, 42, 9223372036854775807LL});
  CHECK(loaded[3].second.shape() == Shape{});
  CHECK(loaded[3].second.item() == 12.5);
  CHECK(loaded[4].second.numel() == 0);
}

TEST_CASE("save_state saves non-contiguous tensors by value", "[checkpoint]") {
  TempDir dir;
  const Tensor a = Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  nn::save_state({{"t", a.transpose(0, 1)}, {"s", a.slice(1, 0, 3, 2)}}, dir.file("views.h5"));
  const nn::StateDict loaded = nn::load_state(dir.file("views.h5"));
  CHECK(loaded[0].second.shape() == Shape{3, 2});
  CHECK(loaded[0].second.to_doubles() == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(loaded[1].second.to_doubles() == std::vector<double>{1, 3, 4, 6});
}

TEST_CASE("saving over an existing checkpoint replaces it", "[checkpoint]") {
  TempDir dir;
  Net first(1), second(2), probe(3);
  nn::save_checkpoint(first, dir.file("net.h5"));
  nn::save_checkpoint(second, dir.file("net.h5"));
  nn::load_checkpoint(probe, dir.file("net.h5"));
  CHECK(same_state(nn::state_dict(probe), nn::state_dict(second)));
  CHECK(dir.entries() == std::vector<std::string>{"net.h5"});
}

// ---- atomic writes -----------------------------------------------------------------------

TEST_CASE("a save that fails midway leaves the previous checkpoint intact and no temporary file", "[checkpoint]") {
  TempDir dir;
  Net old_net(1), new_net(2), probe(3);
  const std::string path = dir.file("net.h5");
  nn::save_checkpoint(old_net, path);
  const std::string old_bytes = read_bytes(path);

  // Each step of the save: after the first dataset, after the last one, after the file is
  // complete, and just before the rename.
  const std::string stage = GENERATE(as<std::string>{}, "dataset:l1.weight", "dataset:stats.running_mean", "close", "rename");
  INFO("failing at " << stage);
  bool reached = false;
  FaultHook hook([&](std::string_view at) {
    if (at == stage) {
      reached = true;
      throw std::runtime_error("injected failure");
    }
  });
  CHECK_THROWS_WITH(nn::save_checkpoint(new_net, path), "injected failure");
  CHECK(reached);
  CHECK(nn::detail::open_hdf5_objects() == 0);
  CHECK(dir.entries() == std::vector<std::string>{"net.h5"});
  CHECK(read_bytes(path) == old_bytes);
  nn::load_checkpoint(probe, path);
  CHECK(same_state(nn::state_dict(probe), nn::state_dict(old_net)));
}

TEST_CASE("a save into a missing directory names the path and creates nothing", "[checkpoint]") {
  TempDir dir;
  Net net;
  const std::string path = dir.file("no-such-dir/net.h5");
  CHECK_THAT(error_message<UsageError>([&] { nn::save_checkpoint(net, path); }),
             Catch::Contains("save_checkpoint") && Catch::Contains(path));
  CHECK(dir.entries().empty());
}

TEST_CASE("save_state refuses a key given twice, leaving no file", "[checkpoint]") {
  TempDir dir;
  CHECK_THAT(error_message<UsageError>(
                 [&] { nn::save_state({{"a", Tensor{1.0}}, {"a", Tensor{2.0}}}, dir.file("dup.h5")); }),
             Catch::Contains("'a' appears twice"));
  CHECK(dir.entries().empty());
}

TEST_CASE("save_state refuses keys that cannot name a root dataset", "[checkpoint]") {
  TempDir dir;
  CHECK_THAT(error_message<UsageError>([&] { nn::save_state({{"enc/w", Tensor{1.0}}}, dir.file("s.h5")); }),
             Catch::Contains("'enc/w'"));
  CHECK_THROWS_AS(nn::save_state({{"", Tensor{1.0}}}, dir.file("s.h5")), UsageError);
  CHECK_THAT(error_message<UsageError>([&] { nn::save_state({{"u", Tensor()}}, dir.file("s.h5")); }),
             Catch::Contains("'u' is an undefined tensor"));
  CHECK(dir.entries().empty());
}

// ---- loading errors ----------------------------------------------------------------------

TEST_CASE("load_checkpoint names a missing key and the file", "[checkpoint]") {
  TempDir dir;
  Net net;
  const std::string path = dir.file("partial.h5");
  nn::save_state(without(nn::state_dict(net), "l2.bias"), path);
  CHECK_THAT(error_message<IndexError>([&] { nn::load_checkpoint(net, path); }),
             Catch::Contains("missing key(s) 'l2.bias'") && Catch::Contains(path));
}

TEST_CASE("load_checkpoint names an unexpected key and the file", "[checkpoint]") {
  TempDir dir;
  Net net;
  nn::StateDict state = nn::state_dict(net);
  state.emplace_back("l3.weight", Tensor{1.0});
  const std::string path = dir.file("extra.h5");
  nn::save_state(state, path);
  CHECK_THAT(error_message<IndexError>([&] { nn::load_checkpoint(net, path); }),
             Catch::Contains("unexpected key(s) 'l3.weight'") && Catch::Contains(path));
}

TEST_CASE("load_checkpoint without strict loads the matching keys and reports the others", "[checkpoint]") {
  TempDir dir;
  Net source(1), net(2);
  nn::StateDict state = without(nn::state_dict(source), "count");
  state.emplace_back("extra", Tensor{1.0});
  nn::save_state(state, dir.file("loose.h5"));
  net.buffer("count").fill_(3.0);
  const auto result = nn::load_checkpoint(net, dir.file("loose.h5"), /*strict=*/false);
  CHECK(result.missing_keys == std::vector<std::string>{"count"});
  CHECK(result.unexpected_keys == std::vector<std::string>{"extra"});
  CHECK(allclose(net.l1.param("weight").value(), source.l1.param("weight").value(), 0.0, 0.0));
  CHECK(net.buffer("count").item() == 3.0);
}

TEST_CASE("load_checkpoint names a wrong shape with both shapes and the file", "[checkpoint]") {
  TempDir dir;
  Net net;
  nn::StateDict state = nn::state_dict(net);
  state[2].second = Tensor::zeros({3, 2});  // l2.weight is (1,2)
  const std::string path = dir.file("shape.h5");
  nn::save_state(state, path);
  CHECK_THAT(error_message<ShapeError>([&] { nn::load_checkpoint(net, path); }),
             Catch::Contains("'l2.weight'") && Catch::Contains("(3,2)") && Catch::Contains("(1,2)") &&
                 Catch::Contains(path));
}

TEST_CASE("load_checkpoint refuses a dtype that differs from the module's", "[checkpoint]") {
  TempDir dir;
  Net net;
  nn::StateDict state = nn::state_dict(net);
  state[1].second = state[1].second.to(DType::Float32);  // l1.bias
  const std::string path = dir.file("dtype.h5");
  nn::save_state(state, path);
  CHECK_THAT(error_message<TypeError>([&] { nn::load_checkpoint(net, path); }),
             Catch::Contains("'l1.bias'") && Catch::Contains("float32") && Catch::Contains("float64") &&
                 Catch::Contains(path));
}

TEST_CASE("a failed load_checkpoint leaves the module unchanged", "[checkpoint]") {
  TempDir dir;
  Net source(1), net(2);
  const nn::StateDict before = nn::state_dict(net);
  nn::StateDict state = nn::state_dict(source);
  state.back().second = Tensor::zeros({5});  // stats.running_mean, checked after every parameter
  nn::save_state(state, dir.file("bad.h5"));
  CHECK_THROWS_AS(nn::load_checkpoint(net, dir.file("bad.h5")), ShapeError);
  CHECK(same_state(nn::state_dict(net), before));
}

TEST_CASE("loading a file that does not exist names it", "[checkpoint]") {
  TempDir dir;
  Net net;
  const std::string path = dir.file("missing.h5");
  CHECK_THAT(error_message<UsageError>([&] { nn::load_checkpoint(net, path); }),
             Catch::Contains(path) && Catch::Contains("No such file"));
}

TEST_CASE("loading a file that is not HDF5 names it", "[checkpoint]") {
  TempDir dir;
  Net net;
  const std::string path = dir.file("notes.h5");
  const std::string content = GENERATE(as<std::string>{}, "", "l1.weight = [1, 2, 3]\n", std::string(4096, 'x'));
  write_bytes(path, content);
  CHECK_THAT(error_message<UsageError>([&] { nn::load_checkpoint(net, path); }),
             Catch::Contains(path) && Catch::Contains("not a readable HDF5 file"));
}

TEST_CASE("loading a truncated checkpoint names the file", "[checkpoint]") {
  TempDir dir;
  Net net;
  const std::string path = dir.file("net.h5");
  nn::save_checkpoint(net, path);
  const std::string bytes = read_bytes(path);
  const double kept = GENERATE(0.05, 0.3, 0.6, 0.95);
  INFO("keeping " << kept << " of " << bytes.size() << " bytes");
  write_bytes(path, bytes.substr(0, static_cast<std::size_t>(kept * static_cast<double>(bytes.size()))));
  CHECK_THAT(error_message<UsageError>([&] { nn::load_checkpoint(net, path); }), Catch::Contains(path));
  CHECK(nn::detail::open_hdf5_objects() == 0);
}

TEST_CASE("loading a checkpoint with a damaged signature names the file", "[checkpoint]") {
  TempDir dir;
  Net net;
  const std::string path = dir.file("net.h5");
  nn::save_checkpoint(net, path);
  std::string bytes = read_bytes(path);
  bytes.replace(0, 8, "GARBAGE!");  // the superblock's signature "\x89HDF\r\n\x1a\n"
  write_bytes(path, bytes);
  CHECK_THAT(error_message<UsageError>([&] { nn::load_checkpoint(net, path); }),
             Catch::Contains(path) && Catch::Contains("not a readable HDF5 file"));
}

TEST_CASE("a damaged checkpoint fails with an error naming the file, or loads its exact values", "[checkpoint]") {
  TempDir dir;
  Net net;
  const std::string path = dir.file("net.h5");
  nn::save_checkpoint(net, path);
  const nn::StateDict saved = nn::load_state(path);
  const std::string bytes = read_bytes(path);
  // Every 16th byte: 8 bytes overwritten. Metadata and values are checksummed, so a damaged
  // byte is either caught or was unused (padding, free space); it never changes a value.
  int caught = 0;
  for (std::size_t at = 0; at + 8 <= bytes.size(); at += 16) {
    std::string damaged = bytes;
    damaged.replace(at, 8, 8, static_cast<char>(0xA5));
    write_bytes(path, damaged);
    INFO("8 bytes overwritten at " << at << " of " << bytes.size());
    try {
      const nn::StateDict loaded = nn::load_state(path);
      CHECK(same_state(loaded, saved));
    } catch (const Error& e) {
      ++caught;
      CHECK_THAT(e.what(), Catch::Contains(path));
    }
    CHECK(nn::detail::open_hdf5_objects() == 0);
  }
  CHECK(caught > 0);
}

// ---- interoperability --------------------------------------------------------------------

TEST_CASE("h5py reads a zkynet checkpoint under the same names, dtypes, shapes and values", "[checkpoint]") {
  if (!have_h5py()) {
    WARN("skipped: /usr/bin/python3 cannot import h5py (apt-get install python3-h5py)");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("state.h5");
  nn::save_state(mixed_state(), path);
  const auto [status, output] = run_python(dir, R"PY(
import sys
import h5py
import numpy as np

with h5py.File(sys.argv[1], "r") as f:
    assert sorted(f.keys()) == sorted(["enc.w32", "enc.w64", "ids", "step", "empty"]), list(f.keys())
    w32 = f["enc.w32"][()]
    assert w32.dtype == np.float32 and w32.shape == (2, 3), (w32.dtype, w32.shape)
    assert np.array_equal(w32, np.array([[0.1, -2.5, 3.0e-8], [1.0e30, -0.0, 7.0]], dtype=np.float32)), w32
    assert np.signbit(w32[1, 1])
    w64 = f["enc.w64"][()]
    assert w64.dtype == np.float64 and w64.shape == (2, 2, 1), (w64.dtype, w64.shape)
    assert np.array_equal(w64.ravel(), [1.0 / 3.0, -2.0e-300, 6.02214076e23, 0.5]), w64
    ids = f["ids"][()]
    assert ids.dtype == np.int64 and ids.shape == (4,), (ids.dtype, ids.shape)
    assert ids.tolist() == [-9007199254740993, 0, 42, 9223372036854775807], ids
    step = f["step"]
    assert step.shape == () and step.dtype == np.float64, (step.shape, step.dtype)
    assert step[()] == 12.5
    empty = f["empty"]
    assert empty.shape == (0, 3) and empty.dtype == np.float32, (empty.shape, empty.dtype)
print("ok")
)PY",
                                           path);
  INFO(output);
  CHECK(status == 0);
  CHECK_THAT(output, Catch::Contains("ok"));
}

TEST_CASE("zkynet loads a file written by h5py, widening integers, in name order", "[checkpoint]") {
  if (!have_h5py()) {
    WARN("skipped: /usr/bin/python3 cannot import h5py (apt-get install python3-h5py)");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("from_h5py.h5");
  const auto [status, output] = run_python(dir, R"PY(
import sys
import h5py
import numpy as np

with h5py.File(sys.argv[1], "w") as f:
    f["l1.weight"] = np.arange(6, dtype=np.float64).reshape(2, 3) / 4
    f["a.counts"] = np.array([3, -1], dtype=np.int32)
    f["scale"] = np.float32(2.5)
print("ok")
)PY",
                                           path);
  INFO(output);
  REQUIRE(status == 0);
  const nn::StateDict state = nn::load_state(path);
  REQUIRE(state.size() == 3);
  // h5py does not track creation order: name order.
  CHECK(state[0].first == "a.counts");
  CHECK(state[0].second.dtype() == DType::Int64);
  CHECK(state[0].second.to_doubles() == std::vector<double>{3, -1});
  CHECK(state[1].first == "l1.weight");
  CHECK(state[1].second.shape() == Shape{2, 3});
  CHECK(state[1].second.to_doubles() == std::vector<double>{0, 0.25, 0.5, 0.75, 1.0, 1.25});
  CHECK(state[2].first == "scale");
  CHECK(state[2].second.dtype() == DType::Float32);
  CHECK(state[2].second.shape() == Shape{});
  CHECK(state[2].second.item() == 2.5);
}

TEST_CASE("load_state names what it cannot hold: unsupported types and groups", "[checkpoint]") {
  if (!have_h5py()) {
    WARN("skipped: /usr/bin/python3 cannot import h5py (apt-get install python3-h5py)");
    return;
  }
  TempDir dir;
  const auto [status, output] = run_python(dir, R"PY(
import sys
import h5py
import numpy as np

base = sys.argv[1]
with h5py.File(base + "/text.h5", "w") as f:
    f["label"] = "cat"
with h5py.File(base + "/u64.h5", "w") as f:
    f["big"] = np.array([2**63], dtype=np.uint64)
with h5py.File(base + "/bool.h5", "w") as f:
    f["mask"] = np.array([True, False])
with h5py.File(base + "/group.h5", "w") as f:
    f["opt/lr"] = 0.1
print("ok")
)PY",
                                           fs::path(dir.file("x")).parent_path().string());
  INFO(output);
  REQUIRE(status == 0);
  CHECK_THAT(error_message<TypeError>([&] { nn::load_state(dir.file("text.h5")); }),
             Catch::Contains("'label'") && Catch::Contains("string") && Catch::Contains("text.h5"));
  CHECK_THAT(error_message<TypeError>([&] { nn::load_state(dir.file("u64.h5")); }),
             Catch::Contains("'big'") && Catch::Contains("uint64"));
  CHECK_THAT(error_message<TypeError>([&] { nn::load_state(dir.file("bool.h5")); }),
             Catch::Contains("'mask'") && Catch::Contains("enum"));
  CHECK_THAT(error_message<UsageError>([&] { nn::load_state(dir.file("group.h5")); }),
             Catch::Contains("'opt'") && Catch::Contains("not a dataset") && Catch::Contains("group.h5"));
}

TEST_CASE("h5py reads a checkpoint's carried states in the recurrent_states group, h5py.Empty for none",
          "[checkpoint]") {
  if (!have_h5py()) {
    WARN("skipped: /usr/bin/python3 cannot import h5py (apt-get install python3-h5py)");
    return;
  }
  TempDir dir;
  Forecaster model;
  model.lstm(series({5, 3, 2}, 0.0));  // the GRU carries nothing yet
  nn::save_checkpoint(model, dir.file("model.h5"));
  const auto [status, output] = run_python(dir, R"PY(
import sys
import h5py

with h5py.File(sys.argv[1], "r") as f:
    states = f["recurrent_states"]
    assert list(states.keys()) == ["lstm.h", "lstm.c", "gru.h"], list(states.keys())
    assert states["lstm.h"].shape == (2, 3, 5) and states["lstm.h"].dtype == "float64"
    assert isinstance(states["gru.h"][()], h5py.Empty), states["gru.h"][()]
    assert "lstm.weight_ih_l0" in f
print("ok")
)PY",
                                           dir.file("model.h5"));
  INFO(output);
  CHECK(status == 0);
  CHECK_THAT(output, Catch::Contains("ok"));
}

TEST_CASE("load_checkpoint names a carried state of the wrong shape with both shapes, and changes nothing",
          "[checkpoint]") {
  if (!have_h5py()) {
    WARN("skipped: /usr/bin/python3 cannot import h5py (apt-get install python3-h5py)");
    return;
  }
  TempDir dir;
  Forecaster saved(1), model(2);
  saved(series({5, 3, 2}, 0.0));
  nn::save_checkpoint(saved, dir.file("model.h5"));
  const auto [status, output] = run_python(dir, R"PY(
import sys
import h5py
import numpy as np

with h5py.File(sys.argv[1], "r+") as f:
    del f["recurrent_states/gru.h"]
    f["recurrent_states/gru.h"] = np.zeros((1, 3, 6))
print("ok")
)PY",
                                           dir.file("model.h5"));
  INFO(output);
  REQUIRE(status == 0);
  const nn::StateDict before = nn::state_dict(model);
  CHECK_THAT(error_message<ShapeError>([&] { nn::load_checkpoint(model, dir.file("model.h5")); }),
             Catch::Contains("model.h5'): recurrent_states: 'gru.h': GRU(5, 4): carried h (1,3,6) must be "
                             "(num_layers, batch, hidden_size) = (1,batch,4)"));
  CHECK(same_state(nn::state_dict(model), before));
  CHECK_FALSE(model.lstm.carried_state().h.defined());
}

TEST_CASE("a crafted checkpoint whose dataset size overflows int64 bytes is refused by name", "[checkpoint]") {
  if (!have_h5py()) {
    WARN("skipped: /usr/bin/python3 cannot import h5py (apt-get install python3-h5py)");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("huge.h5");
  // Chunked and never written: the file is small, its declared shape (2^61, 8) float64 is 2^67 bytes.
  const auto [status, output] = run_python(dir, R"PY(
import sys
import h5py
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("w", shape=(2**61, 8), dtype="f8", chunks=(1, 8))
print("ok")
)PY",
                                           path);
  INFO(output);
  REQUIRE(status == 0);
  const std::string message = error_message<ShapeError>([&] { nn::load_state(path); });
  CHECK_THAT(message, Catch::Matchers::Contains("dataset 'w'"));
  CHECK_THAT(message, Catch::Matchers::Contains("2^63 bytes"));
}

TEST_CASE("a save removes the temporaries that killed saves of this host left behind", "[checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("model.h5");
  char host[256] = {};
  REQUIRE(::gethostname(host, sizeof host - 1) == 0);
  std::int64_t pid_max = 0;
  std::ifstream("/proc/sys/kernel/pid_max") >> pid_max;
  REQUIRE(pid_max > 0);
  const std::string dead = std::to_string(pid_max + 1);  // no process can have it
  const std::string live = std::to_string(::getpid());
  const std::vector<std::string> stale = {"model.h5.tmp." + std::string(host) + "." + dead + ".0",
                                          "model.h5.tmp." + dead + ".7"};  // the format before hosts were named
  const std::vector<std::string> kept = {"model.h5.tmp." + std::string(host) + "." + live + ".999",
                                         "model.h5.tmp.another-host." + dead + ".0", "other.h5.tmp." + dead + ".0"};
  for (const auto& name : stale) std::ofstream(dir.file(name)) << "partial";
  for (const auto& name : kept) std::ofstream(dir.file(name)) << "partial";
  nn::save_state({{"w", Tensor{1.0, 2.0}}}, path);
  for (const auto& name : stale) CHECK_FALSE(fs::exists(dir.file(name)));
  for (const auto& name : kept) CHECK(fs::exists(dir.file(name)));
  CHECK(nn::load_state(path).size() == 1);
}

// ---- devices: load copies into the module's own tensors (tests/cuda/test_training_tools.cpp
// checks a CUDA model) ----------------------------------------------------------------------

TEST_CASE("load_checkpoint writes into the module's own tensors, so each keeps its device and storage",
          "[checkpoint]") {
  TempDir dir;
  Net trained(1), fresh(2);
  nn::save_checkpoint(trained, dir.file("trained.h5"));
  std::vector<Tensor> before;
  for (const auto& [name, p] : fresh.named_parameters()) before.push_back(p.value());
  nn::load_checkpoint(fresh, dir.file("trained.h5"));
  std::size_t i = 0;
  for (const auto& [name, p] : fresh.named_parameters()) {
    INFO(name);
    CHECK(p.value().shares_storage_with(before[i]));
    CHECK(p.value().device() == before[i].device());
    ++i;
  }
  CHECK(same_state(nn::state_dict(fresh), nn::state_dict(trained)));
}

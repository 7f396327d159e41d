#include <zkynet/data/dataloader.h>
#include <zkynet/data/dataset.h>
#include <zkynet/data/hdf5_dataset.h>
#include <zkynet/data/sequence.h>
#include <zkynet/nn/checkpoint.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <vector>

using namespace zkynet;
using zkynet::testing::error_message;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("zkynet-data-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// n samples: x[i] = {i, 100 + i} (float64), y[i] = i (int64), so a batch's y lists its samples.
data::TensorDataset numbered(std::int64_t n) {
  std::vector<double> x;
  std::vector<std::int64_t> y;
  for (std::int64_t i = 0; i < n; ++i) {
    x.push_back(static_cast<double>(i));
    x.push_back(100.0 + static_cast<double>(i));
    y.push_back(i);
  }
  return data::TensorDataset({Tensor::from_vector(x, {n, 2}), Tensor::from_vector(y, {n})});
}

std::vector<std::int64_t> ints(const Tensor& t) {
  const Tensor c = t.contiguous();
  return {c.data<std::int64_t>(), c.data<std::int64_t>() + c.numel()};
}

// The sample ids of every batch of one epoch (field 1 of numbered()).
std::vector<std::vector<std::int64_t>> epoch_ids(data::DataLoader& loader) {
  std::vector<std::vector<std::int64_t>> out;
  for (const data::Batch& b : loader) out.push_back(ints(b[1]));
  return out;
}

bool same_batch(const data::Batch& a, const data::Batch& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t f = 0; f < a.size(); ++f) {
    if (a[f].dtype() != b[f].dtype() || !allclose(a[f], b[f], 0.0, 0.0)) return false;
  }
  return true;
}

// A dataset computed on demand, to exercise Dataset's default get_batch.
class Squares : public data::Dataset {
 public:
  explicit Squares(bool ragged = false) : ragged_(ragged) {}
  std::int64_t size() const override { return 5; }
  data::Sample get(std::int64_t i) const override {
    data::detail::check_index(i, size(), "Squares");
    const double v = static_cast<double>(i * i);
    const std::int64_t len = ragged_ ? i + 1 : 2;
    return {Tensor::full({len}, v), Tensor::from_vector<std::int64_t>({i}, {})};
  }

 private:
  bool ragged_;
};

// (features, samples, time) with x[f][s][t] = 100 f + 10 s + t: every value names its place.
Tensor series(std::int64_t features, std::int64_t samples, std::int64_t time) {
  std::vector<double> v;
  for (std::int64_t f = 0; f < features; ++f) {
    for (std::int64_t s = 0; s < samples; ++s) {
      for (std::int64_t t = 0; t < time; ++t) v.push_back(static_cast<double>(100 * f + 10 * s + t));
    }
  }
  return Tensor::from_vector(v, {features, samples, time});
}

// The float32 / int64 data of the HDF5 tests: 103 rows, so batches of 10 leave a tail of 3.
struct RowData {
  Tensor x, y;
};
RowData row_data() {
  Generator gen(7);
  Tensor x = Tensor::randn({103, 3, 2}, gen, DType::Float32);
  std::vector<std::int64_t> y(103);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int64_t>(i * i) - 50;
  return {x, Tensor::from_vector(y, {103})};
}

}  // namespace

// ---- TensorDataset -----------------------------------------------------------------------

TEST_CASE("TensorDataset's sample i is row i of every tensor, as views", "[data]") {
  const Tensor x = Tensor{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}};
  const Tensor y = Tensor::from_vector<std::int64_t>({7, 8, 9}, {3});
  data::TensorDataset ds({x, y});
  CHECK(ds.size() == 3);
  const data::Sample s = ds.get(1);
  REQUIRE(s.size() == 2);
  CHECK(s[0].shape() == Shape{2});
  CHECK(s[0].to_doubles() == std::vector<double>{3.0, 4.0});
  CHECK(s[1].shape() == Shape{});
  CHECK(s[1].dtype() == DType::Int64);
  CHECK(s[1].item() == 8.0);
  CHECK(s[0].shares_storage_with(x));
}

TEST_CASE("TensorDataset refuses tensors whose first axes differ, and 0-d tensors", "[data]") {
  CHECK_THAT(error_message<ShapeError>([] { data::TensorDataset({Tensor::zeros({4, 2}), Tensor::zeros({3})}); }),
             Catch::Contains("(4,2)") && Catch::Contains("(3,)"));
  CHECK_THROWS_AS(data::TensorDataset({Tensor::scalar(1.0)}), ShapeError);
  CHECK_THROWS_AS(data::TensorDataset(std::vector<Tensor>{}), UsageError);
}

TEST_CASE("TensorDataset refuses an index out of range", "[data]") {
  data::TensorDataset ds = numbered(4);
  CHECK_THAT(error_message<IndexError>([&] { ds.get(4); }), Catch::Contains("index 4") && Catch::Contains("4 samples"));
  CHECK_THROWS_AS(ds.get(-1), IndexError);
  const std::vector<std::int64_t> bad{0, 9};
  CHECK_THROWS_AS(ds.get_batch(bad), IndexError);
}

TEST_CASE("TensorDataset::get_batch stacks the rows in the order given, repeats included", "[data]") {
  data::TensorDataset ds = numbered(6);
  const std::vector<std::int64_t> idx{4, 5, 0, 2, 2};
  const data::Batch b = ds.get_batch(idx);
  REQUIRE(b.size() == 2);
  CHECK(b[0].shape() == Shape{5, 2});
  CHECK(b[0].to_doubles() == std::vector<double>{4, 104, 5, 105, 0, 100, 2, 102, 2, 102});
  CHECK(b[1].dtype() == DType::Int64);
  CHECK(ints(b[1]) == idx);
}

TEST_CASE("TensorDataset copies a non-contiguous tensor's rows by value", "[data]") {
  const Tensor t = Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}.transpose(0, 1);  // rows (1,4), (2,5), (3,6)
  data::TensorDataset ds({t});
  const std::vector<std::int64_t> idx{2, 0};
  CHECK(ds.get_batch(idx)[0].to_doubles() == std::vector<double>{3, 6, 1, 4});
  CHECK(ds.get(1)[0].to_doubles() == std::vector<double>{2, 5});
}

TEST_CASE("Dataset's default get_batch stacks get()'s samples", "[data]") {
  Squares ds;
  const std::vector<std::int64_t> idx{3, 1};
  const data::Batch b = ds.get_batch(idx);
  CHECK(b[0].shape() == Shape{2, 2});
  CHECK(b[0].to_doubles() == std::vector<double>{9, 9, 1, 1});
  CHECK(b[1].shape() == Shape{2});
  CHECK(ints(b[1]) == std::vector<std::int64_t>{3, 1});
}

TEST_CASE("Dataset's default get_batch refuses samples of different shapes", "[data]") {
  Squares ragged(/*ragged=*/true);
  const std::vector<std::int64_t> idx{0, 2};
  CHECK_THAT(error_message<ShapeError>([&] { ragged.get_batch(idx); }),
             Catch::Contains("sample 1") && Catch::Contains("(3,)") && Catch::Contains("(1,)"));
}

// ---- DataLoader --------------------------------------------------------------------------

TEST_CASE("DataLoader without shuffling gives consecutive batches, the last one smaller", "[data]") {
  data::TensorDataset ds = numbered(10);
  data::DataLoader loader(ds, {.batch_size = 4});
  CHECK(loader.size() == 3);
  std::vector<data::Batch> batches;
  for (const data::Batch& b : loader) batches.push_back(b);
  REQUIRE(batches.size() == 3);
  CHECK(ints(batches[0][1]) == std::vector<std::int64_t>{0, 1, 2, 3});
  CHECK(ints(batches[2][1]) == std::vector<std::int64_t>{8, 9});
  CHECK(batches[1][0].shape() == Shape{4, 2});
  CHECK(batches[1][0].to_doubles() == std::vector<double>{4, 104, 5, 105, 6, 106, 7, 107});
  CHECK(batches[2][0].shape() == Shape{2, 2});
}

TEST_CASE("DataLoader with drop_last leaves out the smaller last batch", "[data]") {
  data::TensorDataset ds = numbered(10);
  data::DataLoader loader(ds, {.batch_size = 4, .drop_last = true});
  CHECK(loader.size() == 2);
  const auto ids = epoch_ids(loader);
  CHECK(ids == std::vector<std::vector<std::int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}});
}

TEST_CASE("DataLoader with drop_last keeps a last batch that is full", "[data]") {
  data::TensorDataset ds = numbered(8);
  data::DataLoader loader(ds, {.batch_size = 4, .drop_last = true});
  CHECK(epoch_ids(loader).size() == 2);
}

TEST_CASE("DataLoader shuffling visits every sample once per epoch, in a new order each epoch", "[data]") {
  data::TensorDataset ds = numbered(50);
  data::DataLoader loader(ds, {.batch_size = 8, .shuffle = true, .seed = 3});
  std::vector<std::vector<std::int64_t>> orders;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<std::int64_t> seen;
    for (const auto& ids : epoch_ids(loader)) seen.insert(seen.end(), ids.begin(), ids.end());
    std::vector<std::int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> all(50);
    std::iota(all.begin(), all.end(), 0);
    CHECK(sorted == all);
    orders.push_back(seen);
  }
  CHECK(orders[0] != orders[1]);
  CHECK(orders[1] != orders[2]);
  std::vector<std::int64_t> identity(50);
  std::iota(identity.begin(), identity.end(), 0);
  CHECK(orders[0] != identity);
}

TEST_CASE("DataLoader shuffling is reproducible from the seed, epoch by epoch", "[data]") {
  data::TensorDataset ds = numbered(30);
  data::DataLoader a(ds, {.batch_size = 7, .shuffle = true, .seed = 11});
  data::DataLoader b(ds, {.batch_size = 7, .shuffle = true, .seed = 11});
  data::DataLoader other(ds, {.batch_size = 7, .shuffle = true, .seed = 12});
  const auto a0 = epoch_ids(a), a1 = epoch_ids(a);
  CHECK(epoch_ids(b) == a0);
  CHECK(epoch_ids(b) == a1);
  CHECK(epoch_ids(other) != a0);
  // set_epoch replays an epoch, to resume a run.
  data::DataLoader resumed(ds, {.batch_size = 7, .shuffle = true, .seed = 11});
  resumed.set_epoch(1);
  CHECK(epoch_ids(resumed) == a1);
  CHECK(resumed.epoch() == 2);
}

TEST_CASE("DataLoader's shuffle is pinned: the same order on every platform", "[data]") {
  data::TensorDataset ds = numbered(10);
  data::DataLoader loader(ds, {.batch_size = 10, .shuffle = true, .seed = 42});
  // mt19937_64, seed_seq and the Fisher-Yates shuffle are all specified exactly; this order
  // changes only if the algorithm does (which would break resumed runs).
  CHECK(loader.order(0) == std::vector<std::int64_t>{0, 6, 5, 1, 3, 9, 7, 8, 4, 2});
}

TEST_CASE("DataLoader batches hold the samples' values for every field", "[data]") {
  data::TensorDataset ds = numbered(9);
  data::DataLoader loader(ds, {.batch_size = 4, .shuffle = true, .seed = 5});
  for (const data::Batch& b : loader) {
    const std::vector<std::int64_t> ids = ints(b[1]);
    const std::vector<double> x = b[0].to_doubles();
    REQUIRE(x.size() == 2 * ids.size());
    for (std::size_t j = 0; j < ids.size(); ++j) {
      CHECK(x[2 * j] == static_cast<double>(ids[j]));
      CHECK(x[2 * j + 1] == 100.0 + static_cast<double>(ids[j]));
    }
  }
}

TEST_CASE("DataLoader refuses a batch size below 1", "[data]") {
  data::TensorDataset ds = numbered(3);
  CHECK_THROWS_AS(data::DataLoader(ds, {.batch_size = 0}), UsageError);
}

TEST_CASE("DataLoader over an empty dataset has no batches", "[data]") {
  data::TensorDataset ds({Tensor::zeros({0, 3})});
  data::DataLoader loader(ds, {.batch_size = 2, .shuffle = true});
  CHECK(loader.size() == 0);
  CHECK(loader.begin() == loader.end());
}

// ---- HDF5Dataset -------------------------------------------------------------------------

TEST_CASE("HDF5Dataset gives the same samples and batches as TensorDataset on the same data", "[data]") {
  TempDir dir;
  const RowData d = row_data();
  data::write_hdf5(dir.file("rows.h5"), {{"x", d.x}, {"y", d.y}}, {.chunk_rows = 16});
  data::HDF5Dataset file(dir.file("rows.h5"), {"x", "y"});
  data::TensorDataset memory({d.x, d.y});
  REQUIRE(file.size() == 103);
  for (std::int64_t i : {0, 1, 57, 102}) {
    INFO("sample " << i);
    CHECK(same_batch(file.get(i), memory.get(i)));
  }
  CHECK(file.get(5)[0].dtype() == DType::Float32);
  CHECK(file.get(5)[1].dtype() == DType::Int64);
  data::DataLoader from_file(file, {.batch_size = 10, .shuffle = true, .seed = 9});
  data::DataLoader from_memory(memory, {.batch_size = 10, .shuffle = true, .seed = 9});
  std::vector<data::Batch> a, b;
  for (const auto& batch : from_file) a.push_back(batch);
  for (const auto& batch : from_memory) b.push_back(batch);
  REQUIRE(a.size() == 11);
  REQUIRE(b.size() == 11);
  for (std::size_t k = 0; k < a.size(); ++k) {
    INFO("batch " << k);
    CHECK(same_batch(a[k], b[k]));
  }
}

TEST_CASE("HDF5Dataset::get_batch handles unsorted and repeated indices", "[data]") {
  TempDir dir;
  const RowData d = row_data();
  data::write_hdf5(dir.file("rows.h5"), {{"x", d.x}, {"y", d.y}}, {.chunk_rows = 16});
  data::HDF5Dataset file(dir.file("rows.h5"), {"x", "y"});
  data::TensorDataset memory({d.x, d.y});
  const std::vector<std::int64_t> idx{100, 5, 2, 5, 3, 4, 0};
  CHECK(same_batch(file.get_batch(idx), memory.get_batch(idx)));
  CHECK(file.read_stats().rows == 2 * 6);  // 6 distinct rows, read once each
}

TEST_CASE("HDF5Dataset reads only the rows of the batch, one read per dataset", "[data]") {
  TempDir dir;
  const RowData d = row_data();
  data::write_hdf5(dir.file("rows.h5"), {{"x", d.x}, {"y", d.y}}, {.chunk_rows = 16});
  data::HDF5Dataset file(dir.file("rows.h5"), {"x", "y"});
  CHECK(file.read_stats().reads == 0);  // opening reads no rows
  data::DataLoader loader(file, {.batch_size = 8});
  auto it = loader.begin();
  CHECK((*it)[0].shape() == Shape{8, 3, 2});
  CHECK(file.read_stats().reads == 2);
  CHECK(file.read_stats().rows == 2 * 8);
}

TEST_CASE("HDF5Dataset reads each row once per shuffled epoch", "[data]") {
  TempDir dir;
  const RowData d = row_data();
  data::write_hdf5(dir.file("rows.h5"), {{"x", d.x}, {"y", d.y}}, {.chunk_rows = 16});
  data::HDF5Dataset file(dir.file("rows.h5"), {"x", "y"});
  data::DataLoader loader(file, {.batch_size = 10, .shuffle = true, .seed = 2});
  std::set<std::int64_t> seen;
  for (const data::Batch& b : loader) {
    for (std::int64_t y : ints(b[1])) seen.insert(y);
  }
  CHECK(seen.size() == 103);
  CHECK(file.read_stats().rows == 2 * 103);
  CHECK(file.read_stats().reads == 2 * 11);
}

TEST_CASE("HDF5Dataset keeps its file open for its life and closes it after", "[data]") {
  TempDir dir;
  data::write_hdf5(dir.file("rows.h5"), {{"x", Tensor::zeros({4, 2})}});
  {
    data::HDF5Dataset file(dir.file("rows.h5"), {"x"});
    CHECK(nn::detail::open_hdf5_objects() > 0);
  }
  CHECK(nn::detail::open_hdf5_objects() == 0);
}

TEST_CASE("HDF5Dataset reads files in write_hdf5's default chunks and save_state's single chunks", "[data]") {
  TempDir dir;
  const RowData d = row_data();
  data::write_hdf5(dir.file("auto.h5"), {{"x", d.x}, {"y", d.y}});
  nn::save_state({{"x", d.x}, {"y", d.y}}, dir.file("one_chunk.h5"));
  data::TensorDataset memory({d.x, d.y});
  const std::vector<std::int64_t> idx{7, 8, 9, 1, 60};
  for (const std::string name : {"auto.h5", "one_chunk.h5"}) {
    INFO(name);
    data::HDF5Dataset file(dir.file(name), {"x", "y"});
    CHECK(same_batch(file.get_batch(idx), memory.get_batch(idx)));
  }
}

TEST_CASE("HDF5Dataset names a dataset the file lacks", "[data]") {
  TempDir dir;
  data::write_hdf5(dir.file("rows.h5"), {{"x", Tensor::zeros({4, 2})}});
  CHECK_THAT(error_message<IndexError>([&] { data::HDF5Dataset(dir.file("rows.h5"), {"x", "labels"}); }),
             Catch::Contains("'labels'") && Catch::Contains("rows.h5"));
}

TEST_CASE("HDF5Dataset refuses datasets with different numbers of rows, and 0-d ones", "[data]") {
  TempDir dir;
  data::write_hdf5(dir.file("rows.h5"),
                   {{"x", Tensor::zeros({4, 2})}, {"y", Tensor::zeros({5})}, {"s", Tensor::scalar(1.0)}});
  CHECK_THAT(error_message<ShapeError>([&] { data::HDF5Dataset(dir.file("rows.h5"), {"x", "y"}); }),
             Catch::Contains("'y'") && Catch::Contains("(5,)") && Catch::Contains("(4,2)"));
  CHECK_THAT(error_message<ShapeError>([&] { data::HDF5Dataset(dir.file("rows.h5"), {"s"}); }),
             Catch::Contains("'s' is 0-d"));
  CHECK(nn::detail::open_hdf5_objects() == 0);  // a failed constructor closes what it opened
}

TEST_CASE("HDF5Dataset names a file that is missing or not HDF5", "[data]") {
  TempDir dir;
  CHECK_THAT(error_message<UsageError>([&] { data::HDF5Dataset(dir.file("none.h5"), {"x"}); }),
             Catch::Contains("none.h5"));
  {
    std::FILE* f = std::fopen(dir.file("text.h5").c_str(), "w");
    std::fputs("not hdf5\n", f);
    std::fclose(f);
  }
  CHECK_THAT(error_message<UsageError>([&] { data::HDF5Dataset(dir.file("text.h5"), {"x"}); }),
             Catch::Contains("text.h5") && Catch::Contains("not a readable HDF5 file"));
}

// ---- whole fields, read in boxes ---------------------------------------------------------

TEST_CASE("TensorDataset::read_box copies the box out of a field", "[data]") {
  data::TensorDataset ds({series(2, 3, 4)});
  const data::Range box[] = {{1, 2}, {0, 2}, {2, 4}};
  const Tensor block = ds.read_box(0, box);
  CHECK(block.shape() == Shape{1, 2, 2});
  CHECK(block.to_doubles() == std::vector<double>{102, 103, 112, 113});
}

TEST_CASE("TensorDataset::read_box of whole rows is a copy, not a view of the data", "[data]") {
  const Tensor x = Tensor{{1.0, 2.0}, {3.0, 4.0}};
  data::TensorDataset ds({x});
  const data::Range box[] = {{0, 1}, {0, 2}};
  Tensor block = ds.read_box(0, box);
  block.copy_(Tensor{{9.0, 9.0}});
  CHECK(x.to_doubles() == std::vector<double>{1, 2, 3, 4});
}

TEST_CASE("Dataset's default read_box reads the box's rows through get_batch", "[data]") {
  Squares ds;  // sample i: {(i*i, i*i), i}
  CHECK(ds.field_shapes() == std::vector<Shape>{{5, 2}, {5}});
  const data::Range box[] = {{2, 4}, {1, 2}};
  CHECK(ds.read_box(0, box).to_doubles() == std::vector<double>{4, 9});
}

TEST_CASE("read_box refuses a field, a range or a rank out of bounds", "[data]") {
  data::TensorDataset ds({series(2, 3, 4)});
  const data::Range good[] = {{0, 2}, {0, 3}, {0, 4}};
  const data::Range past_end[] = {{0, 2}, {0, 4}, {0, 4}};
  const data::Range reversed[] = {{0, 2}, {2, 1}, {0, 4}};
  const data::Range two_axes[] = {{0, 2}, {0, 3}};
  CHECK_THAT(error_message<IndexError>([&] { ds.read_box(1, good); }), Catch::Contains("field 1"));
  CHECK_THAT(error_message<IndexError>([&] { ds.read_box(0, past_end); }),
             Catch::Contains("[0, 4) of axis 1") && Catch::Contains("(2,3,4)"));
  CHECK_THROWS_AS(ds.read_box(0, reversed), IndexError);
  CHECK_THAT(error_message<ShapeError>([&] { ds.read_box(0, two_axes); }), Catch::Contains("2 ranges"));
}

TEST_CASE("fields_of lists every field of a dataset", "[data]") {
  const data::TensorDataset ds = numbered(4);
  const std::vector<data::FieldRef> fields = data::fields_of(ds);
  REQUIRE(fields.size() == 2);
  CHECK(fields[1].dataset == &ds);
  CHECK(fields[1].field == 1);
}

TEST_CASE("HDF5Dataset::read_box reads the box alone, in one read", "[data]") {
  TempDir dir;
  const Tensor x = series(3, 4, 10);
  data::write_hdf5(dir.file("series.h5"), {{"x", x}}, {.chunk_rows = 1});
  data::HDF5Dataset file(dir.file("series.h5"), {"x"});
  CHECK(file.field_shapes() == std::vector<Shape>{{3, 4, 10}});
  const data::Range box[] = {{0, 3}, {1, 3}, {5, 8}};
  CHECK(allclose(file.read_box(0, box), x.slice(1, 1, 3).slice(2, 5, 8).contiguous(), 0.0, 0.0));
  CHECK(file.read_stats().reads == 1);
  const data::Range past_end[] = {{0, 3}, {0, 5}, {0, 10}};
  CHECK_THROWS_AS(file.read_box(0, past_end), IndexError);
}

// ---- sequences ---------------------------------------------------------------------------

TEST_CASE("SequenceBatches cuts (features, samples, time) into time-major windows", "[data]") {
  // x[f][s][t] = 100 f + 10 s + t; 2 features, 2 streams, 5 steps; windows of 2 steps.
  data::SequenceBatches seqs({series(2, 2, 5)}, {.seqsize = 2});
  REQUIRE(seqs.size() == 3);
  const data::SequenceWindow w0 = seqs[0];
  CHECK(w0.tensors[0].shape() == Shape{2, 2, 2});  // (seq, batch, features)
  // out[t][b][f] = 100 f + 10 b + t
  CHECK(w0.tensors[0].to_doubles() == std::vector<double>{0, 100, 10, 110, 1, 101, 11, 111});
  CHECK(w0.start == 0);
  const data::SequenceWindow w1 = seqs[1];
  CHECK(w1.start == 2);
  CHECK(w1.tensors[0].to_doubles() == std::vector<double>{2, 102, 12, 112, 3, 103, 13, 113});
}

TEST_CASE("SequenceBatches keeps a shorter last window by default", "[data]") {
  data::SequenceBatches seqs({series(2, 2, 5)}, {.seqsize = 2});
  const data::SequenceWindow last = seqs[2];
  CHECK(last.start == 4);
  CHECK(last.tensors[0].shape() == Shape{1, 2, 2});
  CHECK(last.tensors[0].to_doubles() == std::vector<double>{4, 104, 14, 114});
}

TEST_CASE("SequenceBatches with drop_short_window drops the shorter last window", "[data]") {
  data::SequenceBatches seqs({series(2, 2, 5)}, {.seqsize = 2, .drop_short_window = true});
  CHECK(seqs.size() == 2);
  for (const data::SequenceWindow& w : seqs) CHECK(w.tensors[0].size(0) == 2);
}

TEST_CASE("SequenceBatches goes through each group of streams' windows in time order", "[data]") {
  // 3 streams in groups of 2: group 0 = streams {0, 1}, group 1 = stream {2} (kept, smaller).
  data::SequenceBatches seqs({series(1, 3, 4)}, {.seqsize = 2, .batch_size = 2});
  REQUIRE(seqs.size() == 4);
  std::vector<std::pair<std::int64_t, std::int64_t>> order;
  for (const data::SequenceWindow& w : seqs) order.emplace_back(w.batch_index, w.window_index);
  CHECK(order == std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 0}, {0, 1}, {1, 0}, {1, 1}});
  CHECK(seqs[1].tensors[0].to_doubles() == std::vector<double>{2, 12, 3, 13});
  CHECK(seqs[3].tensors[0].shape() == Shape{2, 1, 1});
  CHECK(seqs[3].tensors[0].to_doubles() == std::vector<double>{22, 23});
}

TEST_CASE("SequenceBatches with drop_short_batch drops the smaller last group of streams", "[data]") {
  data::SequenceBatches seqs({series(1, 3, 4)}, {.seqsize = 2, .batch_size = 2, .drop_short_batch = true});
  CHECK(seqs.groups() == 1);
  CHECK(seqs.size() == 2);
}

TEST_CASE("SequenceBatches windows every tensor alike, each with its own features", "[data]") {
  data::SequenceBatches seqs({series(3, 2, 4), series(1, 2, 4).to(DType::Float32)}, {.seqsize = 3});
  const data::SequenceWindow w = seqs[0];
  REQUIRE(w.tensors.size() == 2);
  CHECK(w.tensors[0].shape() == Shape{3, 2, 3});
  CHECK(w.tensors[1].shape() == Shape{3, 2, 1});
  CHECK(w.tensors[1].dtype() == DType::Float32);
  CHECK(w.tensors[1].to_doubles() == std::vector<double>{0, 10, 1, 11, 2, 12});
}

TEST_CASE("SequenceBatches with split_series cuts a long series into parallel streams", "[data]") {
  // One series of 7 steps, batch_size 2: two streams of 3 steps (t 0-2 and t 3-5); t = 6 is dropped.
  data::SequenceBatches seqs({series(2, 1, 7)}, {.seqsize = 2, .batch_size = 2, .split_series = true});
  CHECK(seqs.streams() == 2);
  CHECK(seqs.steps() == 3);
  REQUIRE(seqs.size() == 2);
  CHECK(seqs[0].tensors[0].to_doubles() == std::vector<double>{0, 100, 3, 103, 1, 101, 4, 104});
  CHECK(seqs[1].tensors[0].to_doubles() == std::vector<double>{2, 102, 5, 105});
}

TEST_CASE("SequenceBatches with split_series orders streams sample by sample", "[data]") {
  // 2 samples x 2 segments: streams (s0, t0-1), (s0, t2-3), (s1, t0-1), (s1, t2-3).
  data::SequenceBatches seqs({series(1, 2, 4)}, {.seqsize = 2, .batch_size = 4, .split_series = true});
  REQUIRE(seqs.size() == 1);
  CHECK(seqs[0].tensors[0].shape() == Shape{2, 4, 1});
  CHECK(seqs[0].tensors[0].to_doubles() == std::vector<double>{0, 2, 10, 12, 1, 3, 11, 13});
}

TEST_CASE("SequenceBatches refuses tensors that are not (features, samples, time) alike", "[data]") {
  CHECK_THAT(error_message<ShapeError>([] { data::SequenceBatches({Tensor::zeros({2, 3})}, {.seqsize = 2}); }),
             Catch::Contains("(2,3)") && Catch::Contains("(features, samples, time)"));
  CHECK_THROWS_AS(data::SequenceBatches({series(1, 2, 4), series(1, 2, 5)}, {.seqsize = 2}), ShapeError);
  CHECK_THROWS_AS(data::SequenceBatches({series(1, 2, 4)}, {.seqsize = 0}), UsageError);
}

TEST_CASE("SequenceBatches refuses a window index out of range", "[data]") {
  data::SequenceBatches seqs({series(1, 2, 4)}, {.seqsize = 2});
  CHECK_THROWS_AS(seqs[2], IndexError);
}

TEST_CASE("SequenceBatches over dataset fields gives the windows it gives over the tensors", "[data]") {
  const Tensor x = series(3, 5, 11), y = series(1, 5, 11).to(DType::Float32);
  data::TensorDataset xs({x}), ys({y});
  for (const bool split : {false, true}) {
    INFO("split_series " << split);
    const data::SequenceOptions options{.seqsize = 4, .batch_size = split ? 10 : 2, .split_series = split};
    data::SequenceBatches in_memory({x, y}, options);
    data::SequenceBatches from_fields({data::FieldRef{&xs, 0}, data::FieldRef{&ys, 0}}, options);
    REQUIRE(from_fields.size() == in_memory.size());
    for (std::int64_t k = 0; k < in_memory.size(); ++k) {
      INFO("window " << k);
      CHECK(same_batch(from_fields[k].tensors, in_memory[k].tensors));
    }
  }
}

TEST_CASE("SequenceBatches over HDF5 fields reads one box per field and window", "[data]") {
  TempDir dir;
  data::write_hdf5(dir.file("series.h5"), {{"x", series(3, 4, 10)}, {"y", series(1, 4, 10)}}, {.chunk_rows = 1});
  data::HDF5Dataset xs(dir.file("series.h5"), {"x"}), ys(dir.file("series.h5"), {"y"});
  data::SequenceBatches seqs({data::FieldRef{&xs, 0}, data::FieldRef{&ys, 0}}, {.seqsize = 5, .batch_size = 2});
  CHECK(xs.read_stats().reads == 0);  // nothing read up front
  const data::SequenceWindow w = seqs[3];  // group 1 (streams 2, 3), steps 5..9
  CHECK(w.tensors[1].to_doubles() == std::vector<double>{25, 35, 26, 36, 27, 37, 28, 38, 29, 39});
  CHECK(xs.read_stats().reads == 1);
  CHECK(ys.read_stats().reads == 1);
}

TEST_CASE("SequenceBatches with max_steps windows only the first steps", "[data]") {
  data::SequenceBatches seqs({series(1, 2, 10)}, {.seqsize = 3, .max_steps = 7});
  CHECK(seqs.steps() == 7);
  REQUIRE(seqs.size() == 3);
  CHECK(seqs[2].tensors[0].to_doubles() == std::vector<double>{6, 16});
}

TEST_CASE("SequenceBatches names a field its dataset lacks", "[data]") {
  data::TensorDataset xs({series(1, 2, 4)});
  CHECK_THAT(error_message<IndexError>([&] { data::SequenceBatches({data::FieldRef{&xs, 1}}, {.seqsize = 2}); }),
             Catch::Contains("field 1") && Catch::Contains("1 fields"));
}

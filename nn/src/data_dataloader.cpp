#include <zkynet/data/dataloader.h>
#include <zkynet/framework/error.h>

#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <utility>

namespace zkynet::data {

namespace {

// A uniform integer in [0, bound], by rejection: exact and the same on every standard library.
std::uint64_t uniform_upto(std::mt19937_64& engine, std::uint64_t bound) {
  if (bound == std::numeric_limits<std::uint64_t>::max()) return engine();
  const std::uint64_t range = bound + 1;
  // The largest multiple of range that the engine's 2^64 outputs cover evenly.
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % range;
  std::uint64_t x;
  do {
    x = engine();
  } while (x >= limit);
  return x % range;
}

}  // namespace

DataLoader::DataLoader(const Dataset& dataset, DataLoaderOptions options) : dataset_(dataset), options_(options) {
  if (options_.batch_size < 1) {
    throw UsageError("DataLoader: batch_size must be at least 1, got " + std::to_string(options_.batch_size));
  }
}

std::int64_t DataLoader::size() const {
  const std::int64_t n = dataset_.size();
  const std::int64_t b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::set_epoch(std::int64_t epoch) {
  if (epoch < 0) throw UsageError("DataLoader::set_epoch: epoch " + std::to_string(epoch) + " is negative");
  epoch_ = epoch;
}

std::vector<std::int64_t> DataLoader::order(std::int64_t epoch) const {
  std::vector<std::int64_t> out(static_cast<std::size_t>(dataset_.size()));
  std::iota(out.begin(), out.end(), std::int64_t{0});
  if (!options_.shuffle) return out;
  // seed_seq's mixing is specified by the standard: (seed, epoch) -> the same engine state everywhere.
  std::seed_seq seq{static_cast<std::uint32_t>(options_.seed), static_cast<std::uint32_t>(options_.seed >> 32),
                    static_cast<std::uint32_t>(epoch), static_cast<std::uint32_t>(static_cast<std::uint64_t>(epoch) >> 32)};
  std::mt19937_64 engine(seq);
  for (std::size_t i = out.size(); i > 1; --i) {
    const auto j = static_cast<std::size_t>(uniform_upto(engine, i - 1));
    std::swap(out[i - 1], out[j]);
  }
  return out;
}

DataLoader::Iterator DataLoader::begin() {
  auto epoch_order = std::make_shared<const std::vector<std::int64_t>>(order(epoch_));
  ++epoch_;
  return Iterator(this, std::move(epoch_order));
}

DataLoader::Iterator::Iterator(const DataLoader* loader, std::shared_ptr<const std::vector<std::int64_t>> order)
    : loader_(loader), order_(std::move(order)), batches_(loader->size()) {}

const Batch& DataLoader::Iterator::operator*() const {
  if (!loader_ || index_ >= batches_) throw UsageError("DataLoader: dereferencing an iterator past the last batch");
  if (!current_) {
    const auto b = loader_->options_.batch_size;
    const auto n = static_cast<std::int64_t>(order_->size());
    const std::int64_t first = index_ * b;
    const std::int64_t count = std::min(b, n - first);
    current_ = loader_->dataset_.get_batch(std::span<const std::int64_t>(order_->data() + first, static_cast<std::size_t>(count)));
  }
  return *current_;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  ++index_;
  current_.reset();
  return *this;
}

}  // namespace zkynet::data

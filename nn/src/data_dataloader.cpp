#include <zkynet/data/dataloader.h>
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <iostream>
#include <limits>
#include <mutex>
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

void warn_pin_ignored() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::cerr << "zkynet warning: DataLoader pin_memory=true is ignored: no CUDA device answers on this machine, "
                 "so batches stay in pageable memory\n";
  });
}

}  // namespace

// The next batch on its way to the device; the device's kernels wait for its copies once it is
// handed out (take), or when it is dropped unused, before its memory can be reused.
struct DataLoader::Iterator::Prefetch {
  std::int64_t index = 0;
  Device device;
  Batch batch;
  std::vector<void*> events;

  Batch take() {
    for (void* e : events) zkynet::detail::await_copy(e, device);
    events.clear();
    return std::move(batch);
  }
  ~Prefetch() {
    for (void* e : events) {
      try {
        zkynet::detail::await_copy(e, device);
      } catch (...) {  // a broken device fails its next call anyway; a destructor must not throw
      }
    }
  }
};

DataLoader::DataLoader(const Dataset& dataset, DataLoaderOptions options) : dataset_(dataset), options_(options) {
  if (options_.batch_size < 1) {
    throw UsageError("DataLoader: batch_size must be at least 1, got " + std::to_string(options_.batch_size));
  }
  const Device d = options_.device;
  if (d.is_cuda() && (d.index < 0 || d.index >= cuda::device_count())) {
    throw UsageError("DataLoader: device " + d.str() + " is not available (" + std::to_string(cuda::device_count()) +
                     " CUDA device(s) answer on this machine" + (cuda::built() ? "" : "; this build has no CUDA") + ")");
  }
  pin_ = options_.pin_memory && cuda::is_available();
  if (options_.pin_memory && !pin_) warn_pin_ignored();
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

Batch DataLoader::Iterator::read(std::int64_t index) const {
  const auto b = loader_->options_.batch_size;
  const auto n = static_cast<std::int64_t>(order_->size());
  const std::int64_t first = index * b;
  const std::int64_t count = std::min(b, n - first);
  Batch batch = loader_->dataset_.get_batch(std::span<const std::int64_t>(order_->data() + first, static_cast<std::size_t>(count)));
  if (loader_->pin_) {
    for (Tensor& t : batch) t = t.pin_memory();
  }
  return batch;
}

namespace {

// Issues the copies of `batch` to `device` on its copy stream; nothing waits for them yet.
void copy_to(Batch& batch, Device device, std::vector<void*>& events) {
  for (Tensor& t : batch) {
    const Tensor src = t.contiguous();
    Tensor out = Tensor::empty(src.shape(), src.dtype(), device);
    events.push_back(zkynet::detail::copy_async(out.device_raw_data(), device, src.raw_data(), Device::cpu(),
                                        checked_nbytes(src.shape(), src.dtype(), "DataLoader")));
    t = std::move(out);
  }
}

}  // namespace

const Batch& DataLoader::Iterator::operator*() const {
  if (!loader_ || index_ >= batches_) throw UsageError("DataLoader: dereferencing an iterator past the last batch");
  if (current_) return *current_;
  const Device device = loader_->options_.device;
  if (device.is_cpu()) {
    current_ = read(index_);
    return *current_;
  }
  auto issue = [&](std::int64_t index) {
    auto p = std::make_shared<Prefetch>();
    p->index = index;
    p->device = device;
    p->batch = read(index);
    copy_to(p->batch, device, p->events);
    return p;
  };
  std::shared_ptr<Prefetch> ready = next_ && next_->index == index_ ? std::move(next_) : issue(index_);
  next_.reset();
  current_ = ready->take();
  // Issued before the caller queues this batch's kernels, so the copy runs beside them.
  if (index_ + 1 < batches_) next_ = issue(index_ + 1);
  return *current_;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  ++index_;
  current_.reset();
  return *this;
}

}  // namespace zkynet::data

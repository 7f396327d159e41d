// A small blocking thread pool for parallel_for.
//
// NOTE: not OpenMP. On our 2-core VMs OpenBLAS runs its own threads; libgomp's workers spin
// after every parallel region (OMP_WAIT_POLICY can only be set before the program starts), and
// a GEMM right after an elementwise loop ran 3x slower, an elementwise loop right after a GEMM
// 14x slower. These workers sleep on a condition variable as soon as their chunk is done.
#include <zkynet/framework/parallel.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace zkynet {
namespace {

int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

thread_local bool inside_pool = false;  // nested parallel_for calls run serially

class Pool {
 public:
  explicit Pool(int threads) : threads_(std::max(threads, 1)) {
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { work(i); });
  }

  ~Pool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int threads() const { return threads_; }

  // Runs body over [0, n) split into `chunks` contiguous ranges; false when the pool is busy
  // (another thread's loop), in which case the caller runs the loop itself.
  bool run(std::int64_t n, int chunks, const std::function<void(std::int64_t, std::int64_t)>& body) {
    std::unique_lock busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard lock(mutex_);
      body_ = &body;
      n_ = n;
      chunks_ = chunks;
      pending_ = chunks - 1;
      ++generation_;
    }
    wake_.notify_all();
    run_chunk(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    body_ = nullptr;
    return true;
  }

 private:
  void run_chunk(int chunk) {
    const std::int64_t size = (n_ + chunks_ - 1) / chunks_;
    const std::int64_t begin = std::min(n_, chunk * size);
    const std::int64_t end = std::min(n_, begin + size);
    inside_pool = true;
    if (begin < end) (*body_)(begin, end);
    inside_pool = false;
  }

  void work(int index) {
    std::uint64_t seen = 0;
    while (true) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index >= chunks_) continue;
      lock.unlock();
      run_chunk(index);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex busy_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(std::int64_t, std::int64_t)>* body_ = nullptr;
  std::int64_t n_ = 0;
  int chunks_ = 1;
  int pending_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

std::mutex pool_mutex;
std::shared_ptr<Pool>& pool_slot() {
  static auto* slot = new std::shared_ptr<Pool>();  // never destroyed: workers may outlive statics
  return *slot;
}

std::shared_ptr<Pool> pool() {
  std::lock_guard lock(pool_mutex);
  auto& slot = pool_slot();
  if (!slot) slot = std::make_shared<Pool>(default_threads());
  return slot;
}

}  // namespace

void parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& body, std::int64_t grain) {
  if (n <= 0) return;
  const std::int64_t by_size = n / std::max<std::int64_t>(grain, 1);
  if (by_size < 2 || inside_pool) {
    body(0, n);
    return;
  }
  const auto p = pool();
  const int chunks = static_cast<int>(std::min<std::int64_t>(p->threads(), by_size));
  if (chunks <= 1 || !p->run(n, chunks, body)) body(0, n);
}

int num_threads() { return pool()->threads(); }

void set_num_threads(int n) {
  std::lock_guard lock(pool_mutex);
  pool_slot() = std::make_shared<Pool>(std::max(n, 1));
}

}  // namespace zkynet

#include "cuda_collectives.h"
#include "mpi_internal.h"

#include <zkynet/framework/error.h>

#include <sched.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>

namespace zkynet::dist {
namespace {

std::atomic<bool> checked_mode{true};

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// A rank that exits non-zero aborts the job: finalizing would wait for ranks that may be
// blocked on it forever. (glibc's on_exit passes the exit status; atexit does not.)
// mpiexec forwards each rank's output asynchronously; MPI_Abort kills the job at once and
// would often lose the last lines, which say why.
void let_output_drain() { std::this_thread::sleep_for(std::chrono::milliseconds(200)); }

// A rank that exits with status 0 says farewell to the others first and waits for theirs:
// one still waiting for it in a communication learns that it never will, and aborts the job.
void finalize_at_exit(int status, void*) {
  if (mpi_finalized()) return;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (status != 0 && size > 1) {
    std::fprintf(stderr, "zkynet.distributed: a rank exits with status %d; aborting the job\n", status);
    std::fflush(stderr);
    let_output_drain();
    MPI_Abort(MPI_COMM_WORLD, status);
  }
  detail::farewell();
  MPI_Finalize();
}

// An uncaught exception on one rank would otherwise leave the others blocked in their next
// collective: abort the whole job instead.
[[noreturn]] void terminate_job() {
  std::string why = "terminate called";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      why = std::string("uncaught exception: ") + ex.what();
    } catch (...) {
      why = "uncaught exception of unknown type";
    }
  }
  abort(why, 1);
}

// ZKYNET_DIST_TIMEOUT=<seconds>: set_timeout without code changes.
void set_timeout_from(const char* env) {
  char* end = nullptr;
  const double seconds = std::strtod(env, &end);
  if (end == env || *end != '\0' || !(seconds >= 0)) {
    abort(std::string("ZKYNET_DIST_TIMEOUT=") + env + ": expected a number of seconds >= 0 (0: no timeout)", 2);
  }
  set_timeout(seconds);
}

std::string mpi_error_string(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, static_cast<std::size_t>(len));
}

}  // namespace

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "SUM";
    case ReduceOp::Avg: return "AVG";
    case ReduceOp::Max: return "MAX";
    case ReduceOp::Min: return "MIN";
    case ReduceOp::Prod: return "PROD";
  }
  return "?";
}

namespace {
std::atomic<bool> oversubscribed_node{false};
}  // namespace

namespace detail {
namespace {

// Collective over the world: called once, by init() on every rank.
bool detect_oversubscription() {
  if (const char* env = std::getenv("ZKYNET_DIST_WAIT")) return std::string(env) == "sleep";
  MPI_Comm local = MPI_COMM_NULL;
  int ranks_here = 1;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
    MPI_Comm_size(local, &ranks_here);
    MPI_Comm_free(&local);
  }
  cpu_set_t cpus;
  const int cores = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  return ranks_here > cores;
}
}  // namespace

bool oversubscribed() { return oversubscribed_node; }

}  // namespace detail

void init(int* argc, char*** argv) {
  static std::once_flag once;
  std::call_once(once, [&] {
    int started = 0;
    MPI_Initialized(&started);
    if (!started) {
      int provided = 0;
      detail::check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      on_exit(finalize_at_exit, nullptr);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    std::set_terminate(terminate_job);
    oversubscribed_node = detail::detect_oversubscription();
    if (const char* env = std::getenv("ZKYNET_DIST_CHECKED")) checked_mode = std::string(env) != "0";
    if (const char* env = std::getenv("ZKYNET_DIST_TIMEOUT")) set_timeout_from(env);
    detail::read_cuda_collectives_env();
    // Whoever started MPI finalizes it: the watch's farewell runs in finalize_at_exit.
    if (!started) detail::start_watch();
  });
}

bool initialized() {
  int started = 0;
  MPI_Initialized(&started);
  return started != 0 && !mpi_finalized();
}

void abort(const std::string& why, int code) {
  int rank = -1;
  if (initialized()) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "zkynet.distributed: rank %d aborts the job: %s\n", rank, why.c_str());
  std::fflush(stderr);
  let_output_drain();
  if (initialized()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void set_checked(bool checked) { checked_mode = checked; }
bool checked() { return checked_mode; }

Communicator::Impl::Impl(MPI_Comm comm, bool owns, std::string comm_name)
    : forward(comm), owns_forward(owns), name(std::move(comm_name)) {
  detail::check(MPI_Comm_set_errhandler(forward, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  detail::check(MPI_Comm_dup(forward, &backward), "MPI_Comm_dup");
  detail::check(MPI_Comm_set_errhandler(backward, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  MPI_Comm_rank(forward, &rank);
  MPI_Comm_size(forward, &size);
  MPI_Group group = MPI_GROUP_NULL, world_group = MPI_GROUP_NULL;
  MPI_Comm_group(forward, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  std::vector<int> members(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) members[static_cast<std::size_t>(r)] = r;
  world_ranks.resize(members.size());
  MPI_Group_translate_ranks(group, size, members.data(), world_group, world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
}

Communicator::Impl::~Impl() {
  detail::forget_cuda_collectives(this);
  if (!initialized()) return;  // MPI already finalized: nothing may be freed
  if (backward != MPI_COMM_NULL) MPI_Comm_free(&backward);
  if (owns_forward && forward != MPI_COMM_NULL) MPI_Comm_free(&forward);
}

std::string Communicator::Impl::collective_label(std::string_view what) {
  return std::string(what) + " #" + std::to_string(collectives++) + " @" + name;
}

std::string Communicator::Impl::message_label(char direction, int peer, int tag) {
  const std::uint64_t n = messages[{direction, peer, tag}]++;
  const char* verb = direction == 's' ? "Send to " : "Recv from ";
  return std::string(verb) + std::to_string(peer) + " tag " + std::to_string(tag) + " #" + std::to_string(n) + " @" +
         name;
}

int Communicator::rank() const { return impl_->rank; }
int Communicator::size() const { return impl_->size; }
const std::string& Communicator::name() const { return impl_->name; }

// Every rank is there first (checked mode's comparison, or a barrier): MPI_Comm_split has no
// non-blocking form, and a rank blocked in it could not notice a fault.
Communicator Communicator::split(int color, int key) const {
  const std::string what = "split @" + impl_->name;
  detail::Activity activity(*impl_, what);
  detail::start_collective(activity, nullptr);
  if (!checked()) ZKYNET_MPI(Barrier, Ibarrier, impl_->forward);
  MPI_Comm out = MPI_COMM_NULL;
  detail::check(MPI_Comm_split(impl_->forward, color, key, &out), "MPI_Comm_split");
  return Communicator(
      std::make_shared<Impl>(out, true, impl_->name + "/split(color " + std::to_string(color) + ")"));
}

void Communicator::barrier() const {
  const std::string what = "Barrier @" + impl_->name;
  detail::Activity activity(*impl_, what);
  detail::start_collective(activity, nullptr);
  // In checked mode the comparison waited for every rank already: it was the barrier.
  if (!checked()) ZKYNET_MPI(Barrier, Ibarrier, impl_->forward);
}

Communicator world() {
  init();
  // Leaked on purpose: it must outlive every static that may still hold a communicator.
  static auto* impl = new std::shared_ptr<Communicator::Impl>(
      std::make_shared<Communicator::Impl>(MPI_COMM_WORLD, false, "world"));
  return Communicator(*impl);
}

namespace detail {

void check(int rc, std::string_view call) {
  if (rc == MPI_SUCCESS) return;
  throw Error("zkynet.distributed: " + std::string(call) + " failed: " + mpi_error_string(rc));
}

}  // namespace detail
}  // namespace zkynet::dist

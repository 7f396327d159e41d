// Ranks never wait silently. Every wait polls its MPI request, and while it waits the rank
//  - notices ranks that have finished: a rank whose program ends normally says so to every
//    other rank (farewell, at exit) and waits for theirs before MPI_Finalize; a rank still
//    waiting for it aborts the job, naming both;
//  - enforces the timeout (set_timeout, ZKYNET_DIST_TIMEOUT): the rank asks the ranks it waits
//    for what they are doing, then aborts the job with their answers;
//  - answers those questions itself.
// These messages travel on a private duplicate of the world communicator ("control"), never
// on the user's communicators. A rank busy computing reads them at its next wait.
#include "cuda_collectives.h"
#include "mpi_internal.h"

#include <zkynet/framework/error.h>
#include <zkynet/framework/node.h>
#include <zkynet/framework/session.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <list>
#include <sstream>
#include <thread>
#include <utility>

namespace zkynet::dist {
namespace detail {
namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

std::atomic<double> timeout_seconds{0.0};

// A finished rank may have taken part in an operation just before it left, its data still in
// flight: the operation gets this long to complete before the rank is reported.
constexpr auto kFinishedGrace = std::chrono::milliseconds(1000);
// How long a rank that timed out waits for the answers of the ranks it asked.
constexpr auto kAnswerWindow = std::chrono::milliseconds(500);
// Between two looks at the control messages and the clock's deadline while a wait spins.
constexpr auto kPollInterval = std::chrono::microseconds(500);

enum Kind : std::int32_t { kBye = 1, kQuery = 2, kState = 3 };

struct Message {
  std::int32_t kind = 0;
  std::int32_t from = -1;      // the sender's world rank
  std::int64_t query = 0;      // kQuery: its number; kState: the number of the query answered
  std::int64_t call = -1;      // kState: the collective call number it waits in, -1: none
  std::int64_t waited_ms = 0;  // kState: for how long
  char text[496] = {};         // kState: "<what>\n<call site>"; empty: not waiting
};

struct Answer {
  bool got = false;
  std::int64_t call = -1;
  std::int64_t waited_ms = 0;
  std::string what, site;
};

struct Control {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  MPI_Request incoming = MPI_REQUEST_NULL;  // always posted while the watch runs
  Message in;
  std::list<std::pair<Message, MPI_Request>> outgoing;  // a list: addresses stay put while in flight
  std::vector<char> finished;                           // world rank -> has said farewell
  std::vector<Answer> answers;                          // world rank -> its answer to the last query
  std::int64_t queries = 0;                             // queries sent so far
  bool exiting = false;
};

// Leaked on purpose: farewell() runs from an on_exit handler, after static destructors.
Control& control() {
  static auto* c = new Control;
  return *c;
}

thread_local const Activity* current_activity = nullptr;

// The wait in progress on this thread, for the answers to other ranks.
struct Wait {
  const Activity* activity;
  Clock::time_point start;
};
thread_local const Wait* current_wait = nullptr;

void post_receive() {
  Control& c = control();
  check(MPI_Irecv(&c.in, sizeof(Message), MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, c.comm, &c.incoming),
        "zkynet.distributed watch: MPI_Irecv");
}

void send(int to, Message m) {
  Control& c = control();
  m.from = c.rank;
  auto& [message, request] = c.outgoing.emplace_back(m, MPI_REQUEST_NULL);
  check(MPI_Isend(&message, sizeof(Message), MPI_BYTE, to, m.kind, c.comm, &request),
        "zkynet.distributed watch: MPI_Isend");
}

void answer(int to, std::int64_t query, const Wait* wait) {
  Message m;
  m.kind = kState;
  m.query = query;
  if (wait != nullptr && wait->activity != nullptr) {
    const Activity& a = *wait->activity;
    m.call = a.call;
    m.waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - wait->start).count();
    const std::string text = std::string(a.what) + "\n" + a.site_text();
    std::strncpy(m.text, text.c_str(), sizeof(m.text) - 1);
  }
  send(to, m);
}

void handle(const Message& m, const Wait* wait) {
  Control& c = control();
  if (m.from < 0 || m.from >= c.size) return;
  switch (m.kind) {
    case kBye: c.finished[static_cast<std::size_t>(m.from)] = 1; break;
    case kQuery:
      // A finishing rank does not answer: its farewell, already sent, says enough.
      if (!c.exiting) answer(m.from, m.query, wait);
      break;
    case kState: {
      if (m.query != c.queries) break;  // the answer to an earlier question
      Answer& a = c.answers[static_cast<std::size_t>(m.from)];
      const std::string text(m.text, strnlen(m.text, sizeof(m.text)));
      const auto nl = text.find('\n');
      a = {true, m.call, m.waited_ms, text.substr(0, nl), nl == std::string::npos ? "" : text.substr(nl + 1)};
      break;
    }
    default: break;
  }
}

// Reads the control messages that arrived, and forgets the sends that completed.
void serve(const Wait* wait) {
  Control& c = control();
  if (c.incoming == MPI_REQUEST_NULL) return;  // no watch: MPI was started by another library
  for (;;) {
    int got = 0;
    check(MPI_Test(&c.incoming, &got, MPI_STATUS_IGNORE), "zkynet.distributed watch: MPI_Test");
    if (!got) break;
    const Message m = c.in;
    post_receive();
    handle(m, wait);
  }
  for (auto it = c.outgoing.begin(); it != c.outgoing.end();) {
    int done = 0;
    check(MPI_Test(&it->second, &done, MPI_STATUS_IGNORE), "zkynet.distributed watch: MPI_Test");
    it = done ? c.outgoing.erase(it) : std::next(it);
  }
}

// The world ranks `a` waits for: its peer, or the other members of its communicator.
std::vector<int> partners(const Activity& a) {
  if (a.peer >= 0) return {a.comm.world_ranks[static_cast<std::size_t>(a.peer)]};
  std::vector<int> out;
  for (int r = 0; r < a.comm.size; ++r) {
    if (r != a.comm.rank) out.push_back(a.comm.world_ranks[static_cast<std::size_t>(r)]);
  }
  return out;
}

// "rank 3", or "rank 3 (rank 1 of world/split(color 1))" on another communicator.
std::string rank_name(const Activity& a, int world_rank) {
  std::string out = "rank " + std::to_string(world_rank);
  if (a.comm.forward == MPI_COMM_WORLD) return out;
  const auto& w = a.comm.world_ranks;
  const auto at = std::find(w.begin(), w.end(), world_rank) - w.begin();
  return out + " (rank " + std::to_string(at) + " of " + a.comm.name + ")";
}

// The ranks `a` waits for that have finished.
std::vector<int> finished_partners(const Activity& a) {
  const Control& c = control();
  std::vector<int> out;
  if (c.finished.empty()) return out;
  for (int r : partners(a)) {
    if (c.finished[static_cast<std::size_t>(r)]) out.push_back(r);
  }
  return out;
}

std::string seconds_text(double s) {
  std::ostringstream os;
  os.precision(s < 10 ? 2 : 4);
  os << s << " s";
  return os.str();
}

[[noreturn]] void report_finished(const Activity& a, const std::vector<int>& gone) {
  std::string names;
  for (std::size_t i = 0; i < gone.size(); ++i) {
    names += (i == 0 ? "" : i + 1 == gone.size() ? " and " : ", ") + rank_name(a, gone[i]);
  }
  const char* finished = gone.size() == 1 ? " has finished (its program ended normally)"
                                          : " have finished (their programs ended normally)";
  abort(a.describe() + " cannot complete: " + names + finished + " without taking part in it", 1);
}

// The timeout passed: asks the ranks `a` waits for what they do, then aborts the job with
// their answers. Returns (without aborting) if the wait ends meanwhile (`done`).
template <class Done>
bool report_timeout(Done& done, std::string_view call, const Wait& wait, double limit) {
  Control& c = control();
  const Activity* a = wait.activity;
  std::string why = "timeout: " + (a ? a->describe() : std::string(call)) + " did not complete within " +
                    seconds_text(limit) + " (dist::set_timeout / ZKYNET_DIST_TIMEOUT)";
  if (a == nullptr || c.incoming == MPI_REQUEST_NULL) abort(why, 1);
  const std::vector<int> who = partners(*a);
  const std::int64_t query = ++c.queries;
  for (int r : who) {
    c.answers[static_cast<std::size_t>(r)] = {};
    if (!c.finished[static_cast<std::size_t>(r)]) send(r, Message{kQuery, -1, query});
  }
  const auto answered = [&] {
    return std::all_of(who.begin(), who.end(), [&](int r) {
      return c.finished[static_cast<std::size_t>(r)] || c.answers[static_cast<std::size_t>(r)].got;
    });
  };
  for (const auto until = Clock::now() + kAnswerWindow; Clock::now() < until && !answered();) {
    if (done()) return true;
    serve(&wait);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<std::string> missing, here;
  for (int r : who) {
    const Answer& ans = c.answers[static_cast<std::size_t>(r)];
    const std::string name = rank_name(*a, r);
    if (c.finished[static_cast<std::size_t>(r)]) {
      missing.push_back(name + " has finished (its program ended)");
    } else if (!ans.got) {
      missing.push_back(name + " did not answer within " +
                        seconds_text(std::chrono::duration<double>(kAnswerWindow).count()) +
                        ": it is computing, or blocked outside zkynet.distributed");
    } else if (a->peer < 0 && ans.what == a->what && ans.call == a->call) {
      here.push_back(name);
    } else if (ans.what.empty()) {
      missing.push_back(name + " is not waiting in zkynet.distributed");
    } else {
      std::string text = name + " waits in " + ans.what;
      if (ans.call >= 0) text += " (collective call " + std::to_string(ans.call) + ")";
      if (!ans.site.empty()) text += ", called at " + ans.site;
      text += ", for " + seconds_text(static_cast<double>(ans.waited_ms) / 1000.0);
      missing.push_back(text);
    }
  }
  const auto join = [](const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
    return out;
  };
  if (!missing.empty()) why += ". Not there: " + join(missing);
  if (!here.empty()) why += ". Waiting in it too: " + join(here);
  abort(why, 1);
}

}  // namespace

CallSite CallSite::here() {
  const auto& tape = CallSessionManager::current().active_tape();
  if (!tape) return {};
  return {tape, tape->current_invocation()};
}

std::string CallSite::text() const {
  const auto t = tape.lock();
  if (!t || invocation < 0) return {};
  const auto& invocations = t->invocations();
  std::string path;
  for (int i = invocation; i >= 0; i = invocations[static_cast<std::size_t>(i)].parent) {
    path = invocations[static_cast<std::size_t>(i)].name + (path.empty() ? "" : "." + path);
  }
  return path + " (" + invocations[static_cast<std::size_t>(invocation)].functional_name + ")";
}

Activity::Activity(Communicator::Impl& c, std::string_view w, int p, const CallSite* s)
    : comm(c), what(w), peer(p), site(s), previous_(current_activity) {
  current_activity = this;
}

Activity::~Activity() { current_activity = previous_; }

const Activity* Activity::current() { return current_activity; }

std::string Activity::site_text() const {
  return site != nullptr ? site->text() : CallSessionManager::current().module_path();
}

std::string Activity::describe() const {
  std::string out(what);
  std::string notes;
  if (call >= 0) notes = "collective call " + std::to_string(call) + " on " + comm.name;
  if (const std::string s = site_text(); !s.empty()) notes += (notes.empty() ? "" : ", ") + ("called at " + s);
  return notes.empty() ? out : out + " (" + notes + ")";
}

namespace {

// The wait of complete() and complete_when(): `done` is polled until true.
template <class Done>
void wait_until(Done& done, std::string_view call) {
  const Wait wait{Activity::current(), Clock::now()};
  struct Current {
    const Wait* previous;
    explicit Current(const Wait* w) : previous(current_wait) { current_wait = w; }
    ~Current() { current_wait = previous; }
  } scope(&wait);
  const double limit = timeout_seconds.load(std::memory_order_relaxed);
  const bool sleepy = oversubscribed();
  auto next_poll = wait.start + kPollInterval;
  Clock::time_point partner_gone{};
  for (;;) {
    if (done()) return;
    const auto now = Clock::now();
    if (now >= next_poll) {
      next_poll = now + kPollInterval;
      serve(&wait);
      if (wait.activity != nullptr) {
        if (const std::vector<int> gone = finished_partners(*wait.activity); !gone.empty()) {
          if (partner_gone == Clock::time_point{}) partner_gone = now;
          if (now - partner_gone > kFinishedGrace) report_finished(*wait.activity, gone);
        }
      }
      if (limit > 0 && now - wait.start > Seconds(limit) && report_timeout(done, call, wait, limit)) return;
    }
    // Oversubscribed: poll for a moment (the peer is often nearly there), then sleep between polls.
    if (sleepy && now - wait.start > std::chrono::microseconds(50)) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
}

}  // namespace

void complete(MPI_Request& request, std::string_view call, MPI_Status* status) {
  const auto done = [&] {
    int flag = 0;
    check(MPI_Test(&request, &flag, status), call);
    return flag != 0;
  };
  if (done()) return;
  wait_until(done, call);
}

void complete_when(const std::function<bool()>& done, std::string_view call) {
  if (done()) return;
  wait_until(done, call);
}

void start_watch() {
  Control& c = control();
  MPI_Comm_size(MPI_COMM_WORLD, &c.size);
  if (c.size == 1) return;
  check(MPI_Comm_dup(MPI_COMM_WORLD, &c.comm), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(c.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(c.comm, &c.rank);
  c.finished.assign(static_cast<std::size_t>(c.size), 0);
  c.answers.assign(static_cast<std::size_t>(c.size), {});
  post_receive();
}

void farewell() {
  Control& c = control();
  if (c.incoming == MPI_REQUEST_NULL) return;
  c.exiting = true;
  for (int r = 0; r < c.size; ++r) {
    if (r != c.rank) send(r, Message{kBye});
  }
  // Until every other rank has said farewell too, one of them may still be waiting for this
  // one (it reports that and aborts the job) or still be sending it messages.
  const auto start = Clock::now();
  const auto others_left = [&] {
    return std::count(c.finished.begin(), c.finished.end(), 1) < c.size - 1 || !c.outgoing.empty();
  };
  while (others_left()) {
    serve(nullptr);
    std::this_thread::sleep_for(Clock::now() - start < std::chrono::milliseconds(10) ? std::chrono::microseconds(20)
                                                                                   : std::chrono::microseconds(1000));
  }
  MPI_Cancel(&c.incoming);
  MPI_Wait(&c.incoming, MPI_STATUS_IGNORE);
  MPI_Comm_free(&c.comm);
}

}  // namespace detail

void set_timeout(double seconds) {
  if (!(seconds >= 0)) {
    throw UsageError("dist::set_timeout: expected a number of seconds >= 0 (0: no timeout), got " +
                     std::to_string(seconds));
  }
  detail::timeout_seconds = seconds;
}

double timeout() { return detail::timeout_seconds; }

}  // namespace zkynet::dist

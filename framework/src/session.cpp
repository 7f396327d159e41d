#include <zkynet/framework/session.h>

#include <atomic>

namespace zkynet {

CallSessionManager& CallSessionManager::current() {
  thread_local CallSessionManager session;
  return session;
}

std::shared_ptr<Tape> CallSessionManager::new_tape() {
  static std::atomic<std::uint64_t> next_call_id{1};
  return std::make_shared<Tape>(next_call_id.fetch_add(1, std::memory_order_relaxed));
}

std::string CallSessionManager::module_path() const {
  if (path_.empty()) return {};
  std::string path;
  for (const auto& entry : path_) {
    if (!path.empty()) path += ".";
    path += entry.name;
  }
  return path + " (" + path_.back().functional_name + ")";
}

CallSessionManager::Frame::Frame(std::shared_ptr<Tape> tape, std::string name, std::string functional_name) {
  auto& session = current();
  previous_ = session.active_;
  if (tape) previous_invocation_ = tape->open_invocation(name, functional_name);
  session.active_ = std::move(tape);
  session.path_.push_back({std::move(name), std::move(functional_name)});
}

CallSessionManager::Frame::~Frame() {
  auto& session = current();
  if (session.active_) session.active_->close_invocation(previous_invocation_);
  session.active_ = std::move(previous_);
  session.path_.pop_back();
}

NoGradGuard::NoGradGuard() : previous_(CallSessionManager::current().grad_enabled_) {
  CallSessionManager::current().grad_enabled_ = false;
}

NoGradGuard::~NoGradGuard() { CallSessionManager::current().grad_enabled_ = previous_; }

}  // namespace zkynet

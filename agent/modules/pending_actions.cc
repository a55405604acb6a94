#include "agent/modules/pending_actions.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/modules/random_hex.h"

namespace herd::agent {

using json = nlohmann::json;

PendingActions::PendingActions(Scheduler& scheduler, std::string module,
                               absl::Duration default_timeout)
    : scheduler_(scheduler),
      module_(std::move(module)),
      default_timeout_(default_timeout),
      log_(herd::Logger("modules")) {}

PendingActions::~PendingActions() {
  for (auto& [action, p] : pending_) {
    if (p.timer) scheduler_.Cancel(p.timer);
  }
}

void PendingActions::Trigger(const herd::v1::TriggerActionRequest& req,
                             const ModuleChannelState& channel, const Send& send, Done done) {
  herd::v1::ModuleInfo info;
  channel.Fill(&info);
  if (!channel.has_action(req.action())) {
    std::vector<std::string> names;
    for (const auto& a : info.actions()) names.push_back(a.name());
    return done(absl::NotFoundError(absl::StrCat(
        module_, " has no action \"", req.action(), "\" (its actions: ",
        names.empty() ? "none" : absl::StrJoin(names, ", "), ")")));
  }
  if (pending_.count(req.action())) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        req.action(), " is already running on ", module_,
        ": PM2 matches replies by action name, so one trigger at a time; try again when it "
        "replies")));
  }
  json opts = json::object();
  for (const auto& [k, v] : req.params()) opts[k] = v;
  json msg = {{"msg", req.action()}, {"action_name", req.action()}, {"opts", opts}};
  Pending p;
  p.id = next_id_++;
  p.started = scheduler_.clock().Monotonic();
  for (const auto& a : info.actions()) {
    if (a.name() == req.action() && a.type() == "scoped") {
      p.uuid = RandomHex(32);
      msg["uuid"] = p.uuid;
    }
  }
  if (!send(msg.dump())) {
    return done(absl::UnavailableError(
        absl::StrCat("cannot write to ", module_, "'s channel (it is not reading)")));
  }
  const absl::Duration timeout =
      req.timeout_ms() > 0 ? absl::Milliseconds(req.timeout_ms()) : default_timeout_;
  const std::string action = req.action();
  const uint64_t id = p.id;
  p.timer = scheduler_.RunAfter(timeout, [this, action, id, timeout] {
    TimedOut(action, id, timeout);
  });
  p.done = std::move(done);
  pending_[action] = std::move(p);
  log_->info("event=action_triggered module={} action={}", module_, action);
}

void PendingActions::TimedOut(const std::string& action, uint64_t id, absl::Duration timeout) {
  auto p = pending_.find(action);
  if (p == pending_.end() || p->second.id != id) return;
  p->second.timer = 0;
  Finish(action, absl::DeadlineExceededError(absl::StrCat(module_, " did not reply to ", action,
                                                          " within ",
                                                          absl::FormatDuration(timeout))));
}

void PendingActions::OnReply(const std::string& action, const json& ret) {
  herd::v1::TriggerActionResponse resp;
  resp.set_reply_json(ret.dump());
  Finish(action, resp);
}

void PendingActions::OnScoped(const std::string& action, const std::string& uuid,
                              const std::string& kind, const json& data) {
  auto p = pending_.find(action);
  if (p == pending_.end() || (!uuid.empty() && p->second.uuid != uuid)) return;
  std::string text = data.is_string() ? data.get<std::string>() : data.dump();
  if (kind == "stream") {
    if (p->second.stream.size() < 10000) p->second.stream.push_back(text);
  } else if (kind == "error") {
    p->second.stream.push_back("error: " + text);
  } else {
    herd::v1::TriggerActionResponse resp;
    resp.set_reply_json(data.dump());
    Finish(action, resp);
  }
}

void PendingActions::FailAll(const std::string& why) {
  std::vector<std::string> actions;
  for (const auto& [a, p] : pending_) actions.push_back(a);
  for (const auto& a : actions) {
    Finish(a, absl::UnavailableError(
                  absl::StrCat(module_, "'s channel closed before it replied (", why, ")")));
  }
}

void PendingActions::Finish(const std::string& action,
                            absl::StatusOr<herd::v1::TriggerActionResponse> result) {
  auto it = pending_.find(action);
  if (it == pending_.end()) return;  // a late or unsolicited reply
  Pending p = std::move(it->second);
  pending_.erase(it);
  if (p.timer) scheduler_.Cancel(p.timer);
  if (result.ok()) {
    for (auto& line : p.stream) result->add_stream(std::move(line));
    result->set_elapsed_ms(static_cast<uint64_t>(
        absl::ToInt64Milliseconds(scheduler_.clock().Monotonic() - p.started)));
  }
  p.done(std::move(result));
}

}  // namespace herd::agent

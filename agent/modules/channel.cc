#include "agent/modules/channel.h"

#include <stdlib.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/json_parse.h"
#include "common/utf8.h"

namespace herd::agent {
namespace {

using json = nlohmann::json;

std::string StringOr(const json& obj, const char* key, const std::string& fallback = "") {
  auto it = obj.find(key);
  if (it == obj.end()) return fallback;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_null()) return fallback;
  return it->dump();
}

bool BoolOr(const json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// A number from a value that may be one, or a string like "83.37" or "0.06ms".
bool AsNumber(const json& v, double* out) {
  if (v.is_number()) {
    *out = v.get<double>();
    return std::isfinite(*out);
  }
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty()) return false;
  char* end = nullptr;
  double d = strtod(s.c_str(), &end);
  if (end == s.c_str() || !std::isfinite(d)) return false;
  // Whatever follows must look like a unit, not more text ("12 apples" is fine, "1.2.3" not).
  if (*end == '.' || (*end >= '0' && *end <= '9')) return false;
  *out = d;
  return true;
}

void AppendPids(const json& v, std::vector<pid_t>* out) {
  if (v.is_number_integer() && v.get<int64_t>() > 0 && v.get<int64_t>() < (1 << 22)) {
    out->push_back(static_cast<pid_t>(v.get<int64_t>()));
  } else if (v.is_string()) {
    int64_t p = 0;
    if (absl::SimpleAtoi(v.get<std::string>(), &p) && p > 0 && p < (1 << 22)) {
      out->push_back(static_cast<pid_t>(p));
    }
  } else if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_array()) AppendPids(e, out);
    }
  }
}

}  // namespace

void LineFramer::Feed(absl::string_view data,
                      const std::function<void(absl::string_view)>& on_line) {
  while (!data.empty()) {
    size_t nl = data.find('\n');
    absl::string_view chunk = nl == absl::string_view::npos ? data : data.substr(0, nl);
    if (discarding_) {
      if (nl != absl::string_view::npos) discarding_ = false;
    } else if (buf_.size() + chunk.size() > max_line_) {
      buf_.clear();
      ++oversized_;
      discarding_ = nl == absl::string_view::npos;
    } else if (nl != absl::string_view::npos) {
      if (buf_.empty()) {
        on_line(chunk);
      } else {
        buf_.append(chunk.data(), chunk.size());
        on_line(buf_);
        buf_.clear();
      }
    } else {
      buf_.append(chunk.data(), chunk.size());
    }
    if (nl == absl::string_view::npos) break;
    data.remove_prefix(nl + 1);
  }
}

bool ModuleChannelState::Admit(absl::Time now) {
  int64_t second = absl::ToUnixSeconds(now);
  if (second != window_second_) {
    window_second_ = second;
    window_count_ = 0;
  }
  if (window_count_ >= limits_.max_messages_per_second) {
    stats_.set_flood_dropped(stats_.flood_dropped() + 1);
    return false;
  }
  ++window_count_;
  return true;
}

std::string ModuleChannelState::Clip(std::string s, size_t max) const {
  if (s.size() > max) {
    // Cut between characters: the text goes into protobuf strings, which must stay UTF-8.
    s = TruncateUtf8(std::move(s), max);
    s += "…";
  }
  return s;
}

ModuleChannelState::Result ModuleChannelState::HandleLine(absl::string_view line,
                                                          absl::Time now) {
  if (!Admit(now)) return Result::kFlood;
  // ParseJson never throws and bounds nesting: a line of 500,000 '[' would otherwise parse
  // and then overflow the stack when a handler copies or dumps it.
  auto parsed = ParseJson(line);
  if (!parsed.ok()) {
    stats_.set_invalid_json(stats_.invalid_json() + 1);
    return Result::kInvalidJson;
  }
  const json msg = *std::move(parsed);
  if (!msg.is_object() || !msg.contains("type") || !msg["type"].is_string()) {
    stats_.set_unknown_types(stats_.unknown_types() + 1);
    return Result::kInvalidMessage;
  }
  stats_.set_messages(stats_.messages() + 1);
  const std::string type = msg["type"].get<std::string>();
  static const json kNull;
  const json& data = msg.contains("data") ? msg["data"] : kNull;
  if (type == "axm:monitor") {
    OnMonitor(data, now);
  } else if (type == "axm:option:configuration") {
    OnConfiguration(data);
  } else if (type == "axm:action") {
    OnAction(data);
  } else if (type == "axm:reply") {
    if (!data.is_object()) return Result::kInvalidMessage;
    std::string name = StringOr(data, "action_name");
    if (on_reply && !name.empty()) on_reply(name, data.contains("return") ? data["return"] : json());
  } else if (type == "axm:scoped_action:stream" || type == "axm:scoped_action:error" ||
             type == "axm:scoped_action:end") {
    if (!data.is_object()) return Result::kInvalidMessage;
    std::string kind = type.substr(type.rfind(':') + 1);
    if (on_scoped) {
      on_scoped(StringOr(data, "action_name"), StringOr(data, "uuid"), kind,
                data.contains("data") ? data["data"] : json());
    }
  } else if (type == "process:exception") {
    OnException(data, now);
  } else if (type == "human:event") {
    OnEvent(data, now);
  } else if (type == "application:dependencies" || type == "profilings" ||
             type == "axm:option:setPID" || type == "process:msg" || type == "axm:profiling") {
    // Known, nothing to keep.
  } else {
    stats_.set_messages(stats_.messages() - 1);
    stats_.set_unknown_types(stats_.unknown_types() + 1);
    return Result::kUnknownType;
  }
  if (on_message) on_message(type, data);
  return Result::kOk;
}

void ModuleChannelState::OnConfiguration(const json& data) {
  if (!data.is_object()) return;
  if (data.contains("module_conf")) announced_conf_json_ = Clip(data["module_conf"].dump(), 65536);
  // Announcements merge, as PM2's Object.assign of axm_options: pmx sends a second one with
  // only {"error": true}, which must not drop the pid announced first.
  if (data.contains("pid")) {
    pid_override_.clear();
    AppendPids(data["pid"], &pid_override_);
    if (pid_override_.size() > 64) pid_override_.resize(64);
    pid_join_ = BoolOr(data, "pid_join", false);
  }
  const json* w = data.contains("widget") && data["widget"].is_object() ? &data["widget"] : nullptr;
  if (w == nullptr) return;
  widget_announced_ = true;
  herd::v1::ModuleWidget widget;
  widget.set_type(Clip(StringOr(*w, "type", "generic"), 64));
  widget.set_logo(Clip(StringOr(*w, "logo"), 2048));
  if (w->contains("theme") && (*w)["theme"].is_array()) {
    // @pm2/io merges the module's theme into its default one element by element, and
    // arrays by concatenation: pm2-elasticsearch's four colours arrive after the four
    // defaults. The module's own are the last four.
    const json& theme = (*w)["theme"];
    const size_t from = theme.size() > 4 ? theme.size() - 4 : 0;
    for (size_t i = from; i < theme.size(); ++i) {
      if (theme[i].is_string()) widget.add_theme(Clip(theme[i].get<std::string>(), 64));
    }
  }
  static const json kEmpty = json::object();
  const json& el = w->contains("el") && (*w)["el"].is_object() ? (*w)["el"] : kEmpty;
  widget.set_el_probes(BoolOr(el, "probes", true));
  widget.set_el_actions(BoolOr(el, "actions", true));
  const json& block = w->contains("block") && (*w)["block"].is_object() ? (*w)["block"] : kEmpty;
  widget.set_block_actions(BoolOr(block, "actions", true));
  widget.set_block_cpu(BoolOr(block, "cpu", true));
  widget.set_block_mem(BoolOr(block, "mem", true));
  widget.set_block_issues(BoolOr(block, "issues", true));
  widget.set_block_meta(BoolOr(block, "meta", true));
  widget.set_block_meta_block(BoolOr(block, "meta_block", true));
  if (block.contains("main_probes") && block["main_probes"].is_array()) {
    for (const auto& p : block["main_probes"]) {
      if (p.is_string() && widget.main_probes_size() < 16) {
        widget.add_main_probes(Clip(p.get<std::string>(), 256));
      }
    }
  }
  widget_ = std::move(widget);
}

void ModuleChannelState::OnMonitor(const json& data, absl::Time now) {
  if (!data.is_object()) return;
  const int64_t now_ms = absl::ToUnixMillis(now);
  for (auto it = data.begin(); it != data.end(); ++it) {
    const std::string& name = it.key();
    if (name.empty() || name.size() > 256) continue;
    if (!probes_.count(name) && probes_.size() >= limits_.max_probes) continue;
    const json& entry = it.value();
    const json* value = &entry;
    herd::v1::Probe p;
    p.set_name(name);
    if (entry.is_object()) {
      static const json kNull;
      value = entry.contains("value") ? &entry["value"] : &kNull;
      p.set_type(Clip(StringOr(entry, "type"), 64));
      p.set_unit(Clip(StringOr(entry, "unit"), 64));
      p.set_agg_type(Clip(StringOr(entry, "agg_type"), 32));
    }
    if (value->is_object() || value->is_array()) continue;  // not a probe value
    p.set_value(Clip(value->is_string() ? value->get<std::string>() : value->dump(),
                     limits_.max_text_bytes));
    double number = 0;
    if (AsNumber(*value, &number)) {
      p.set_numeric(true);
      p.set_number(number);
      auto& h = history_[name];
      h.push_back({now_ms, number});
      while (h.size() > limits_.probe_history) h.pop_front();
    }
    p.set_updated_at_unix_ms(now_ms);
    probes_[name] = std::move(p);
  }
}

void ModuleChannelState::OnAction(const json& data) {
  if (!data.is_object()) return;
  std::string name = StringOr(data, "action_name");
  if (name.empty() || name.size() > 256) return;
  if (!actions_.count(name) && actions_.size() >= limits_.max_actions) return;
  herd::v1::ModuleAction a;
  a.set_name(name);
  std::string type = StringOr(data, "action_type");
  if (type.empty()) {
    type = name.rfind("km:", 0) == 0 || name.rfind("internal:", 0) == 0 ? "internal" : "custom";
  }
  a.set_type(Clip(type, 32));
  if (data.contains("arity") && data["arity"].is_number_unsigned()) {
    a.set_arity(static_cast<uint32_t>(std::min<uint64_t>(data["arity"].get<uint64_t>(), 16)));
  }
  actions_[name] = std::move(a);
}

void ModuleChannelState::OnException(const json& data, absl::Time now) {
  ++issues_count_;
  herd::v1::ModuleIssue issue;
  issue.set_at_unix_ms(absl::ToUnixMillis(now));
  if (data.is_object()) {
    issue.set_name(Clip(StringOr(data, "name", "Error"), 256));
    issue.set_message(Clip(StringOr(data, "message"), limits_.max_text_bytes));
    issue.set_stack(Clip(StringOr(data, "stack"), limits_.max_text_bytes * 4));
  } else {
    issue.set_name("Error");
    issue.set_message(Clip(data.is_string() ? data.get<std::string>() : data.dump(),
                           limits_.max_text_bytes));
  }
  issue.set_count(1);
  issue.set_first_at_unix_ms(issue.at_unix_ms());
  // The same name and message again: the group moves to the end (latest last), counted.
  auto same = std::find_if(issues_.begin(), issues_.end(), [&](const herd::v1::ModuleIssue& i) {
    return i.name() == issue.name() && i.message() == issue.message();
  });
  if (same != issues_.end()) {
    issue.set_count(same->count() + 1);
    issue.set_first_at_unix_ms(same->first_at_unix_ms());
    issues_.erase(same);
  }
  issues_.push_back(std::move(issue));
  while (issues_.size() > limits_.kept_issues) issues_.pop_front();
}

size_t ModuleChannelState::ClearIssues() {
  const size_t n = issues_.size();
  issues_.clear();
  issues_count_ = 0;
  return n;
}

void ModuleChannelState::OnEvent(const json& data, absl::Time now) {
  herd::v1::ModuleEventRecord e;
  e.set_at_unix_ms(absl::ToUnixMillis(now));
  if (data.is_object()) {
    e.set_name(Clip(StringOr(data, "__name", "event"), 256));
    json rest = data;
    rest.erase("__name");
    e.set_data_json(Clip(rest.dump(), limits_.max_text_bytes));
  } else {
    e.set_name("event");
    e.set_data_json(Clip(data.dump(), limits_.max_text_bytes));
  }
  events_.push_back(std::move(e));
  while (events_.size() > limits_.kept_events) events_.pop_front();
}

void ModuleChannelState::ResetForNewProcess() {
  actions_.clear();
  pid_override_.clear();
  pid_join_ = false;
  probes_.clear();
}

const std::deque<ProbePoint>* ModuleChannelState::history(const std::string& probe) const {
  auto it = history_.find(probe);
  return it == history_.end() ? nullptr : &it->second;
}

void ModuleChannelState::Fill(herd::v1::ModuleInfo* info) const {
  if (widget_announced_) *info->mutable_widget() = widget_;
  for (const auto& [name, p] : probes_) *info->add_probes() = p;
  for (const auto& [name, a] : actions_) *info->add_actions() = a;
  info->set_issues_count(issues_count_);
  for (const auto& i : issues_) *info->add_issues() = i;
  for (const auto& e : events_) *info->add_events() = e;
  for (pid_t p : pid_override_) info->add_pid_override(p);
  info->set_pid_join(pid_join_);
  *info->mutable_channel() = stats_;
  info->set_announced_conf_json(announced_conf_json_);
}

std::vector<herd::v1::Probe> ModuleChannelState::MainProbes(size_t max) const {
  std::vector<herd::v1::Probe> out;
  if (widget_announced_) {
    for (const auto& name : widget_.main_probes()) {
      auto it = probes_.find(name);
      if (it != probes_.end()) out.push_back(it->second);
    }
  }
  if (out.empty()) {
    for (const auto& [name, p] : probes_) {
      if (out.size() >= max) break;
      out.push_back(p);
    }
  }
  return out;
}

}  // namespace herd::agent

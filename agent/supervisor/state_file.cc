#include "agent/supervisor/state_file.h"

#include "absl/strings/str_cat.h"
#include "agent/supervisor/app_spec.h"
#include "common/atomic_file.h"
#include "common/logging.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace herd::agent {

using nlohmann::json;

std::string SerializeState(const std::vector<PersistedUnit>& units) {
  json doc;
  doc["version"] = 1;
  doc["units"] = json::array();
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  for (const auto& u : units) {
    std::string spec_json;
    (void)google::protobuf::util::MessageToJsonString(u.spec, &spec_json, opts);
    json j;
    j["spec"] = json::parse(spec_json);
    j["desired_running"] = u.desired_running;
    j["pid"] = u.pid;
    j["start_ticks"] = u.start_ticks;
    doc["units"].push_back(std::move(j));
  }
  return doc.dump(2) + "\n";
}

absl::StatusOr<std::vector<PersistedUnit>> ParseState(absl::string_view text,
                                                      absl::string_view origin) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("units") ||
      !doc["units"].is_array()) {
    return absl::DataLossError(absl::StrCat(
        origin, " is not a Herd state file (expected {\"version\":1,\"units\":[...]}); move it "
                "aside to start with no units"));
  }
  std::vector<PersistedUnit> out;
  size_t i = 0;
  for (const auto& j : doc["units"]) {
    PersistedUnit u;
    if (!j.is_object() || !j.contains("spec")) {
      return absl::DataLossError(absl::StrCat(origin, ": units[", i, "] has no spec"));
    }
    google::protobuf::util::JsonParseOptions popts;
    popts.ignore_unknown_fields = true;  // written by a newer agent
    auto st = google::protobuf::util::JsonStringToMessage(j["spec"].dump(), &u.spec, popts);
    if (!st.ok()) {
      return absl::DataLossError(
          absl::StrCat(origin, ": units[", i, "].spec: ", st.message().as_string()));
    }
    if (absl::Status v = ValidateAppSpec(u.spec); !v.ok()) {
      return absl::DataLossError(absl::StrCat(origin, ": units[", i, "]: ", v.message()));
    }
    u.desired_running = j.value("desired_running", false);
    u.pid = j.value("pid", 0);
    u.start_ticks = j.value("start_ticks", uint64_t{0});
    out.push_back(std::move(u));
    ++i;
  }
  return out;
}

StateFile::StateFile(std::string path) : path_(std::move(path)), thread_([this] { Run(); }) {}

StateFile::~StateFile() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

absl::StatusOr<std::vector<PersistedUnit>> StateFile::Load() const {
  auto content = ReadFileToString(path_);
  if (!content.ok()) {
    if (absl::IsNotFound(content.status())) return std::vector<PersistedUnit>{};
    return content.status();
  }
  return ParseState(*content, path_);
}

void StateFile::Save(std::string content) {
  absl::MutexLock l(&mu_);
  pending_ = std::move(content);
  ++queued_;
}

absl::Status StateFile::Flush() {
  absl::MutexLock l(&mu_);
  uint64_t target = queued_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return written_ >= target; };
  mu_.Await(absl::Condition(&done));
  return last_status_;
}

void StateFile::Run() {
  static auto log = herd::Logger("state");
  while (true) {
    std::string content;
    uint64_t version;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return pending_.has_value() || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (!pending_.has_value()) return;
      content = std::move(*pending_);
      pending_.reset();
      version = queued_;
    }
    absl::Status st = WriteFileAtomically(path_, content, 0600);
    if (!st.ok()) log->error("event=state_write_failed path={} error=\"{}\"", path_, st.message());
    absl::MutexLock l(&mu_);
    last_status_ = st;
    written_ = version;
  }
}

}  // namespace herd::agent

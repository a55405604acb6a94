// ModuleConverger's artifacts (issue 24): fetched from the control plane, checked, kept for
// going back a version. See module_converger.h.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/modules/module_converger.h"
#include "common/atomic_file.h"
#include "common/sha256.h"
#include "nlohmann/json.hpp"

namespace herd::agent {
namespace {

using json = nlohmann::json;

constexpr char kKeptFile[] = "kept.json";
// Per module: the artifact installed last and the one before it.
constexpr size_t kKeptPerModule = 2;

}  // namespace

std::string ModuleConverger::ArtifactPath(const std::string& sha256) const {
  return absl::StrCat(options_.artifacts_dir, "/", sha256, ".tgz");
}

std::optional<std::string> ModuleConverger::InstallSource(const std::string& name, Item& item) {
  const std::string digest = ArtifactDigest(item.want.source());
  if (digest.empty()) return item.want.source();
  if (options_.artifacts_dir.empty() || fetcher_ == nullptr) {
    Failed(item, "this agentd fetches no artifacts (it has no control plane link)");
    return std::nullopt;
  }
  const std::string path = ArtifactPath(digest);
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    // Kept from an earlier fetch: checked again, since a file on disk can change.
    auto hashed = FileSha256(path);
    if (hashed.ok() && *hashed == digest) return path;
    log_->warn("event=artifact_damaged path={} error=\"{}\"", path,
               hashed.ok() ? absl::StrCat("hashes to ", *hashed) : hashed.status().message());
    unlink(path.c_str());
  }
  std::error_code ec;
  std::filesystem::create_directories(options_.artifacts_dir, ec);
  busy_ = true;
  SetState(item, "fetching");
  Changed();
  log_->info("event=artifact_fetch module={} sha256={}", name, digest);
  fetcher_->Fetch(digest, path, [this, alive = alive_, name, want = item.want](absl::Status s) {
    if (*alive) Fetched(name, want, s);
  });
  return std::nullopt;
}

void ModuleConverger::Fetched(const std::string& name, const herd::v1::DesiredModule& asked,
                              const absl::Status& s) {
  busy_ = false;
  auto it = items_.find(name);
  if (it != items_.end() && it->second.want.source() == asked.source() && !s.ok()) {
    // Busy or unreachable: soon again, with jitter; anything else takes the backoff.
    absl::Duration wait = absl::ZeroDuration();
    if (absl::IsResourceExhausted(s) || absl::IsUnavailable(s)) {
      rng_ ^= rng_ << 13;
      rng_ ^= rng_ >> 7;
      rng_ ^= rng_ << 17;
      const int64_t max_ms = std::max<int64_t>(1000, absl::ToInt64Milliseconds(options_.busy_retry_max));
      wait = absl::Milliseconds(1000 + static_cast<int64_t>(rng_ % static_cast<uint64_t>(max_ms)));
    }
    Failed(it->second, absl::StrCat("fetching artifact ", asked.source(), ": ", s.message()),
           wait);
    Changed();
  }
  Next();
}

void ModuleConverger::Remember(const std::string& name, const std::string& sha256) {
  std::vector<std::string>& kept = kept_[name];
  kept.erase(std::remove(kept.begin(), kept.end(), sha256), kept.end());
  kept.insert(kept.begin(), sha256);
  if (kept.size() > kKeptPerModule) kept.resize(kKeptPerModule);
  Prune();
}

void ModuleConverger::Forget(const std::string& name) {
  if (kept_.erase(name) > 0) Prune();
}

std::vector<std::string> ModuleConverger::KeptArtifacts(const std::string& name) const {
  auto it = kept_.find(name);
  return it == kept_.end() ? std::vector<std::string>{} : it->second;
}

void ModuleConverger::Prune() {
  if (options_.artifacts_dir.empty()) return;
  std::set<std::string> keep;
  json doc = json::object();
  for (const auto& [name, list] : kept_) {
    keep.insert(list.begin(), list.end());
    doc[name] = list;
  }
  for (const auto& [name, item] : items_) {
    if (std::string d = ArtifactDigest(item.want.source()); !d.empty()) keep.insert(d);
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(options_.artifacts_dir, ec)) {
    const std::string file = e.path().filename().string();
    if (!absl::EndsWith(file, ".tgz") || file.size() != 64 + 4) continue;
    if (keep.count(file.substr(0, 64))) continue;
    log_->info("event=artifact_removed file={} reason=not_kept", file);
    std::filesystem::remove(e.path(), ec);
  }
  if (auto s = WriteFileAtomically(absl::StrCat(options_.artifacts_dir, "/", kKeptFile),
                                   doc.dump(), 0600);
      !s.ok()) {
    log_->warn("event=artifacts_kept_not_saved error=\"{}\"", s.message());
  }
}

void ModuleConverger::LoadKept() {
  if (options_.artifacts_dir.empty()) return;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(options_.artifacts_dir, ec)) {
    // A fetch the last run did not finish.
    if (absl::EndsWith(e.path().filename().string(), ".part")) std::filesystem::remove(e.path(), ec);
  }
  auto text = ReadFileToString(absl::StrCat(options_.artifacts_dir, "/", kKeptFile));
  if (!text.ok()) return;
  json doc = json::parse(*text, nullptr, false);
  if (!doc.is_object()) return;
  for (const auto& [name, list] : doc.items()) {
    if (!list.is_array()) continue;
    std::vector<std::string>& kept = kept_[name];
    for (const auto& d : list) {
      if (d.is_string() && IsSha256Hex(d.get<std::string>()) && kept.size() < kKeptPerModule) {
        kept.push_back(d.get<std::string>());
      }
    }
  }
}

}  // namespace herd::agent

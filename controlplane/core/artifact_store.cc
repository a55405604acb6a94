#include "controlplane/core/artifact_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/logging.h"
#include "common/units.h"
#include "controlplane/core/deployments.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr char kUploadPrefix[] = ".upload-";

std::string Errno(const std::string& what, const std::string& path) {
  return absl::StrCat("cannot ", what, " ", path, ": ", strerror(errno));
}

json ToJson(const herd::v1::Artifact& a) {
  return json{{"sha256", a.sha256()},
              {"name", a.name()},
              {"version", a.version()},
              {"size", a.size()},
              {"filename", a.filename()},
              {"uploaded_at_unix_ms", a.uploaded_at_unix_ms()},
              {"uploaded_by", a.uploaded_by()}};
}

bool FromJson(const std::string& text, herd::v1::Artifact* a) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return false;
  auto str = [&](const char* k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
  };
  auto num = [&](const char* k) -> int64_t {
    return j.contains(k) && j[k].is_number_integer() ? j[k].get<int64_t>() : 0;
  };
  a->set_sha256(str("sha256"));
  if (!IsSha256Hex(a->sha256())) return false;
  a->set_source("sha256:" + a->sha256());
  a->set_name(str("name"));
  a->set_version(str("version"));
  a->set_size(static_cast<uint64_t>(std::max<int64_t>(0, num("size"))));
  a->set_filename(str("filename"));
  a->set_uploaded_at_unix_ms(num("uploaded_at_unix_ms"));
  a->set_uploaded_by(str("uploaded_by"));
  return true;
}

}  // namespace

ArtifactStore::ArtifactStore(ArtifactStoreOptions options, const Clock& clock)
    : options_(std::move(options)), clock_(clock), log_(herd::Logger("artifacts")) {}

ArtifactStore::~ArtifactStore() = default;

absl::StatusOr<std::unique_ptr<ArtifactStore>> ArtifactStore::Open(ArtifactStoreOptions options,
                                                                   const Clock& clock) {
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create the artifacts directory ", options.dir, ": ", ec.message()));
  }
  chmod(options.dir.c_str(), 0700);
  if (access(options.dir.c_str(), W_OK) != 0) {
    return absl::FailedPreconditionError(Errno("write to the artifacts directory", options.dir));
  }
  size_t left = 0;
  for (const auto& e : fs::directory_iterator(options.dir, ec)) {
    if (absl::StartsWith(e.path().filename().string(), kUploadPrefix)) {
      fs::remove(e.path(), ec);
      ++left;
    }
  }
  auto store = std::unique_ptr<ArtifactStore>(new ArtifactStore(std::move(options), clock));
  store->log_->info("event=artifacts_opened dir={} max_bytes={} unfinished_uploads_removed={}",
                    store->options_.dir, store->options_.max_bytes, left);
  return store;
}

std::string ArtifactStore::PathOf(const std::string& sha256) const {
  return absl::StrCat(options_.dir, "/", sha256, ".tgz");
}

absl::StatusOr<std::unique_ptr<ArtifactStore::Upload>> ArtifactStore::Begin(
    const herd::v1::ArtifactHeader& header) {
  if (header.size() == 0) {
    return Refused(absl::InvalidArgumentError("the upload's header must give its size in bytes"));
  }
  if (header.size() > options_.max_bytes) {
    return Refused(absl::InvalidArgumentError(absl::StrCat(
        "the archive is ", FormatBytes(header.size()), ", more than this control plane keeps (",
        FormatBytes(options_.max_bytes), "): controlplane --artifact-max-bytes raises it")));
  }
  if (!header.sha256().empty() && !IsSha256Hex(header.sha256())) {
    return Refused(absl::InvalidArgumentError("the header's sha256 is not 64 lower-case hex digits"));
  }
  std::string tmp;
  {
    absl::MutexLock l(&mu_);
    if (uploading_ >= options_.max_uploads) {
      return Refused(absl::ResourceExhaustedError(absl::StrCat(
          options_.max_uploads, " uploads are in progress, the most at once: retry when one "
                                "is done")));
    }
    ++uploading_;
    tmp = absl::StrCat(options_.dir, "/", kUploadPrefix, getpid(), "-", ++next_tmp_);
  }
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const std::string msg = Errno("create", tmp);
    absl::MutexLock l(&mu_);
    --uploading_;
    return Refused(absl::InternalError(msg));
  }
  return std::unique_ptr<Upload>(new Upload(*this, header, tmp, fd));
}

ArtifactStore::Upload::Upload(ArtifactStore& store, herd::v1::ArtifactHeader header,
                              std::string tmp_path, int fd)
    : store_(store), header_(std::move(header)), tmp_path_(std::move(tmp_path)), fd_(fd) {}

ArtifactStore::Upload::~Upload() {
  if (fd_ >= 0) close(fd_);
  unlink(tmp_path_.c_str());  // moved into place, or left unfinished: gone either way
  absl::MutexLock l(&store_.mu_);
  --store_.uploading_;
}

absl::Status ArtifactStore::Upload::Write(absl::string_view chunk) {
  if (fd_ < 0) return absl::FailedPreconditionError("the upload has ended");
  if (received_ + chunk.size() > header_.size()) {
    return store_.Refused(absl::InvalidArgumentError(absl::StrCat(
        "more bytes arrived than the ", header_.size(), " the header announced")));
  }
  while (!chunk.empty()) {
    const ssize_t n = write(fd_, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      store_.log_->error("event=artifact_write_failed path={} error=\"{}\"", tmp_path_,
                         strerror(err));
      return store_.Refused(absl::UnavailableError(absl::StrCat(
          "the control plane cannot write the upload (", strerror(err), ") in ",
          store_.options_.dir, err == ENOSPC ? ": its disk is full" : "")));
    }
    hash_.Update(chunk.substr(0, static_cast<size_t>(n)));
    received_ += static_cast<uint64_t>(n);
    chunk.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<herd::v1::Artifact> ArtifactStore::Upload::Finish(const std::string& uploaded_by) {
  if (fd_ < 0) return absl::FailedPreconditionError("the upload has ended");
  const bool synced = fsync(fd_) == 0;
  close(fd_);
  fd_ = -1;
  if (!synced) {
    return store_.Refused(absl::UnavailableError(Errno("write", tmp_path_)));
  }
  if (received_ != header_.size()) {
    return store_.Refused(absl::InvalidArgumentError(absl::StrCat(
        "the upload ended after ", received_, " of the ", header_.size(), " bytes announced")));
  }
  const std::string digest = hash_.HexDigest();
  if (!header_.sha256().empty() && header_.sha256() != digest) {
    return store_.Refused(absl::InvalidArgumentError(absl::StrCat(
        "the bytes that arrived hash to ", digest, ", not the ", header_.sha256(),
        " announced: the upload was damaged; send it again")));
  }
  return store_.Keep(header_, tmp_path_, digest, received_, uploaded_by);
}

absl::StatusOr<herd::v1::Artifact> ArtifactStore::Keep(const herd::v1::ArtifactHeader& header,
                                                       const std::string& tmp_path,
                                                       const std::string& sha256, uint64_t size,
                                                       const std::string& uploaded_by) {
  ArchiveLimits limits = options_.archive;
  limits.read_manifest = true;
  limits.unpacked_flag = "agentd --module-max-unpacked";
  limits.files_flag = "agentd --module-max-files";
  auto totals = ScanArchive(tmp_path, limits);
  const std::string filename = header.filename().substr(0, 255);
  if (!totals.ok()) {
    return Refused(absl::InvalidArgumentError(absl::StrCat(
        filename.empty() ? "the upload" : filename, " is not a module archive: ",
        absl::StripPrefix(totals.status().message(), tmp_path + ": "))));
  }
  herd::v1::Artifact a;
  std::string name, version;
  if (auto s = ReadArtifactManifest(totals->manifest, &name, &version); !s.ok()) {
    return Refused(absl::InvalidArgumentError(absl::StrCat(
        filename.empty() ? "the upload" : filename, ": ", s.message())));
  }
  if (auto existing = Get(sha256); existing.ok()) {
    existing->set_created(false);
    return *existing;
  }
  a.set_sha256(sha256);
  a.set_source("sha256:" + sha256);
  a.set_name(name);
  a.set_version(version);
  a.set_size(size);
  a.set_filename(filename);
  a.set_uploaded_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
  a.set_uploaded_by(uploaded_by);
  a.set_created(true);
  const std::string path = PathOf(sha256);
  if (rename(tmp_path.c_str(), path.c_str()) != 0) {
    return Refused(absl::UnavailableError(Errno("keep the upload as", path)));
  }
  // The description last: an artifact is listed (and served) once both are there.
  auto s = WriteFileAtomically(absl::StrCat(options_.dir, "/", sha256, ".json"),
                               ToJson(a).dump(-1, ' ', false, json::error_handler_t::replace),
                               0600);
  if (!s.ok()) {
    unlink(path.c_str());
    return Refused(absl::UnavailableError(absl::StrCat("cannot keep the upload: ", s.message())));
  }
  uploaded_.fetch_add(1, std::memory_order_relaxed);
  log_->info("event=artifact_kept sha256={} name={} version={} bytes={} by=\"{}\"", sha256, name,
             version, size, uploaded_by);
  return a;
}

absl::StatusOr<herd::v1::Artifact> ArtifactStore::Get(const std::string& sha256) const {
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError("an artifact's sha256 is 64 lower-case hex digits");
  }
  auto text = ReadFileToString(absl::StrCat(options_.dir, "/", sha256, ".json"));
  herd::v1::Artifact a;
  struct stat st;
  if (!text.ok() || !FromJson(*text, &a) || a.sha256() != sha256 ||
      stat(PathOf(sha256).c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "no artifact sha256:", sha256, " in ", options_.dir,
        ": upload it (agentctl deploy FILE.tgz); replicas must share --artifacts-dir"));
  }
  return a;
}

bool ArtifactStore::AcquireFetch(size_t max) {
  uint64_t now = fetching_.load(std::memory_order_relaxed);
  do {
    if (now >= max) {
      fetches_refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  } while (!fetching_.compare_exchange_weak(now, now + 1, std::memory_order_relaxed));
  fetches_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ArtifactStore::ReleaseFetch(uint64_t bytes_sent) {
  fetching_.fetch_sub(1, std::memory_order_relaxed);
  bytes_served_.fetch_add(bytes_sent, std::memory_order_relaxed);
}

ArtifactStore::Counts ArtifactStore::counts() const {
  Counts c;
  c.uploaded = uploaded_.load(std::memory_order_relaxed);
  c.uploads_refused = refused_.load(std::memory_order_relaxed);
  c.fetches = fetches_.load(std::memory_order_relaxed);
  c.fetches_refused = fetches_refused_.load(std::memory_order_relaxed);
  c.fetching = fetching_.load(std::memory_order_relaxed);
  c.bytes_served = bytes_served_.load(std::memory_order_relaxed);
  return c;
}

std::vector<herd::v1::Artifact> ArtifactStore::List(const std::string& name) const {
  std::vector<herd::v1::Artifact> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.dir, ec)) {
    const std::string file = e.path().filename().string();
    if (file.size() != 64 + 5 || !absl::EndsWith(file, ".json")) continue;
    auto a = Get(file.substr(0, 64));
    if (!a.ok() || (!name.empty() && a->name() != name)) continue;
    out.push_back(std::move(*a));
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) {
    return x.uploaded_at_unix_ms() > y.uploaded_at_unix_ms() ||
           (x.uploaded_at_unix_ms() == y.uploaded_at_unix_ms() && x.sha256() < y.sha256());
  });
  return out;
}

}  // namespace herd::controlplane

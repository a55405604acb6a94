// ArtifactStore: module archives uploaded to the control plane (issue 24), kept
// content-addressed in one directory: DIR/<sha256>.tgz and its description DIR/<sha256>.json
// (name, version, size, who uploaded it, when). The store (SQLite or etcd) holds only the
// reference, as a deployment's source "sha256:<hex>"; the bytes never enter it.
//
// Where DIR is: beside the SQLite data by default (DATA/artifacts); with replicas on etcd,
// a directory every replica mounts (`--artifacts-dir`, e.g. NFS), since an agent fetches from
// whichever replica holds its stream. A replica that lacks an artifact says so, naming the
// directory, rather than serving something else.
//
// An upload is written to DIR/.upload-*, hashed as it arrives, and kept only once it is
// whole: its size is the announced one and within the cap, its digest the announced one (if
// any), and it is a module archive (the same scan agentd runs before extracting: no bomb, a
// package.json with a name and an exact version). Anything else removes it and says why.
// Uploads at once are bounded (a refusal is counted). The same bytes uploaded again are one
// artifact (created: false).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/archive_scan.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

struct ArtifactStoreOptions {
  std::string dir;
  // The largest archive kept (controlplane --artifact-max-bytes).
  uint64_t max_bytes = 64ull << 20;
  // Uploads in progress at once; more are refused (RESOURCE_EXHAUSTED).
  size_t max_uploads = 4;
  // What an archive may unpack to: agentd's own defaults, so that what is kept here installs.
  ArchiveLimits archive;
};

class ArtifactStore {
 public:
  // Creates the directory (0700) if needed and removes uploads a previous run left behind.
  static absl::StatusOr<std::unique_ptr<ArtifactStore>> Open(ArtifactStoreOptions options,
                                                             const Clock& clock);
  ~ArtifactStore();

  // One upload in progress; destroyed unfinished (the client went away), it leaves nothing.
  class Upload {
   public:
    ~Upload();
    Upload(const Upload&) = delete;
    Upload& operator=(const Upload&) = delete;
    // The next bytes; an error (more than announced, a write that failed) ends the upload.
    absl::Status Write(absl::string_view chunk);
    // Checks what arrived and keeps it (see the header comment).
    absl::StatusOr<herd::v1::Artifact> Finish(const std::string& uploaded_by);

   private:
    friend class ArtifactStore;
    Upload(ArtifactStore& store, herd::v1::ArtifactHeader header, std::string tmp_path, int fd);
    ArtifactStore& store_;
    const herd::v1::ArtifactHeader header_;
    const std::string tmp_path_;
    int fd_;
    uint64_t received_ = 0;
    Sha256 hash_;
  };
  // INVALID_ARGUMENT for a header past the cap (or without a size), RESOURCE_EXHAUSTED when
  // max_uploads are in progress.
  absl::StatusOr<std::unique_ptr<Upload>> Begin(const herd::v1::ArtifactHeader& header);

  // NOT_FOUND naming the directory when this control plane does not have it.
  absl::StatusOr<herd::v1::Artifact> Get(const std::string& sha256) const;
  // Newest first; `name` filters (empty: all).
  std::vector<herd::v1::Artifact> List(const std::string& name) const;
  // Where an artifact's bytes are (they may not exist).
  std::string PathOf(const std::string& sha256) const;
  const std::string& dir() const { return options_.dir; }
  uint64_t max_bytes() const { return options_.max_bytes; }

  // Serving to agents (the Gateway's FetchArtifact): a fetch takes a slot, at most
  // `max` at once (false: refused and counted); bytes sent are counted.
  bool AcquireFetch(size_t max);
  void ReleaseFetch(uint64_t bytes_sent);

  struct Counts {
    uint64_t uploaded = 0, uploads_refused = 0;
    uint64_t fetches = 0, fetches_refused = 0, fetching = 0, bytes_served = 0;
  };
  Counts counts() const;

 private:
  ArtifactStore(ArtifactStoreOptions options, const Clock& clock);
  // Checks a whole upload and moves it into place.
  absl::StatusOr<herd::v1::Artifact> Keep(const herd::v1::ArtifactHeader& header,
                                          const std::string& tmp_path, const std::string& sha256,
                                          uint64_t size, const std::string& uploaded_by);
  absl::Status Refused(absl::Status s) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  const ArtifactStoreOptions options_;
  const Clock& clock_;
  std::shared_ptr<spdlog::logger> log_;
  absl::Mutex mu_;
  size_t uploading_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_tmp_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> uploaded_{0}, refused_{0};
  std::atomic<uint64_t> fetches_{0}, fetches_refused_{0}, fetching_{0}, bytes_served_{0};
};

}  // namespace herd::controlplane

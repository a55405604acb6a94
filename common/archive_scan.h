// ScanArchive: what a module archive would unpack to, read before anything is written.
//
// A 2 MB tarball of zeros unpacks to 2 GiB, and tar writes what it is given: the install
// would fill the agent's disk (and every unit's logs with it) before any check on the
// extracted tree could run. ScanArchive walks the tar headers through zlib (a .tgz, or a
// plain .tar read as is), adds up the sizes of the members and counts them, and stops as
// soon as either passes its limit, so that a bomb costs at most the limit's worth of
// inflating and no disk at all. Sparse members (whose unpacked size is not their stored
// size) are refused: `npm pack` never makes them. pax headers that set a member's size are
// honoured, as tar honours them; a header whose checksum or ustar magic is wrong (tar would
// skip it and look further, where this scan would not) is refused, and so is a global pax
// header that sets sizes. The caller tells tar the compression this scan found (gzip or
// none), so that tar never guesses something else from the same bytes.
//
// Shared by agentd (before it extracts a module) and the control plane (an uploaded module
// artifact is checked, and its package.json read, before it is kept: issue 24).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace herd {

struct ArchiveLimits {
  uint64_t max_unpacked_bytes = 512ull << 20;
  uint64_t max_files = 20000;
  // How the errors say to raise each limit (the program's own flag).
  const char* unpacked_flag = "agentd --module-max-unpacked";
  const char* files_flag = "agentd --module-max-files";
  // Keep the module's manifest: the first regular member named TOP/package.json (one
  // directory deep, as `npm pack` makes package/package.json), at most kMaxManifestBytes.
  bool read_manifest = false;
};

inline constexpr uint64_t kMaxManifestBytes = 1 << 20;

struct ArchiveTotals {
  uint64_t unpacked_bytes = 0;  // the regular files' sizes, added up
  uint64_t files = 0;           // members of every kind (files, directories, links)
  bool gzip = false;            // gzip-compressed (else a plain tar archive): tell tar so
  // With read_manifest: the package.json found (empty when there is none).
  std::string manifest;
};

// InvalidArgument naming the archive, the limit and how to raise it when a limit is passed
// or the archive is not a tar archive; NotFound when it cannot be opened.
absl::StatusOr<ArchiveTotals> ScanArchive(const std::string& path, const ArchiveLimits& limits);

}  // namespace herd

// A module archive (agentctl install FILE.tgz, or what `npm pack` fetched): ScanArchive reads
// its headers through zlib before tar may write anything. Nothing may throw, crash or loop;
// what it accepts stays within the limits it was given, and the limits hold whatever the
// headers claim.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/archive_scan.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // ScanArchive reads a file (as gzopen does): one per process, rewritten for each input.
  static const std::string path = [] {
    char tmpl[] = "/tmp/herd-archive-fuzz-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd >= 0) close(fd);
    return std::string(tmpl);
  }();
  const int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return 0;
  const bool written = write(fd, data, size) == static_cast<ssize_t>(size);
  close(fd);
  if (!written) return 0;
  herd::ArchiveLimits limits;
  limits.max_unpacked_bytes = 1 << 20;  // small, so that inflating stays cheap per input
  limits.max_files = 64;
  // The control plane also reads the manifest out (an uploaded artifact): half the inputs.
  limits.read_manifest = size > 0 && (data[size - 1] & 1);
  auto totals = herd::ScanArchive(path, limits);
  if (!totals.ok()) return 0;
  HERD_FUZZ_CHECK(totals->unpacked_bytes <= limits.max_unpacked_bytes);
  HERD_FUZZ_CHECK(totals->files <= limits.max_files);
  HERD_FUZZ_CHECK(totals->manifest.size() <= herd::kMaxManifestBytes);
  HERD_FUZZ_CHECK(limits.read_manifest || totals->manifest.empty());
  return 0;
}

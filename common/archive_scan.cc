#include "common/archive_scan.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include <algorithm>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/units.h"

namespace herd {
namespace {

constexpr size_t kBlock = 512;
// A pax or GNU long-name header's own data is read into memory: names and a few records.
constexpr uint64_t kMaxMetaBytes = 1 << 20;

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using Gz = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

// Reads exactly n bytes; false at the end of the stream or on an error.
bool ReadFull(gzFile f, char* out, size_t n) {
  while (n > 0) {
    const int r = gzread(f, out, static_cast<unsigned>(std::min<size_t>(n, 1 << 30)));
    if (r <= 0) return false;
    out += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// A numeric header field: octal text (NUL or space terminated), or GNU's base-256 for
// large values (high bit of the first byte set).
bool ParseNumber(const char* field, size_t len, uint64_t* out) {
  const auto* b = reinterpret_cast<const unsigned char*>(field);
  if (b[0] & 0x80) {
    if (b[0] & 0x40) return false;  // negative
    uint64_t v = b[0] & 0x3f;
    for (size_t i = 1; i < len; ++i) {
      if (v > (UINT64_MAX >> 8)) return false;
      v = (v << 8) | b[i];
    }
    *out = v;
    return true;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < len && field[i] == ' ') ++i;
  bool digits = false;
  for (; i < len && field[i] >= '0' && field[i] <= '7'; ++i) {
    if (v > (UINT64_MAX >> 3)) return false;
    v = v * 8 + static_cast<uint64_t>(field[i] - '0');
    digits = true;
  }
  if (i < len && field[i] != '\0' && field[i] != ' ') return false;
  *out = digits ? v : 0;
  return true;
}

// Skips n bytes of member data (rounded up to the block), inflating but keeping nothing.
bool Skip(gzFile f, uint64_t n) {
  uint64_t padded = (n + kBlock - 1) / kBlock * kBlock;
  char buf[16384];
  while (padded > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(padded, sizeof buf));
    if (!ReadFull(f, buf, chunk)) return false;
    padded -= chunk;
  }
  return true;
}

// pax records: "LEN key=value\n"...; returns the size a "size" record sets (if any), the
// path a "path" record sets, and whether a GNU sparse key is present.
bool ParsePax(absl::string_view data, uint64_t* size, bool* has_size, std::string* path,
              bool* sparse) {
  while (!data.empty()) {
    const size_t space = data.find(' ');
    uint64_t len = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtoi(data.substr(0, space), &len) ||
        len <= space || len > data.size()) {
      return false;
    }
    absl::string_view record = data.substr(space + 1, len - space - 1);
    data.remove_prefix(len);
    if (!record.empty() && record.back() == '\n') record.remove_suffix(1);
    const size_t eq = record.find('=');
    if (eq == absl::string_view::npos) return false;
    const absl::string_view key = record.substr(0, eq), value = record.substr(eq + 1);
    if (key == "size") {
      if (!absl::SimpleAtoi(value, size)) return false;
      *has_size = true;
    } else if (key == "path") {
      *path = std::string(value);
    } else if (absl::StartsWith(key, "GNU.sparse")) {
      *sparse = true;
    }
  }
  return true;
}

// tar accepts a header whose checksum field matches the sum of its bytes (the field itself
// read as spaces), unsigned or signed; it skips others as damaged and looks further on, so a
// header it would skip must not be read as one either.
bool ChecksumMatches(const char* header) {
  uint64_t stored = 0;
  if (!ParseNumber(header + 148, 8, &stored)) return false;
  uint64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const bool field = i >= 148 && i < 156;
    unsigned_sum += field ? ' ' : static_cast<unsigned char>(header[i]);
    signed_sum += field ? ' ' : static_cast<signed char>(header[i]);
  }
  return stored == unsigned_sum || static_cast<int64_t>(stored) == signed_sum;
}

// The first bytes by which GNU tar recognises a compressed archive on its own (it would then
// run a decompressor on what this scanner read as a plain archive).
bool LooksCompressed(const unsigned char* b) {
  static const std::pair<const char*, size_t> kMagics[] = {
      {"\x1f\x8b", 2},          {"\x1f\x9d", 2},         {"\x1f\xa0", 2},
      {"BZh", 3},               {"LZIP", 4},             {"\x89LZO", 4},
      {"\xfd" "7zXZ", 5},        {"\x28\xb5\x2f\xfd", 4}, {"\x04\x22\x4d\x18", 4},
      {"\x5d\x00\x00", 3}};
  for (const auto& [magic, len] : kMagics) {
    if (memcmp(b, magic, len) == 0) return true;
  }
  return false;
}

// A member's name from its ustar header: prefix "/" name, each NUL-terminated in its field.
std::string HeaderName(const char* header) {
  auto field = [](const char* f, size_t len) { return std::string(f, strnlen(f, len)); };
  const std::string name = field(header, 100), prefix = field(header + 345, 155);
  return prefix.empty() ? name : absl::StrCat(prefix, "/", name);
}

// TOP/package.json, one directory deep ("./" leading components aside).
bool IsManifestPath(absl::string_view name) {
  while (absl::ConsumePrefix(&name, "./")) {
  }
  const size_t slash = name.find('/');
  return slash != absl::string_view::npos && slash > 0 &&
         name.substr(slash + 1) == "package.json" && name.substr(0, slash) != "..";
}

absl::Status Sparse(const std::string& path) {
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": has a sparse file, which unpacks to more than it stores; make the archive "
            "with `npm pack`"));
}

// Whether the archive is gzip-compressed (else a plain tar archive): what tar will be told,
// decided from the same first bytes this scanner reads, never left to tar's own guess.
absl::StatusOr<bool> DetectGzip(const std::string& path) {
  FILE* raw = fopen(path.c_str(), "rb");
  if (raw == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  }
  unsigned char first[kBlock] = {};
  const size_t n = fread(first, 1, sizeof first, raw);
  fclose(raw);
  const bool gzip = n >= 2 && first[0] == 0x1f && first[1] == 0x8b;
  if (!gzip && n >= 6 && LooksCompressed(first)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": is compressed in a way agentd does not install (only gzip, as `npm pack` "
              "makes, or a plain tar archive)"));
  }
  return gzip;
}

// Walks the headers of one archive, counting members and sizes against the limits.
class Scanner {
 public:
  Scanner(const std::string& path, const ArchiveLimits& limits, gzFile f)
      : path_(path), limits_(limits), f_(f) {}

  absl::Status Run();
  const ArchiveTotals& totals() const { return totals_; }

 private:
  absl::Status NotTar(absl::string_view why) const {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": not a tar archive that can be installed (", why, "): make it with `npm pack`"));
  }
  absl::Status TooManyFiles() const {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": holds more than ", limits_.max_files,
        " files, the limit for a module (", limits_.files_flag, " raises it)"));
  }
  absl::Status CheckHeader(const char* header);
  // A pax or GNU long-name header: its data is read (and counted), a pax size kept for the
  // member that follows.
  absl::Status Extended(char type, uint64_t size);
  absl::Status Pax(char type, absl::string_view records);
  // A member: counted, its data skipped (or kept, the manifest). `more` is false when the
  // archive ends in it.
  absl::Status Member(const char* header, uint64_t size, bool* more);
  absl::Status TooBig(uint64_t bytes) const {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": unpacks to more than ", FormatBytes(limits_.max_unpacked_bytes),
        " (the limit for a module; its first ", totals_.files, " members add up to ",
        FormatBytes(bytes), "): ", limits_.unpacked_flag, " raises it"));
  }

  const std::string& path_;
  const ArchiveLimits& limits_;
  gzFile f_;
  ArchiveTotals totals_;
  uint64_t next_size_ = 0, headers_ = 0, meta_bytes_ = 0;
  bool next_has_size_ = false;
  std::string next_name_;  // a GNU long name or pax path for the member that follows
};

absl::Status Scanner::Run() {
  char header[kBlock];
  for (;;) {
    if (!ReadFull(f_, header, kBlock)) {
      // tar stops at the end of the data too (with a warning): so do we.
      return totals_.files == 0 ? NotTar("no tar header") : absl::OkStatus();
    }
    if (std::all_of(header, header + kBlock, [](char c) { return c == '\0'; })) {
      return absl::OkStatus();
    }
    if (auto s = CheckHeader(header); !s.ok()) return s;
    uint64_t size = 0;
    if (!ParseNumber(header + 124, 12, &size)) return NotTar("a member's size is unreadable");
    const char type = header[156];
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      if (auto s = Extended(type, size); !s.ok()) return s;
      continue;
    }
    if (type == 'S') return Sparse(path_);
    bool more = true;
    if (auto s = Member(header, size, &more); !s.ok() || !more) return s;
  }
}

absl::Status Scanner::CheckHeader(const char* header) {
  if (memcmp(header + 257, "ustar", 5) != 0) return NotTar("a header is not a ustar header");
  if (!ChecksumMatches(header)) return NotTar("a header's checksum is wrong: it is damaged");
  // Headers of every kind count, so that an archive of extended headers alone cannot make
  // this scan inflate without end.
  if (++headers_ > 2 * limits_.max_files + 16) return TooManyFiles();
  return absl::OkStatus();
}

absl::Status Scanner::Extended(char type, uint64_t size) {
  if (size > kMaxMetaBytes) return NotTar(absl::StrCat("an extended header of ", size, " bytes"));
  std::string data(static_cast<size_t>((size + kBlock - 1) / kBlock * kBlock), '\0');
  if (!ReadFull(f_, data.data(), data.size())) return NotTar("it ends in a header");
  meta_bytes_ += data.size();  // inflated to be read, so it counts against the limit
  if (totals_.unpacked_bytes + meta_bytes_ > limits_.max_unpacked_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": unpacks to more than ", FormatBytes(limits_.max_unpacked_bytes),
        " (the limit for a module): ", limits_.unpacked_flag, " raises it"));
  }
  if (type == 'L') next_name_ = std::string(data.data(), strnlen(data.data(), size));
  if (type != 'x' && type != 'g') return absl::OkStatus();
  return Pax(type, absl::string_view(data).substr(0, size));
}

absl::Status Scanner::Pax(char type, absl::string_view records) {
  bool sparse = false, has_size = false;
  uint64_t pax_size = 0;
  std::string pax_path;
  if (!ParsePax(records, &pax_size, &has_size, &pax_path, &sparse)) {
    return NotTar("a malformed pax header");
  }
  if (sparse) return Sparse(path_);
  // tar applies a global header's size to every member after it: no archive `npm
  // pack` makes has one, and reading sizes that way is not worth the risk.
  if (type == 'g' && has_size) return NotTar("a global header sets members' size");
  if (type == 'x' && has_size) {
    next_size_ = pax_size;
    next_has_size_ = true;
  }
  if (type == 'x' && !pax_path.empty()) next_name_ = std::move(pax_path);
  return absl::OkStatus();
}

absl::Status Scanner::Member(const char* header, uint64_t size, bool* more) {
  if (next_has_size_) size = next_size_;
  next_has_size_ = false;
  const std::string name = next_name_.empty() ? HeaderName(header) : std::move(next_name_);
  next_name_.clear();
  ++totals_.files;
  if (totals_.files > limits_.max_files) return TooManyFiles();
  // Regular files are what take space; other members carry no data in archives tar
  // makes, and whatever one claims is inflated to be skipped, so it counts all the same.
  if (size > limits_.max_unpacked_bytes ||
      totals_.unpacked_bytes + meta_bytes_ + size > limits_.max_unpacked_bytes) {
    return TooBig(totals_.unpacked_bytes + size);
  }
  totals_.unpacked_bytes += size;
  const char type = header[156];
  if (limits_.read_manifest && totals_.manifest.empty() && (type == '0' || type == '\0') &&
      IsManifestPath(name)) {
    if (size > kMaxManifestBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          path_, ": its ", name, " is ", FormatBytes(size), ", more than a manifest may be (",
          FormatBytes(kMaxManifestBytes), ")"));
    }
    std::string data(static_cast<size_t>((size + kBlock - 1) / kBlock * kBlock), '\0');
    *more = ReadFull(f_, data.data(), data.size());
    if (!*more) return NotTar("it ends inside package.json");
    data.resize(static_cast<size_t>(size));
    totals_.manifest = std::move(data);
    return absl::OkStatus();
  }
  // tar reports a truncated archive itself; what was counted is within the limits.
  *more = Skip(f_, size);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ArchiveTotals> ScanArchive(const std::string& path, const ArchiveLimits& limits) {
  auto gzip = DetectGzip(path);
  if (!gzip.ok()) return gzip.status();
  Gz f(gzopen(path.c_str(), "rb"));
  if (!f) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  }
  gzbuffer(f.get(), 64 * 1024);
  Scanner scanner(path, limits, f.get());
  if (auto s = scanner.Run(); !s.ok()) return s;
  ArchiveTotals totals = scanner.totals();
  totals.gzip = *gzip;
  return totals;
}

}  // namespace herd

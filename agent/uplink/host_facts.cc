#include "agent/uplink/host_facts.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"

namespace herd::agent {
namespace {

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "host";
  return buf;
}

}  // namespace

std::string ReadTrimmed(const std::string& path) {
  auto t = ReadFileToString(path);
  return t.ok() ? std::string(absl::StripAsciiWhitespace(*t)) : "";
}

std::string NewHostId() {
  std::string base;
  for (char c : Hostname()) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') base += c;
    if (base.size() >= 40) break;
  }
  while (!base.empty() && (base[0] == '-' || base[0] == '.')) base.erase(0, 1);
  if (base.empty()) base = "host";
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  return absl::StrCat(base, "-", absl::Hex(dist(rd) & 0xffffffffffffULL, absl::kZeroPad12));
}

void FillHostFacts(herd::v1::Hello* hello) {
  hello->set_hostname(Hostname());
  hello->set_boot_id(ReadTrimmed("/proc/sys/kernel/random/boot_id"));
  struct utsname u {};
  if (uname(&u) == 0) {
    hello->set_kernel(u.release);
    hello->set_arch(u.machine);
  }
  hello->set_cpu_count(static_cast<uint32_t>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN))));
  hello->set_memory_total_bytes(static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                                static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
}

}  // namespace herd::agent

#include "common/proc_stat.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace herd {
namespace {

// The last field read: rss.
constexpr int kLastField = 24;

// The next space-separated field of `rest`, consumed; false at the end.
bool NextField(absl::string_view& rest, absl::string_view* field) {
  const size_t b = rest.find_first_not_of(" \n");
  if (b == absl::string_view::npos) return false;
  const size_t e = rest.find_first_of(" \n", b);
  *field = rest.substr(b, e == absl::string_view::npos ? absl::string_view::npos : e - b);
  rest = e == absl::string_view::npos ? absl::string_view() : rest.substr(e);
  return true;
}

const char* FieldName(int n) {
  switch (n) {
    case 3: return "state";
    case 4: return "ppid";
    case 14: return "utime";
    case 15: return "stime";
    case 20: return "num_threads";
    case 22: return "starttime";
    case 23: return "vsize";
    case 24: return "rss";
    default: return "";
  }
}

absl::Status BadField(int n, absl::string_view value, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat(
      "field ", n, " (", FieldName(n), ") is \"", value.substr(0, 32),
      value.size() > 32 ? "..." : "", "\", not ", want, ": not a /proc/PID/stat line"));
}

template <class T>
absl::Status ReadNumber(int n, absl::string_view value, T* out) {
  if (!absl::SimpleAtoi(value, out)) {
    return BadField(n, value, std::numeric_limits<T>::is_signed
                                  ? "a signed number in range"
                                  : "an unsigned number in range");
  }
  return absl::OkStatus();
}

// Stores field `n` (proc(5) numbering) of `value` into `out`; other fields are skipped.
absl::Status ReadField(int n, absl::string_view value, ProcStat* out) {
  switch (n) {
    case 3:
      if (value.size() != 1 || !absl::ascii_isalpha(static_cast<unsigned char>(value[0]))) {
        return BadField(n, value, "one letter");
      }
      out->state = value[0];
      return absl::OkStatus();
    case 4: return ReadNumber(n, value, &out->ppid);
    case 14: return ReadNumber(n, value, &out->utime_ticks);
    case 15: return ReadNumber(n, value, &out->stime_ticks);
    case 20: return ReadNumber(n, value, &out->threads);
    case 22: return ReadNumber(n, value, &out->start_ticks);
    case 23: return ReadNumber(n, value, &out->vsize_bytes);
    case 24: {
      int64_t rss = 0;
      if (absl::Status s = ReadNumber(n, value, &rss); !s.ok()) return s;
      out->rss_pages = rss > 0 ? static_cast<uint64_t>(rss) : 0;
      return absl::OkStatus();
    }
    default: return absl::OkStatus();
  }
}

}  // namespace

uint64_t ProcStat::cpu_ticks() const {
  return utime_ticks > std::numeric_limits<uint64_t>::max() - stime_ticks
             ? std::numeric_limits<uint64_t>::max()
             : utime_ticks + stime_ticks;
}

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view content) {
  if (content.size() > kMaxProcStatBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "is ", content.size(), " bytes, over the ", kMaxProcStatBytes,
        " a /proc/PID/stat line can be: not a /proc/PID/stat file"));
  }
  const size_t open = content.find('(');
  const size_t close = content.rfind(')');
  if (open == absl::string_view::npos || close == absl::string_view::npos || close < open) {
    return absl::InvalidArgumentError(
        "has no \"(command)\" after the PID: empty, or not a /proc/PID/stat line");
  }
  absl::string_view rest = content.substr(close + 1);
  ProcStat out;
  absl::string_view value;
  for (int n = 3; n <= kLastField; ++n) {
    if (!NextField(rest, &value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ends at field ", n - 1, ", before field ", kLastField,
          " (rss): truncated (read again, or the kernel is older than Linux 2.6)"));
    }
    if (absl::Status s = ReadField(n, value, &out); !s.ok()) return s;
  }
  return out;
}

absl::StatusOr<uint64_t> ParseBootTime(absl::string_view proc_stat) {
  while (!proc_stat.empty()) {
    const size_t nl = proc_stat.find('\n');
    absl::string_view line = proc_stat.substr(0, nl);
    proc_stat = nl == absl::string_view::npos ? absl::string_view() : proc_stat.substr(nl + 1);
    if (!absl::ConsumePrefix(&line, "btime ")) continue;
    uint64_t btime = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &btime) || btime == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("has btime \"", line.substr(0, 32), "\", not a positive number"));
    }
    return btime;
  }
  return absl::InvalidArgumentError("has no btime line: not a /proc/stat file");
}

}  // namespace herd

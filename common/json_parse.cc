#include "common/json_parse.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log_escape.h"

namespace herd {
namespace {

using json = nlohmann::json;

// The first byte at which brackets nest deeper than `max_depth` (strings skipped), or npos.
size_t FirstTooDeep(absl::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return absl::string_view::npos;
}

// nlohmann's DOM builder, plus the path of the value being read so that an error can say
// which field it is in. Errors are kept, never thrown.
class PathTrackingSax {
 public:
  explicit PathTrackingSax(json& root) : dom_(root, /*allow_exceptions=*/false) {}

  bool null() { return Value(dom_.null()); }
  bool boolean(bool v) { return Value(dom_.boolean(v)); }
  bool number_integer(json::number_integer_t v) { return Value(dom_.number_integer(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return Value(dom_.number_unsigned(v)); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return Value(dom_.number_float(v, s));
  }
  bool string(json::string_t& v) { return Value(dom_.string(v)); }
  bool binary(json::binary_t& v) { return Value(dom_.binary(v)); }
  bool start_object(std::size_t n) {
    frames_.push_back({false, 0, {}});
    return dom_.start_object(n);
  }
  bool key(json::string_t& k) {
    frames_.back().key = k;
    return dom_.key(k);
  }
  bool end_object() {
    frames_.pop_back();
    return Value(dom_.end_object());
  }
  bool start_array(std::size_t n) {
    frames_.push_back({true, 0, {}});
    return dom_.start_array(n);
  }
  bool end_array() {
    frames_.pop_back();
    return Value(dom_.end_array());
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) {
    position_ = position;
    what_ = ex.what();
    path_ = Path();
    failed_ = true;
    return false;
  }

  bool failed() const { return failed_; }
  size_t position() const { return position_; }
  const std::string& what() const { return what_; }
  const std::string& path() const { return path_; }

 private:
  struct Frame {
    bool array;
    size_t index;
    std::string key;
  };
  // A value (scalar or a container just closed) is complete: the next one in an array has
  // the next index.
  bool Value(bool ok) {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
    return ok;
  }
  std::string Path() const {
    std::string p;
    for (const Frame& f : frames_) {
      if (f.array) {
        absl::StrAppend(&p, "[", f.index, "]");
      } else if (!f.key.empty()) {
        // Escaped: keys are outside text, and the message may be logged.
        absl::StrAppend(&p, p.empty() ? "" : ".", EscapeForLog(f.key, 64));
      }
    }
    return p;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<Frame> frames_;
  bool failed_ = false;
  size_t position_ = 0;
  std::string what_;
  std::string path_;
};

// nlohmann's message without its "[json.exception.parse_error.101] parse error at line 1,
// column 5: " prefix (the position is ours).
std::string Reason(std::string what) {
  if (size_t p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
  if (absl::StartsWith(what, "parse error")) {
    if (size_t p = what.find(": "); p != std::string::npos) what = what.substr(p + 2);
  }
  if (absl::StartsWith(what, "number overflow")) {
    absl::StrAppend(&what, " (a number must fit in a double: at most about 1.8e308)");
  }
  return what;
}

}  // namespace

std::string LineColumn(absl::string_view text, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return absl::StrCat("line ", line, ", column ", col);
}

absl::StatusOr<json> ParseJson(absl::string_view text, int max_depth) {
  if (size_t at = FirstTooDeep(text, max_depth); at != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        LineColumn(text, at), ": nested deeper than ", max_depth,
        " levels of arrays and objects; flatten the document"));
  }
  json doc;
  PathTrackingSax sax(doc);
  const bool ok = json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || sax.failed()) {
    // The position counts the offending character (1-based): point at it.
    const size_t at = sax.position() > 0 ? sax.position() - 1 : 0;
    return absl::InvalidArgumentError(absl::StrCat(
        LineColumn(text, at), sax.path().empty() ? "" : ", at ", sax.path(), ": ",
        Reason(sax.what())));
  }
  return doc;
}

std::string JsonForMessage(const json& v, size_t max_bytes) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > max_bytes) {
    size_t cut = max_bytes;
    // Not in the middle of a UTF-8 sequence.
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s.resize(cut);
    s += "...";
  }
  return s;
}

}  // namespace herd

// Bytes from outside (a module's channel lines, file names, values) made safe to put inside
// a key="value" log field: the result is printable, valid UTF-8 and holds no quote or
// newline, so one field can neither end the line nor forge the fields after it.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace herd {

// `"` -> \", `\` -> \\, \n \r \t as such, other control bytes, DEL and bytes that are not
// well-formed UTF-8 as \xHH; printable ASCII and well-formed UTF-8 as they are. At most
// `max_bytes` of the input are escaped; a longer input ends in "...(+N bytes)".
std::string EscapeForLog(absl::string_view bytes, size_t max_bytes = 1024);

}  // namespace herd

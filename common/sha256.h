// SHA-256 over data that arrives in pieces (an artifact uploaded or fetched in chunks), and
// of a whole file, as lower-case hex: the content address of a module artifact (issue 24).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace herd {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view data);
  // The digest of everything given so far (64 lower-case hex digits); the hash is then
  // started again.
  std::string HexDigest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The digest of a file's content; NotFound / Internal naming the file when it cannot be read.
absl::StatusOr<std::string> FileSha256(const std::string& path);

// 64 lower-case hex digits, as HexDigest gives.
bool IsSha256Hex(absl::string_view s);

// A module source naming an uploaded artifact, "sha256:<hex>" (issue 24) → the hex; empty
// when `source` is anything else (an npm spec, a path) or a malformed reference.
std::string ArtifactDigest(absl::string_view source);

}  // namespace herd

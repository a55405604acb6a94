// Shared by the fuzz targets: a failed invariant aborts (libFuzzer keeps the input), with a
// line on stderr saying which.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "google/protobuf/message.h"

#define HERD_FUZZ_CHECK(cond)                                                         \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

namespace herd::fuzz {

// A message that another process must be able to read back: protobuf strings must be UTF-8
// (a message with one that is not is dropped by the peer without a word).
inline bool RoundTrips(const google::protobuf::Message& m) {
  std::unique_ptr<google::protobuf::Message> back(m.New());
  return back->ParseFromString(m.SerializeAsString());
}

}  // namespace herd::fuzz

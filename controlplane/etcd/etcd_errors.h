// How the etcd client reads a failed gRPC call: whether another member might answer it, and
// the absl::Status the caller gets (etcd_client.h lists the codes). Pure functions, so the
// mapping is tested without an etcd.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace herd::etcd {

enum class Failure {
  kTransport,     // the member could not be reached (gRPC's own UNAVAILABLE)
  kNoLeader,      // etcd: the member has no leader (nothing was proposed)
  kTimedOut,      // etcd: "request timed out" (a write may still apply), or our deadline
  kInvalidToken,  // etcd: the auth token expired or is unknown: authenticate again
  kOther,         // an answer that another member would give too
};

Failure ClassifyFailure(const grpc::Status& status);

// Whether a call that failed so may go to the next member: a repeatable call (a read, an
// idempotent write) whenever the member was unreachable, leaderless or timed out; another
// write (`is_write`) only when it cannot have been proposed (never sent: `was_connected`
// false, or refused for having no leader).
bool MayTryNextMember(const grpc::Status& status, bool is_write, bool was_connected);

// The caller's status for a failed call: `what` names the call ("put /herd/x"), `endpoints`
// the members tried.
absl::Status MapEtcdError(const grpc::Status& status, absl::string_view what,
                          absl::string_view endpoints);

}  // namespace herd::etcd

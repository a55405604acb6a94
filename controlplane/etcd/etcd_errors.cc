#include "controlplane/etcd/etcd_errors.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace herd::etcd {
namespace {

// etcd's own errors carry this prefix (rpctypes.ErrGRPC*); gRPC's transport errors do not.
bool FromEtcd(const grpc::Status& status) {
  return absl::StartsWith(status.error_message(), "etcdserver:");
}

// The member's own handler gave up when the call's deadline (which the server sees too)
// passed: Go's context error, which etcd 3.4 does not translate (UNKNOWN). The same as our
// side's DEADLINE_EXCEEDED, whichever of the two arrives first.
bool ServerDeadline(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNKNOWN &&
         absl::StrContains(status.error_message(), "context deadline exceeded");
}

bool IsAuthFailure(const grpc::Status& status) {
  // etcd 3.4 answers a bad password or a missing user with INVALID_ARGUMENT.
  const std::string& m = status.error_message();
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         absl::StrContains(m, "authentication failed") ||
         absl::StrContains(m, "user name is empty") || absl::StrContains(m, "user name not found");
}

absl::Status NoQuorum(absl::string_view why, absl::string_view what, absl::string_view endpoints) {
  return absl::UnavailableError(absl::StrCat(
      "the store has no quorum: ", why, " (", what, "; etcd endpoints ", endpoints,
      "): check that a majority of etcd's members is running and reachable; writes are "
      "refused until then"));
}

}  // namespace

Failure ClassifyFailure(const grpc::Status& status) {
  const std::string& m = status.error_message();
  if (ServerDeadline(status)) return Failure::kTimedOut;
  switch (status.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Failure::kTimedOut;
    case grpc::StatusCode::UNAVAILABLE:
      if (!FromEtcd(status)) return Failure::kTransport;
      if (absl::StrContains(m, "no leader") || absl::StrContains(m, "not capable") ||
          absl::StrContains(m, "server stopped")) {
        return Failure::kNoLeader;
      }
      return Failure::kTimedOut;  // request timed out, leader changed: outcome unknown
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::StrContains(m, "invalid auth token") ? Failure::kInvalidToken : Failure::kOther;
    default:
      return Failure::kOther;
  }
}

bool MayTryNextMember(const grpc::Status& status, bool is_write, bool was_connected) {
  switch (ClassifyFailure(status)) {
    case Failure::kTransport:
      return !is_write || !was_connected;
    case Failure::kNoLeader:
      return true;
    case Failure::kTimedOut:
      return !is_write;
    default:
      return false;
  }
}

absl::Status MapEtcdError(const grpc::Status& status, absl::string_view what,
                          absl::string_view endpoints) {
  const std::string& m = status.error_message();
  if (ServerDeadline(status)) {
    return NoQuorum("no etcd member answered within the deadline", what, endpoints);
  }
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return absl::OkStatus();
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return NoQuorum("no etcd member answered within the deadline", what, endpoints);
    case grpc::StatusCode::UNAVAILABLE:
      if (FromEtcd(status)) return NoQuorum(absl::StrCat("etcd answered \"", m, "\""), what, endpoints);
      return NoQuorum(absl::StrCat("no etcd member could be reached: ", m), what, endpoints);
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(absl::StrCat(
          "etcd refused ", what, ": ", m, " (grant the etcd user a role with access to the key)"));
    case grpc::StatusCode::OUT_OF_RANGE:
      if (absl::StrContains(m, "compacted")) {
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": ", m, " (the revision asked for was compacted: read the range again)"));
      }
      return absl::OutOfRangeError(absl::StrCat("etcd refused ", what, ": ", m));
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      if (FromEtcd(status)) {
        return absl::ResourceExhaustedError(absl::StrCat("etcd refused ", what, ": ", m));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd refused ", what, " as too large: ", m, " (etcd's --max-request-bytes)"));
    default:
      break;
  }
  if (IsAuthFailure(status)) {
    return absl::UnauthenticatedError(absl::StrCat(
        "etcd refused the credentials for ", what, ": ", m,
        " (check the etcd user and password, or the client certificate)"));
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd refused ", what, ": ", m));
}

}  // namespace herd::etcd

#include "controlplane/etcd/etcd_lease_keeper.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "controlplane/etcd/etcd_errors.h"

namespace herd::etcd {

absl::StatusOr<int64_t> GrantLease(EtcdConnection& connection, absl::Duration ttl) {
  if (ttl < absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd lease grant: TTL ", absl::FormatDuration(ttl),
        " is under etcd's 1 s resolution: give at least 1s"));
  }
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(ttl))));
  etcdserverpb::LeaseGrantResponse response;
  absl::Status s = connection.Unary(
      "lease grant", {.is_write = true, .idempotent = true, .require_leader = true},
      [&](EtcdMember& m, grpc::ClientContext* c) {
        return m.lease->LeaseGrant(c, request, &response);
      });
  if (!s.ok()) return s;
  if (!response.error().empty() || response.id() == 0) {
    return absl::UnavailableError(absl::StrCat("etcd did not grant a lease: ", response.error()));
  }
  return response.id();
}

absl::Status RevokeLease(EtcdConnection& connection, int64_t lease) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseRevokeResponse response;
  return connection.Unary(
      absl::StrCat("lease revoke ", lease), {.is_write = true, .require_leader = true},
      [&](EtcdMember& m, grpc::ClientContext* c) {
        return m.lease->LeaseRevoke(c, request, &response);
      });
}

absl::StatusOr<int64_t> KeepAliveOnce(EtcdConnection& connection, size_t member, int64_t lease) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + connection.options().timeout));
  std::string token;
  HERD_RETURN_IF_ERROR(connection.PrepareStream(&context, &token));
  std::shared_ptr<EtcdMember> m = connection.member(member);
  auto stream = m->lease->LeaseKeepAlive(&context);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseKeepAliveResponse response;
  const bool answered = stream->Write(request) && stream->WritesDone() && stream->Read(&response);
  if (answered) context.TryCancel();  // one answer is all we wait for
  grpc::Status status = stream->Finish();
  if (answered) return response.ttl();
  if (ClassifyFailure(status) == Failure::kInvalidToken) {
    (void)connection.Reauthenticate(token, absl::Now() + connection.options().timeout);
  }
  connection.NoteFailure(member, *m, status);
  if (status.ok()) status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "keepalive stream closed");
  return MapEtcdError(status, absl::StrCat("lease keepalive ", lease, " at ", m->address),
                      connection.endpoints_text());
}

EtcdLeaseKeeper::EtcdLeaseKeeper(std::shared_ptr<EtcdConnection> connection, absl::Duration ttl,
                                 int64_t lease, std::function<void()> on_lost,
                                 std::function<void(int64_t)> on_new)
    : connection_(std::move(connection)),
      ttl_(ttl),
      interval_(std::max(ttl / 3, absl::Milliseconds(100))),
      on_lost_(std::move(on_lost)),
      on_new_(std::move(on_new)),
      id_(lease) {
  thread_ = std::thread([this] { Run(); });
}

EtcdLeaseKeeper::~EtcdLeaseKeeper() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  if (int64_t id = id_.load(); id != 0) {
    if (absl::Status s = RevokeLease(*connection_, id); !s.ok()) {
      Logger("etcd")->info("msg=\"etcd lease not revoked, it will expire\" lease={} error=\"{}\"",
                           id, s.message());
    }
  }
}

bool EtcdLeaseKeeper::WaitStop(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return stopping_;
}

void EtcdLeaseKeeper::Run() {
  Backoff backoff(BackoffOptions{.initial = absl::Milliseconds(200), .max = interval_,
                                 .multiplier = 2.0, .jitter = 0.5});
  size_t member = connection_->preferred();
  absl::Duration wait = interval_;
  while (!WaitStop(wait)) wait = Step(&member, backoff);
}

absl::Duration EtcdLeaseKeeper::Step(size_t* member, Backoff& backoff) {
  auto log = Logger("etcd");
  if (id_.load() == 0) {
    auto granted = GrantLease(*connection_, ttl_);
    if (!granted.ok()) {
      log->warn("msg=\"etcd lease not granted yet, retrying\" error=\"{}\"", granted.status().message());
      return backoff.Next();
    }
    backoff.Reset();
    id_.store(*granted);
    log->info("msg=\"etcd lease granted again\" lease={}", *granted);
    if (on_new_) on_new_(*granted);
    return interval_;
  }
  const int64_t id = id_.load();
  auto ttl = KeepAliveOnce(*connection_, *member, id);
  if (!ttl.ok()) {
    log->warn("msg=\"etcd lease renewal failed, retrying\" lease={} error=\"{}\"", id, ttl.status().message());
    ++*member;
    return backoff.Next();
  }
  backoff.Reset();
  if (*ttl > 0) return interval_;
  log->warn("msg=\"etcd lease is gone (expired or revoked)\" lease={}", id);
  id_.store(0);
  if (on_lost_) on_lost_();
  return absl::ZeroDuration();
}

}  // namespace herd::etcd

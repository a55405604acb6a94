#include "controlplane/etcd/etcd_watch.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "controlplane/etcd/etcd_convert.h"
#include "controlplane/etcd/etcd_errors.h"

namespace herd::etcd {

EtcdWatch::EtcdWatch(std::shared_ptr<EtcdConnection> connection, std::string key,
                     std::string range_end, int64_t start_revision,
                     std::function<void(const WatchBatch&)> on_batch)
    : connection_(std::move(connection)),
      key_(std::move(key)),
      range_end_(std::move(range_end)),
      on_batch_(std::move(on_batch)),
      next_revision_(start_revision) {
  thread_ = std::thread([this] { Run(); });
}

EtcdWatch::~EtcdWatch() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  thread_.join();
}

bool EtcdWatch::WaitStop(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return stopping_;
}

void EtcdWatch::Run() {
  Backoff backoff(BackoffOptions{.initial = absl::Milliseconds(200), .max = absl::Seconds(5),
                                 .multiplier = 2.0, .jitter = 0.5});
  size_t member = connection_->preferred();
  while (!RunStream(member, backoff)) {
    ++member;  // the next stream goes to the next member
    if (WaitStop(backoff.Next())) return;
  }
}

bool EtcdWatch::RunStream(size_t member_index, Backoff& backoff) {
  std::shared_ptr<EtcdMember> member = connection_->member(member_index);
  grpc::ClientContext context;
  std::string token;
  if (absl::Status s = connection_->PrepareStream(&context, &token); !s.ok()) {
    if (absl::IsUnauthenticated(s)) return EndWithError(s);  // a wrong password stays wrong
    Logger("etcd")->warn("msg=\"etcd watch cannot authenticate, retrying\" key=\"{}\" error=\"{}\"",
                         key_, s.message());
    return false;
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return true;
    context_ = &context;
  }
  auto stream = member->watch->Watch(&context);
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(key_);
  create->set_range_end(range_end_);
  create->set_start_revision(next_revision_);
  create->set_progress_notify(true);
  bool ended = false;
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    while (!ended && stream->Read(&response)) ended = Handle(response, backoff);
  }
  if (ended) context.TryCancel();
  grpc::Status status = stream->Finish();
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
    stopping = stopping_;
  }
  if (ended || stopping) return true;
  if (ClassifyFailure(status) == Failure::kInvalidToken) {
    (void)connection_->Reauthenticate(token, absl::Now() + connection_->options().timeout);
  } else if (status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
             status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    return EndWithError(MapEtcdError(status, absl::StrCat("watch ", key_),
                                     connection_->endpoints_text()));
  }
  connection_->NoteFailure(member_index, *member, status);
  Logger("etcd")->info(
      "msg=\"etcd watch stream ended, reopening\" key=\"{}\" member={} next_revision={} "
      "error=\"{}\"", key_, member->address, next_revision_, status.error_message());
  return false;
}

bool EtcdWatch::EndWithError(absl::Status error) {
  Logger("etcd")->warn("msg=\"etcd watch ended\" key=\"{}\" error=\"{}\"", key_, error.message());
  WatchBatch batch;
  batch.error = std::move(error);
  on_batch_(batch);
  return true;
}

bool EtcdWatch::Handle(const etcdserverpb::WatchResponse& response, Backoff& backoff) {
  WatchBatch batch;
  if (response.compact_revision() > 0) {
    batch.compacted = true;
    batch.revision = response.compact_revision();
    batch.error = absl::FailedPreconditionError(absl::StrCat(
        "etcd watch of \"", key_, "\" from revision ", next_revision_,
        ": compacted (etcd keeps revisions from ", response.compact_revision(),
        "): read the range again and watch from its revision + 1"));
    on_batch_(batch);
    return true;
  }
  if (response.canceled()) {
    batch.error = absl::AbortedError(absl::StrCat(
        "etcd cancelled the watch of \"", key_, "\": ", response.cancel_reason()));
    on_batch_(batch);
    return true;
  }
  if (response.created()) {
    backoff.Reset();
    if (next_revision_ == 0) next_revision_ = response.header().revision() + 1;
    return false;
  }
  for (const mvccpb::Event& event : response.events()) batch.events.push_back(FromProto(event));
  if (!batch.events.empty()) {
    batch.revision = batch.events.back().kv.mod_revision;
    next_revision_ = batch.revision + 1;
  } else {
    // A progress notice: every event up to this revision was delivered.
    batch.revision = response.header().revision();
    next_revision_ = std::max(next_revision_, batch.revision + 1);
  }
  on_batch_(batch);
  return false;
}

}  // namespace herd::etcd

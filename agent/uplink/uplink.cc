#include "agent/uplink/uplink.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/uplink/host_facts.h"
#include "common/atomic_file.h"
#include "common/controlplane_addresses.h"

namespace herd::agent {
namespace {

using herd::v1::AgentMessage;
using herd::v1::ControlMessage;

BackoffOptions UplinkBackoff(const UplinkOptions& o) {
  BackoffOptions b;
  b.initial = o.backoff_initial;
  b.max = o.backoff_max;
  b.multiplier = 2.0;
  b.jitter = 0.5;  // each delay drawn from [step/2, step]
  return b;
}

// Full jitter over the failover window: uniform in [0, failover_spread], never growing.
BackoffOptions FailoverDelay(const UplinkOptions& o) {
  BackoffOptions b;
  b.initial = o.failover_spread;
  b.max = o.failover_spread;
  b.multiplier = 1.0;
  b.jitter = 1.0;
  return b;
}

// FNV-1a: stable across builds and runs (std::hash is not promised to be), so a host keeps
// its first replica across restarts.
uint64_t StableHash(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Wraps a handler's answer of type T into the AgentMessage field `field` makes.
template <typename T>
std::function<void(T)> Into(std::function<void(AgentMessage)> reply,
                            T* (AgentMessage::*field)()) {
  return [reply = std::move(reply), field](T value) {
    AgentMessage m;
    *(m.*field)() = std::move(value);
    reply(std::move(m));
  };
}

}  // namespace

Uplink::Uplink(UplinkOptions options, UplinkHandler& handler, Scheduler& loop,
               UplinkTransport& transport)
    : options_(std::move(options)),
      handler_(handler),
      loop_(loop),
      transport_(transport),
      log_(herd::Logger("uplink")),
      backoff_(UplinkBackoff(options_), options_.jitter_seed),
      // A seed of its own (derived when fixed), so the two draws are not the same sequence.
      failover_delay_(FailoverDelay(options_),
                      options_.jitter_seed != 0 ? StableHash(std::to_string(options_.jitter_seed))
                                                : 0) {}

Uplink::~Uplink() { Stop(); }

std::string Uplink::CredentialPath() const { return absl::StrCat(options_.home, "/host-credential"); }

absl::Status Uplink::Start() {
  if (phase_ != Phase::kIdle) return absl::FailedPreconditionError("the uplink was started already");
  if (options_.addresses.empty()) {
    return absl::InvalidArgumentError(
        "no control plane address: give --controlplane HOST:PORT[,HOST:PORT...]");
  }
  const std::string id_path = absl::StrCat(options_.home, "/host_id");
  host_id_ = ReadTrimmed(id_path);
  if (host_id_.empty()) {
    host_id_ = NewHostId();
    if (auto s = WriteFileAtomically(id_path, host_id_ + "\n", 0644); !s.ok()) return s;
    log_->info("event=host_id_created host_id={}", host_id_);
  }
  dial_order_ = ReplicaDialOrder(host_id_, options_.addresses);
  dial_pos_ = 0;
  if (ReadTrimmed(CredentialPath()).empty()) {
    if (options_.join_token_file.empty()) {
      return absl::InvalidArgumentError(
          "this agent has no credential for the control plane yet: give --join-token-file "
          "with the fleet's join token (the control plane's data directory holds it)");
    }
    if (ReadTrimmed(options_.join_token_file).empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot read a join token from ", options_.join_token_file,
          ": copy the control plane's join-token file there"));
    }
  }
  if (auto s = transport_.CheckSettings(); !s.ok()) return s;
  // The first dial runs from the loop, once the agent has restored its units (the Hello
  // carries their inventory).
  phase_ = Phase::kBackoff;
  dial_timer_ = loop_.RunAfter(absl::ZeroDuration(), [this] {
    dial_timer_ = 0;
    Dial();
  });
  return absl::OkStatus();
}

void Uplink::Stop() {
  if (phase_ == Phase::kStopped) return;
  loop_.Cancel(dial_timer_);
  dial_timer_ = 0;
  phase_ = Phase::kStopped;
  if (!stream_) return;
  DropStream();
  if (connected_) log_->info("event=disconnected reason=\"the agent is stopping\"");
  connected_ = false;
  control_.clear();
  last_error_ = "the agent is stopping";
}

void Uplink::PushMetrics(herd::v1::MetricsBatch batch) {
  metrics_.push_back(std::move(batch));
  while (metrics_.size() > options_.buffer_batches) {
    metrics_.pop_front();
    ++dropped_since_sent_;
    ++dropped_total_;
  }
  Pump();
}

void Uplink::PushEvent(herd::v1::ModuleEvent event) {
  AgentMessage m;
  *m.mutable_event() = std::move(event);
  SendControl(std::move(m));
}

void Uplink::InventoryChanged() {
  inventory_dirty_ = true;
  Pump();
}

void Uplink::SendControl(AgentMessage msg) {
  if (!connected_) return;  // results for a stream that is gone are not wanted
  control_.push_back(std::move(msg));
  while (control_.size() > options_.max_control_queue) {
    control_.pop_front();
    if (control_dropped_++ % 1000 == 0) {
      log_->warn("event=control_queue_full limit={} dropped_total={} action=\"the oldest reply "
                 "or event was dropped: the control plane reads slower than the agent answers\"",
                 options_.max_control_queue, control_dropped_);
    }
  }
  Pump();
}

Uplink::State Uplink::state() const {
  State s;
  s.connected = connected_;
  s.address = address();
  s.host_id = host_id_;
  s.last_error = last_error_;
  s.connected_at_unix_ms = connected_at_ms_;
  s.dropped_batches = dropped_total_;
  s.buffered_batches = metrics_.size();
  return s;
}

void Uplink::Dial() {
  session_began_ = loop_.clock().Monotonic();
  const std::string credential = ReadTrimmed(CredentialPath());
  by_join_ = credential.empty();
  const std::string secret = by_join_ ? ReadTrimmed(options_.join_token_file) : credential;
  if (secret.empty()) {
    return EndSession(absl::UnauthenticatedError(absl::StrCat(
        "no credential and no join token (", options_.join_token_file, " is empty or missing)")));
  }
  UplinkDial dial;
  dial.address = address();
  dial.metadata["authorization"] = absl::StrCat("Bearer ", secret);
  auto stream = transport_.Dial(dial, *this);
  if (!stream.ok()) return EndSession(stream.status());
  stream_ = std::move(*stream);
  phase_ = Phase::kHelloSent;
  write_in_flight_ = true;
  stream_->Write(MakeHello());
}

void Uplink::FetchArtifact(const std::string& sha256, const std::string& dest,
                           uint64_t max_bytes, std::function<void(absl::Status)> done) {
  const std::string credential = ReadTrimmed(CredentialPath());
  if (phase_ != Phase::kStreaming || credential.empty()) {
    return done(absl::UnavailableError(
        "not connected to the control plane (the artifact is fetched once it is)"));
  }
  UplinkDial dial;
  dial.address = address();
  dial.metadata["authorization"] = absl::StrCat("Bearer ", credential);
  UplinkTransport::ArtifactFetch fetch;
  fetch.host_id = host_id_;
  fetch.sha256 = sha256;
  fetch.dest = dest;
  fetch.max_bytes = max_bytes;
  transport_.FetchArtifact(dial, fetch, std::move(done));
}

AgentMessage Uplink::MakeHello() {
  AgentMessage msg;
  herd::v1::Hello* hello = msg.mutable_hello();
  hello->set_host_id(host_id_);
  FillHostFacts(hello);
  hello->mutable_labels()->insert(options_.labels.begin(), options_.labels.end());
  hello->set_agent_version(HERD_VERSION);
  // The Hello carries the inventory as it is now: a change after this (before the Welcome)
  // is sent once streaming.
  inventory_dirty_ = false;
  for (auto& m : handler_.Inventory()) *hello->add_modules() = std::move(m);
  for (auto& d : handler_.Deployments()) *hello->add_deployments() = std::move(d);
  hello->set_acked_config_version(handler_.AckedConfigVersion());
  return msg;
}

void Uplink::OnRead(ControlMessage msg) {
  if (!protocol_error_.ok()) return;  // cancelled, its end is on the way
  if (phase_ == Phase::kStreaming) return Dispatch(msg);
  if (phase_ != Phase::kHelloSent) return;
  if (!msg.has_welcome()) {
    // The first answer must be Welcome (or the stream ends with the refusal).
    const auto* field = ControlMessage::descriptor()->FindFieldByNumber(msg.msg_case());
    protocol_error_ = absl::UnavailableError(absl::StrCat(
        "the control plane answered Hello with ", field ? field->name() : "an empty message",
        " instead of Welcome: is ", address(), " a Herd control plane of this version?"));
    stream_->Cancel();
    return;
  }
  OnWelcome(msg.welcome());
}

void Uplink::OnWelcome(const herd::v1::Welcome& welcome) {
  if (!welcome.host_credential().empty()) {
    if (auto s = WriteFileAtomically(CredentialPath(), welcome.host_credential() + "\n", 0600);
        !s.ok()) {
      log_->error("event=credential_not_saved error=\"{}\"", s.message());
    }
  }
  handler_.OnWelcome(welcome);
  // 0: a control plane that reads batches one by one only.
  reads_groups_ = welcome.metrics_batches_per_message() > 0;
  SetBatchesPerMessage(welcome.metrics_batches_per_message());
  phase_ = Phase::kStreaming;
  connected_ = true;
  connected_at_ms_ = absl::ToUnixMillis(loop_.clock().Now());
  ++generation_;
  log_->info("event=connected address={} host_id={} registered={}", address(), host_id_,
             by_join_);
  Pump();
}

std::function<void(AgentMessage)> Uplink::ReplyTo(uint64_t generation) {
  std::weak_ptr<bool> life = life_;
  return [this, life, generation](AgentMessage m) {
    if (life.expired() || generation_ != generation) return;
    SendControl(std::move(m));
  };
}

void Uplink::Dispatch(const ControlMessage& in) {
  auto reply = ReplyTo(generation_);
  switch (in.msg_case()) {
    case ControlMessage::kConfig:
      return handler_.OnConfig(in.config(), Into(reply, &AgentMessage::mutable_config_ack));
    case ControlMessage::kAction:
      return handler_.OnAction(in.action(), Into(reply, &AgentMessage::mutable_action_result));
    case ControlMessage::kRestart:
      return handler_.OnRestart(in.restart(), Into(reply, &AgentMessage::mutable_restart_result));
    case ControlMessage::kLogs:
      return handler_.OnLogs(in.logs(), Into(reply, &AgentMessage::mutable_log_chunk));
    case ControlMessage::kCancel:
      return handler_.OnCancel(in.cancel().request_id());
    case ControlMessage::kCadence:
      // What waits goes now if the new cadence says so.
      SetBatchesPerMessage(in.cadence().metrics_batches_per_message());
      return Pump();
    case ControlMessage::kWelcome:
    case ControlMessage::MSG_NOT_SET:
      return;
  }
}

void Uplink::Pump() {
  if (phase_ != Phase::kStreaming || write_in_flight_ || write_failed_) return;
  AgentMessage out;
  if (!NextMessage(&out)) return;
  write_in_flight_ = true;
  stream_->Write(std::move(out));
}

// Inventory first, then replies and events, then metrics oldest first.
bool Uplink::NextMessage(AgentMessage* out) {
  if (inventory_dirty_) {
    inventory_dirty_ = false;
    herd::v1::Inventory* inv = out->mutable_inventory();
    for (auto& m : handler_.Inventory()) *inv->add_modules() = std::move(m);
    for (auto& d : handler_.Deployments()) *inv->add_deployments() = std::move(d);
    return true;
  }
  if (!control_.empty()) {
    *out = std::move(control_.front());
    control_.pop_front();
    return true;
  }
  if (metrics_.empty()) return false;
  // Batches taken before this connection (a replay) go at once, grouped if the control plane
  // reads groups; the others one by one, or once batches_per_message_ of them wait.
  const bool replay = metrics_.front().at_unix_ms() < connected_at_ms_;
  if (!(replay && reads_groups_) && batches_per_message_ <= 1) {
    herd::v1::MetricsBatch* b = out->mutable_metrics();
    *b = std::move(metrics_.front());
    metrics_.pop_front();
    b->set_dropped_batches(dropped_since_sent_);
    dropped_since_sent_ = 0;
    b->set_replayed(replay);
    return true;
  }
  if (!replay && metrics_.size() < batches_per_message_) return false;
  herd::v1::MetricsBatches* group = out->mutable_metrics_batches();
  size_t bytes = 0;
  while (!metrics_.empty() && group->batches_size() < static_cast<int>(kMaxBatchesPerMessage)) {
    const size_t size = metrics_.front().ByteSizeLong();
    if (group->batches_size() > 0 && bytes + size > kMaxGroupBytes) break;
    bytes += size;
    herd::v1::MetricsBatch* b = group->add_batches();
    *b = std::move(metrics_.front());
    metrics_.pop_front();
    b->set_replayed(b->at_unix_ms() < connected_at_ms_);
  }
  group->mutable_batches(0)->set_dropped_batches(dropped_since_sent_);
  dropped_since_sent_ = 0;
  return true;
}

void Uplink::SetBatchesPerMessage(uint32_t n) {
  batches_per_message_ = std::clamp<uint32_t>(n, 1, kMaxBatchesPerMessage);
}

void Uplink::OnWriteDone(bool ok) {
  write_in_flight_ = false;
  if (ok) return Pump();
  // The stream broke: its status normally follows at once; if the control plane's end does
  // not come, cancel so that the stream ends anyway.
  write_failed_ = true;
  if (grace_timer_ == 0) {
    grace_timer_ = loop_.RunAfter(kWriteFailureGrace, [this] {
      grace_timer_ = 0;
      if (stream_) stream_->Cancel();
    });
  }
}

void Uplink::OnDone(absl::Status status) { EndSession(EndReason(status)); }

absl::Status Uplink::EndReason(const absl::Status& status) {
  if (!protocol_error_.ok()) return protocol_error_;
  if (phase_ == Phase::kHelloSent) {
    if (absl::IsUnauthenticated(status) && !by_join_) {
      // The control plane no longer knows our credential (its data was reset): register
      // again with the join token next time.
      log_->warn("event=credential_refused action=\"registering again with the join token\"");
      unlink(CredentialPath().c_str());
    }
    if (write_failed_ && !absl::IsUnauthenticated(status)) {
      return absl::UnavailableError(
          absl::StrCat("cannot reach ", address(), ": ", status.message()));
    }
    return absl::Status(status.ok() ? absl::StatusCode::kUnavailable : status.code(),
                        absl::StrCat("the control plane refused the stream: ", status.message()));
  }
  // When the control plane finishes the stream its status says why; CANCELLED is ours (a
  // failed write's grace ran out).
  if (status.ok() || absl::IsCancelled(status)) {
    return absl::UnavailableError(write_failed_ ? "the stream broke while sending"
                                                : "the control plane closed the stream");
  }
  if (absl::IsAborted(status)) {  // how the control plane ends a stream
    return absl::AbortedError(
        absl::StrCat("the control plane ended the stream: ", status.message()));
  }
  return status;
}

void Uplink::DropStream() {
  stream_.reset();  // cancels it if need be; no callback of it comes after this
  loop_.Cancel(grace_timer_);
  grace_timer_ = 0;
  write_in_flight_ = false;
  write_failed_ = false;
  protocol_error_ = absl::OkStatus();
}

void Uplink::EndSession(const absl::Status& why) {
  DropStream();
  if (connected_) {
    log_->info("event=disconnected address={} reason=\"{}\"", address(), why.message());
  }
  connected_ = false;
  control_.clear();
  last_error_ = std::string(why.message());
  if (phase_ == Phase::kStopped) return;
  const std::string lost = address();
  const absl::Duration wait = NextDial();
  log_->warn(
      "event=controlplane_unreachable address={} next_address={} retry_in_ms={} error=\"{}\"",
      lost, address(), absl::ToInt64Milliseconds(wait), why.message());
  phase_ = Phase::kBackoff;
  dial_timer_ = loop_.RunAfter(wait, [this] {
    dial_timer_ = 0;
    Dial();
  });
}

absl::Duration Uplink::NextDial() {
  // A session that lasted resets the backoff and starts a new round; quick failures grow it.
  if (loop_.clock().Monotonic() - session_began_ > kStableSession) {
    backoff_.Reset();
    failed_sessions_ = 0;
  }
  ++failed_sessions_;
  const size_t n = options_.addresses.size();
  dial_pos_ = (dial_pos_ + 1) % n;
  // Another replica of this round may well be up: go there promptly (jittered). Every one
  // failed in a row: back off before the next round.
  if (failed_sessions_ % n != 0) return failover_delay_.Next();
  return backoff_.Next();
}

}  // namespace herd::agent

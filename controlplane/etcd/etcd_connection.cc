#include "controlplane/etcd/etcd_connection.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "controlplane/etcd/etcd_errors.h"

namespace herd::etcd {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  if (in) content << in.rdbuf();
  if (!in || content.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd ", flag, " file \"", path, "\" cannot be read or is empty: give a PEM file"));
  }
  return content.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(const Options& o) {
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError(
        "etcd client certificate and key go together: give both --etcd-cert and --etcd-key");
  }
  if (!o.tls && o.ca_file.empty() && o.cert_file.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  if (!o.ca_file.empty()) {
    auto ca = ReadPem(o.ca_file, "CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!o.cert_file.empty()) {
    auto cert = ReadPem(o.cert_file, "certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(o.key_file, "key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  // A member that dies without closing its connections is noticed in seconds, and one that
  // comes back is dialled again within 2 s (gRPC's default backoff reaches minutes).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Despite its name, the deadline of each connection attempt (TCP and HTTP/2 handshake).
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 2000);
  // A replaced channel (NoteFailure) must not share the stuck one's subchannel.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A Range over a large prefix can exceed gRPC's 4 MiB default; etcd sends up to 2 GiB.
  args.SetMaxReceiveMessageSize(256 * 1024 * 1024);
  return args;
}

}  // namespace

EtcdConnection::EtcdConnection(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::shared_ptr<EtcdConnection>> EtcdConnection::Create(const Options& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "no etcd endpoint: give --store etcd://HOST:PORT[,HOST:PORT...]");
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd call timeout must be positive");
  }
  auto credentials = MakeCredentials(options);
  if (!credentials.ok()) return credentials.status();
  std::shared_ptr<EtcdConnection> c(new EtcdConnection(options));
  c->credentials_ = *std::move(credentials);
  c->endpoints_text_ = absl::StrJoin(options.endpoints, ",");
  for (const std::string& address : options.endpoints) {
    auto slot = std::make_unique<Slot>();
    absl::MutexLock lock(&slot->mu);
    slot->member = c->Dial(address);
    slot->created = absl::Now();
    c->members_.push_back(std::move(slot));
  }
  return c;
}

std::shared_ptr<EtcdMember> EtcdConnection::Dial(const std::string& address) const {
  auto m = std::make_shared<EtcdMember>();
  m->address = address;
  m->channel = grpc::CreateCustomChannel(address, credentials_, ChannelArgs());
  m->kv = etcdserverpb::KV::NewStub(m->channel);
  m->watch = etcdserverpb::Watch::NewStub(m->channel);
  m->lease = etcdserverpb::Lease::NewStub(m->channel);
  m->auth = etcdserverpb::Auth::NewStub(m->channel);
  return m;
}

std::shared_ptr<EtcdMember> EtcdConnection::member(size_t i) {
  Slot& slot = *members_[i % members_.size()];
  absl::MutexLock lock(&slot.mu);
  return slot.member;
}

void EtcdConnection::NoteFailure(size_t i, const EtcdMember& used, const grpc::Status& status) {
  const std::string& m = status.error_message();
  if (ClassifyFailure(status) != Failure::kTransport ||
      (!absl::StrContains(m, "SETTINGS frame") && !absl::StrContains(m, "handshaker shutdown"))) {
    return;
  }
  Slot& slot = *members_[i % members_.size()];
  absl::MutexLock lock(&slot.mu);
  if (slot.member.get() != &used || absl::Now() - slot.created < absl::Seconds(2)) return;
  Logger("etcd")->info("msg=\"etcd member connected but never answered, dialling it anew\" "
                       "member={}", used.address);
  slot.member = Dial(used.address);
  slot.created = absl::Now();
}

void EtcdConnection::AddMetadata(grpc::ClientContext* context, const std::string& token,
                                 bool require_leader) const {
  if (!token.empty()) context->AddMetadata("token", token);
  // etcd's rpctypes.MetadataRequireLeaderKey: refuse (or end a stream) without a leader.
  if (require_leader) context->AddMetadata("hasleader", "true");
}

absl::Status EtcdConnection::Authenticate(absl::Time deadline) {
  etcdserverpb::AuthenticateRequest request;
  request.set_name(options_.user);
  request.set_password(options_.password);
  grpc::Status last;
  for (size_t tried = 0; tried < members_.size(); ++tried) {
    std::shared_ptr<EtcdMember> m = member(preferred() + tried);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    etcdserverpb::AuthenticateResponse response;
    last = m->auth->Authenticate(&context, request, &response);
    if (last.ok()) {
      token_ = response.token();
      return absl::OkStatus();
    }
    NoteFailure(preferred() + tried, *m, last);
    if (!MayTryNextMember(last, false, true) || absl::Now() >= deadline) break;
  }
  return MapEtcdError(last, absl::StrCat("authenticate user ", options_.user), endpoints_text_);
}

absl::StatusOr<std::string> EtcdConnection::Token(absl::Time deadline) {
  if (options_.user.empty()) return std::string();
  absl::MutexLock lock(&auth_mu_);
  if (token_.empty()) {
    if (absl::Status s = Authenticate(deadline); !s.ok()) return s;
  }
  return token_;
}

absl::Status EtcdConnection::Reauthenticate(const std::string& stale_token, absl::Time deadline) {
  absl::MutexLock lock(&auth_mu_);
  if (token_ != stale_token) return absl::OkStatus();
  Logger("etcd")->info("msg=\"etcd auth token refused, authenticating again\" user={}",
                       options_.user);
  token_.clear();
  return Authenticate(deadline);
}

absl::Status EtcdConnection::PrepareStream(grpc::ClientContext* context, std::string* token_used) {
  auto token = Token(absl::Now() + options_.timeout);
  if (!token.ok()) return token.status();
  AddMetadata(context, *token, true);
  *token_used = *std::move(token);
  return absl::OkStatus();
}

absl::Status EtcdConnection::Unary(absl::string_view what, CallFlags flags, UnaryFn fn) {
  const absl::Time deadline = absl::Now() + options_.timeout;
  // A call that may be repeated gets a share of the deadline per attempt, so one stuck on a
  // member whose leader just died (its proposal is lost; etcd answers only at its own
  // timeout) leaves time to try the others once a new leader is elected.
  const bool repeatable = !flags.is_write || flags.idempotent;
  const absl::Duration attempt_timeout =
      repeatable ? std::max(options_.timeout / 3, absl::Milliseconds(500)) : options_.timeout;
  size_t index = preferred();
  bool reauthenticated = false;
  grpc::Status last;
  for (size_t tried = 0;; ++index, ++tried) {
    if (tried > 0 && tried % members_.size() == 0) {
      // Every member refused or was unreachable: wait a little (an election takes about a
      // second), then go round again while the deadline allows.
      absl::SleepFor(std::min(absl::Milliseconds(200), deadline - absl::Now()));
    }
    if (absl::Now() >= deadline && tried > 0) break;
    auto token = Token(deadline);
    if (!token.ok()) return token.status();
    std::shared_ptr<EtcdMember> m = member(index);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(std::min(deadline, absl::Now() + attempt_timeout)));
    AddMetadata(&context, *token, flags.require_leader);
    const bool was_connected = m->channel->GetState(false) == GRPC_CHANNEL_READY;
    last = fn(*m, &context);
    if (last.ok()) {
      Prefer(index);
      return absl::OkStatus();
    }
    if (ClassifyFailure(last) == Failure::kInvalidToken && !reauthenticated) {
      reauthenticated = true;
      if (absl::Status s = Reauthenticate(*token, deadline); !s.ok()) return s;
      --index;  // the same member again, with the new token
      continue;
    }
    NoteFailure(index, *m, last);
    if (!MayTryNextMember(last, !repeatable, was_connected)) break;
  }
  return MapEtcdError(last, what, endpoints_text_);
}

}  // namespace herd::etcd

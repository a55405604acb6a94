#include "agent/uplink/grpc_uplink_transport.h"

#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "grpcpp/grpcpp.h"
#include "herd/v1/gateway.grpc.pb.h"

namespace herd::agent {
namespace {

using herd::v1::AgentMessage;
using herd::v1::ControlMessage;

absl::Status ToAbsl(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// One Gateway.Connect call. Owned by shared pointers: the ReactorStream (the loop's handle)
// and every task a reaction posted, so a task that runs after the stream is gone finds the
// reactor still there and `observer_` null.
class ConnectReactor final : public grpc::ClientBidiReactor<AgentMessage, ControlMessage>,
                             public std::enable_shared_from_this<ConnectReactor> {
 public:
  ConnectReactor(EventLoop& loop, std::shared_ptr<grpc::Channel> channel,
                 UplinkStreamObserver& observer)
      : loop_(loop),
        channel_(std::move(channel)),
        stub_(herd::v1::Gateway::NewStub(channel_)),
        observer_(&observer) {}

  // Loop thread, each below.
  void Start(const UplinkDial& dial) {
    for (const auto& [key, value] : dial.metadata) ctx_.AddMetadata(key, value);
    stub_->async()->Connect(&ctx_, this);
    AddHold();  // released by EndWrites
    StartRead(&in_);
    StartCall();
  }

  void Write(AgentMessage msg) {
    if (writes_ended_) {
      loop_.Post([self = shared_from_this()] { self->WriteDoneOnLoop(false); });
      return;
    }
    out_ = std::move(msg);  // untouched until OnWriteDone (one write at a time)
    StartWrite(&out_);
  }

  void Cancel() {
    ctx_.TryCancel();
    EndWrites();
  }

  // The stream is gone: no callback reaches the observer any more, and the call is over
  // (cancelled if need be) when this returns.
  void Detach() {
    observer_ = nullptr;
    std::unique_lock<std::mutex> l(mu_);
    if (done_) return;
    l.unlock();
    Cancel();
    l.lock();
    finished_.wait(l, [this] { return done_; });
  }

  // gRPC's threads, each below: post, never touch the loop's state.
  void OnReadDone(bool ok) override {
    if (!ok) {
      loop_.Post([self = shared_from_this()] { self->EndWrites(); });
      return;
    }
    loop_.Post([self = shared_from_this(), msg = std::move(in_)]() mutable {
      if (self->observer_) self->observer_->OnRead(std::move(msg));
    });
    in_.Clear();
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    loop_.Post([self = shared_from_this(), ok] { self->WriteDoneOnLoop(ok); });
  }

  void OnDone(const grpc::Status& s) override {
    // Ours until this returns, whoever drops the other references meanwhile.
    std::shared_ptr<ConnectReactor> self = shared_from_this();
    // Posted before done_ is set: once Detach returns, no reaction is left to post.
    loop_.Post([self, status = ToAbsl(s)] {
      if (UplinkStreamObserver* o = std::exchange(self->observer_, nullptr)) o->OnDone(status);
    });
    std::lock_guard<std::mutex> l(mu_);
    done_ = true;
    finished_.notify_all();
  }

 private:
  void WriteDoneOnLoop(bool ok) {
    if (!ok) EndWrites();
    if (observer_) observer_->OnWriteDone(ok);
  }

  // No write will be started any more: the hold goes, so the call can finish.
  void EndWrites() {
    if (writes_ended_) return;
    writes_ended_ = true;
    RemoveHold();
  }

  EventLoop& loop_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<herd::v1::Gateway::Stub> stub_;
  grpc::ClientContext ctx_;
  UplinkStreamObserver* observer_;  // loop thread; null once detached or done
  bool writes_ended_ = false;       // loop thread
  ControlMessage in_;               // the read in flight (gRPC's threads)
  AgentMessage out_;                // the write in flight
  std::mutex mu_;
  std::condition_variable finished_;
  bool done_ = false;  // guarded by mu_: OnDone has run
};

class ReactorStream final : public UplinkStream {
 public:
  explicit ReactorStream(std::shared_ptr<ConnectReactor> reactor) : reactor_(std::move(reactor)) {}
  ~ReactorStream() override { reactor_->Detach(); }
  void Write(AgentMessage msg) override { reactor_->Write(std::move(msg)); }
  void Cancel() override { reactor_->Cancel(); }

 private:
  std::shared_ptr<ConnectReactor> reactor_;
};

}  // namespace

std::shared_ptr<grpc::Channel> GrpcUplinkTransport::MakeChannel(
    const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds) const {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // No bandwidth probing: gRPC pings the peer on data received to size its window, and what
  // an agent receives is a config snapshot or a request now and then, all at once across the
  // fleet. Each probe is a ping the control plane answers in the middle of a fan-out (10,000
  // agents: 0.7 instead of 1.1 s of its CPU for a config change; bench/README.md).
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetMaxReceiveMessageSize(16 << 20);
  return grpc::CreateCustomChannel(address, std::move(creds), args);
}

absl::Status GrpcUplinkTransport::CheckSettings() const { return MakeCredentials().status(); }

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcUplinkTransport::MakeCredentials()
    const {
  if (tls_.ca.empty() && tls_.cert.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!tls_.ca.empty()) {
    auto ca = ReadFileToString(tls_.ca);
    if (!ca.ok()) return absl::InvalidArgumentError(absl::StrCat("--tls-ca: ", ca.status().message()));
    ssl.pem_root_certs = *ca;
  }
  if (!tls_.cert.empty()) {
    auto cert = ReadFileToString(tls_.cert);
    auto key = ReadFileToString(tls_.key);
    if (!cert.ok() || !key.ok()) {
      return absl::InvalidArgumentError("--tls-cert / --tls-key: cannot read them");
    }
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::unique_ptr<UplinkStream>> GrpcUplinkTransport::Dial(
    const UplinkDial& dial, UplinkStreamObserver& observer) {
  auto creds = MakeCredentials();
  if (!creds.ok()) return creds.status();
  auto reactor =
      std::make_shared<ConnectReactor>(loop_, MakeChannel(dial.address, *creds), observer);
  reactor->Start(dial);
  return std::make_unique<ReactorStream>(std::move(reactor));
}

}  // namespace herd::agent

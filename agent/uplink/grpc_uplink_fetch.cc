// GrpcUplinkTransport::FetchArtifact: a module artifact from the control plane
// (Gateway.FetchArtifact, issue 24), on gRPC's callback client API. Each chunk is written to
// DEST.part and hashed on gRPC's thread as it arrives (one chunk in memory); at the end the
// size and digest are checked before the file becomes DEST, so nothing unverified is ever
// unpacked. The loop hears the outcome through `done`, posted.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "agent/uplink/grpc_uplink_transport.h"
#include "common/sha256.h"
#include "grpcpp/grpcpp.h"
#include "herd/v1/gateway.grpc.pb.h"

namespace herd::agent {

class FetchReactor;

// The fetches running, so that the transport's destructor can cancel them and wait.
struct GrpcUplinkTransport::Fetches {
  std::mutex mu;
  std::condition_variable idle;
  std::set<FetchReactor*> running;
  bool closing = false;
};

namespace {

// How long one fetch may take in all (a stalled control plane does not hold it for ever).
constexpr auto kFetchDeadline = std::chrono::minutes(10);

}  // namespace

class FetchReactor final : public grpc::ClientReadReactor<herd::v1::ArtifactChunk> {
 public:
  using Fetches = GrpcUplinkTransport::Fetches;
  FetchReactor(EventLoop& loop, std::shared_ptr<Fetches> fetches,
               std::shared_ptr<grpc::Channel> channel, UplinkTransport::ArtifactFetch fetch,
               std::function<void(absl::Status)> done)
      : loop_(loop),
        fetches_(std::move(fetches)),
        channel_(std::move(channel)),
        stub_(herd::v1::Gateway::NewStub(channel_)),
        fetch_(std::move(fetch)),
        tmp_(fetch_.dest + ".part"),
        done_(std::move(done)) {}

  // Starts the call; false (nothing started) when the transport is closing.
  bool Start(const UplinkDial& dial) {
    {
      std::lock_guard<std::mutex> l(fetches_->mu);
      if (fetches_->closing) return false;
      fetches_->running.insert(this);
    }
    for (const auto& [key, value] : dial.metadata) ctx_.AddMetadata(key, value);
    ctx_.set_deadline(std::chrono::system_clock::now() + kFetchDeadline);
    req_.set_host_id(fetch_.host_id);
    req_.set_sha256(fetch_.sha256);
    fd_ = open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) failure_ = absl::UnavailableError(absl::StrCat("cannot write ", tmp_, ": ",
                                                                strerror(errno)));
    stub_->async()->FetchArtifact(&ctx_, &req_, this);
    StartRead(&chunk_);
    StartCall();
    if (!failure_.ok()) ctx_.TryCancel();
    return true;
  }

  void Cancel() { ctx_.TryCancel(); }
  ~FetchReactor() override {
    if (fd_ >= 0) close(fd_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the end: OnDone follows
    if (auto s = Take(); !s.ok()) {
      failure_ = s;
      ctx_.TryCancel();
      return;
    }
    StartRead(&chunk_);
  }

  void OnDone(const grpc::Status& s) override {
    absl::Status result = Finish(s);
    bool closing;
    {
      std::lock_guard<std::mutex> l(fetches_->mu);
      closing = fetches_->closing;
      fetches_->running.erase(this);
      fetches_->idle.notify_all();
    }
    // A transport being destroyed does not call back: its owner is going too.
    if (!closing) loop_.Post([done = std::move(done_), result] { done(result); });
    delete this;
  }

 private:
  // One chunk: within the bounds, written and hashed.
  absl::Status Take() {
    if (first_) {
      first_ = false;
      size_ = chunk_.size();
      if (size_ > fetch_.max_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "the artifact is ", size_, " bytes, more than agentd takes (", fetch_.max_bytes,
            ")"));
      }
    }
    const std::string& data = chunk_.data();
    if (received_ + data.size() > size_) {
      return absl::DataLossError("the control plane sent more than the size it announced");
    }
    for (size_t off = 0; off < data.size();) {
      const ssize_t n = write(fd_, data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return absl::UnavailableError(absl::StrCat("cannot write ", tmp_, ": ", strerror(errno),
                                                   errno == ENOSPC ? " (the disk is full)" : ""));
      }
      off += static_cast<size_t>(n);
    }
    hash_.Update(data);
    received_ += data.size();
    return absl::OkStatus();
  }

  absl::Status Finish(const grpc::Status& s) {
    absl::Status result = failure_;
    if (result.ok() && !s.ok()) {
      result = absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                            absl::StrCat("the control plane: ", s.error_message()));
    }
    if (result.ok() && (first_ || received_ != size_)) {
      result = absl::DataLossError(absl::StrCat("the fetch ended after ", received_, " of ",
                                                size_, " bytes"));
    }
    if (result.ok() && fsync(fd_) != 0) {
      result = absl::UnavailableError(absl::StrCat("cannot write ", tmp_, ": ", strerror(errno)));
    }
    if (result.ok()) {
      const std::string digest = hash_.HexDigest();
      if (digest != fetch_.sha256) {
        result = absl::DataLossError(absl::StrCat(
            "the bytes fetched hash to ", digest, ", not ", fetch_.sha256,
            ": not installed (fetched again later)"));
      }
    }
    if (result.ok() && rename(tmp_.c_str(), fetch_.dest.c_str()) != 0) {
      result = absl::UnavailableError(
          absl::StrCat("cannot keep ", fetch_.dest, ": ", strerror(errno)));
    }
    if (!result.ok()) unlink(tmp_.c_str());
    return result;
  }

  EventLoop& loop_;
  const std::shared_ptr<Fetches> fetches_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<herd::v1::Gateway::Stub> stub_;
  const UplinkTransport::ArtifactFetch fetch_;
  const std::string tmp_;
  std::function<void(absl::Status)> done_;
  grpc::ClientContext ctx_;
  herd::v1::FetchArtifactRequest req_;
  herd::v1::ArtifactChunk chunk_;
  int fd_ = -1;
  bool first_ = true;
  uint64_t size_ = 0, received_ = 0;
  Sha256 hash_;
  absl::Status failure_;  // set on gRPC's threads, one reaction at a time
};

GrpcUplinkTransport::GrpcUplinkTransport(EventLoop& loop, GrpcUplinkTlsFiles tls)
    : loop_(loop), tls_(std::move(tls)), fetches_(std::make_shared<Fetches>()) {}

GrpcUplinkTransport::~GrpcUplinkTransport() {
  std::unique_lock<std::mutex> l(fetches_->mu);
  fetches_->closing = true;
  for (FetchReactor* f : fetches_->running) f->Cancel();
  fetches_->idle.wait(l, [this] { return fetches_->running.empty(); });
}

void GrpcUplinkTransport::FetchArtifact(const UplinkDial& dial, const ArtifactFetch& fetch,
                                        std::function<void(absl::Status)> done) {
  auto creds = MakeCredentials();
  if (!creds.ok()) return done(creds.status());
  auto* reactor = new FetchReactor(loop_, fetches_, MakeChannel(dial.address, *creds), fetch,
                                   std::move(done));
  if (!reactor->Start(dial)) delete reactor;  // never reached: the transport is closing
}

}  // namespace herd::agent

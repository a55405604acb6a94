#include "controlplane/gateway/gateway_service.h"

#include <list>
#include <memory>
#include <vector>

#include <google/protobuf/arena.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace herd::controlplane {
namespace {

using herd::v1::AgentMessage;
using herd::v1::ControlMessage;

class AgentStream;

// What the Hub holds: outlives the reactor (which gRPC deletes after OnDone) and turns
// sends after that into no-ops.
class SessionHandle final : public HostSession {
 public:
  SessionHandle(AgentStream* stream, std::string peer) : stream_(stream), peer_(std::move(peer)) {}
  bool Send(ControlMessage msg) override;  // serialized on the caller's thread
  void Close(const std::string& why) override;
  std::string Peer() const override { return peer_; }
  // Cancels the stream if it is not over yet.
  void Cancel();
  void Detach() {
    absl::MutexLock l(&mu_);
    stream_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  AgentStream* stream_ ABSL_GUARDED_BY(mu_);
  const std::string peer_;
};

// Reads and writes the stream's messages as bytes (the Connect method is raw, see
// gateway_service.h): a metrics message is taken in place by the hub, anything else is
// parsed here.
class AgentStream final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  AgentStream(grpc::CallbackServerContext* ctx, GatewayService& gateway, Hub& hub,
              const GatewayOptions& options)
      : ctx_(ctx), gateway_(gateway), hub_(hub), options_(options),
        log_(herd::Logger("gateway")) {
    handle_ = std::make_shared<SessionHandle>(this, ctx->peer());
    bearer_ = BearerToken(*ctx);
    if (bearer_.empty()) {
      log_->warn("event=stream_refused peer={} reason=no_credentials", ctx->peer());
      FinishOnce(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                              "no credentials: send `authorization: Bearer <join token or host "
                              "credential>` metadata"));
      return;
    }
    hello_wait_ = gateway_.AwaitHello(handle_);
    NextRead();
  }

  // Serialized on the caller's thread (a send thread), outside the stream's lock.
  bool Enqueue(const ControlMessage& msg) {
    grpc::ByteBuffer bytes;
    bool own_buffer;
    if (!grpc::SerializationTraits<ControlMessage>::Serialize(msg, &bytes, &own_buffer).ok()) {
      return false;  // not reached: our own message always serializes
    }
    absl::MutexLock l(&mu_);
    if (finished_) return false;
    if (queue_.size() >= options_.max_queued) return false;
    queue_.push_back(std::move(bytes));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
    return true;
  }

  // Finished with the reason as its status (what the agent logs), not cancelled: a cancelled
  // stream tells the agent nothing. Cancelled only if it is still open after the grace (the
  // status waits behind what was queued for an agent that does not read).
  void CloseStream(const std::string& why) {
    if (!FinishOnce(grpc::Status(grpc::StatusCode::ABORTED, why))) return;
    gateway_.CancelLater([handle = handle_] { handle->Cancel(); });
  }
  void Cancel() { ctx_->TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent closed its side or the stream broke.
      FinishOnce(grpc::Status::OK);
      return;
    }
    grpc::Slice slice;
    if (!read_.TrySingleSlice(&slice).ok() && !read_.DumpToSingleSlice(&slice).ok()) {
      FinishOnce(grpc::Status(grpc::StatusCode::INTERNAL, "could not read the message"));
      return;
    }
    read_.Clear();
    const std::string_view bytes(reinterpret_cast<const char*>(slice.begin()), slice.size());
    if (!host_id_.empty() && hub_.OnMessageBytes(host_id_, handle_.get(), bytes)) {
      NextRead();
      return;
    }
    // Anything else is parsed into an arena of its own: an inventory is hundreds of small
    // objects and strings, which the arena takes in a few blocks instead of a malloc and a
    // free each, and frees at once when the message is handled (the hub copies what it
    // keeps). Local, not the stream's: the next read's reaction may run on another thread as
    // soon as it is started, and nothing is held between messages.
    google::protobuf::Arena arena;
    AgentMessage* in = google::protobuf::Arena::CreateMessage<AgentMessage>(&arena);
    if (!in->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      log_->warn("event=stream_refused peer={} host={} reason=unparsable_message bytes={}",
                 ctx_->peer(), host_id_, bytes.size());
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "a message on the Connect stream is not a herd.v1.AgentMessage "
                              "(it does not parse): is the agent built from the same protocol?"));
      return;
    }
    if (host_id_.empty()) {
      OnHello(*in);
      return;
    }
    if (in->has_hello()) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Hello sent twice"));
      return;
    }
    hub_.OnMessage(host_id_, handle_.get(), *in);
    NextRead();
  }

  // The first message. ConnectAsync does not use the Hello once it returns (its answer may
  // come on the hub's record writer's thread before that).
  void OnHello(const AgentMessage& in) {
    gateway_.HelloDone(hello_wait_);
    if (!in.has_hello()) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "the first message on a Connect stream must be Hello"));
      return;
    }
    const herd::v1::Hello& hello = in.hello();
    // No read until the Hello is answered: a join waits for its credential's write (off
    // this thread). The stream may still be finished meanwhile (the Hello timeout's check
    // took it as late just before it came): while the answer is pending, OnDone leaves the
    // deletion to HelloAnswered.
    {
      absl::MutexLock l(&mu_);
      answer_pending_ = true;
    }
    hub_.ConnectAsync(bearer_, hello, handle_, [this, host_id = hello.host_id()](absl::Status s) {
      HelloAnswered(host_id, s);
    });
  }

  // The hub's answer to the Hello: on the thread that read it, or on the hub's record
  // writer's for a join.
  void HelloAnswered(const std::string& host_id, const absl::Status& s) {
    bool finished;
    {
      absl::MutexLock l(&mu_);
      if (s.ok()) host_id_ = host_id;
      finished = finished_;
    }
    if (!s.ok()) {
      log_->warn("event=stream_refused peer={} host={} reason=\"{}\"", ctx_->peer(), host_id,
                 s.message());
      FinishOnce(grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message())));
    } else if (!finished) {
      NextRead();
    }
    // Last: until here OnDone (even one run inside the calls above) left `this` alone.
    bool done;
    {
      absl::MutexLock l(&mu_);
      answer_pending_ = false;
      done = done_seen_;
    }
    if (done) Gone();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    if (!queue_.empty()) queue_.pop_front();
    if (!ok || finished_ || queue_.empty()) {
      writing_ = false;
      return;
    }
    StartWrite(&queue_.front());
  }

  void OnDone() override {
    handle_->Detach();
    {
      absl::MutexLock l(&mu_);
      if (answer_pending_) {  // HelloAnswered finishes this
        done_seen_ = true;
        return;
      }
    }
    Gone();
  }

 private:
  // May run on the hub's writer thread (after a join's answer).
  void NextRead() { StartRead(&read_); }

  // The stream is over and no answer is pending: detached everywhere, then deleted.
  void Gone() {
    std::string host_id;
    {
      absl::MutexLock l(&mu_);
      host_id = host_id_;
    }
    if (host_id.empty()) gateway_.HelloDone(hello_wait_);
    if (!host_id.empty()) hub_.OnDisconnect(host_id, handle_.get());
    delete this;
  }

  // False when the stream was finished already.
  bool FinishOnce(grpc::Status status) {
    {
      absl::MutexLock l(&mu_);
      if (finished_) return false;
      finished_ = true;
    }
    Finish(std::move(status));
    return true;
  }

  grpc::CallbackServerContext* ctx_;
  GatewayService& gateway_;
  Hub& hub_;
  const GatewayOptions& options_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<SessionHandle> handle_;
  std::string bearer_;
  // Set once Hello is accepted, under mu_ (the answer may come on the hub's writer thread);
  // read without it by the reactor's callbacks that follow that answer's read.
  std::string host_id_;
  uint64_t hello_wait_ = 0;  // GatewayService::AwaitHello's id (0: none)
  grpc::ByteBuffer read_;  // the message being read (empty between messages)
  absl::Mutex mu_;
  // Serialized messages. A list, not a deque: an empty deque still holds a 512-byte node,
  // for every agent.
  std::list<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool answer_pending_ ABSL_GUARDED_BY(mu_) = false;  // the hub has not answered the Hello
  bool done_seen_ ABSL_GUARDED_BY(mu_) = false;       // OnDone came while it was pending
};

bool SessionHandle::Send(ControlMessage msg) {
  absl::MutexLock l(&mu_);
  return stream_ != nullptr && stream_->Enqueue(msg);
}

void SessionHandle::Close(const std::string& why) {
  absl::MutexLock l(&mu_);
  if (stream_ != nullptr) stream_->CloseStream(why);
}

void SessionHandle::Cancel() {
  absl::MutexLock l(&mu_);
  if (stream_ != nullptr) stream_->Cancel();
}

}  // namespace

std::string BearerToken(const grpc::ServerContextBase& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  std::string v(it->second.data(), it->second.size());
  if (!absl::StartsWithIgnoreCase(v, "bearer ")) return "";
  return v.substr(7);
}

GatewayService::GatewayService(Hub& hub, Scheduler& scheduler, GatewayOptions options)
    : hub_(hub),
      options_(options),
      clock_(scheduler.clock()),
      log_(herd::Logger("gateway")),
      watch_(scheduler, absl::Seconds(1), [this] { CheckStreams(); }) {
  watch_.Start();
}

GatewayService::~GatewayService() { watch_.Stop(); }

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* GatewayService::Connect(
    grpc::CallbackServerContext* ctx) {
  return new AgentStream(ctx, *this, hub_, options_);
}

uint64_t GatewayService::AwaitHello(std::shared_ptr<HostSession> session) {
  absl::MutexLock l(&mu_);
  const uint64_t id = ++next_id_;
  waiting_[id] = {clock_.Monotonic(), std::move(session)};
  return id;
}

void GatewayService::HelloDone(uint64_t id) {
  absl::MutexLock l(&mu_);
  waiting_.erase(id);
}

void GatewayService::CancelLater(std::function<void()> cancel) {
  absl::MutexLock l(&mu_);
  closing_.emplace_back(clock_.Monotonic() + options_.close_grace, std::move(cancel));
}

void GatewayService::CheckStreams() {
  std::vector<std::shared_ptr<HostSession>> late;
  std::vector<std::function<void()>> cancel;
  {
    absl::MutexLock l(&mu_);
    const absl::Time now = clock_.Monotonic();
    // Streams open in order, so the late ones are at the front.
    const absl::Time limit = now - options_.hello_timeout;
    for (auto it = waiting_.begin(); it != waiting_.end() && it->second.opened < limit;) {
      late.push_back(std::move(it->second.session));
      it = waiting_.erase(it);
    }
    // Same grace for all, so the ones due are at the front.
    while (!closing_.empty() && closing_.front().first <= now) {
      cancel.push_back(std::move(closing_.front().second));
      closing_.pop_front();
    }
  }
  for (const auto& c : cancel) c();
  for (const auto& s : late) {
    log_->warn("event=stream_refused peer={} reason=no_hello timeout_ms={}", s->Peer(),
               absl::ToInt64Milliseconds(options_.hello_timeout));
    s->Close(absl::StrCat("no Hello within ", absl::FormatDuration(options_.hello_timeout),
                          " of opening the stream"));
  }
}

}  // namespace herd::controlplane

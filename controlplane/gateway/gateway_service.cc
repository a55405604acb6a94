#include "controlplane/gateway/gateway_service.h"

#include <array>
#include <list>
#include <memory>
#include <vector>

#include <google/protobuf/arena.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace herd::controlplane {

using herd::v1::AgentMessage;
using herd::v1::ControlMessage;

namespace {

// What the Hub holds: outlives the stream (deleted once its call is over) and turns sends
// after that into no-ops.
class SessionHandle final : public HostSession {
 public:
  SessionHandle(GatewayStream* stream, std::string peer)
      : stream_(stream), peer_(std::move(peer)) {}
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
  GatewayStream* stream_ ABSL_GUARDED_BY(mu_);
  const std::string peer_;
};

}  // namespace

// One Connect call, from the accept that takes it to its deletion. Every completion of its
// operations comes back on its queue's one thread, in order (Proceed); Enqueue (the send
// threads), CloseStream and Cancel (the hub, the stream watch) and HelloAnswered (the hub's
// record writer, for a join) come from other threads, under mu_. The stream is deleted once
// its call is done, none of its operations is pending and no Hello answer is awaited.
class GatewayStream {
 public:
  enum class Op : uint8_t { kAccept, kRead, kWrite, kFinish, kDone };
  // What the queue hands back: the stream, and which of its operations completed.
  struct Tag {
    GatewayStream* stream;
    Op op;
  };

  GatewayStream(GatewayService& gateway, grpc::ServerCompletionQueue* cq)
      : gateway_(gateway), hub_(gateway.hub_), options_(gateway.options_), cq_(cq),
        log_(gateway.log_), stream_(&ctx_) {
    for (size_t i = 0; i < tags_.size(); ++i) tags_[i] = {this, static_cast<Op>(i)};
    // Before the call starts (gRPC's rule); delivered once it is over, if it ever starts.
    ctx_.AsyncNotifyWhenDone(Tagged(Op::kDone));
    gateway_.RequestConnect(&ctx_, &stream_, cq_, cq_, Tagged(Op::kAccept));
  }

  // On the queue's thread. May delete this.
  void Proceed(Op op, bool ok) {
    switch (op) {
      case Op::kAccept:
        Started(ok);
        return;
      case Op::kRead:
        ReadDone(ok);
        break;
      case Op::kWrite:
        WriteDone(ok);
        break;
      case Op::kFinish:
        break;
      case Op::kDone:
        handle_->Detach();
        break;
    }
    bool gone;
    {
      absl::MutexLock l(&mu_);
      if (op == Op::kDone) {
        done_ = true;
      } else {
        --pending_;
      }
      gone = Over();
    }
    if (gone) Gone();
  }

  // Serialized on the caller's thread (a send thread).
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
      WriteFront();
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
  void Cancel() { ctx_.TryCancel(); }

 private:
  void* Tagged(Op op) { return &tags_[static_cast<size_t>(op)]; }

  // The accept's completion: a call to serve, or the server shutting down (the call never
  // started: no other event will come).
  void Started(bool ok) {
    if (!ok) {
      delete this;
      return;
    }
    gateway_.Accept(cq_);  // the next call on this queue
    handle_ = std::make_shared<SessionHandle>(this, ctx_.peer());
    bearer_ = BearerToken(ctx_);
    if (bearer_.empty()) {
      log_->warn("event=stream_refused peer={} reason=no_credentials", ctx_.peer());
      FinishOnce(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                              "no credentials: send `authorization: Bearer <join token or host "
                              "credential>` metadata"));
      return;
    }
    hello_wait_ = gateway_.AwaitHello(handle_);
    NextRead();
  }

  void ReadDone(bool ok) {
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
    // host_id_ is set (under mu_) before the read that follows the Hello's answer is issued.
    if (!host_id_.empty() && hub_.OnMessageBytes(host_id_, handle_.get(), bytes)) {
      NextRead();
      return;
    }
    // Emptied on this thread once the message is handled (the hub copies what it keeps).
    absl::Cleanup empty_arena = [this] { arena_.Reset(); };
    AgentMessage* in = google::protobuf::Arena::CreateMessage<AgentMessage>(&arena_);
    if (!in->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      log_->warn("event=stream_refused peer={} host={} reason=unparsable_message bytes={}",
                 ctx_.peer(), host_id_, bytes.size());
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

  void OnHello(const AgentMessage& in) {
    gateway_.HelloDone(hello_wait_);
    if (!in.has_hello()) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "the first message on a Connect stream must be Hello"));
      return;
    }
    // No read until the Hello is answered: a join waits for its credential's write (off
    // this thread). The stream may still be finished meanwhile (the Hello timeout's check
    // took it as late just before it came): while the answer is pending the stream is not
    // deleted.
    {
      absl::MutexLock l(&mu_);
      answer_pending_ = true;
    }
    hub_.ConnectAsync(bearer_, in.hello(), handle_,
                      [this, host_id = in.hello().host_id()](absl::Status s) {
                        HelloAnswered(host_id, s);
                      });
  }

  // The hub's answer to the Hello: on the queue's thread, or on the hub's record writer's
  // for a join.
  void HelloAnswered(const std::string& host_id, const absl::Status& s) {
    bool finished;
    {
      absl::MutexLock l(&mu_);
      if (s.ok()) host_id_ = host_id;
      finished = finished_;
    }
    if (!s.ok()) {
      log_->warn("event=stream_refused peer={} host={} reason=\"{}\"", ctx_.peer(), host_id,
                 s.message());
      FinishOnce(grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message())));
    } else if (!finished) {
      NextRead();
    }
    bool gone;
    {
      absl::MutexLock l(&mu_);
      answer_pending_ = false;
      gone = Over();
    }
    if (gone) Gone();  // last: until here `this` stayed
  }

  void WriteDone(bool ok) {
    absl::MutexLock l(&mu_);
    if (!queue_.empty()) queue_.pop_front();
    if (finished_) {
      // What was queued behind goes; the status waited for this write.
      writing_ = false;
      queue_.clear();
      if (finish_waits_) {
        finish_waits_ = false;
        IssueFinish();
      }
      return;
    }
    if (!ok || queue_.empty()) {
      writing_ = false;
      return;
    }
    WriteFront();
  }

  // May run on the hub's writer thread (after a join's answer): touches no arena.
  void NextRead() {
    {
      absl::MutexLock l(&mu_);
      ++pending_;
    }
    stream_.Read(&read_, Tagged(Op::kRead));
  }

  void WriteFront() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++pending_;
    stream_.Write(queue_.front(), Tagged(Op::kWrite));
  }

  void IssueFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++pending_;
    stream_.Finish(finish_status_, Tagged(Op::kFinish));
  }

  // False when the stream was finished already. The status goes after the write in flight
  // (one write-side operation at a time: gRPC's rule); a read may be pending.
  bool FinishOnce(grpc::Status status) {
    absl::MutexLock l(&mu_);
    if (finished_) return false;
    finished_ = true;
    finish_status_ = std::move(status);
    if (writing_) {
      finish_waits_ = true;
    } else {
      queue_.clear();
      IssueFinish();
    }
    return true;
  }

  bool Over() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ && pending_ == 0 && !answer_pending_;
  }

  // The call is over and nothing of it is pending: detached everywhere, then deleted.
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

  GatewayService& gateway_;
  Hub& hub_;
  const GatewayOptions& options_;
  grpc::ServerCompletionQueue* const cq_;
  std::shared_ptr<spdlog::logger> log_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_;
  std::array<Tag, 5> tags_;
  std::shared_ptr<SessionHandle> handle_;
  std::string bearer_;
  // Set once Hello is accepted, under mu_ (the answer may come on the hub's writer thread);
  // read without it on the queue's thread by the reads that follow that answer.
  std::string host_id_;
  uint64_t hello_wait_ = 0;  // GatewayService::AwaitHello's id (0: none)
  // A message that is not a batch taken in place is parsed into this arena, emptied once it
  // is handled: an inventory is hundreds of small objects and strings, which the arena takes
  // in a few growing blocks instead of a malloc and a free each; and nothing stays
  // allocated between messages (a message kept would be tens of KiB for every connected
  // agent). Default options on purpose: an arena with its own block sizes allocates a block
  // to hold them again after every Reset(), 16 KiB per agent held while idle. Used on the
  // queue's thread only.
  google::protobuf::Arena arena_;
  grpc::ByteBuffer read_;  // the message being read (empty between messages)
  absl::Mutex mu_;
  // Serialized messages. A list, not a deque: an empty deque still holds a 512-byte node,
  // for every agent.
  std::list<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_waits_ ABSL_GUARDED_BY(mu_) = false;  // for the write in flight
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  int pending_ ABSL_GUARDED_BY(mu_) = 0;  // reads, writes and the finish issued, not completed
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // the call is over (its kDone came)
  bool answer_pending_ ABSL_GUARDED_BY(mu_) = false;  // the hub has not answered the Hello
};

namespace {

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

GatewayService::~GatewayService() {
  watch_.Stop();
  Drain();
}

void GatewayService::AddQueues(grpc::ServerBuilder& builder) {
  for (size_t i = 0; i < std::max<size_t>(options_.completion_queues, 1); ++i) {
    queues_.push_back(builder.AddCompletionQueue());
  }
}

void GatewayService::Serve() {
  for (auto& q : queues_) {
    threads_.emplace_back([this, cq = q.get()] { Poll(cq); });
    for (size_t i = 0; i < std::max<size_t>(options_.accepts_per_queue, 1); ++i) {
      Accept(q.get());
    }
  }
}

void GatewayService::Drain() {
  {
    absl::MutexLock l(&accept_mu_);
    if (draining_) return;
    draining_ = true;
  }
  for (auto& q : queues_) q->Shutdown();
  if (threads_.empty()) {
    for (auto& q : queues_) Poll(q.get());  // nothing was asked of them: they empty at once
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void GatewayService::Accept(grpc::ServerCompletionQueue* cq) {
  // Under the lock: a queue being shut down takes no new operation.
  absl::MutexLock l(&accept_mu_);
  if (draining_) return;
  new GatewayStream(*this, cq);  // deletes itself
}

void GatewayService::Poll(grpc::ServerCompletionQueue* cq) {
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) {
    auto* t = static_cast<GatewayStream::Tag*>(tag);
    t->stream->Proceed(t->op, ok);
  }
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

// fleetsim: N simulated agents against a real controlplane, on loopback.
//
// Each simulated agent has its own gRPC channel (its own TCP connection) and Connect stream
// and speaks the real protocol: Hello with a module inventory, a metrics batch every interval
// (modules x probes), acks of config snapshots, replies to actions, and restart results after
// a simulated restart time. Through the Fleet API (operator token) it then changes a config
// value fleet-wide and, once the control plane is steady again (or at once, --back-to-back),
// restarts a module fleet-wide, and reports:
//   - registration time of all N (first Hello to last Welcome);
//   - sustained ingest: batches sent vs. batches the control plane counted (its /metrics);
//   - fan-out latency of the config change and of the restart (until each host acked; for
//     the restart also until each host had the request);
//   - the control plane's CPU and RSS (from /proc/PID) per connected agent;
//   - every stream that failed.
// It is bounded in agents and time and stops by itself. See bench/README.md.
//
// Replicas (issue 22): --controlplane A,B,C spreads the agents over the list and fails over
// like agentd: each agent dials the replicas in its host id's ReplicaDialOrder, and a stream
// that ends is redialled to the next address of that order after a delay drawn from [0, --failover-spread-ms] (seeded per agent), and after a
// full round of failures with a growing backoff. Each failover is counted, and each agent's
// slot records when it lost its replica and when another one welcomed it again. The Fleet
// API calls and --http go to the first address. With one address nothing changes: a stream
// that ends is a failed stream, as before.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/byte_buffer.h"
#include "herd/v1/fleet.grpc.pb.h"
#include "common/controlplane_addresses.h"
#include "common/gateway_protocol.h"
#include "herd/v1/gateway.grpc.pb.h"

namespace herd::fleetsim {
namespace {

using herd::v1::AgentMessage;
using herd::v1::ControlMessage;

struct Options {
  std::string controlplane = "127.0.0.1:7070";  // the flag: one address, or A,B,C
  std::vector<std::string> replicas;            // parsed from it
  int failover_spread_ms = 1000;
  std::string http;  // the control plane's --http address, for /metrics
  std::string join_token_file, operator_token_file, viewer_token_file;
  int controlplane_pid = 0;
  // Replicas: each one's pid (the order of --controlplane), for its CPU and for the failover.
  std::string replica_pids_flag;
  std::vector<int> replica_pids;
  int kill_replica = -1;       // kill -9 this replica (index) after the fan-outs; -1: none
  int ring = 600;              // batches a simulated agent keeps while it has no replica
  std::string etcd_metrics;    // an etcd member's client URL: its write counter, per phase
  int agents = 100;
  int modules = 10;
  int probes = 10;
  int interval_ms = 1000;
  int connect_rate = 1000;  // new streams per second
  // Load before the window, at most, while the backlog of registration drains.
  double warmup_s = 120;
  double steady_s = 30;     // ingest measured over this window
  int restart_ms = 200;     // a simulated restart takes this long
  int processes = 4;        // the agents run in this many processes
  // Each fan-out starts from a steady control plane (see WaitSteady), unless back to back.
  bool back_to_back = false;
  double max_runtime_s = 600;
  std::string json_out;
};

int64_t NowUs() { return absl::ToUnixMicros(absl::Now()); }

std::string HostId(int index) { return absl::StrFormat("sim-%05d", index); }

std::string ReadTrimmed(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return std::string(absl::StripAsciiWhitespace(ss.str()));
}

// Runs callbacks at a given time on one thread (restarts finishing later).
class Scheduler {
 public:
  Scheduler() : thread_([this] { Loop(); }) {}
  ~Scheduler() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void At(int64_t when_us, std::function<void()> f) {
    bool earliest;
    {
      std::lock_guard<std::mutex> l(mu_);
      earliest = q_.empty() || when_us < q_.top().when;
      q_.push({when_us, seq_++, std::move(f)});
    }
    // The loop sleeps until its earliest item: wake it only when that changes (a fan-out's
    // items arrive in time order, and 10,000 wake-ups would be the simulator's own cost).
    if (earliest) cv_.notify_one();
  }

 private:
  struct Item {
    int64_t when;
    uint64_t seq;
    std::function<void()> f;
    bool operator>(const Item& o) const { return std::tie(when, seq) > std::tie(o.when, o.seq); }
  };
  // Sleeps until 1 ms after its earliest item, then runs everything due: a fan-out's items
  // come tens of microseconds apart, and a sleep and a wake-up for each one were the
  // simulator's own cost (10,000 timed waits while the requests it measures still arrive).
  // Nothing runs early; the earliest item runs about 1 ms late (plus the timer's slack) and
  // the others due with it one after another. A restart answer is stamped when it is sent,
  // so that lateness counts against the measured restart, never for it.
  static constexpr int64_t kLatenessUs = 1000;
  void Loop() {
    std::unique_lock<std::mutex> l(mu_);
    std::vector<std::function<void()>> due;
    while (!stop_) {
      if (q_.empty()) {
        cv_.wait(l);
        continue;
      }
      const int64_t now = NowUs();
      if (q_.top().when > now) {
        cv_.wait_for(l, std::chrono::microseconds(q_.top().when - now + kLatenessUs));
        if (!q_.empty() && q_.top().when > NowUs()) continue;  // woken early: a new earliest
      }
      const int64_t until = NowUs();
      while (!q_.empty() && q_.top().when <= until) {
        // top() is const, but the item is popped right after.
        due.push_back(std::move(const_cast<Item&>(q_.top()).f));
        q_.pop();
      }
      l.unlock();
      for (auto& f : due) f();
      due.clear();
      l.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> q_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

// What the simulated agents report to the coordinating process. The agents run in several
// processes (--processes), so all of it lives in memory shared across fork(): lock-free
// atomics only (address-free, so they work across processes) and plain bytes.
struct Counters {
  std::atomic<int> welcomed{0}, failed{0}, open{0};
  // Replicas: streams that ended and were redialled to another address; welcomes after one.
  std::atomic<int> failovers{0}, rewelcomed{0};
  std::atomic<uint64_t> batches_sent{0}, batches_skipped{0};
  // Replicas: batches made while an agent had no replica (kept in its ring), sent once one
  // welcomed it again, and dropped because the ring was full; config snapshots older than
  // one the agent had already acked (a replica sending a stale version).
  std::atomic<uint64_t> ring_buffered{0}, ring_replayed{0}, ring_dropped{0};
  std::atomic<int> version_regressions{0};
  std::atomic<int64_t> last_welcome_us{0};
};

// One simulated agent's results.
struct Slot {
  std::atomic<int64_t> welcome_us{0};
  std::atomic<int64_t> config_ack_us{0};  // when it acked a snapshot of config_version
  std::atomic<uint64_t> config_version{0};
  std::atomic<int64_t> restart_received_us{0}, restart_ack_us{0};
  std::atomic<bool> failed{false};
  char error[120] = {0};  // written once, before `failed` is set
  // Replicas: how often its stream ended and was redialled, when it last ended, and when a
  // replica last welcomed it again afterwards (0: not yet).
  std::atomic<int> failovers{0};
  std::atomic<int64_t> lost_us{0}, rewelcome_us{0};
  std::atomic<int> replica{-1};        // the index of the replica that welcomed it last
  std::atomic<int> ring_pending{0};    // batches in its ring, waiting for a replica
  std::atomic<int64_t> ring_first_ms{0};  // when the oldest of them was made
};

struct Shared {
  Counters counters;
  // Set by the coordinator: 1 = connect (at reg_start_us), 2 = stop.
  std::atomic<int> phase{0};
  std::atomic<int64_t> reg_start_us{0};
  Slot* slots = nullptr;  // --agents of them, in the same mapping (see MapShared)
};
static_assert(std::atomic<int64_t>::is_always_lock_free && std::atomic<int>::is_always_lock_free &&
                  std::atomic<bool>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "shared across processes: the atomics must be lock-free");

// Anonymous shared memory for `agents` slots, inherited by every process forked after it.
Shared* MapShared(int agents) {
  const size_t header = (sizeof(Shared) + alignof(Slot) - 1) / alignof(Slot) * alignof(Slot);
  const size_t bytes = header + sizeof(Slot) * static_cast<size_t>(agents);
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  Shared* sh = new (m) Shared;
  sh->slots = reinterpret_cast<Slot*>(static_cast<char*>(m) + header);
  for (int i = 0; i < agents; ++i) new (&sh->slots[i]) Slot;
  return sh;
}

grpc::ByteBuffer ToBuffer(const google::protobuf::Message& m) {
  grpc::Slice slice(m.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Metrics batches, serialized once and shared by every agent, so that the simulator spends
// its CPU on the wire and not on building protobufs: a batch on the wire is a small header
// (AgentMessage.metrics's tag and length, and MetricsBatch.at_unix_ms, field 1, encoded per
// send) followed by one of `kVariants` pre-serialized bodies (the batch's other fields, with
// varying values), referenced, not copied.
class Batches {
 public:
  static constexpr int kVariants = 64;
  Batches(int modules, int probes) {
    for (int v = 0; v < kVariants; ++v) {
      herd::v1::MetricsBatch b;
      b.mutable_host()->set_cpu_percent(10 + v % 7);
      b.mutable_host()->set_memory_total_bytes(8ull << 30);
      b.mutable_host()->set_memory_available_bytes((4ull << 30) - v * 4096);
      b.mutable_host()->set_load1(0.5);
      for (int m = 0; m < modules; ++m) {
        auto* u = b.add_units();
        u->set_name(absl::StrCat("mod-", m));
        u->set_is_module(true);
        u->set_state(herd::v1::UNIT_STATE_ONLINE);
        u->set_pid(10000 + m);
        u->set_started_at_unix_ms(1764000000000);
        u->set_version("1.0.0");
        u->mutable_usage()->set_cpu_percent(static_cast<double>((v + m) % 50) / 10.0);
        u->mutable_usage()->set_rss_bytes((20ull << 20) + v * 4096);
        for (int p = 0; p < probes; ++p) {
          auto* pr = u->add_probes();
          pr->set_name(absl::StrCat("probe_", p));
          pr->set_numeric(true);
          pr->set_number(v * 10 + p);
          pr->set_value(absl::StrCat(v * 10 + p));
          pr->set_type("gauge");
        }
        u->add_main_probes("probe_0");
      }
      bodies_.emplace_back(b.SerializeAsString());
    }
  }
  // Several batches in one AgentMessage.metrics_batches (field 9; MetricsBatches.batches is
  // field 1), each (variant, at_ms) as Make's.
  grpc::ByteBuffer MakeGroup(const std::vector<std::pair<uint64_t, int64_t>>& items) const {
    std::vector<std::string> heads;
    std::vector<const grpc::Slice*> bodies;
    size_t total = 0;
    for (const auto& [variant, at_ms] : items) {
      const grpc::Slice& body = bodies_[variant % bodies_.size()];
      std::string at_field;
      at_field.push_back(0x08);
      AppendVarint(&at_field, static_cast<uint64_t>(at_ms));
      std::string head;
      head.push_back(0x0a);  // MetricsBatches field 1, length-delimited
      AppendVarint(&head, at_field.size() + body.size());
      head += at_field;
      total += head.size() + body.size();
      heads.push_back(std::move(head));
      bodies.push_back(&body);
    }
    std::string outer;
    outer.push_back(0x4a);  // AgentMessage field 9 (metrics_batches), length-delimited
    AppendVarint(&outer, total);
    std::vector<grpc::Slice> slices;
    slices.emplace_back(outer);
    for (size_t i = 0; i < heads.size(); ++i) {
      slices.emplace_back(heads[i]);
      slices.push_back(*bodies[i]);
    }
    return grpc::ByteBuffer(slices.data(), slices.size());
  }
  grpc::ByteBuffer Make(uint64_t variant, int64_t at_ms) const {
    const grpc::Slice& body = bodies_[variant % bodies_.size()];
    std::string at_field;
    at_field.push_back(0x08);  // field 1, varint
    AppendVarint(&at_field, static_cast<uint64_t>(at_ms));
    std::string header;
    header.push_back(0x12);  // AgentMessage field 2 (metrics), length-delimited
    AppendVarint(&header, at_field.size() + body.size());
    header += at_field;
    grpc::Slice slices[2] = {grpc::Slice(header), body};
    return grpc::ByteBuffer(slices, 2);
  }

 private:
  std::vector<grpc::Slice> bodies_;
};

class SimAgent final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // `replica`: the index in options_.replicas to dial; `failures`: streams that ended in a
  // row before this one (0 for the first connection).
  SimAgent(int index, const Options& o, const Batches& b, Counters& c, Scheduler& s, Slot& slot,
           size_t replica = 0, int failures = 0)
      : index_(index), options_(o), batches_(b), counters_(c), scheduler_(s), slot_(slot),
        replica_(replica), failures_(failures) {
    host_id_ = HostId(index);
  }

  // With the host's credential once a replica gave it (as agentd: a failover reconnects
  // with it, and registers again with the join token only if it was refused).
  void Start(const std::string& join_token, const std::string& credential = "") {
    join_token_ = join_token;
    credential_ = credential;
    grpc::ChannelArguments args;
    // A channel of its own: its own subchannel and TCP connection, as a real agent has.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("herd.fleetsim.agent", index_);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);  // as agentd's uplink
    channel_ = grpc::CreateCustomChannel(options_.replicas[replica_],
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
    ctx_.AddMetadata("authorization",
                     "Bearer " + (credential.empty() ? join_token : credential));
    stub_->PrepareBidiStreamingCall(&ctx_, "/herd.v1.Gateway/Connect", grpc::StubOptions(), this);
    AgentMessage hello;
    auto* h = hello.mutable_hello();
    h->set_host_id(host_id_);
    h->set_hostname(host_id_);
    (*h->mutable_labels())["sim"] = "1";
    (*h->mutable_labels())["group"] = absl::StrCat(index_ % 10);
    h->set_agent_version("fleetsim");
    h->set_boot_id("fleetsim");
    h->set_cpu_count(2);
    for (int m = 0; m < options_.modules; ++m) {
      auto* inv = h->add_modules();
      inv->set_name(absl::StrCat("mod-", m));
      inv->set_version("1.0.0");
      inv->set_source("fleetsim");
      inv->set_defaults_json(R"({"greeting":"hello","limit":5})");
      inv->set_state(herd::v1::UNIT_STATE_ONLINE);
    }
    counters_.open++;
    Send(std::move(hello));
    StartRead(&in_);
    AddHold();  // writes are started from other threads: see ReleaseHold()
    StartCall();
  }

  void Tick() {
    if (SimAgent* next = next_.load()) return next->Tick();
    if (!welcomed_.load() || done_.load()) {
      // Between replicas (a failover): the batch waits in the agent's ring, as agentd's.
      if (slot_.failovers.load() > 0) KeepInRing();
      return;
    }
    std::lock_guard<std::mutex> l(mu_);
    if (slot_.ring_pending.load() > 0) ReplayRingLocked();
    if (queue_.size() > 4) {  // the stream is not keeping up: drop, as a real agent's ring does
      counters_.batches_skipped++;
      return;
    }
    ++seq_;
    counters_.batches_sent++;
    if (per_message_ <= 1) {
      SendLocked(batches_.Make(seq_ + static_cast<uint64_t>(index_), NowUs() / 1000));
      return;
    }
    // As agentd: the batches wait until the control plane's count of them is reached.
    pending_.emplace_back(seq_ + static_cast<uint64_t>(index_), NowUs() / 1000);
    if (pending_.size() >= per_message_) FlushPendingLocked();
  }

  // Also the connections that replaced this one (failover); none is made afterwards.
  void Finish() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
    }
    ctx_.TryCancel();
    ReleaseHold();
    if (SimAgent* next = next_.load()) next->Finish();
  }
  void Wait() {
    {
      std::unique_lock<std::mutex> l(mu_);
      done_cv_.wait(l, [&] { return done_.load(); });
    }
    if (SimAgent* next = next_.load()) next->Wait();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return ReleaseHold();  // the stream is over: let it finish
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (in_.Dump(&slices).ok()) {
      for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    }
    ControlMessage m;
    if (m.ParseFromString(bytes)) Handle(m);
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    writing_ = false;
    if (!ok) {
      queue_.clear();
      return;
    }
    WriteNextLocked();
  }
  void OnDone(const grpc::Status& s) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!stopping_.load() && options_.replicas.size() > 1) {
        PlanFailoverLocked(!welcomed_.load() &&
                           s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
      } else if (!stopping_.load()) {
        absl::SNPrintF(slot_.error, sizeof slot_.error, "%d: %s", s.error_code(),
                       s.error_message());
        slot_.failed = true;
        counters_.failed++;
      }
      done_ = true;
      counters_.open--;
      // Under the lock: once Wait() returns, the agent may be destroyed.
      done_cv_.notify_all();
    }
  }

 private:
  void Handle(const ControlMessage& m) {
    switch (m.msg_case()) {
      case ControlMessage::kWelcome: {
        int64_t now = NowUs();
        {
          std::lock_guard<std::mutex> l(mu_);
          if (!m.welcome().host_credential().empty()) credential_ = m.welcome().host_credential();
          reads_groups_ = m.welcome().metrics_batches_per_message() > 0;
          SetCadenceLocked(m.welcome().metrics_batches_per_message());
        }
        welcomed_ = true;
        slot_.replica = static_cast<int>(replica_);
        // A failover: registered again elsewhere. (An agent refused before its first
        // Welcome, which then registers through another replica, is a first registration.)
        if (failures_ > 0 && slot_.welcome_us.load() > 0) {
          slot_.rewelcome_us = now;
          counters_.rewelcomed++;
          std::lock_guard<std::mutex> l(mu_);
          ReplayRingLocked();
          break;
        }
        slot_.welcome_us = now;
        welcomed_ = true;
        counters_.welcomed++;
        int64_t prev = counters_.last_welcome_us.load();
        while (now > prev && !counters_.last_welcome_us.compare_exchange_weak(prev, now)) {
        }
        break;
      }
      case ControlMessage::kConfig: {
        if (m.config().version() < slot_.config_version.load()) counters_.version_regressions++;
        AgentMessage ack;
        ack.mutable_config_ack()->set_version(m.config().version());
        ack.mutable_config_ack()->set_accepted(true);
        Send(std::move(ack));
        slot_.config_ack_us = NowUs();  // first: the coordinator reads the version, then this
        slot_.config_version = m.config().version();
        break;
      }
      case ControlMessage::kRestart: {
        slot_.restart_received_us = NowUs();
        // The answer is built now, so that the scheduler's thread, which sends every host's
        // answer when its restart is over, only sends it.
        AgentMessage res;
        auto* r = res.mutable_restart_result();
        r->set_request_id(m.restart().request_id());
        for (const auto& u : m.restart().units()) {
          auto* ur = r->add_units();
          ur->set_unit(u);
          ur->set_ok(true);
          ur->set_pid(20000 + index_);
        }
        scheduler_.At(NowUs() + options_.restart_ms * 1000, [this, buffer = ToBuffer(res)] {
          {
            std::lock_guard<std::mutex> l(mu_);
            SendLocked(buffer);
          }
          slot_.restart_ack_us = NowUs();
        });
        break;
      }
      case ControlMessage::kCadence: {
        std::lock_guard<std::mutex> l(mu_);
        SetCadenceLocked(m.cadence().metrics_batches_per_message());
        break;
      }
      case ControlMessage::kAction: {
        AgentMessage res;
        auto* r = res.mutable_action_result();
        r->set_request_id(m.action().request_id());
        r->set_ok(true);
        r->set_reply_json("\"ok\"");
        Send(std::move(res));
        break;
      }
      default:
        break;
    }
  }

  // The stream ended while running (its replica went away): the next address, after a
  // delay drawn from this agent's own sequence, promptly within a round of the list and with
  // a growing backoff after a full one (as agentd's Uplink). The new connection is made on
  // the scheduler's thread, under mu_, so that Finish either sees it or prevents it.
  void PlanFailoverLocked(bool refused_credential) {
    const bool was_streaming = welcomed_.load();
    const int failures = was_streaming ? 1 : failures_ + 1;
    const size_t n = options_.replicas.size();
    std::mt19937_64 rng(static_cast<uint64_t>(index_) * 1000003u +
                        static_cast<uint64_t>(slot_.failovers.load()));
    int64_t delay_us;
    if (failures % static_cast<int>(n) != 0) {
      delay_us =
          std::uniform_int_distribution<int64_t>(0, options_.failover_spread_ms * 1000LL)(rng);
    } else {
      const int round = failures / static_cast<int>(n);
      const int64_t step = std::min<int64_t>(500000LL << std::min(round - 1, 10), 30000000LL);
      delay_us = std::uniform_int_distribution<int64_t>(step / 2, step)(rng);
    }
    slot_.failovers++;
    slot_.lost_us = NowUs();
    counters_.failovers++;
    const std::vector<size_t> order = ReplicaDialOrder(host_id_, options_.replicas);
    const size_t at = static_cast<size_t>(
        std::find(order.begin(), order.end(), replica_) - order.begin());
    const size_t replica = order[(at + 1) % n];
    // A credential refused (the replica does not know the host): the join token next.
    if (refused_credential) credential_.clear();
    scheduler_.At(NowUs() + delay_us, [this, replica, failures] {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_.load()) return;
      next_owned_ = std::make_unique<SimAgent>(index_, options_, batches_, counters_, scheduler_,
                                               slot_, replica, failures);
      next_owned_->Start(join_token_, credential_);
      next_ = next_owned_.get();
    });
  }

  // A batch made while the agent has no replica: kept, or counted as dropped once the ring
  // holds --ring of them (agentd drops the oldest; only the count matters here).
  void KeepInRing() {
    if (slot_.ring_pending.load() >= options_.ring) {
      counters_.ring_dropped++;
      return;
    }
    if (slot_.ring_pending.fetch_add(1) == 0) slot_.ring_first_ms = NowUs() / 1000;
    counters_.ring_buffered++;
  }
  // Sends what the ring holds, stamped when each batch was made: grouped (at most
  // kMaxMetricsBatchesPerMessage a message, as agentd) to a control plane that reads groups.
  void ReplayRingLocked() {
    const int n = slot_.ring_pending.exchange(0);
    const int64_t first_ms = slot_.ring_first_ms.load();
    for (int k = 0; k < n; ++k) {
      ++seq_;
      const uint64_t variant = seq_ + static_cast<uint64_t>(index_);
      const int64_t at_ms = first_ms + static_cast<int64_t>(k) * options_.interval_ms;
      if (!reads_groups_) {
        SendLocked(batches_.Make(variant, at_ms));
        continue;
      }
      pending_.emplace_back(variant, at_ms);
      if (pending_.size() >= herd::kMaxMetricsBatchesPerMessage) FlushPendingLocked();
    }
    if (!pending_.empty()) FlushPendingLocked();
    counters_.ring_replayed += static_cast<uint64_t>(n);
  }
  void FlushPendingLocked() {
    SendLocked(batches_.MakeGroup(pending_));
    pending_.clear();
  }
  // Welcome.metrics_batches_per_message or a MetricsCadence (under mu_).
  void SetCadenceLocked(uint32_t n) {
    per_message_ = std::clamp<uint32_t>(n, 1, herd::kMaxMetricsBatchesPerMessage);
    if (!pending_.empty() && pending_.size() >= per_message_) FlushPendingLocked();
  }

  // No write starts once this ran (both under mu_), so OnDone cannot race a new write.
  void ReleaseHold() {
    {
      std::lock_guard<std::mutex> l(mu_);
      closed_ = true;
    }
    if (!hold_released_.exchange(true)) RemoveHold();
  }
  void Send(const AgentMessage& m) {
    std::lock_guard<std::mutex> l(mu_);
    SendLocked(ToBuffer(m));
  }
  void SendLocked(grpc::ByteBuffer m) {
    if (closed_) return;
    queue_.push_back(std::move(m));
    WriteNextLocked();
  }
  void WriteNextLocked() {
    if (writing_ || queue_.empty() || closed_) return;
    out_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&out_);
  }

  const int index_;
  const Options& options_;
  const Batches& batches_;
  Counters& counters_;
  Scheduler& scheduler_;
  Slot& slot_;
  std::string host_id_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  grpc::ClientContext ctx_;
  grpc::ByteBuffer in_, out_;
  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  std::deque<grpc::ByteBuffer> queue_;
  bool writing_ = false;
  bool closed_ = false;
  uint64_t seq_ = 0;
  std::atomic<bool> welcomed_{false}, stopping_{false}, done_{false};
  std::atomic<bool> hold_released_{false};
  // Failover: the address dialled, streams that ended in a row before this one, and the
  // connection that replaced this one once its stream ended (owned here; published after
  // it started).
  const size_t replica_;
  const int failures_;
  std::string join_token_;
  std::string credential_;  // under mu_ once started
  // Metrics cadence (under mu_): batches per message, whether the control plane reads groups,
  // and the batches waiting for their group (variant, time).
  uint32_t per_message_ = 1;
  bool reads_groups_ = false;
  std::vector<std::pair<uint64_t, int64_t>> pending_;
  std::unique_ptr<SimAgent> next_owned_;
  std::atomic<SimAgent*> next_{nullptr};
};

// One process of simulated agents: its share of --agents (agent k*N/P up to (k+1)*N/P), its
// own metrics ticker and restart scheduler. Connects its agents once the coordinator says so
// (at its share of --connect-rate), runs until it says stop, then closes every stream.
int RunSwarm(int k, const Options& o, const std::string& join, Shared& sh) {
  const int first = static_cast<int>(static_cast<int64_t>(o.agents) * k / o.processes);
  const int end = static_cast<int>(static_cast<int64_t>(o.agents) * (k + 1) / o.processes);
  const Batches batches(o.modules, o.probes);
  std::vector<std::unique_ptr<SimAgent>> agents;
  // Declared after the agents, so destroyed before them: no restart callback outlives one.
  Scheduler scheduler;
  agents.reserve(end - first);
  for (int i = first; i < end; ++i) {
    agents.push_back(std::make_unique<SimAgent>(i, o, batches, sh.counters, scheduler,
                                                sh.slots[i],
                                                ReplicaDialOrder(HostId(i), o.replicas).front()));
  }

  // The metrics ticker: every interval, each welcomed agent sends one batch (spread over the
  // interval so that the load is even, as real agents' clocks are).
  std::atomic<bool> ticking{true};
  std::thread ticker([&] {
    const int64_t slice_us = static_cast<int64_t>(o.interval_ms) * 1000 / 20;
    int64_t next = NowUs();
    int slice = 0;
    while (ticking) {
      for (size_t i = slice; i < agents.size(); i += 20) agents[i]->Tick();
      slice = (slice + 1) % 20;
      next += slice_us;
      int64_t wait = next - NowUs();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::microseconds(wait));
    }
  });

  while (sh.phase.load() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const int64_t reg_start = sh.reg_start_us.load();
  const double rate = static_cast<double>(o.connect_rate) / o.processes;  // per process
  const size_t pace_every = std::max<size_t>(1, static_cast<size_t>(rate / 100));
  size_t started = 0;  // only started agents are finished and waited for
  for (size_t j = 0; j < agents.size() && sh.phase.load() < 2; ++j, ++started) {
    agents[j]->Start(join);
    if ((j + 1) % pace_every == 0) {
      const int64_t due = reg_start + static_cast<int64_t>(static_cast<double>(j + 1) * 1e6 / rate);
      const int64_t wait = due - NowUs();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::microseconds(wait));
    }
  }
  while (sh.phase.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ticking = false;
  ticker.join();
  for (size_t j = 0; j < started; ++j) agents[j]->Finish();
  for (size_t j = 0; j < started; ++j) agents[j]->Wait();
  return 0;
}

// /proc/PID: CPU seconds (user+system) and RSS bytes.
struct ProcSample {
  double cpu_s = 0;
  uint64_t rss = 0;
};
ProcSample SampleProc(int pid) {
  ProcSample s;
  std::string stat = ReadTrimmed(absl::StrCat("/proc/", pid, "/stat"));
  size_t rp = stat.rfind(')');
  if (rp != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(rp + 2), ' ');
    uint64_t ut = 0, st = 0;
    if (f.size() > 13 && absl::SimpleAtoi(f[11], &ut) && absl::SimpleAtoi(f[12], &st)) {
      s.cpu_s = static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      uint64_t kb = 0;
      std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() >= 2 && absl::SimpleAtoi(f[1], &kb)) s.rss = kb * 1024;
    }
  }
  return s;
}

struct ApiTimes {
  double list_ms = -1, search_ms = -1, host_ms = -1, metrics_ms = -1;
  size_t metrics_bytes = 0;
};

// Median milliseconds of 5 calls of `f` (which returns false when the call failed: -1).
double MedianMs(const std::function<bool()>& f) {
  std::vector<double> ms;
  for (int i = 0; i < 5; ++i) {
    const int64_t t0 = NowUs();
    if (!f()) return -1;
    ms.push_back(static_cast<double>(NowUs() - t0) / 1000.0);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

ApiTimes TimeApi(const Options& o, const std::string& host_id) {
  ApiTimes t;
  if (o.http.empty() || o.viewer_token_file.empty()) return t;
  const std::vector<std::string> https = absl::StrSplit(o.http, ',');
  httplib::Client c(absl::StrCat("http://", https.front()));
  c.set_read_timeout(60);
  const httplib::Headers h = {{"Authorization", "Bearer " + ReadTrimmed(o.viewer_token_file)}};
  auto post = [&](const char* method, const std::string& body) {
    auto r = c.Post(absl::StrCat("/api/v1/", method).c_str(), h, body, "application/json");
    return r && r->status == 200;
  };
  t.list_ms = MedianMs([&] { return post("ListHosts", R"({"pageSize": 50})"); });
  t.search_ms = MedianMs([&] { return post("ListHosts", R"({"pageSize": 50, "query": "group=3"})"); });
  t.host_ms = MedianMs([&] { return post("GetHost", absl::StrCat(R"({"hostId": ")", host_id, R"("})")); });
  t.metrics_ms = MedianMs([&] {
    auto r = c.Get("/metrics", h);
    if (!r || r->status != 200) return false;
    t.metrics_bytes = r->body.size();
    return true;
  });
  return t;
}

// What fleetsim reads from the control plane's /metrics: the batches counter (-1 when
// unavailable) and the batch delay histogram's cumulative buckets (upper bound, count).
struct Scrape {
  double batches = -1;
  std::vector<std::pair<double, double>> delay;
};
Scrape ScrapeOne(const Options& o, const std::string& address) {
  Scrape out;
  httplib::Client c(absl::StrCat("http://", address));
  c.set_read_timeout(30);
  httplib::Headers h;
  if (!o.viewer_token_file.empty()) {
    h.emplace("Authorization", "Bearer " + ReadTrimmed(o.viewer_token_file));
  }
  // Its own families only: the whole exposition of 10,000 hosts is tens of MiB, and
  // rendering it would load the control plane in the middle of what is measured.
  auto r = c.Get("/metrics?scope=controlplane", h);
  if (!r || r->status != 200) return out;
  for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
    double v = 0;
    if (absl::ConsumePrefix(&line, "herd_controlplane_metric_batches_total ")) {
      if (absl::SimpleAtod(line, &v)) out.batches = v;
    } else if (absl::ConsumePrefix(&line, "herd_controlplane_metric_batch_delay_seconds_bucket{le=\"")) {
      const size_t q = line.find('"');
      if (q == absl::string_view::npos) continue;
      double le = 0;
      const absl::string_view bound = line.substr(0, q);
      if (bound == "+Inf") {
        le = std::numeric_limits<double>::infinity();
      } else if (!absl::SimpleAtod(bound, &le)) {
        continue;
      }
      absl::string_view value = line.substr(q + 1);
      if (absl::ConsumePrefix(&value, "} ") && absl::SimpleAtod(value, &v)) {
        out.delay.emplace_back(le, v);
      }
    }
  }
  return out;
}

// Every --http address's counters added up (replicas: each counts the hosts it holds); the
// batches are -1 when one of them did not answer.
Scrape ScrapeMetrics(const Options& o) {
  Scrape sum;
  bool first = true;
  for (absl::string_view a : absl::StrSplit(o.http, ',', absl::SkipEmpty())) {
    const Scrape one = ScrapeOne(o, std::string(a));
    if (first) {
      sum = one;
      first = false;
      continue;
    }
    sum.batches = sum.batches < 0 || one.batches < 0 ? -1 : sum.batches + one.batches;
    if (one.delay.size() != sum.delay.size()) {
      sum.delay.clear();
    } else {
      for (size_t i = 0; i < one.delay.size(); ++i) sum.delay[i].second += one.delay[i].second;
    }
  }
  return sum;
}

// The q-quantile of the observations between two scrapes of a histogram, interpolated within
// its bucket as Prometheus' histogram_quantile does (-1 when there is none).
double DelayQuantile(const Scrape& a, const Scrape& b, double q) {
  if (a.delay.size() != b.delay.size() || b.delay.empty()) return -1;
  const double total = b.delay.back().second - a.delay.back().second;
  if (total <= 0) return -1;
  const double rank = q * total;
  double prev_le = 0, prev_count = 0;
  for (size_t i = 0; i < b.delay.size(); ++i) {
    const double le = b.delay[i].first;
    const double count = b.delay[i].second - a.delay[i].second;
    if (count >= rank) {
      if (std::isinf(le)) return prev_le;  // beyond the last bound: its bound
      return prev_le + (le - prev_le) * (count > prev_count ? (rank - prev_count) / (count - prev_count) : 1);
    }
    prev_le = le;
    prev_count = count;
  }
  return prev_le;
}

// Waits until the control plane is steady: its batch delay's median over `window` under
// 100 ms (it has drained what it was behind on), or `limit` has passed. Returns the seconds
// waited and the last median seen (-1 without --http).
std::pair<double, double> WaitSteady(const Options& o, absl::Duration window, absl::Duration limit,
                                     const std::function<bool()>& out_of_time) {
  const int64_t start = NowUs();
  double p50 = -1;
  while (!out_of_time() && NowUs() - start < absl::ToInt64Microseconds(limit)) {
    const Scrape a = ScrapeMetrics(o);
    std::this_thread::sleep_for(absl::ToChronoSeconds(window));
    p50 = DelayQuantile(a, ScrapeMetrics(o), 0.5);
    if (p50 < 0.1) break;  // also without --http (-1): nothing to wait for
  }
  return {static_cast<double>(NowUs() - start) / 1e6, p50};
}

struct Percentiles {
  double min = 0, p50 = 0, p99 = 0, max = 0;
  size_t n = 0;
};
Percentiles Summarize(std::vector<double> ms) {
  Percentiles p;
  p.n = ms.size();
  if (ms.empty()) return p;
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))];
  };
  p.min = ms.front();
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.max = ms.back();
  return p;
}

int Fail(const std::string& msg) {
  fprintf(stderr, "fleetsim: %s\n", msg.c_str());
  return 1;
}

// The operator's side (the Fleet API calls that start a fan-out) runs in a process of its own,
// forked before any gRPC object exists, as an operator's client would on its own machine: its
// calls share no gRPC thread or queue with the simulated agents' 10,000 channels.
// Commands and answers are lines on a socket pair; every answer is
// "<ok 0|1> <t0_us> <t1_us> <rollout state or -> <error or ->":
//   "config"       SetConfig, global scope, mod-0:greeting; t1 when the call returned;
//   "restart <s>"  Restart of mod-0 on every host, one batch; t1 when the rollout left
//                  RUNNING, or after <s> seconds.
class OperatorProcess {
 public:
  struct Reply {
    bool ok = false;
    int64_t t0_us = 0, t1_us = 0;
    std::string state = "-";
    std::string error = "the operator's process is gone";
  };
  ~OperatorProcess() {
    if (to_) fclose(to_);
    if (from_) fclose(from_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  bool Start(const Options& o, const std::string& token) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return false;
    pid_ = fork();
    if (pid_ < 0) {
      close(fds[0]);
      close(fds[1]);
      return false;
    }
    if (pid_ == 0) {
      close(fds[0]);
      _exit(Serve(fds[1], o, token));
    }
    close(fds[1]);
    const int read_fd = fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
    to_ = fdopen(fds[0], "w");
    from_ = read_fd >= 0 ? fdopen(read_fd, "r") : nullptr;
    if (!to_ || !from_) {
      // The child sees end of file once both ends are closed, and exits.
      if (to_) fclose(to_); else close(fds[0]);
      if (from_) fclose(from_); else if (read_fd >= 0) close(read_fd);
      to_ = from_ = nullptr;
      return false;
    }
    return true;
  }
  // In a process forked after Start: lets go of the socket without flushing or waiting.
  void CloseInChild() {
    if (to_) close(fileno(to_));
    if (from_) close(fileno(from_));
    to_ = from_ = nullptr;
    pid_ = -1;
  }
  // Sends a command and waits for its answer.
  Reply Call(const std::string& command) {
    Reply r;
    char line[4096];
    if (!to_ || fprintf(to_, "%s\n", command.c_str()) < 0 || fflush(to_) != 0 ||
        !fgets(line, sizeof line, from_)) {
      return r;
    }
    std::vector<std::string> f =
        absl::StrSplit(absl::StripAsciiWhitespace(line), absl::MaxSplits(' ', 4));
    if (f.size() < 5 || !absl::SimpleAtoi(f[1], &r.t0_us) || !absl::SimpleAtoi(f[2], &r.t1_us)) {
      r.error = absl::StrCat("unreadable answer: ", line);
      return r;
    }
    r.ok = f[0] == "1";
    r.state = f[3];
    r.error = f[4];
    return r;
  }

 private:
  static int Serve(int fd, const Options& o, const std::string& token) {
    FILE* in = fdopen(fd, "r");
    FILE* out = fdopen(fcntl(fd, F_DUPFD_CLOEXEC, 0), "w");
    if (!in || !out) return 1;
    auto channel = grpc::CreateChannel(o.replicas.front(), grpc::InsecureChannelCredentials());
    auto fleet = herd::v1::Fleet::NewStub(channel);
    // Connected before any clock starts: what is timed is the fan-out, not a handshake.
    const bool connected =
        channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto prepare = [&](grpc::ClientContext& ctx) {
      ctx.AddMetadata("authorization", "Bearer " + token);
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    };
    auto error = [&](const grpc::Status& st) {
      if (st.ok()) return std::string("-");
      return absl::StrCat(connected ? "" : "(never connected) ", st.error_message());
    };
    char line[256];
    while (fgets(line, sizeof line, in)) {
      const std::string command(absl::StripAsciiWhitespace(line));
      if (command == "config") {
        herd::v1::FleetSetConfigRequest set;
        set.mutable_scope()->set_global(true);
        set.set_module("mod-0");
        set.set_key("greeting");
        set.set_value(absl::StrCat("fleetsim-", NowUs()));
        herd::v1::FleetConfigChange change;
        grpc::ClientContext ctx;
        prepare(ctx);
        const int64_t t0 = NowUs();
        grpc::Status st = fleet->SetConfig(&ctx, set, &change);
        const int64_t t1 = NowUs();
        fprintf(out, "%d %lld %lld - %s\n", st.ok() ? 1 : 0, static_cast<long long>(t0),
                static_cast<long long>(t1), error(st).c_str());
      } else if (absl::StartsWith(command, "restart")) {
        // "restart <seconds>": how long to wait for the rollout at most.
        double limit_s = 120;
        (void)absl::SimpleAtod(absl::StripPrefix(command, "restart"), &limit_s);
        herd::v1::FleetRestartRequest restart;
        restart.mutable_target()->set_all(true);
        restart.set_module("mod-0");
        restart.set_batch_percent(100);
        restart.set_max_unavailable(static_cast<uint32_t>(o.agents));
        restart.set_failure_threshold(static_cast<uint32_t>(o.agents));
        herd::v1::Rollout rollout;
        grpc::ClientContext ctx;
        prepare(ctx);
        const int64_t t0 = NowUs();
        grpc::Status st = fleet->Restart(&ctx, restart, &rollout);
        // Followed as `agentctl rollout --watch` does: the control plane sends the record as
        // it changes (not a 10,000-host record polled many times a second).
        herd::v1::Rollout last;
        if (st.ok()) {
          grpc::ClientContext w_ctx;
          prepare(w_ctx);
          w_ctx.set_deadline(absl::ToChronoTime(absl::FromUnixMicros(t0) + absl::Seconds(limit_s)));
          herd::v1::GetRolloutRequest g;
          g.set_id(rollout.id());
          auto reader = fleet->WatchRollout(&w_ctx, g);
          while (reader->Read(&last) && last.state() == herd::v1::ROLLOUT_STATE_RUNNING) {
          }
          w_ctx.TryCancel();
          (void)reader->Finish();
        }
        fprintf(out, "%d %lld %lld %s %s\n", st.ok() ? 1 : 0, static_cast<long long>(t0),
                static_cast<long long>(NowUs()), herd::v1::RolloutState_Name(last.state()).c_str(),
                error(st).c_str());
      } else {
        fprintf(out, "0 0 0 - unknown command\n");
      }
      fflush(out);
    }
    return 0;
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

// An etcd member's count of committed writes (raft proposals: each Put, DeleteRange, Txn and
// lease grant or revoke is one; lease keep-alives are not), from its /metrics; -1 without
// --etcd-metrics or when it does not answer.
double EtcdWrites(const Options& o) {
  if (o.etcd_metrics.empty()) return -1;
  httplib::Client c(o.etcd_metrics);
  c.set_read_timeout(10);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return -1;
  for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
    double v = 0;
    if (absl::ConsumePrefix(&line, "etcd_server_proposals_committed_total ") &&
        absl::SimpleAtod(line, &v)) {
      return v;
    }
  }
  return -1;
}

// Writes between two readings, less what the steady rate accounts for over `seconds`.
double EtcdWritesBetween(double before, double after, double rate, double seconds) {
  if (before < 0 || after < 0) return -1;
  return std::max(0.0, after - before - std::max(0.0, rate) * seconds);
}

// CPU seconds of each replica (--replica-pids), in order.
std::vector<double> ReplicaCpu(const Options& o) {
  std::vector<double> out;
  for (int pid : o.replica_pids) out.push_back(SampleProc(pid).cpu_s);
  return out;
}

// The failover (--kill-replica K): kill -9 of replica K once the fan-outs are over, then at
// once a config change through the first replica. Measured until every agent K held is
// welcomed by another replica and every agent has acked that change.
struct Failover {
  bool ran = false;
  int moved = 0;               // agents replica K held when it was killed
  Percentiles rewelcome;       // kill -> welcomed again, those agents
  Percentiles moved_acked;     // kill -> acked the change, those agents
  Percentiles all_acked;       // kill -> acked the change, every agent
  double set_after_kill_ms = 0, seconds = 0, etcd_writes = -1;
  bool set_ok = false;
  std::string error;
  uint64_t buffered = 0, replayed = 0, dropped = 0, left_in_rings = 0;
  int regressions = 0;
};
Failover RunFailover(const Options& o, Shared& sh, OperatorProcess& op, double etcd_rate,
                     const std::function<bool()>& out_of_time) {
  Failover f;
  if (o.kill_replica < 0) return f;
  f.ran = true;
  Counters& c = sh.counters;
  auto slot = [&](int i) -> Slot& { return sh.slots[i]; };
  std::vector<int> moved;
  std::vector<uint64_t> before(o.agents);
  for (int i = 0; i < o.agents; ++i) {
    before[i] = slot(i).config_version.load();
    if (slot(i).replica.load() == o.kill_replica) moved.push_back(i);
  }
  f.moved = static_cast<int>(moved.size());
  const uint64_t buffered0 = c.ring_buffered.load(), replayed0 = c.ring_replayed.load(),
                 dropped0 = c.ring_dropped.load();
  const int regressions0 = c.version_regressions.load();
  const double etcd0 = EtcdWrites(o);
  fprintf(stderr, "fleetsim: kill -9 of replica %d (pid %d), which holds %d agents\n",
          o.kill_replica, o.replica_pids[o.kill_replica], f.moved);
  if (kill(o.replica_pids[o.kill_replica], SIGKILL) != 0) {
    f.error = absl::StrCat("cannot kill pid ", o.replica_pids[o.kill_replica], ": ", strerror(errno));
    return f;
  }
  const int64_t t_kill = NowUs();
  const OperatorProcess::Reply set = op.Call("config");
  f.set_ok = set.ok;
  if (!set.ok) f.error = absl::StrCat("SetConfig after the kill: ", set.error);
  f.set_after_kill_ms = static_cast<double>(set.t0_us - t_kill) / 1000.0;
  auto over = [&] {
    for (int i : moved) {
      if (slot(i).rewelcome_us.load() <= t_kill || slot(i).ring_pending.load() > 0) return false;
    }
    for (int i = 0; set.ok && i < o.agents; ++i) {
      if (!slot(i).failed.load() && slot(i).config_version.load() <= before[i]) return false;
    }
    return true;
  };
  while (!over() && !out_of_time() && NowUs() - t_kill < 60 * 1000000LL) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  f.seconds = static_cast<double>(NowUs() - t_kill) / 1e6;
  f.etcd_writes = EtcdWritesBetween(etcd0, EtcdWrites(o), etcd_rate, f.seconds);
  std::vector<double> back, moved_ack, all_ack;
  auto acked_ms = [&](int i) {
    return static_cast<double>(slot(i).config_ack_us.load() - t_kill) / 1000.0;
  };
  for (int i : moved) {
    if (slot(i).rewelcome_us.load() > t_kill) {
      back.push_back(static_cast<double>(slot(i).rewelcome_us.load() - t_kill) / 1000.0);
    }
    if (set.ok && slot(i).config_version.load() > before[i]) moved_ack.push_back(acked_ms(i));
  }
  for (int i = 0; set.ok && i < o.agents; ++i) {
    if (slot(i).config_version.load() > before[i]) all_ack.push_back(acked_ms(i));
    f.left_in_rings += static_cast<uint64_t>(slot(i).ring_pending.load());
  }
  f.rewelcome = Summarize(back);
  f.moved_acked = Summarize(moved_ack);
  f.all_acked = Summarize(all_ack);
  f.buffered = c.ring_buffered.load() - buffered0;
  f.replayed = c.ring_replayed.load() - replayed0;
  f.dropped = c.ring_dropped.load() - dropped0;
  f.regressions = c.version_regressions.load() - regressions0;
  return f;
}

void PrintFailover(const Options& o, const Failover& f, int connected) {
  if (!f.ran) return;
  printf("  failover            kill -9 of replica %d holding %d agents; config change issued "
         "%.0f ms after it%s\n",
         o.kill_replica, f.moved, f.set_after_kill_ms, f.set_ok ? "" : " FAILED");
  printf("                      welcomed by another replica: %zu/%d, p50 %.0f ms, p99 %.0f ms, "
         "max %.0f ms\n",
         f.rewelcome.n, f.moved, f.rewelcome.p50, f.rewelcome.p99, f.rewelcome.max);
  printf("                      and acked the change: %zu/%d, p99 %.0f ms, max %.0f ms; every "
         "agent: %zu/%d, p99 %.0f ms, max %.0f ms\n",
         f.moved_acked.n, f.moved, f.moved_acked.p99, f.moved_acked.max, f.all_acked.n,
         connected, f.all_acked.p99, f.all_acked.max);
  printf("                      ring: %llu batches kept while away, %llu sent after, %llu "
         "dropped, %llu still waiting; config versions gone back: %d\n",
         static_cast<unsigned long long>(f.buffered), static_cast<unsigned long long>(f.replayed),
         static_cast<unsigned long long>(f.dropped),
         static_cast<unsigned long long>(f.left_in_rings), f.regressions);
  if (f.etcd_writes >= 0) {
    printf("                      etcd writes until then: %.0f (%.2f per agent moved)\n",
           f.etcd_writes, f.moved ? f.etcd_writes / f.moved : 0);
  }
  if (!f.error.empty()) printf("    %s\n", f.error.c_str());
}

int Main(int argc, char** argv) {
  // gRPC's own locks are absl::Mutex; Debian's Abseil runs its lock-order detector on every one
  // of them (one global graph, one global lock). The simulator shares the machine with the
  // control plane it measures, so it must not spend CPU on that (controlplane and agentd also
  // turn it off in release builds).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Options o;
  CLI::App app{"fleetsim: simulated agents against a real controlplane (loopback only); "
               "measures registration, ingest, config and restart fan-out, and the control "
               "plane's CPU and memory per agent. Results: bench/README.md."};
  app.add_option("--controlplane", o.controlplane,
                 "gRPC address, or A,B,C for replicas: each agent dials them in its own order "
                 "(as agentd: rendezvous hashing of its host id), failing over to its next when "
                 "its replica goes away; the Fleet API calls go to the first")
      ->capture_default_str();
  app.add_option("--failover-spread-ms", o.failover_spread_ms,
                 "Replicas: an agent whose stream ended redials within this window (jittered)")
      ->check(CLI::Range(0, 600000))->capture_default_str();
  app.add_option("--replica-pids", o.replica_pids_flag,
                 "Replicas: each one's pid, in the order of --controlplane (CPU per replica)");
  app.add_option("--kill-replica", o.kill_replica,
                 "Replicas: kill -9 this one (index in --controlplane, not 0: the Fleet API's) "
                 "after the fan-outs, change the config through the first, and measure until "
                 "its agents are elsewhere and every agent acked");
  app.add_option("--ring", o.ring, "Batches a simulated agent keeps while it has no replica")
      ->check(CLI::Range(0, 100000))->capture_default_str();
  app.add_option("--etcd-metrics", o.etcd_metrics,
                 "An etcd member's client URL (http://127.0.0.1:2379): etcd writes per phase");
  app.add_option("--http", o.http,
                 "The control plane's --http address (ingest from /metrics); replicas: every "
                 "one's, A,B,C (the counters are added up; the API is timed on the first)");
  app.add_option("--join-token-file", o.join_token_file, "DATA/join-token")->required();
  app.add_option("--operator-token-file", o.operator_token_file,
                 "DATA/operator-token (config change and restart through the Fleet API)")
      ->required();
  app.add_option("--viewer-token-file", o.viewer_token_file, "DATA/viewer-token (/metrics)");
  app.add_option("--controlplane-pid", o.controlplane_pid, "Sample this process's CPU and RSS");
  app.add_option("--agents", o.agents, "Simulated agents")->check(CLI::Range(1, 20000))
      ->capture_default_str();
  app.add_option("--modules", o.modules, "Modules per agent")->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--probes", o.probes, "Probes per module")->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--interval-ms", o.interval_ms, "Metrics interval")
      ->check(CLI::Range(100, 60000))->capture_default_str();
  app.add_option("--connect-rate", o.connect_rate, "New streams per second")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--warmup", o.warmup_s,
                 "At most this many seconds of load after registration before the window: it "
                 "starts once the control plane's batch delay p50 over 5 s is under 100 ms")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--steady", o.steady_s, "Seconds of steady load measured")
      ->check(CLI::Range(1.0, 3600.0))->capture_default_str();
  app.add_option("--restart-ms", o.restart_ms, "How long a simulated restart takes")
      ->check(CLI::Range(0, 60000))->capture_default_str();
  app.add_option("--processes", o.processes,
                 "Processes the simulated agents run in (each with its own gRPC threads)")
      ->check(CLI::Range(1, 64))->capture_default_str();
  app.add_flag("--back-to-back", o.back_to_back,
               "Restart right after the config fan-out's last ack, without waiting for the "
               "control plane to be steady again");
  app.add_option("--max-runtime", o.max_runtime_s, "Stop after this many seconds whatever happens")
      ->check(CLI::Range(10.0, 7200.0))->capture_default_str();
  app.add_option("--json", o.json_out, "Also write the results here as JSON");
  CLI11_PARSE(app, argc, argv);
  auto replicas = ParseControlPlaneAddresses(o.controlplane, "--controlplane");
  if (!replicas.ok()) return Fail(std::string(replicas.status().message()));
  o.replicas = *std::move(replicas);
  for (absl::string_view p : absl::StrSplit(o.replica_pids_flag, ',', absl::SkipEmpty())) {
    int pid = 0;
    if (!absl::SimpleAtoi(p, &pid) || pid <= 0) return Fail(absl::StrCat("--replica-pids: ", p, " is not a pid"));
    o.replica_pids.push_back(pid);
  }
  if (!o.replica_pids.empty() && o.replica_pids.size() != o.replicas.size()) {
    return Fail("--replica-pids needs one pid per --controlplane address, in the same order");
  }
  if (o.kill_replica >= 0 &&
      (o.kill_replica == 0 || o.kill_replica >= static_cast<int>(o.replica_pids.size()))) {
    return Fail("--kill-replica takes the index of a replica other than the first (the Fleet "
                "API's) and needs --replica-pids");
  }
  for (const auto& r : o.replicas) {
    if (!absl::StartsWith(r, "127.") && !absl::StartsWith(r, "localhost:") &&
        !absl::StartsWith(r, "[::1]:")) {
      return Fail(absl::StrCat("--controlplane: ", r,
                               " is not a loopback address: fleetsim loads only this machine"));
    }
  }
  const std::string join = ReadTrimmed(o.join_token_file);
  const std::string op = ReadTrimmed(o.operator_token_file);
  if (join.empty() || op.empty()) return Fail("cannot read the join or operator token file");
  // One socket per agent: raise the descriptor limit as far as allowed.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < static_cast<rlim_t>(o.agents) + 100) {
    return Fail(absl::StrCat("the descriptor limit (", rl.rlim_cur, ") is below --agents + 100"));
  }
  signal(SIGPIPE, SIG_IGN);
  Shared* sh = MapShared(o.agents);
  if (!sh) return Fail("cannot map shared memory for the agents' results");
  // Forked now, while this process has no thread and no gRPC state.
  OperatorProcess operator_process;
  if (!operator_process.Start(o, op)) return Fail("cannot start the operator's process");

  // The simulated agents, in --processes processes forked now (no thread, no gRPC state
  // yet): each has its own gRPC threads and completion queue, as agents on their own machines
  // would, instead of one queue and one timer table for all 10,000 channels, whose debug
  // checks in Debian's libgrpc walk lists as long as the number of streams.
  std::vector<pid_t> swarms;
  // Kills and reaps them: for an early exit, and for a process that does not stop.
  auto kill_swarms = [&] {
    for (pid_t& pid : swarms) {
      if (pid <= 0) continue;
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  };
  const pid_t coordinator = getpid();
  for (int k = 0; k < o.processes; ++k) {
    const pid_t pid = fork();
    if (pid < 0) {
      kill_swarms();
      return Fail("cannot fork a process for the simulated agents");
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the coordinator
      if (getppid() != coordinator) _exit(1);
      // Only the coordinator talks to the operator's process: it must see end of file
      // once the coordinator is gone.
      operator_process.CloseInChild();
      _exit(RunSwarm(k, o, join, *sh));
    }
    swarms.push_back(pid);
  }
  // Every process of the simulator but the operator's: the coordinator and the swarms.
  auto sim_cpu = [&] {
    ProcSample total = SampleProc(getpid());
    for (pid_t pid : swarms) {
      if (pid > 0) total.cpu_s += SampleProc(pid).cpu_s;
    }
    return total;
  };
  bool swarm_lost = false;  // one ended before it was told to
  auto swarm_gone = [&] {
    for (pid_t& pid : swarms) {
      if (pid > 0 && waitpid(pid, nullptr, WNOHANG) != 0) {
        pid = -1;
        swarm_lost = true;
      }
    }
    return swarm_lost;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(o.max_runtime_s);
  auto out_of_time = [&] { return absl::Now() > deadline || swarm_gone(); };

  // The control plane's own size before any agent connects: memory per agent is what it grows.
  const ProcSample baseline = o.controlplane_pid ? SampleProc(o.controlplane_pid) : ProcSample{};
  Counters& counters = sh->counters;
  auto slot = [&](int i) -> Slot& { return sh->slots[i]; };

  // Registration.
  fprintf(stderr, "fleetsim: connecting %d agents at %d/s from %d processes\n", o.agents,
          o.connect_rate, o.processes);
  const int64_t reg_start = NowUs();
  sh->reg_start_us = reg_start;
  const double etcd_reg0 = EtcdWrites(o);
  sh->phase = 1;
  while (counters.welcomed.load() + counters.failed.load() < o.agents && !out_of_time()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double registration_s =
      static_cast<double>(counters.last_welcome_us.load() - reg_start) / 1e6;
  fprintf(stderr, "fleetsim: %d registered, %d failed, in %.1f s\n", counters.welcomed.load(),
          counters.failed.load(), registration_s);

  // Steady load: ingest and the control plane's cost.
  // Registering 10,000 agents leaves the control plane seconds behind, and it drains that
  // backlog only with the CPU it has spare: the window starts once it is steady (the batch
  // delay's median over 5 s under 100 ms), or after --warmup seconds (the batch delay over
  // the window then says it never was).
  {
    const auto [waited_s, p50] =
        WaitSteady(o, absl::Seconds(5), absl::Seconds(o.warmup_s), out_of_time);
    fprintf(stderr, "fleetsim: steady after %.0f s of warm-up (batch delay p50 %.2f s)\n",
            waited_s, p50);
  }
  const double etcd_reg1 = EtcdWrites(o);
  const double reg_to_steady_s = static_cast<double>(NowUs() - reg_start) / 1e6;
  // The control plane's counter and ours are read back to back, at the start and the end of
  // the window, so the two rates cover the same time.
  const Scrape scrape0 = ScrapeMetrics(o);
  const double cp_batches0 = scrape0.batches;
  const uint64_t sent0 = counters.batches_sent.load();
  const uint64_t skipped0 = counters.batches_skipped.load();
  const ProcSample p0 = o.controlplane_pid ? SampleProc(o.controlplane_pid) : ProcSample{};
  const std::vector<double> replicas0 = ReplicaCpu(o);
  const double etcd_w0 = EtcdWrites(o);
  const ProcSample self0 = sim_cpu();
  const int64_t t0 = NowUs();
  std::this_thread::sleep_for(absl::ToChronoSeconds(absl::Seconds(o.steady_s)));
  const ProcSample p1 = o.controlplane_pid ? SampleProc(o.controlplane_pid) : ProcSample{};
  const std::vector<double> replicas1 = ReplicaCpu(o);
  const double etcd_w1 = EtcdWrites(o);
  const ProcSample self1 = sim_cpu();
  const Scrape scrape1 = ScrapeMetrics(o);
  const double cp_batches1 = scrape1.batches;
  const double delay_p50 = DelayQuantile(scrape0, scrape1, 0.5);
  const double delay_p99 = DelayQuantile(scrape0, scrape1, 0.99);
  const uint64_t sent = counters.batches_sent.load() - sent0;
  const uint64_t skipped = counters.batches_skipped.load() - skipped0;
  const int64_t t1 = NowUs();
  const double window_s = static_cast<double>(t1 - t0) / 1e6;
  const double cp_cores = o.controlplane_pid ? (p1.cpu_s - p0.cpu_s) / window_s : 0;
  const double sim_cores = (self1.cpu_s - self0.cpu_s) / window_s;
  const double accepted = cp_batches0 >= 0 && cp_batches1 >= 0 ? cp_batches1 - cp_batches0 : -1;
  const double samples_per_batch = o.modules * (2.0 + o.probes) + 1;

  // Fan-out: a config change for every host, from the operator's process.
  // By index, not by host id: the check below runs every 20 ms over every agent, on the
  // simulator's core, while the fan-out it measures runs.
  std::vector<uint64_t> version_before;
  version_before.reserve(o.agents);
  for (int i = 0; i < o.agents; ++i) version_before.push_back(slot(i).config_version.load());
  // CPU each side spends on the fan-out (with the ingest going on): which one limits it.
  const ProcSample cfg_cp0 = o.controlplane_pid ? SampleProc(o.controlplane_pid) : ProcSample{};
  const double etcd_cfg0 = EtcdWrites(o);
  const ProcSample cfg_self0 = sim_cpu();
  const OperatorProcess::Reply set = operator_process.Call("config");
  const int64_t config_t0 = set.t0_us;
  if (!set.ok) fprintf(stderr, "fleetsim: SetConfig failed: %s\n", set.error.c_str());
  const double set_call_ms = static_cast<double>(set.t1_us - set.t0_us) / 1000.0;
  auto all_acked = [&] {
    for (int i = 0; i < o.agents; ++i) {
      if (!slot(i).failed.load() && slot(i).config_version.load() <= version_before[i]) {
        return false;
      }
    }
    return true;
  };
  while (set.ok && !all_acked() && !out_of_time() && NowUs() - config_t0 < 60 * 1000000LL) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const ProcSample cfg_cp1 = o.controlplane_pid ? SampleProc(o.controlplane_pid) : ProcSample{};
  const double etcd_cfg1 = EtcdWrites(o);
  const ProcSample cfg_self1 = sim_cpu();
  const double cfg_cp_cpu_ms = (cfg_cp1.cpu_s - cfg_cp0.cpu_s) * 1000.0;
  const double cfg_sim_cpu_ms = (cfg_self1.cpu_s - cfg_self0.cpu_s) * 1000.0;
  std::vector<double> config_ms;
  for (int i = 0; i < o.agents; ++i) {
    if (set.ok && slot(i).config_version.load() > version_before[i]) {
      config_ms.push_back(static_cast<double>(slot(i).config_ack_us.load() - config_t0) / 1000.0);
    }
  }

  // The config fan-out leaves the control plane behind on the batches that arrived meanwhile
  // (and on the acks); the restart is timed from a steady control plane again, as an
  // operator's restart would usually find it, unless --back-to-back.
  std::pair<double, double> settled{0, -1};
  if (!o.back_to_back) {
    settled = WaitSteady(o, absl::Seconds(1), absl::Seconds(30), out_of_time);
  }

  // Fan-out: a restart of mod-0 on every host, all at once (one batch of 100 %).
  const double restart_limit_s =
      std::clamp(absl::ToDoubleSeconds(deadline - absl::Now()), 1.0, 120.0);
  const OperatorProcess::Reply rs =
      operator_process.Call(absl::StrCat("restart ", restart_limit_s));
  const int64_t restart_t0 = rs.t0_us;
  if (!rs.ok) fprintf(stderr, "fleetsim: Restart failed: %s\n", rs.error.c_str());
  const double rollout_s = static_cast<double>(rs.t1_us - rs.t0_us) / 1e6;
  std::vector<double> restart_ms, restart_received_ms;
  for (int i = 0; i < o.agents; ++i) {
    const int64_t ack = slot(i).restart_ack_us.load();
    if (rs.ok && ack >= restart_t0) {
      restart_ms.push_back(static_cast<double>(ack - restart_t0) / 1000.0);
      restart_received_ms.push_back(
          static_cast<double>(slot(i).restart_received_us.load() - restart_t0) / 1000.0);
    }
  }
  const ProcSample p_end = o.controlplane_pid ? SampleProc(o.controlplane_pid) : ProcSample{};

  // What the dashboard (and a scraper) asks of a fleet this size: a page of hosts, a search,
  // one host, and /metrics, each timed end to end over HTTP (median of 5). Last, so that the
  // memory figures above hold no scrape's leftovers.
  // Writes etcd takes per second at steady load, and per registration and config change
  // (less that rate over their time).
  const double etcd_rate = etcd_w0 >= 0 && etcd_w1 >= 0 ? (etcd_w1 - etcd_w0) / window_s : -1;
  const double etcd_reg = EtcdWritesBetween(etcd_reg0, etcd_reg1, etcd_rate, reg_to_steady_s);
  const double etcd_cfg = EtcdWritesBetween(etcd_cfg0, etcd_cfg1, etcd_rate,
                                            static_cast<double>(NowUs() - config_t0) / 1e6);
  const Failover failover = RunFailover(o, *sh, operator_process, etcd_rate, out_of_time);

  ApiTimes api = TimeApi(o, HostId(o.agents / 2));

  sh->phase = 2;
  bool swarms_ok = !swarm_lost;
  // Each closes its streams and exits; one still running after 30 s is killed.
  const absl::Time reap_by = absl::Now() + absl::Seconds(30);
  for (pid_t& pid : swarms) {
    while (pid > 0) {
      int status = 0;
      const pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) swarms_ok = false;
        pid = -1;
      } else if (r < 0 || absl::Now() > reap_by) {
        swarms_ok = false;
        break;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
  kill_swarms();  // those that did not stop in time
  if (!swarms_ok) fprintf(stderr, "fleetsim: a process of simulated agents failed\n");

  // Report.
  Percentiles cfg = Summarize(config_ms), rst = Summarize(restart_ms),
              rst_in = Summarize(restart_received_ms);
  std::vector<std::string> errors;
  for (int i = 0; i < o.agents && errors.size() < 5; ++i) {
    if (slot(i).failed.load()) errors.push_back(HostId(i) + ": " + slot(i).error);
  }
  const int connected = counters.welcomed.load();
  printf("fleetsim: %d agents x %d modules x %d probes, metrics every %d ms\n", o.agents,
         o.modules, o.probes, o.interval_ms);
  printf("  registration        %d/%d in %.2f s\n", connected, o.agents, registration_s);
  printf("  ingest (%.0f s)       sent %.0f batches/s (%.0f samples/s), skipped %llu; "
         "control plane counted %s\n",
         window_s, static_cast<double>(sent) / window_s,
         static_cast<double>(sent) / window_s * samples_per_batch,
         static_cast<unsigned long long>(skipped),
         accepted < 0 ? "n/a (no --http)"
                      : absl::StrFormat("%.0f batches/s (%.1f%% of sent)", accepted / window_s,
                                        sent ? 100.0 * accepted / static_cast<double>(sent) : 0)
                            .c_str());
  if (delay_p50 >= 0) {
    printf("  batch delay         p50 %.2f s, p99 %.2f s (batch time to processing, the control "
           "plane's histogram over the window)\n",
           delay_p50, delay_p99);
  }
  if (o.controlplane_pid) {
    printf("  control plane       %.2f cores (fleetsim %.2f), RSS %.1f MiB (%.1f before the "
           "agents) = %.1f KiB per agent (after fan-out: %.1f MiB)\n",
           cp_cores, sim_cores, static_cast<double>(p1.rss) / (1 << 20),
           static_cast<double>(baseline.rss) / (1 << 20),
           connected ? static_cast<double>(p1.rss - baseline.rss) / 1024.0 / connected : 0,
           static_cast<double>(p_end.rss) / (1 << 20));
  }
  printf("  config fan-out      %zu/%d hosts acked: first %.0f ms, p50 %.0f ms, p99 %.0f ms, "
         "max %.0f ms (SetConfig call %.0f ms)%s\n",
         cfg.n, connected, cfg.min, cfg.p50, cfg.p99, cfg.max, set_call_ms,
         set.ok ? "" : " FAILED (see above)");
  printf("                      CPU until the last ack: control plane %.0f ms, fleetsim %.0f ms\n",
         cfg_cp_cpu_ms, cfg_sim_cpu_ms);
  printf("  restart fan-out     %zu/%d hosts acked: first %.0f ms, p50 %.0f ms, p99 %.0f ms, "
         "max %.0f ms (restart takes %d ms; rollout %s in %.1f s)%s\n",
         rst.n, connected, rst.min, rst.p50, rst.p99, rst.max, o.restart_ms,
         rs.state.c_str(), rollout_s, rs.ok ? "" : " FAILED (see above)");
  printf("                      request received: first %.0f ms, p50 %.0f ms, p99 %.0f ms, "
         "max %.0f ms\n",
         rst_in.min, rst_in.p50, rst_in.p99, rst_in.max);
  if (o.back_to_back) {
    printf("                      started right after the config fan-out's last ack\n");
  } else {
    printf("                      started %.1f s after the config fan-out's last ack, the control "
           "plane steady again (batch delay p50 %.2f s over 1 s)\n",
           settled.first, settled.second);
  }
  if (api.list_ms >= 0) {
    printf("  dashboard API       ListHosts page of 50: %.1f ms, search: %.1f ms, GetHost: %.1f ms; "
           "/metrics: %.0f ms (%.1f MiB)\n",
           api.list_ms, api.search_ms, api.host_ms, api.metrics_ms,
           static_cast<double>(api.metrics_bytes) / (1 << 20));
  }
  if (!replicas0.empty()) {
    std::string per;
    for (size_t k = 0; k < replicas0.size(); ++k) {
      absl::StrAppendFormat(&per, "%sr%zu %.2f", k ? ", " : "", k,
                            (replicas1[k] - replicas0[k]) / window_s);
    }
    printf("  replicas' CPU       %s cores over the ingest window\n", per.c_str());
  }
  if (etcd_rate >= 0) {
    printf("  etcd writes         steady %.1f/s; registration %.0f (%.2f per agent, warm-up "
           "included); config change %.0f\n",
           etcd_rate, etcd_reg, o.agents ? etcd_reg / o.agents : 0, etcd_cfg);
  }
  PrintFailover(o, failover, connected);
  printf("  failed streams      %d\n", counters.failed.load());
  if (o.replicas.size() > 1) {
    printf("  replicas            %zu; failovers %d, registered again after one %d\n",
           o.replicas.size(), counters.failovers.load(), counters.rewelcomed.load());
  }
  for (const auto& e : errors) printf("    %s\n", e.c_str());
  if (!o.json_out.empty()) {
    std::ofstream j(o.json_out);
    j << absl::StrFormat(
        R"({"agents":%d,"modules":%d,"probes":%d,"interval_ms":%d,"registered":%d,)"
        R"("registration_s":%.3f,"sent_batches_per_s":%.1f,"accepted_batches_per_s":%.1f,)"
        R"("skipped":%llu,"cp_cores":%.3f,"sim_cores":%.3f,"cp_rss_bytes":%llu,"cp_rss_baseline_bytes":%llu,"config_p50_ms":%.1f,)"
        R"("config_p99_ms":%.1f,"config_max_ms":%.1f,"config_acked":%zu,"restart_p50_ms":%.1f,)"
        R"("restart_p99_ms":%.1f,"restart_max_ms":%.1f,"restart_acked":%zu,)"
        R"("restart_received_p50_ms":%.1f,"restart_received_p99_ms":%.1f,"failed_streams":%d,)"
        R"("list_hosts_ms":%.1f,"search_hosts_ms":%.1f,"get_host_ms":%.1f,"metrics_ms":%.1f,)"
        R"("batch_delay_p50_s":%.3f,"batch_delay_p99_s":%.3f,"restart_settle_s":%.3f,)"
        R"("replicas":%zu,"failovers":%d,"rewelcomed":%d,"back_to_back":%s,)"
        R"("etcd_writes_per_s":%.2f,"etcd_writes_registration":%.0f,"etcd_writes_config":%.0f,)"
        R"("failover_moved":%d,"failover_rewelcomed":%zu,"failover_rewelcome_p99_ms":%.1f,)"
        R"("failover_rewelcome_max_ms":%.1f,"failover_moved_acked":%zu,)"
        R"("failover_moved_acked_max_ms":%.1f,"failover_all_acked":%zu,)"
        R"("failover_all_acked_p99_ms":%.1f,"failover_ring_dropped":%llu,)"
        R"("failover_ring_left":%llu,"failover_version_regressions":%d,"replica_cores":[%s]})",
        o.agents, o.modules, o.probes, o.interval_ms, connected, registration_s,
        static_cast<double>(sent) / window_s, accepted < 0 ? -1 : accepted / window_s,
        static_cast<unsigned long long>(skipped), cp_cores, sim_cores,
        static_cast<unsigned long long>(p1.rss), static_cast<unsigned long long>(baseline.rss), cfg.p50, cfg.p99, cfg.max, cfg.n, rst.p50,
        rst.p99, rst.max, rst.n, rst_in.p50, rst_in.p99, counters.failed.load(), api.list_ms, api.search_ms, api.host_ms,
        api.metrics_ms, delay_p50, delay_p99, settled.first, o.replicas.size(),
        counters.failovers.load(), counters.rewelcomed.load(), o.back_to_back ? "true" : "false",
        etcd_rate, etcd_reg, etcd_cfg, failover.moved, failover.rewelcome.n,
        failover.rewelcome.p99, failover.rewelcome.max, failover.moved_acked.n,
        failover.moved_acked.max, failover.all_acked.n, failover.all_acked.p99,
        static_cast<unsigned long long>(failover.dropped),
        static_cast<unsigned long long>(failover.left_in_rings), failover.regressions,
        [&] {
          std::string a;
          for (size_t k = 0; k < replicas0.size(); ++k) {
            absl::StrAppendFormat(&a, "%s%.3f", k ? "," : "", (replicas1[k] - replicas0[k]) / window_s);
          }
          return a;
        }().c_str());
    j << "\n";
  }
  const bool failover_ok =
      !failover.ran || (failover.set_ok && static_cast<int>(failover.rewelcome.n) == failover.moved &&
                        static_cast<int>(failover.all_acked.n) == connected &&
                        failover.dropped == 0 && failover.left_in_rings == 0 &&
                        failover.regressions == 0);
  const bool ok = swarms_ok && connected == o.agents && counters.failed.load() == 0 &&
                  static_cast<int>(cfg.n) == connected && static_cast<int>(rst.n) == connected &&
                  failover_ok;
  return ok ? 0 : 2;
}

}  // namespace
}  // namespace herd::fleetsim

int main(int argc, char** argv) { return herd::fleetsim::Main(argc, argv); }

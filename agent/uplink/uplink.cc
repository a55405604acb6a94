#include "agent/uplink/uplink.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "grpcpp/grpcpp.h"

namespace herd::agent {
namespace {

std::string ReadTrimmed(const std::string& path) {
  auto t = ReadFileToString(path);
  return t.ok() ? std::string(absl::StripAsciiWhitespace(*t)) : "";
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "host";
  return buf;
}

// A stable, readable id: the hostname's safe characters and 12 random hex digits.
std::string NewHostId() {
  std::string base;
  for (char c : Hostname()) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') base += c;
    if (base.size() >= 40) break;
  }
  while (!base.empty() && (base[0] == '-' || base[0] == '.')) base.erase(0, 1);
  if (base.empty()) base = "host";
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  return absl::StrCat(base, "-", absl::Hex(dist(rd) & 0xffffffffffffULL, absl::kZeroPad12));
}

}  // namespace

Uplink::Uplink(UplinkOptions options, UplinkHandler& handler)
    : options_(std::move(options)), handler_(handler), log_(herd::Logger("uplink")) {}

Uplink::~Uplink() { Stop(); }

std::string Uplink::CredentialPath() const { return absl::StrCat(options_.home, "/host-credential"); }

absl::Status Uplink::Start() {
  const std::string id_path = absl::StrCat(options_.home, "/host_id");
  host_id_ = ReadTrimmed(id_path);
  if (host_id_.empty()) {
    host_id_ = NewHostId();
    if (auto s = WriteFileAtomically(id_path, host_id_ + "\n", 0644); !s.ok()) return s;
    log_->info("event=host_id_created host_id={}", host_id_);
  }
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
  absl::Status creds_error;
  if (!MakeCredentials(&creds_error)) return creds_error;
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void Uplink::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    if (ctx_) ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Uplink::PushMetrics(herd::v1::MetricsBatch batch) {
  {
    std::lock_guard<std::mutex> l(mu_);
    metrics_.push_back(std::move(batch));
    while (metrics_.size() > options_.buffer_batches) {
      metrics_.pop_front();
      ++dropped_since_sent_;
      ++dropped_total_;
    }
  }
  cv_.notify_all();
}

void Uplink::PushEvent(herd::v1::ModuleEvent event) {
  herd::v1::AgentMessage m;
  *m.mutable_event() = std::move(event);
  SendControl(std::move(m));
}

void Uplink::InventoryChanged() {
  {
    std::lock_guard<std::mutex> l(mu_);
    inventory_dirty_ = true;
  }
  cv_.notify_all();
}

void Uplink::SendControl(herd::v1::AgentMessage msg) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!connected_) return;  // results for a stream that is gone are not wanted
    control_.push_back(std::move(msg));
    while (control_.size() > options_.max_control_queue) control_.pop_front();
  }
  cv_.notify_all();
}

Uplink::State Uplink::state() const {
  std::lock_guard<std::mutex> l(mu_);
  State s;
  s.connected = connected_;
  s.host_id = host_id_;
  s.last_error = last_error_;
  s.connected_at_unix_ms = connected_at_ms_;
  s.dropped_batches = dropped_total_;
  s.buffered_batches = metrics_.size();
  return s;
}

std::shared_ptr<grpc::ChannelCredentials> Uplink::MakeCredentials(absl::Status* error) const {
  if (options_.tls_ca.empty() && options_.tls_cert.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!options_.tls_ca.empty()) {
    auto ca = ReadFileToString(options_.tls_ca);
    if (!ca.ok()) {
      *error = absl::InvalidArgumentError(absl::StrCat("--tls-ca: ", ca.status().message()));
      return nullptr;
    }
    ssl.pem_root_certs = *ca;
  }
  if (!options_.tls_cert.empty()) {
    auto cert = ReadFileToString(options_.tls_cert);
    auto key = ReadFileToString(options_.tls_key);
    if (!cert.ok() || !key.ok()) {
      *error = absl::InvalidArgumentError("--tls-cert / --tls-key: cannot read them");
      return nullptr;
    }
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

void Uplink::Run() {
  std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.backoff_initial;
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
    }
    const absl::Time began = absl::Now();
    absl::Status s = Session();
    {
      std::lock_guard<std::mutex> l(mu_);
      if (connected_) log_->info("event=disconnected reason=\"{}\"", s.message());
      connected_ = false;
      control_.clear();
      last_error_ = std::string(s.message());
      if (stopping_) return;
    }
    // A session that lasted resets the backoff; quick failures grow it.
    if (absl::Now() - began > absl::Seconds(30)) backoff = options_.backoff_initial;
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    absl::Duration wait = backoff * jitter(rng);
    backoff = std::min(backoff * 2, options_.backoff_max);
    log_->warn("event=controlplane_unreachable address={} retry_in_ms={} error=\"{}\"",
               options_.address, absl::ToInt64Milliseconds(wait), s.message());
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, absl::ToChronoMilliseconds(wait), [this] { return stopping_; });
  }
}

absl::Status Uplink::Session() {
  absl::Status creds_error;
  auto creds = MakeCredentials(&creds_error);
  if (!creds) return creds_error;
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
  auto channel = grpc::CreateCustomChannel(options_.address, creds, args);
  auto stub = herd::v1::Gateway::NewStub(channel);

  std::string credential = ReadTrimmed(CredentialPath());
  const bool by_join = credential.empty();
  const std::string secret = by_join ? ReadTrimmed(options_.join_token_file) : credential;
  if (secret.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "no credential and no join token (", options_.join_token_file, " is empty or missing)"));
  }
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", secret));
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return absl::CancelledError("stopping");
    ctx_ = &ctx;
    broken_ = false;
  }
  auto clear_ctx = [this] {
    std::lock_guard<std::mutex> l(mu_);
    ctx_ = nullptr;
  };
  std::unique_ptr<grpc::ClientReaderWriter<herd::v1::AgentMessage, herd::v1::ControlMessage>>
      stream = stub->Connect(&ctx);

  herd::v1::AgentMessage hello_msg;
  herd::v1::Hello* hello = hello_msg.mutable_hello();
  hello->set_host_id(host_id_);
  hello->set_hostname(Hostname());
  hello->mutable_labels()->insert(options_.labels.begin(), options_.labels.end());
  hello->set_agent_version(HERD_VERSION);
  hello->set_boot_id(ReadTrimmed("/proc/sys/kernel/random/boot_id"));
  for (auto& m : handler_.Inventory()) *hello->add_modules() = std::move(m);
  hello->set_acked_config_version(handler_.AckedConfigVersion());
  struct utsname u {};
  if (uname(&u) == 0) {
    hello->set_kernel(u.release);
    hello->set_arch(u.machine);
  }
  hello->set_cpu_count(static_cast<uint32_t>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN))));
  hello->set_memory_total_bytes(static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                                static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  if (!stream->Write(hello_msg)) {
    grpc::Status st = stream->Finish();
    clear_ctx();
    return absl::UnavailableError(absl::StrCat("cannot reach ", options_.address, ": ",
                                               st.error_message()));
  }

  // The first answer must be Welcome (or the stream ends with the refusal).
  herd::v1::ControlMessage first;
  if (!stream->Read(&first) || !first.has_welcome()) {
    grpc::Status st = stream->Finish();
    clear_ctx();
    if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED && !by_join) {
      // The control plane no longer knows our credential (its data was reset): register
      // again with the join token next time.
      log_->warn("event=credential_refused action=\"registering again with the join token\"");
      unlink(CredentialPath().c_str());
    }
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                        absl::StrCat("the control plane refused the stream: ",
                                     st.error_message()));
  }
  if (!first.welcome().host_credential().empty()) {
    if (auto s = WriteFileAtomically(CredentialPath(), first.welcome().host_credential() + "\n",
                                     0600);
        !s.ok()) {
      log_->error("event=credential_not_saved error=\"{}\"", s.message());
    }
  }
  handler_.OnWelcome(first.welcome());
  uint64_t gen;
  {
    std::lock_guard<std::mutex> l(mu_);
    connected_ = true;
    connected_at_ms_ = absl::ToUnixMillis(absl::Now());
    inventory_dirty_ = false;
    gen = ++generation_;
  }
  log_->info("event=connected address={} host_id={} registered={}", options_.address, host_id_,
             by_join);

  // Reader: dispatches to the handler; replies come back through SendControl.
  std::thread reader([this, &stream, gen] {
    herd::v1::ControlMessage in;
    auto reply = [this, gen](herd::v1::AgentMessage m) {
      {
        std::lock_guard<std::mutex> l(mu_);
        if (generation_ != gen) return;
      }
      SendControl(std::move(m));
    };
    while (stream->Read(&in)) {
      switch (in.msg_case()) {
        case herd::v1::ControlMessage::kConfig:
          handler_.OnConfig(in.config(), [reply](herd::v1::ConfigAck ack) {
            herd::v1::AgentMessage m;
            *m.mutable_config_ack() = std::move(ack);
            reply(std::move(m));
          });
          break;
        case herd::v1::ControlMessage::kAction:
          handler_.OnAction(in.action(), [reply](herd::v1::ActionResult r) {
            herd::v1::AgentMessage m;
            *m.mutable_action_result() = std::move(r);
            reply(std::move(m));
          });
          break;
        case herd::v1::ControlMessage::kRestart:
          handler_.OnRestart(in.restart(), [reply](herd::v1::RestartResult r) {
            herd::v1::AgentMessage m;
            *m.mutable_restart_result() = std::move(r);
            reply(std::move(m));
          });
          break;
        case herd::v1::ControlMessage::kLogs:
          handler_.OnLogs(in.logs(), [reply](herd::v1::LogChunk c) {
            herd::v1::AgentMessage m;
            *m.mutable_log_chunk() = std::move(c);
            reply(std::move(m));
          });
          break;
        case herd::v1::ControlMessage::kCancel:
          handler_.OnCancel(in.cancel().request_id());
          break;
        case herd::v1::ControlMessage::kWelcome:
        case herd::v1::ControlMessage::MSG_NOT_SET:
          break;
      }
      in.Clear();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      broken_ = true;
    }
    cv_.notify_all();
  });

  // Writer: control messages first, then metrics, oldest first.
  bool write_failed = false;
  while (true) {
    herd::v1::AgentMessage out;
    bool send_inventory = false;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] {
        return stopping_ || broken_ || inventory_dirty_ || !control_.empty() || !metrics_.empty();
      });
      if (stopping_ || broken_) break;
      if (inventory_dirty_) {
        inventory_dirty_ = false;
        send_inventory = true;
      } else if (!control_.empty()) {
        out = std::move(control_.front());
        control_.pop_front();
      } else {
        *out.mutable_metrics() = std::move(metrics_.front());
        metrics_.pop_front();
        out.mutable_metrics()->set_dropped_batches(dropped_since_sent_);
        dropped_since_sent_ = 0;
        out.mutable_metrics()->set_replayed(out.metrics().at_unix_ms() < connected_at_ms_);
      }
    }
    if (send_inventory) {
      for (auto& m : handler_.Inventory()) *out.mutable_inventory()->add_modules() = std::move(m);
      if (!out.has_inventory()) out.mutable_inventory();
    }
    if (!stream->Write(out)) {
      write_failed = true;
      break;
    }
  }
  // When the control plane finishes the stream, its status says why, and Finish returns it
  // unless the call was cancelled first (then: CANCELLED). So cancel only a reader still
  // waiting in Read: when we stop (Stop() cancels too), or after a failed write whose call
  // the reader does not see end by itself. A write fails when the status has arrived, and
  // the reader's Read then returns too: give it a moment.
  bool read_ended;
  {
    std::unique_lock<std::mutex> l(mu_);
    if (write_failed && !stopping_) {
      cv_.wait_for(l, std::chrono::seconds(2), [this] { return broken_ || stopping_; });
    }
    read_ended = broken_;
  }
  if (!read_ended) ctx.TryCancel();
  reader.join();
  grpc::Status st = stream->Finish();
  clear_ctx();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return absl::CancelledError("the agent is stopping");
  }
  if (st.ok() || st.error_code() == grpc::StatusCode::CANCELLED) {
    return absl::UnavailableError(write_failed ? "the stream broke while sending"
                                               : "the control plane closed the stream");
  }
  if (st.error_code() == grpc::StatusCode::ABORTED) {  // how the control plane ends a stream
    return absl::AbortedError(
        absl::StrCat("the control plane ended the stream: ", st.error_message()));
  }
  return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
}

}  // namespace herd::agent

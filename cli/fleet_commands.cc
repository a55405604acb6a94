#include "cli/fleet_commands.h"

#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "cli/args.h"
#include "cli/render.h"
#include "common/atomic_file.h"
#include "common/controlplane_addresses.h"
#include "common/units.h"
#include "grpcpp/grpcpp.h"

namespace herd::cli {
namespace {

// Every host only when asked for (--all-hosts, --global): the control plane refuses a
// restart or an action with no target rather than take it as the whole fleet.
herd::v1::Target ToTarget(const TargetFlags& t) {
  herd::v1::Target out;
  if (!t.selector.empty()) {
    out.set_selector(t.selector);
  } else if (!t.hosts.empty()) {
    for (const auto& h : t.hosts) out.mutable_hosts()->add_ids(h);
  } else if (t.all || t.global) {
    out.set_all(true);
  }
  return out;
}

std::string Labels(const google::protobuf::Map<std::string, std::string>& labels) {
  std::vector<std::string> kv;
  for (const auto& [k, v] : labels) kv.push_back(absl::StrCat(k, "=", v));
  std::sort(kv.begin(), kv.end());
  return kv.empty() ? "-" : absl::StrJoin(kv, ",");
}

std::string Ago(int64_t unix_ms) {
  if (unix_ms <= 0) return "never";
  absl::Duration d = absl::Now() - absl::FromUnixMillis(unix_ms);
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  return absl::StrCat(FormatUptime(d), " ago");
}

// The unit's major metrics (its widget's main_probes, else its first probes), up to three.
std::string MainProbesText(const herd::v1::UnitSample& u) {
  std::vector<std::string> probes;
  for (const auto& p : u.probes()) {
    bool main = u.main_probes_size() == 0 ||
                std::find(u.main_probes().begin(), u.main_probes().end(), p.name()) !=
                    u.main_probes().end();
    if (main && probes.size() < 3) probes.push_back(absl::StrCat(p.name(), "=", ProbeText(p)));
  }
  return absl::StrJoin(probes, " ");
}

std::string RolloutStateName(herd::v1::RolloutState s) {
  std::string n = herd::v1::RolloutState_Name(s);
  if (absl::StartsWith(n, "ROLLOUT_STATE_")) n = n.substr(14);
  for (auto& c : n) c = static_cast<char>(tolower(c));
  return n;
}

std::string HostStateName(herd::v1::RolloutHostState s) {
  std::string n = herd::v1::RolloutHostState_Name(s);
  if (absl::StartsWith(n, "ROLLOUT_HOST_STATE_")) n = n.substr(19);
  for (auto& c : n) c = static_cast<char>(tolower(c));
  return n;
}

std::string ProgressLine(const herd::v1::Rollout& r) {
  int done = 0, failed = 0, skipped = 0, interrupted = 0;
  for (const auto& h : r.hosts()) {
    if (h.state() == herd::v1::ROLLOUT_HOST_STATE_DONE) ++done;
    if (h.state() == herd::v1::ROLLOUT_HOST_STATE_FAILED) ++failed;
    if (h.state() == herd::v1::ROLLOUT_HOST_STATE_SKIPPED) ++skipped;
    if (h.state() == herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED) ++interrupted;
  }
  const int total = r.hosts_size();
  const int width = 30;
  int filled = total > 0 ? (done + failed) * width / total : 0;
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '.'), "] ",
                      done, "/", total, " done", failed ? absl::StrCat(", ", failed, " failed") : "",
                      skipped ? absl::StrCat(", ", skipped, " skipped") : "",
                      interrupted ? absl::StrCat(", ", interrupted, " interrupted") : "", "  batch ",
                      std::min(r.current_batch() + 1, std::max<uint32_t>(r.batches(), 1)), "/",
                      r.batches(), "  ", RolloutStateName(r.state()));
}

std::string RenderRollout(const herd::v1::Rollout& r) {
  std::vector<std::vector<std::string>> rows = {{"HOST", "HOSTNAME", "BATCH", "STATE", "ERROR"}};
  for (const auto& h : r.hosts()) {
    rows.push_back({h.host_id(), h.hostname(), absl::StrCat(h.batch() + 1),
                    HostStateName(h.state()), h.error().empty() ? "-" : h.error()});
  }
  std::string what = absl::StrCat("restart ", r.module());
  if (r.has_deploy()) {
    const auto& d = r.deploy();
    what = absl::StrCat("deploy ", r.module(), " ",
                        d.from_version().empty() ? d.from_source() : d.from_version(), " -> ",
                        d.to_version().empty() ? d.to_source() : d.to_version());
  }
  std::string back;
  if (r.has_deploy() && r.deploy().rolled_back_size() > 0) {
    back = absl::StrCat("rolled back to ", r.deploy().from_version(), ": ",
                        absl::StrJoin(r.deploy().rolled_back(), ", "), "\n");
  }
  return absl::StrCat("rollout ", r.id(), ": ", what, " (batch ", r.batch_size(),
                      ", max unavailable ", r.max_unavailable(), ", healthy after ",
                      r.wait_healthy_ms(), " ms, stop after ", r.failure_threshold(),
                      " failure(s))\n", FormatTable(rows), ProgressLine(r),
                      r.reason().empty() ? "" : absl::StrCat(" — ", r.reason()), "\n", back);
}

}  // namespace

std::optional<RolloutNumbers> ParseRolloutFlags(const RolloutFlags& r) {
  RolloutNumbers out;
  if (!r.batch.empty()) {
    std::string b = r.batch;
    bool percent = absl::EndsWith(b, "%");
    if (percent) b.pop_back();
    uint32_t n = 0;
    if (!absl::SimpleAtoi(b, &n) || n == 0 || (percent && n > 100)) {
      fprintf(stderr, "agentctl: --batch \"%s\": give a number of hosts (e.g. 2) or a percentage (e.g. 25%%)\n",
              r.batch.c_str());
      return std::nullopt;
    }
    (percent ? out.batch_percent : out.batch_size) = n;
  }
  if (!r.wait_healthy.empty()) {
    auto ms = ParseDurationMs(r.wait_healthy);
    if (!ms.ok()) {
      fprintf(stderr, "agentctl: --wait-healthy: %s\n", std::string(ms.status().message()).c_str());
      return std::nullopt;
    }
    out.wait_healthy_ms = static_cast<uint32_t>(*ms);
  }
  return out;
}

FleetCommands::FleetCommands(FleetOptions options) : options_(std::move(options)) {}

bool FleetCommands::Connect() {
  if (stub_) return true;
  if (options_.token.empty()) {
    fprintf(stderr,
            "agentctl: no API token for the control plane at %s: pass --token-file FILE (the "
            "control plane's data directory has operator-token and viewer-token) or set "
            "HERD_TOKEN\n",
            options_.address.c_str());
    return false;
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options_.tls_ca.empty() || !options_.tls_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options_.tls_ca.empty()) {
      auto ca = ReadFileToString(options_.tls_ca);
      if (!ca.ok()) {
        fprintf(stderr, "agentctl: --tls-ca: %s\n", std::string(ca.status().message()).c_str());
        return false;
      }
      ssl.pem_root_certs = *ca;
    }
    if (!options_.tls_cert.empty()) {
      auto cert = ReadFileToString(options_.tls_cert);
      auto key = ReadFileToString(options_.tls_key);
      if (!cert.ok() || !key.ok()) {
        fprintf(stderr, "agentctl: cannot read --tls-cert / --tls-key\n");
        return false;
      }
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  }
  auto channel = PickReplica(creds);
  if (!channel) return false;
  stub_ = herd::v1::Fleet::NewStub(channel);
  return true;
}

// One address: its channel, as before (gRPC connects on the first call). Several (replicas,
// any of which serves the whole fleet): the first, in order, that accepts a connection within
// a few seconds; options_.address becomes that one, for the messages.
std::shared_ptr<grpc::Channel> FleetCommands::PickReplica(
    const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  auto addresses = ParseControlPlaneAddresses(options_.address, "--controlplane");
  if (!addresses.ok()) {
    fprintf(stderr, "agentctl: %s\n", std::string(addresses.status().message()).c_str());
    return nullptr;
  }
  if (addresses->size() == 1) return grpc::CreateChannel(addresses->front(), creds);
  const int wait_seconds = std::clamp(options_.timeout_seconds, 1, 3);
  for (const auto& address : *addresses) {
    auto channel = grpc::CreateChannel(address, creds);
    if (channel->WaitForConnected(std::chrono::system_clock::now() +
                                  std::chrono::seconds(wait_seconds))) {
      options_.address = address;
      return channel;
    }
    fprintf(stderr, "agentctl: the control plane replica at %s does not answer; trying the next\n",
            address.c_str());
  }
  fprintf(stderr,
          "agentctl: none of the control plane replicas (%s) answered within %d s each: check "
          "--controlplane, and that controlplane is running\n",
          options_.address.c_str(), wait_seconds);
  return nullptr;
}

std::unique_ptr<grpc::ClientContext> FleetCommands::Context(int timeout_seconds) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  if (timeout_seconds > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds));
  }
  return ctx;
}

int FleetCommands::Fail(const grpc::Status& s) {
  std::string msg = s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      // A replica that answered but cannot write (its etcd lost the quorum) is reachable:
      // say what it said, not to check the address.
      if (absl::StrContains(msg, "quorum")) {
        msg = absl::StrCat("the control plane at ", options_.address, " refused: ", msg,
                           " (reads still work; retry once etcd has its quorum back)");
        break;
      }
      msg = absl::StrCat("the control plane at ", options_.address, " is not reachable (", msg,
                         "): check --controlplane, and that controlplane is running");
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      msg = absl::StrCat(msg, options_.token_file.empty() ? "" : absl::StrCat(" (token from ", options_.token_file, ")"));
      break;
    default:
      break;
  }
  fprintf(stderr, "agentctl: %s\n", msg.c_str());
  return 1;
}

// Replicas of the control plane that did not answer a listing: their hosts were listed from
// the records of the replica asked, which may be stale.
static void WarnUnreachable(const google::protobuf::RepeatedPtrField<std::string>& replicas) {
  if (replicas.empty()) return;
  fprintf(stderr,
          "agentctl: control-plane replicas %s did not answer: their hosts are shown from "
          "records (status may be stale)\n",
          absl::StrJoin(replicas, ", ").c_str());
}

int FleetCommands::Hosts(const TargetFlags& t) {
  if (!Connect()) return 1;
  herd::v1::ListHostsRequest req;
  if (t.any()) *req.mutable_target() = ToTarget(t);
  herd::v1::ListHostsResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->ListHosts(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  WarnUnreachable(resp.unreachable_replicas());
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"HOST", "HOSTNAME", "STATUS", "LABELS", "MODULES", "CPU", "MEM FREE", "CONFIG", "LAST SEEN"}};
  for (const auto& h : resp.hosts()) {
    std::string config = absl::StrCat(h.acked_config_version(), "/", h.desired_config_version());
    if (h.config_rejections_size() > 0) absl::StrAppend(&config, " rejected");
    rows.push_back({h.host_id(), h.hostname(), h.online() ? "online" : "offline",
                    Labels(h.labels()), absl::StrCat(h.modules()),
                    absl::StrFormat("%.1f%%", h.usage().cpu_percent()),
                    FormatBytes(h.usage().memory_available_bytes()), config,
                    Ago(h.last_seen_unix_ms())});
  }
  printf("%s", FormatTable(rows).c_str());
  if (resp.hosts_size() == 0) printf("no hosts: start agentd --controlplane %s --join-token-file F\n", options_.address.c_str());
  return 0;
}

int FleetCommands::Host(const std::string& host) {
  if (!Connect()) return 1;
  herd::v1::GetHostRequest req;
  req.set_host_id(host);
  herd::v1::HostDetail d;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->GetHost(ctx.get(), req, &d);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(d).c_str());
    return 0;
  }
  const auto& h = d.host();
  printf("host %s (%s): %s, agent %s, %s/%s, %u cores, from %s\n", h.host_id().c_str(),
         h.hostname().c_str(), h.online() ? "online" : "offline", h.agent_version().c_str(),
         h.kernel().c_str(), h.arch().c_str(), h.cpu_count(), h.remote_address().c_str());
  printf("labels %s; config %lu acked / %lu sent; %lu metric batches dropped while away\n",
         Labels(h.labels()).c_str(), static_cast<unsigned long>(h.acked_config_version()),
         static_cast<unsigned long>(h.desired_config_version()),
         static_cast<unsigned long>(h.dropped_batches()));
  for (const auto& r : h.config_rejections()) {
    printf("  config rejected: %s:%s: %s\n", r.module().c_str(), r.key().c_str(), r.reason().c_str());
  }
  std::vector<std::vector<std::string>> rows = {{"UNIT", "STATUS", "PID", "CPU", "MEMORY", "RESTARTS", "PROBES"}};
  for (const auto& u : d.units()) {
    rows.push_back({u.name(), StateName(u.state()), u.pid() ? absl::StrCat(u.pid()) : "-",
                    absl::StrFormat("%.1f%%", u.usage().cpu_percent()),
                    FormatBytes(u.usage().rss_bytes()), absl::StrCat(u.restarts()),
                    MainProbesText(u)});
  }
  printf("%s", FormatTable(rows).c_str());
  if (d.events_size() > 0) printf("recent events:\n");
  int start = std::max(0, d.events_size() - 10);
  for (int i = start; i < d.events_size(); ++i) {
    const auto& e = d.events(i);
    printf("  %s  %-12s %-18s %s\n", Ago(e.at_unix_ms()).c_str(), e.unit().c_str(),
           e.kind().c_str(), e.detail().c_str());
  }
  return 0;
}

int FleetCommands::Modules(const std::string& module, const TargetFlags& t) {
  if (!Connect()) return 1;
  herd::v1::ListModulesRequest req;
  if (t.any()) *req.mutable_target() = ToTarget(t);
  req.set_module(module);
  herd::v1::ListModulesResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->ListModules(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  WarnUnreachable(resp.unreachable_replicas());
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"MODULE", "VERSION", "HOST", "STATUS", "CPU", "MEMORY", "ISSUES", "PROBES"}};
  auto host = HostNamer(resp.modules());
  for (const auto& m : resp.modules()) {
    const auto& u = m.unit();
    rows.push_back({u.name(), u.version().empty() ? "-" : u.version(),
                    absl::StrCat(host(m), m.online() ? "" : " (offline)"),
                    StateName(u.state()), absl::StrFormat("%.1f%%", u.usage().cpu_percent()),
                    FormatBytes(u.usage().rss_bytes()), absl::StrCat(u.issues_count()),
                    MainProbesText(u)});
  }
  printf("%s", FormatTable(rows).c_str());
  return 0;
}

int FleetCommands::Conf(const std::string& module, const std::string& host) {
  if (!Connect()) return 1;
  herd::v1::FleetGetConfigRequest req;
  req.set_module(module);
  req.set_host_id(host);
  herd::v1::FleetConfig resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->GetConfig(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  if (!host.empty()) {
    for (const auto& m : resp.effective()) {
      printf("%s on %s:\n%s\n", m.module().c_str(), host.c_str(), RenderConfig(m).c_str());
    }
    if (resp.effective_size() == 0) printf("no modules on %s\n", host.c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"MODULE", "KEY", "VALUE", "SCOPE", "BY", "WHEN"}};
  for (const auto& o : resp.overrides()) {
    std::string scope = o.scope().has_selector()
                            ? absl::StrCat("selector ", o.scope().selector())
                            : o.scope().has_host_id() ? absl::StrCat("host ", o.scope().host_id())
                                                      : "global";
    rows.push_back({o.module(), o.key(), o.value(), scope, o.updated_by(),
                    Ago(o.updated_at_unix_ms())});
  }
  printf("%s", FormatTable(rows).c_str());
  printf("config revision %lu\n", static_cast<unsigned long>(resp.revision()));
  return 0;
}

bool ToScope(const TargetFlags& t, herd::v1::Scope* scope) {
  int n = (!t.selector.empty()) + (!t.hosts.empty()) + t.global;
  if (n != 1 || t.hosts.size() > 1) {
    fprintf(stderr,
            "agentctl: choose one scope: --global, --selector k=v or --host HOST (one host)\n");
    return false;
  }
  if (t.global) scope->set_global(true);
  if (!t.selector.empty()) scope->set_selector(t.selector);
  if (!t.hosts.empty()) scope->set_host_id(t.hosts.front());
  return true;
}

int FleetCommands::Set(const std::string& target, const std::string& value,
                       const TargetFlags& scope, bool force) {
  std::string module, key;
  if (!SplitModuleKey(target, &module, &key)) return 2;
  herd::v1::FleetSetConfigRequest req;
  if (!ToScope(scope, req.mutable_scope())) return 2;
  if (!Connect()) return 1;
  req.set_module(module);
  req.set_key(key);
  req.set_value(value);
  req.set_force(force);
  herd::v1::FleetConfigChange resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->SetConfig(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else if (!resp.changed()) {
    printf("%s:%s is already %s (revision %lu)\n", module.c_str(), key.c_str(), value.c_str(),
           static_cast<unsigned long>(resp.revision()));
  } else {
    printf("%s:%s = %s (revision %lu); changes %d host(s)%s%s\n", module.c_str(), key.c_str(),
           value.c_str(), static_cast<unsigned long>(resp.revision()), resp.hosts_size(),
           resp.hosts_size() ? ": " : "", absl::StrJoin(resp.hosts(), ", ").c_str());
  }
  return 0;
}

int FleetCommands::Unset(const std::string& target, const TargetFlags& scope) {
  std::string module, key;
  if (!SplitModuleKey(target, &module, &key)) return 2;
  herd::v1::FleetUnsetConfigRequest req;
  if (!ToScope(scope, req.mutable_scope())) return 2;
  if (!Connect()) return 1;
  req.set_module(module);
  req.set_key(key);
  herd::v1::FleetConfigChange resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->UnsetConfig(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else if (!resp.changed()) {
    fprintf(stderr, "agentctl: no such override of %s:%s at that scope\n", module.c_str(), key.c_str());
    return 1;
  } else {
    printf("%s:%s unset (revision %lu); changes %d host(s)\n", module.c_str(), key.c_str(),
           static_cast<unsigned long>(resp.revision()), resp.hosts_size());
  }
  return 0;
}

int FleetCommands::Restart(const std::string& module, const TargetFlags& t,
                           const RolloutFlags& r) {
  herd::v1::FleetRestartRequest req;
  req.set_module(module);
  *req.mutable_target() = ToTarget(t);
  auto numbers = ParseRolloutFlags(r);
  if (!numbers) return 2;
  req.set_batch_size(numbers->batch_size);
  req.set_batch_percent(numbers->batch_percent);
  req.set_wait_healthy_ms(numbers->wait_healthy_ms);
  req.set_max_unavailable(r.max_unavailable);
  req.set_failure_threshold(r.failure_threshold);
  if (!Connect()) return 1;
  herd::v1::Rollout resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Restart(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (r.no_wait) {
    if (options_.json) {
      printf("%s\n", ToJson(resp).c_str());
    } else {
      printf("rollout %s started: %d host(s) in %u batch(es); follow it with agentctl rollout %s --watch\n",
             resp.id().c_str(), resp.hosts_size(), resp.batches(), resp.id().c_str());
    }
    return 0;
  }
  return WatchRollout(resp.id());
}

int FleetCommands::WatchRollout(const std::string& id) {
  herd::v1::GetRolloutRequest req;
  req.set_id(id);
  auto ctx = Context(0);
  auto reader = stub_->WatchRollout(ctx.get(), req);
  herd::v1::Rollout r, last;
  const bool tty = isatty(STDOUT_FILENO) && !options_.json;
  std::string previous;
  while (reader->Read(&r)) {
    last = r;
    if (options_.json) continue;
    std::string line = ProgressLine(r);
    if (line == previous) continue;
    previous = line;
    if (tty) {
      printf("\r%s\033[K", line.c_str());
    } else {
      printf("%s\n", line.c_str());
    }
    fflush(stdout);
  }
  grpc::Status s = reader->Finish();
  if (tty) printf("\n");
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(last).c_str());
  } else {
    printf("%s", RenderRollout(last).c_str());
  }
  return last.state() == herd::v1::ROLLOUT_STATE_SUCCEEDED ? 0 : 1;
}

int FleetCommands::Rollouts(uint32_t limit) {
  if (!Connect()) return 1;
  herd::v1::ListRolloutsRequest req;
  req.set_limit(limit);
  herd::v1::ListRolloutsResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->ListRollouts(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "MODULE", "STATE", "HOSTS", "BY", "CREATED"}};
  for (const auto& r : resp.rollouts()) {
    rows.push_back({r.id(), r.module(), RolloutStateName(r.state()), absl::StrCat(r.hosts_size()),
                    r.created_by(), Ago(r.created_at_unix_ms())});
  }
  printf("%s", FormatTable(rows).c_str());
  return 0;
}

int FleetCommands::Rollout(const std::string& id, bool watch) {
  if (!Connect()) return 1;
  if (watch) return WatchRollout(id);
  herd::v1::GetRolloutRequest req;
  req.set_id(id);
  herd::v1::Rollout r;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->GetRollout(ctx.get(), req, &r);
  if (!s.ok()) return Fail(s);
  printf("%s", options_.json ? absl::StrCat(ToJson(r), "\n").c_str() : RenderRollout(r).c_str());
  return 0;
}

int FleetCommands::Action(const std::string& module, const std::string& action,
                          const std::vector<std::string>& params, int timeout_seconds,
                          const TargetFlags& t) {
  herd::v1::FleetActionRequest req;
  req.set_module(module);
  req.set_action(action);
  *req.mutable_target() = ToTarget(t);
  if (!ParseParams(params, req.mutable_params())) return 2;
  req.set_timeout_ms(static_cast<uint32_t>(timeout_seconds) * 1000);
  if (!Connect()) return 1;
  herd::v1::FleetActionResponse resp;
  auto ctx = Context(timeout_seconds + 30);
  grpc::Status s = stub_->TriggerAction(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else {
    auto host = HostNamer(resp.results());
    for (const auto& r : resp.results()) {
      if (r.ok()) {
        std::string out = r.reply_json();
        if (r.stream_size() > 0) out = absl::StrJoin(r.stream(), "\n");
        printf("%s: %s\n", host(r).c_str(), out.c_str());
      } else {
        printf("%s: error: %s\n", host(r).c_str(), r.error().c_str());
      }
    }
  }
  bool all_ok = std::all_of(resp.results().begin(), resp.results().end(),
                            [](const auto& r) { return r.ok(); });
  return all_ok ? 0 : 1;
}

int FleetCommands::Logs(const std::string& host, const std::string& unit, uint32_t lines,
                        bool follow) {
  if (!Connect()) return 1;
  herd::v1::FleetLogsRequest req;
  req.set_host_id(host);
  req.set_unit(unit);
  req.set_lines(lines);
  req.set_follow(follow);
  auto ctx = Context(follow ? 0 : options_.timeout_seconds);
  auto reader = stub_->StreamLogs(ctx.get(), req);
  herd::v1::LogLine line;
  while (reader->Read(&line)) {
    FILE* out = line.stream() == "err" ? stderr : stdout;
    fprintf(out, "%s\n", line.text().c_str());
    fflush(out);
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? 0 : Fail(s);
}

int FleetCommands::Audit(uint32_t limit) {
  if (!Connect()) return 1;
  herd::v1::ListAuditRequest req;
  req.set_limit(limit);
  herd::v1::ListAuditResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->ListAudit(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"WHEN", "WHO", "WHAT", "DETAIL"}};
  for (const auto& e : resp.entries()) {
    rows.push_back({Ago(e.at_unix_ms()), e.actor(), e.action(), e.detail_json()});
  }
  printf("%s", FormatTable(rows).c_str());
  return 0;
}

int FleetCommands::Watch(const TargetFlags& t, int count) {
  if (!Connect()) return 1;
  herd::v1::WatchMetricsRequest req;
  if (t.any()) *req.mutable_target() = ToTarget(t);
  auto ctx = Context(0);
  auto reader = stub_->WatchMetrics(ctx.get(), req);
  herd::v1::HostMetrics m;
  int seen = 0;
  while (reader->Read(&m)) {
    if (options_.json) {
      printf("%s\n", ToJson(m, /*one_line=*/true).c_str());  // one JSON document per line
    } else {
      const auto& b = m.batch();
      printf("%s %s cpu=%.1f%% mem_free=%s load1=%.2f%s\n",
             absl::FormatTime("%H:%M:%S", absl::FromUnixMillis(b.at_unix_ms()),
                              absl::LocalTimeZone()).c_str(),
             m.hostname().c_str(), b.host().cpu_percent(),
             FormatBytes(b.host().memory_available_bytes()).c_str(), b.host().load1(),
             b.replayed() ? " (replayed)" : "");
      for (const auto& u : b.units()) {
        std::vector<std::string> probes;
        for (const auto& p : u.probes()) probes.push_back(absl::StrCat(p.name(), "=", ProbeText(p)));
        printf("  %-20s %-8s cpu=%.1f%% rss=%s %s\n", u.name().c_str(),
               StateName(u.state()).c_str(), u.usage().cpu_percent(),
               FormatBytes(u.usage().rss_bytes()).c_str(), absl::StrJoin(probes, " ").c_str());
      }
    }
    fflush(stdout);
    if (count > 0 && ++seen >= count) {
      ctx->TryCancel();
      break;
    }
  }
  grpc::Status s = reader->Finish();
  if (count > 0 && seen >= count) return 0;
  return s.ok() ? 0 : Fail(s);
}

int FleetCommands::Series(const std::string& host, const std::string& unit,
                          const std::string& metric) {
  if (!Connect()) return 1;
  herd::v1::QuerySeriesRequest req;
  req.set_host_id(host);
  req.set_unit(unit);
  req.set_metric(metric);
  herd::v1::Series resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->QuerySeries(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  for (const auto& p : resp.points()) {
    printf("%s %g\n", absl::FormatTime("%H:%M:%S", absl::FromUnixMillis(p.at_unix_ms()),
                                       absl::LocalTimeZone()).c_str(), p.value());
  }
  return 0;
}

}  // namespace herd::cli

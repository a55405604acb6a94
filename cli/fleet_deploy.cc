// agentctl deploy / undeploy / deployments / artifacts: which modules the control plane
// wants where. A .tgz or a directory on this machine is uploaded to the control plane first
// (a directory packed with `npm pack`), and deployed by its digest.
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/fleet_commands.h"
#include "cli/render.h"
#include "common/sha256.h"
#include "common/units.h"
#include "grpcpp/grpcpp.h"

extern char** environ;

namespace herd::cli {
namespace {

std::string ScopeWords(const herd::v1::Scope& s) {
  if (s.has_selector()) return "selector " + s.selector();
  if (s.what_case() == herd::v1::Scope::kHostId) return "host " + s.host_id();
  return "global";
}

// Runs argv (stdin from /dev/null, stderr passed through) and returns its stdout; an error
// names the command and its exit status.
absl::StatusOr<std::string> RunCapture(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  if (err != 0) {
    close(out[0]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", argv[0], ": ", strerror(err)));
  }
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (text.size() < (1 << 20)) text.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        absl::StrJoin(argv, " "), " failed (exit status ",
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), ")"));
  }
  return text;
}

// A directory made into a .tgz by `npm pack` in `tmp`; the archive's path.
absl::StatusOr<std::string> PackDirectory(const std::string& dir, const std::string& tmp) {
  auto out = RunCapture({"npm", "pack", "--silent", "--pack-destination", tmp, dir});
  if (!out.ok()) {
    return absl::Status(out.status().code(),
                        absl::StrCat(out.status().message(),
                                     ": a directory is packed with npm, which must be installed "
                                     "here (or give the .tgz `npm pack` makes)"));
  }
  std::string file(absl::StripAsciiWhitespace(*out));
  if (file.find('\n') != std::string::npos) file = file.substr(file.rfind('\n') + 1);
  if (file.empty()) return absl::InternalError("npm pack named no archive");
  return absl::StrCat(tmp, "/", file);
}

bool IsLocalPath(const std::string& source) {
  struct stat st;
  return stat(source.c_str(), &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
}

}  // namespace

std::optional<herd::v1::Artifact> FleetCommands::Upload(const std::string& path) {
  std::string file = path;
  std::string tmp;
  absl::Cleanup remove_tmp = [&tmp] {
    std::error_code ec;
    if (!tmp.empty()) std::filesystem::remove_all(tmp, ec);
  };
  if (std::filesystem::is_directory(path)) {
    char tmpl[] = "/tmp/agentctl-pack-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      fprintf(stderr, "agentctl: cannot create a temporary directory: %s\n", strerror(errno));
      return std::nullopt;
    }
    tmp = tmpl;
    fprintf(stderr, "packing %s (npm pack)\n", path.c_str());
    auto packed = PackDirectory(std::filesystem::absolute(path).string(), tmp);
    if (!packed.ok()) {
      fprintf(stderr, "agentctl: %s\n", std::string(packed.status().message()).c_str());
      return std::nullopt;
    }
    file = *packed;
  }
  auto digest = FileSha256(file);
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(file, ec);
  std::ifstream in(file, std::ios::binary);
  if (!digest.ok() || ec || !in) {
    fprintf(stderr, "agentctl: cannot read %s: %s\n", file.c_str(),
            digest.ok() ? ec.message().c_str() : std::string(digest.status().message()).c_str());
    return std::nullopt;
  }
  auto ctx = Context(options_.timeout_seconds + static_cast<int>(size >> 20));
  herd::v1::Artifact artifact;
  auto writer = stub_->UploadArtifact(ctx.get(), &artifact);
  herd::v1::ArtifactUpload msg;
  msg.mutable_header()->set_filename(std::filesystem::path(file).filename().string());
  msg.mutable_header()->set_size(size);
  msg.mutable_header()->set_sha256(*digest);
  bool ok = writer->Write(msg);
  std::string chunk(1 << 20, '\0');
  while (ok && in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const auto n = in.gcount();
    if (n <= 0) break;
    msg.set_chunk(chunk.data(), static_cast<size_t>(n));
    ok = writer->Write(msg);
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) {
    Fail(s);
    return std::nullopt;
  }
  fprintf(stderr, "%s %s %s (sha256:%s, %s)\n", artifact.created() ? "uploaded" : "already had",
          artifact.name().c_str(), artifact.version().c_str(),
          artifact.sha256().substr(0, 12).c_str(), FormatBytes(artifact.size()).c_str());
  return artifact;
}

int FleetCommands::Artifacts(const std::string& name) {
  if (!Connect()) return 1;
  herd::v1::ListArtifactsRequest req;
  req.set_name(name);
  herd::v1::ListArtifactsResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->ListArtifacts(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  if (resp.artifacts_size() == 0) {
    printf("no artifacts%s: `agentctl deploy ./module.tgz --global` uploads one\n",
           name.empty() ? "" : (" of " + name).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"MODULE", "VERSION", "SOURCE", "SIZE", "FILE", "UPLOADED", "BY"}};
  for (const auto& a : resp.artifacts()) {
    rows.push_back({a.name(), a.version(), a.source(), FormatBytes(a.size()), a.filename(),
                    absl::FormatTime("%Y-%m-%d %H:%M:%S",
                                     absl::FromUnixMillis(a.uploaded_at_unix_ms()),
                                     absl::LocalTimeZone()),
                    a.uploaded_by()});
  }
  printf("%s", FormatTable(rows).c_str());
  return 0;
}

int FleetCommands::Deploy(const DeployFlags& flags, const TargetFlags& scope) {
  herd::v1::DeployRequest req;
  if (!ToScope(scope, req.mutable_scope())) return 2;
  auto numbers = ParseRolloutFlags(flags.rollout);
  if (!numbers) return 2;
  req.set_batch_size(numbers->batch_size);
  req.set_batch_percent(numbers->batch_percent);
  req.set_wait_healthy_ms(numbers->wait_healthy_ms);
  req.set_max_unavailable(flags.rollout.max_unavailable);
  req.set_failure_threshold(flags.rollout.failure_threshold);
  req.set_no_rollback(flags.no_rollback);
  req.set_all_at_once(flags.all_at_once);
  if (!flags.host_timeout.empty()) {
    auto ms = ParseDurationMs(flags.host_timeout);
    if (!ms.ok() || *ms == 0 || *ms > UINT32_MAX) {
      fprintf(stderr, "agentctl: --host-timeout: %s\n",
              ms.ok() ? "give a duration (e.g. 5m)" : std::string(ms.status().message()).c_str());
      return 2;
    }
    req.set_host_timeout_ms(static_cast<uint32_t>(*ms));
  }
  if (!Connect()) return 1;
  std::string source = flags.source;
  if (!flags.host_path && IsLocalPath(source)) {
    auto artifact = Upload(source);
    if (!artifact) return 1;
    source = artifact->source();
  }
  req.set_source(source);
  req.set_name(flags.name);
  req.set_version(flags.version);
  herd::v1::DeployResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Deploy(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (resp.has_rollout()) {
    const herd::v1::Rollout& r = resp.rollout();
    if (flags.rollout.no_wait || options_.json) {
      if (options_.json) {
        printf("%s\n", ToJson(resp).c_str());
      } else {
        printf("rollout %s started: %s to %s on %d host(s) in %u batch(es); follow it with "
               "agentctl rollout %s --watch\n",
               r.id().c_str(), r.module().c_str(), r.deploy().to_version().c_str(),
               r.hosts_size(), r.batches(), r.id().c_str());
      }
      return 0;
    }
    fprintf(stderr, "rollout %s: %s %s -> %s on %d host(s)\n", r.id().c_str(),
            r.module().c_str(), r.deploy().from_version().c_str(),
            r.deploy().to_version().c_str(), r.hosts_size());
    return WatchRollout(r.id());
  }
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else if (!resp.changed()) {
    printf("%s is already deployed so at %s (revision %lu)\n", flags.source.c_str(),
           ScopeWords(req.scope()).c_str(), static_cast<unsigned long>(resp.revision()));
  } else {
    printf("deployed %s at %s (revision %lu): %d host(s) told%s%s\n", flags.source.c_str(),
           ScopeWords(req.scope()).c_str(), static_cast<unsigned long>(resp.revision()),
           resp.hosts_size(), resp.hosts_size() ? ": " : "",
           absl::StrJoin(resp.hosts(), ", ").c_str());
    printf("follow it: agentctl deployments\n");
  }
  return 0;
}

int FleetCommands::Undeploy(const std::string& name, const TargetFlags& scope) {
  herd::v1::UndeployRequest req;
  if (!ToScope(scope, req.mutable_scope())) return 2;
  if (!Connect()) return 1;
  req.set_name(name);
  herd::v1::DeployResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Undeploy(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else {
    printf("undeployed %s at %s (revision %lu): %d host(s) told\n", name.c_str(),
           ScopeWords(req.scope()).c_str(), static_cast<unsigned long>(resp.revision()),
           resp.hosts_size());
  }
  return 0;
}

int FleetCommands::Deployments(const std::string& name) {
  if (!Connect()) return 1;
  herd::v1::ListDeploymentsRequest req;
  req.set_name(name);
  herd::v1::ListDeploymentsResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->ListDeployments(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  if (resp.deployments_size() == 0) {
    printf("no deployments%s: `agentctl deploy SOURCE --global|--selector k=v|--host H`\n",
           name.empty() ? "" : (" of " + name).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"MODULE", "SCOPE", "WANTED", "SOURCE", "HOSTS", "CONVERGED", "FAILING", "BY"}};
  for (const auto& d : resp.deployments()) {
    int converged = 0, failing = 0;
    for (const auto& h : d.hosts()) {
      converged += h.state() == "converged" ? 1 : 0;
      failing += h.state() == "failed" ? 1 : 0;
    }
    rows.push_back({d.name(), ScopeWords(d.scope()), d.version().empty() ? "any" : d.version(),
                    d.source(), absl::StrCat(d.hosts_size()), absl::StrCat(converged),
                    absl::StrCat(failing), d.updated_by()});
  }
  printf("%s", FormatTable(rows).c_str());
  // Hosts not converged, with why.
  std::vector<std::vector<std::string>> drift = {
      {"MODULE", "HOST", "ONLINE", "INSTALLED", "STATE", "ERROR"}};
  for (const auto& d : resp.deployments()) {
    for (const auto& h : d.hosts()) {
      if (h.state() == "converged") continue;
      drift.push_back({d.name(), h.hostname().empty() ? h.host_id() : h.hostname(),
                       h.online() ? "yes" : "no",
                       h.actual_version().empty() ? "-" : h.actual_version(),
                       h.state().empty() ? (h.online() ? "told" : "offline") : h.state(),
                       h.error()});
    }
  }
  if (drift.size() > 1) {
    printf("\nnot converged:\n%s", FormatTable(drift).c_str());
  }
  return 0;
}

}  // namespace herd::cli

#include "tests/support/etcd_harness.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

// A port nothing listens on now (the kernel's pick for port 0). Another process could take
// it before etcd binds it; Start then fails with etcd's log, rare enough on loopback.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

std::string ReadAll(const std::string& path) {
  std::string out;
  if (FILE* f = fopen(path.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    fclose(f);
  }
  return out;
}

void KillAndReap(pid_t pid, int sig) {
  if (pid <= 0) return;
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
}

}  // namespace

EtcdHarness::EtcdHarness(Options options) : options_(std::move(options)) {
  char tmpl[] = "/tmp/herd-etcd-XXXXXX";
  if (char* d = mkdtemp(tmpl)) dir_ = d;
  for (int i = 0; i < options_.members; ++i) {
    Member m;
    m.name = absl::StrCat("m", i);
    m.client_port = FreePort();
    m.peer_port = FreePort();
    members_.push_back(m);
  }
}

EtcdHarness::~EtcdHarness() {
  for (auto& m : members_) {
    KillAndReap(m.pid, SIGKILL);
    m.pid = 0;
  }
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string EtcdHarness::Endpoint(int i) const {
  return absl::StrCat("127.0.0.1:", members_[static_cast<size_t>(i)].client_port);
}

std::vector<std::string> EtcdHarness::EndpointList() const {
  std::vector<std::string> out;
  for (int i = 0; i < members(); ++i) out.push_back(Endpoint(i));
  return out;
}

std::string EtcdHarness::Endpoints() const { return absl::StrJoin(EndpointList(), ","); }

std::string EtcdHarness::Url() const {
  return absl::StrCat(options_.tls_dir.empty() ? "etcd://" : "etcds://", Endpoints());
}

bool EtcdHarness::Launch(int i, bool initial) {
  Member& m = members_[static_cast<size_t>(i)];
  std::vector<std::string> peers;
  for (const Member& p : members_) {
    peers.push_back(absl::StrCat(p.name, "=http://127.0.0.1:", p.peer_port));
  }
  const std::string client_url = absl::StrCat(Scheme(), "://127.0.0.1:", m.client_port);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", m.peer_port);
  std::vector<std::string> argv = {
      "/usr/bin/etcd",
      "--name=" + m.name,
      absl::StrCat("--data-dir=", dir_, "/", m.name),
      "--listen-client-urls=" + client_url,
      "--advertise-client-urls=" + client_url,
      "--listen-peer-urls=" + peer_url,
      "--initial-advertise-peer-urls=" + peer_url,
      "--initial-cluster=" + absl::StrJoin(peers, ","),
      "--initial-cluster-token=herd-test",
      std::string("--initial-cluster-state=") + (initial ? "new" : "existing"),
      "--logger=zap",
      "--log-level=warn",
      // Short elections, so that quorum loss and recovery take a second or two in tests.
      "--heartbeat-interval=50",
      "--election-timeout=500",
  };
  if (!options_.tls_dir.empty()) {
    argv.push_back("--cert-file=" + options_.tls_dir + "/server.pem");
    argv.push_back("--key-file=" + options_.tls_dir + "/server.key");
    argv.push_back("--trusted-ca-file=" + options_.tls_dir + "/ca.pem");
    argv.push_back("--client-cert-auth");
  }
  for (const auto& a : options_.extra_args) argv.push_back(a);
  m.pid = SpawnLogged(argv, absl::StrCat(dir_, "/", m.name, ".log"));
  return m.pid > 0;
}

int EtcdHarness::Etcdctl(const std::vector<std::string>& args, std::string* out) const {
  std::vector<std::string> argv = {"/usr/bin/etcdctl", "--endpoints=" + Endpoints(),
                                   "--dial-timeout=2s", "--command-timeout=3s"};
  if (!options_.tls_dir.empty()) {
    argv.push_back("--cacert=" + options_.tls_dir + "/ca.pem");
    argv.push_back("--cert=" + options_.tls_dir + "/client.pem");
    argv.push_back("--key=" + options_.tls_dir + "/client.key");
  }
  argv.insert(argv.end(), args.begin(), args.end());
  setenv("ETCDCTL_API", "3", 1);
  CmdResult r = Run(argv);
  if (out != nullptr) *out = r.out + r.err;
  return r.exit_code;
}

bool EtcdHarness::Healthy(int i) const {
  if (!MemberRunning(i)) return false;
  std::vector<std::string> argv = {"/usr/bin/etcdctl", "--endpoints=" + Endpoint(i),
                                   "--dial-timeout=1s", "--command-timeout=2s"};
  if (!options_.tls_dir.empty()) {
    argv.push_back("--cacert=" + options_.tls_dir + "/ca.pem");
    argv.push_back("--cert=" + options_.tls_dir + "/client.pem");
    argv.push_back("--key=" + options_.tls_dir + "/client.key");
  }
  argv.insert(argv.end(), {"endpoint", "health"});
  setenv("ETCDCTL_API", "3", 1);
  return Run(argv).exit_code == 0;
}

bool EtcdHarness::WaitHealthy(absl::Duration timeout) {
  if (WaitFor(
          [&] {
            for (int i = 0; i < members(); ++i) {
              if (Healthy(i)) return true;
            }
            return false;
          },
          timeout)) {
    return true;
  }
  error_ = "etcd did not become healthy; its logs:\n";
  for (const Member& m : members_) {
    absl::StrAppend(&error_, "--- ", m.name, "\n", ReadAll(absl::StrCat(dir_, "/", m.name, ".log")));
  }
  fprintf(stderr, "[etcd-harness] %s\n", error_.c_str());
  return false;
}

bool EtcdHarness::Start(absl::Duration timeout) {
  if (dir_.empty()) {
    error_ = "cannot create a temporary directory";
    return false;
  }
  if (access("/usr/bin/etcd", X_OK) != 0) {
    error_ = "/usr/bin/etcd not found: apt-get install etcd-server etcd-client";
    return false;
  }
  for (int i = 0; i < members(); ++i) {
    if (!Launch(i, /*initial=*/true)) {
      error_ = "cannot start etcd";
      return false;
    }
  }
  return WaitHealthy(timeout);
}

void EtcdHarness::KillMember(int i) {
  Member& m = members_[static_cast<size_t>(i)];
  KillAndReap(m.pid, SIGKILL);
  m.pid = 0;
}

bool EtcdHarness::RestartMember(int i, absl::Duration timeout) {
  if (MemberRunning(i)) return true;
  if (!Launch(i, /*initial=*/false)) return false;
  if (WaitFor([&] { return Healthy(i); }, timeout)) return true;
  // What the member said, for the test's failure (it is removed with the directory).
  const Member& m = members_[static_cast<size_t>(i)];
  error_ = absl::StrCat("etcd member ", m.name, " was not healthy within ",
                        absl::FormatDuration(timeout), " of its restart; its log:\n",
                        ReadAll(absl::StrCat(dir_, "/", m.name, ".log")));
  return false;
}

bool EtcdHarness::MemberRunning(int i) const {
  const Member& m = members_[static_cast<size_t>(i)];
  return m.pid > 0 && ProcessAlive(m.pid);
}

pid_t EtcdHarness::MemberPid(int i) const { return members_[static_cast<size_t>(i)].pid; }

}  // namespace herd::testing

#include "tests/integration/agent_harness.h"

#include "agent/supervisor/unit_cgroups.h"
#include "agent/supervisor/unit_limits.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tests/fakes/file_util.h"

namespace herd::testing {
namespace {

namespace fs = std::filesystem;

std::vector<char*> Argv(const std::vector<std::string>& args) {
  std::vector<char*> v;
  for (const auto& a : args) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Waits up to `timeout` for our child `pid`; returns its decoded status or -1.
int WaitChild(pid_t pid, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return DecodeStatus(status);
    if (r < 0) return -1;
    if (absl::Now() > deadline) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

}  // namespace

pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& out_path,
                  const std::string& tag) {
  std::vector<char*> args = Argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    if (!tag.empty()) setenv("HERD_TEST_HOME", tag.c_str(), 1);
    int null_fd = open("/dev/null", O_RDONLY);
    int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    execv(args[0], args.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

namespace {

// agentctl's -o json output, or null with the reason in *error.
nlohmann::json ParseJsonOutput(const CmdResult& r, std::string* error) {
  if (r.exit_code != 0) {
    *error = absl::StrCat("agentctl exited ", r.exit_code, ": ", r.err);
    return nullptr;
  }
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = absl::StrCat("agentctl output is not JSON: ", r.out);
    return nullptr;
  }
  return j;
}

// SIGTERM, then SIGKILL after `timeout`; shows the process's output unless it exited 0.
void StopChild(pid_t pid, const char* what, const std::string& out_path,
               absl::Duration timeout) {
  kill(pid, SIGTERM);
  int status = WaitChild(pid, timeout);
  if (status != 0) {
    fprintf(stderr, "[harness] %s %s; its output:\n%s\n", what,
            status < 0 ? absl::StrCat("did not stop within ", absl::FormatDuration(timeout),
                                      " of SIGTERM").c_str()
                       : absl::StrCat("exited with status ", status).c_str(),
            ReadFile(out_path).c_str());
  }
  if (status < 0) {
    kill(pid, SIGKILL);
    WaitChild(pid, absl::Seconds(5));
  }
}

}  // namespace

CmdResult Run(const std::vector<std::string>& argv) {
  CmdResult r;
  char out_tmpl[] = "/tmp/herd-run-out-XXXXXX";
  char err_tmpl[] = "/tmp/herd-run-err-XXXXXX";
  int out_fd = mkstemp(out_tmpl);
  int err_fd = mkstemp(err_tmpl);
  if (out_fd < 0 || err_fd < 0) {
    r.err = absl::StrCat("mkstemp: ", strerror(errno));
    return r;
  }
  std::vector<char*> args = Argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    execv(args[0], args.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  close(out_fd);
  close(err_fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = DecodeStatus(status);
  r.out = ReadFile(out_tmpl);
  r.err = ReadFile(err_tmpl);
  unlink(out_tmpl);
  unlink(err_tmpl);
  return r;
}

bool WaitFor(const std::function<bool()>& pred, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const absl::Time checked = absl::Now();
    if (pred()) return true;
    const absl::Time now = absl::Now();
    if (now > deadline) return false;
    // Most checks start an agentctl (a fifth of a second of CPU under the sanitizers): resting
    // as long as the check took leaves at least half the CPU to what is being waited for.
    absl::SleepFor(std::max(absl::Milliseconds(20), now - checked));
  }
}

std::string MakeTestPki(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto ssl = [](std::vector<std::string> args) -> std::string {
    args.insert(args.begin(), {"/usr/bin/env", "openssl"});
    CmdResult r = Run(args);
    return r.exit_code == 0 ? "" : absl::StrCat("openssl ", args[2], ": ", r.err);
  };
  if (auto e = ssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=herd-test-ca", "-keyout", dir + "/ca.key", "-out", dir + "/ca.pem"});
      !e.empty()) {
    return e;
  }
  for (const char* who : {"server", "client"}) {
    const std::string base = dir + "/" + who;
    if (auto e = ssl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", std::string("/CN=") + who,
                      "-keyout", base + ".key", "-out", base + ".csr"});
        !e.empty()) {
      return e;
    }
    std::ofstream(base + ".ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    if (auto e = ssl({"x509", "-req", "-in", base + ".csr", "-CA", dir + "/ca.pem", "-CAkey",
                      dir + "/ca.key", "-CAcreateserial", "-days", "2", "-extfile",
                      base + ".ext", "-out", base + ".pem"});
        !e.empty()) {
      return e;
    }
  }
  return "";
}

std::string Which(const std::string& prog) {
  CmdResult r = Run({"/usr/bin/env", "sh", "-c", "command -v " + prog});
  std::string out = r.out;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return r.exit_code == 0 ? out : "";
}

void WriteTextFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::trunc);
  f << content;
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (stat.empty()) return false;
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// The test binary lives in BUILD/tests, next to herd_test_child; agentd and agentctl are in
// BUILD/bin. The environment variables override this layout.
static std::string SelfDir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : self.parent_path().string();
}

std::string AgentHarness::BinDir() {
  return EnvOr("HERD_BIN_DIR", (fs::path(SelfDir()).parent_path() / "bin").string());
}

std::string AgentHarness::ChildBinary() {
  return EnvOr("HERD_TEST_BIN_DIR", SelfDir()) + "/herd_test_child";
}

AgentHarness::AgentHarness() {
  char tmpl[] = "/tmp/herd-it-XXXXXX";
  if (mkdtemp(tmpl) != nullptr) home_ = tmpl;
}

AgentHarness::~AgentHarness() {
  StopAgent();
  // Every process started under this agent carries HERD_TEST_HOME (agentd passes its
  // environment on); whatever survived the agent is killed here, so no test leaks processes.
  std::error_code ec;
  const std::string tag = "HERD_TEST_HOME=" + home_;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid) || pid == getpid()) continue;
    std::string env = ReadFile(absl::StrCat("/proc/", pid, "/environ"));
    for (absl::string_view var : absl::StrSplit(env, '\0')) {
      if (var == tag) {
        fprintf(stderr, "[harness] killing leftover pid %d: %s\n", pid,
                ReadFile(absl::StrCat("/proc/", pid, "/cmdline")).c_str());
        kill(pid, SIGKILL);
        break;
      }
    }
  }
  // Anything a test left running (e.g. after KillAgent without a restart).
  for (pid_t pid : tracked_) {
    std::string cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    if (ProcessAlive(pid) && absl::StrContains(cmdline, "herd_test_child")) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
  }
  if (!home_.empty()) {
    RemoveCgroups();
    std::error_code ec;
    fs::remove_all(home_, ec);
  }
}

void AgentHarness::RemoveCgroups() {
  // A killed agentd leaves its (empty) cgroup directories for the next agent on the same
  // home, and none will come: they go with the home. The harness runs in the agent's cgroups.
  const std::string tag = agent::UnitCgroups::TagOf(home_);
  agent::UnitCgroups::Where w = agent::UnitCgroups::Find();
  if (!w.mount.empty() && fs::exists(agent::UnitCgroups::BaseFor(w, tag))) {
    agent::UnitCgroups gone(agent::UnitCgroups::BaseFor(w, tag));  // its destructor removes them
  }
  agent::UnitLimits::Open(tag, {});  // the same for the v1 limit directories
}

bool AgentHarness::StartAgent(const std::vector<std::string>& extra_args) {
  if (home_.empty()) {
    last_error_ = "no temporary home";
    return false;
  }
  std::vector<std::string> argv = prefix_;
  const std::vector<std::string> agentd = {BinDir() + "/agentd", "--home", home_,
                                           "--sample-interval", "100ms", "--smaps-interval",
                                           "500ms", "--log-level", "debug"};
  argv.insert(argv.end(), agentd.begin(), agentd.end());
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  const std::string out_path = output_path();
  agent_pid_ = SpawnLogged(argv, out_path, home_);
  bool up = WaitFor(
      [&] {
        int status = 0;
        if (waitpid(agent_pid_, &status, WNOHANG) == agent_pid_) {
          agent_pid_ = 0;
          return true;  // exited: stop waiting
        }
        // No socket yet, no need to ask (each agentctl costs a process start).
        return std::filesystem::exists(Path("agent.sock")) && Ctl({"info"}).exit_code == 0;
      },
      absl::Seconds(15));
  if (!up || agent_pid_ == 0) {
    last_error_ = absl::StrCat("agentd did not come up; its output:\n", ReadFile(out_path));
    return false;
  }
  return true;
}

void AgentHarness::StopAgent() {
  if (agent_pid_ <= 0) return;
  StopChild(agent_pid_, "agentd", output_path(), absl::Seconds(30));
  agent_pid_ = 0;
}

void AgentHarness::KillAgent() {
  if (agent_pid_ <= 0) return;
  kill(agent_pid_, SIGKILL);
  WaitChild(agent_pid_, absl::Seconds(5));
  agent_pid_ = 0;
}

CmdResult AgentHarness::Ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {BinDir() + "/agentctl", "--home", home_, "--timeout", "20"};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv);
}

nlohmann::json AgentHarness::CtlJson(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"-o", "json"};
  full.insert(full.end(), args.begin(), args.end());
  return ParseJsonOutput(Ctl(full), &last_error_);
}

nlohmann::json AgentHarness::Unit(const std::string& name) {
  nlohmann::json list = CtlJson({"list"});
  if (!list.is_object() || !list.contains("units")) return nullptr;
  for (const auto& u : list["units"]) {
    if (u.value("name", "") != name) continue;
    if (u.contains("sampled_pids")) {
      for (const auto& p : u["sampled_pids"]) Track(p.get<pid_t>());
    }
    if (u.value("pid", 0) > 0) Track(u["pid"].get<pid_t>());
    return u;
  }
  return nullptr;
}

std::string AgentHarness::State(const std::string& name) {
  nlohmann::json u = Unit(name);
  if (u.is_null()) return "";
  std::string s = u.value("state", "");
  std::replace(s.begin(), s.end(), ' ', '_');  // "waiting restart": the old spelling
  for (char& c : s) c = static_cast<char>(tolower(c));
  return s;
}

std::vector<std::string> AgentHarness::EventKinds(const std::string& name) {
  std::vector<std::string> kinds;
  nlohmann::json d = CtlJson({"describe", name});
  if (!d.is_object() || !d.contains("events")) return kinds;
  for (const auto& e : d["events"]) kinds.push_back(e.value("kind", ""));
  return kinds;
}

// ---------------------------------------------------------------------------------------
// ControlPlaneHarness

ControlPlaneHarness::ControlPlaneHarness() {
  char tmpl[] = "/tmp/herd-cp-XXXXXX";
  if (mkdtemp(tmpl) != nullptr) dir_ = tmpl;
}

ControlPlaneHarness::~ControlPlaneHarness() {
  Stop();
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

bool ControlPlaneHarness::Start(const std::vector<std::string>& extra_args) {
  if (dir_.empty()) {
    last_error_ = "no temporary data directory";
    return false;
  }
  const std::string addr_file = Path("listen-address");
  unlink(addr_file.c_str());
  std::vector<std::string> argv = prefix_;
  const std::vector<std::string> cp = {AgentHarness::BinDir() + "/controlplane", "--data", dir_,
                                       "--listen",
                                       address_.empty() ? listen_host_ + ":0" : address_,
                                       "--log-level", "debug"};
  argv.insert(argv.end(), cp.begin(), cp.end());
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  const std::string out_path = output_path();
  pid_ = SpawnLogged(argv, out_path, "");
  bool up = WaitFor(
      [&] {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = 0;
          return true;
        }
        return !ReadFile(addr_file).empty();
      },
      absl::Seconds(15));
  if (!up || pid_ == 0) {
    last_error_ = absl::StrCat("controlplane did not come up; its output:\n", ReadFile(out_path));
    return false;
  }
  address_ = std::string(absl::StripAsciiWhitespace(ReadFile(addr_file)));
  return true;
}

void ControlPlaneHarness::Stop() {
  if (pid_ <= 0) return;
  StopChild(pid_, "controlplane", output_path(), absl::Seconds(20));
  pid_ = 0;
}

void ControlPlaneHarness::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  WaitChild(pid_, absl::Seconds(5));
  pid_ = 0;
}

std::string SourceDir() {
  const char* d = getenv("HERD_SOURCE_DIR");
  return d != nullptr && *d != '\0' ? d : HERD_TEST_SOURCE_DIR;
}

std::string ReadTrimmed(const std::string& path) {
  return std::string(absl::StripAsciiWhitespace(ReadFile(path)));
}

std::string ControlPlaneHarness::http_address() const {
  return ReadTrimmed(Path("http-address"));
}

HttpReply HttpCall(const std::string& address, const std::string& method,
                   const std::string& path, const std::string& body, const std::string& token) {
  httplib::Client client(absl::StrCat("http://", address));
  client.set_connection_timeout(5);
  client.set_read_timeout(30);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", absl::StrCat("Bearer ", token));
  httplib::Result r = method == "GET"
                          ? client.Get(path.c_str(), headers)
                          : client.Post(path.c_str(), headers, body, "application/json");
  HttpReply reply;
  if (!r) {
    reply.error = httplib::to_string(r.error());
    return reply;
  }
  reply.status = r->status;
  reply.body = r->body;
  reply.content_type = r->get_header_value("Content-Type");
  return reply;
}

std::vector<std::string> ControlPlaneHarness::AgentArgs(const std::string& labels) const {
  std::vector<std::string> a = {"--controlplane", address_, "--join-token-file", JoinTokenFile()};
  if (!labels.empty()) {
    a.push_back("--labels");
    a.push_back(labels);
  }
  return a;
}

CmdResult ControlPlaneHarness::Ctl(const std::vector<std::string>& args,
                                   const std::string& token_file) const {
  std::vector<std::string> argv = {AgentHarness::BinDir() + "/agentctl", "--home",
                                   Path("no-agent-here"), "--timeout", "20",
                                   "--controlplane", address_, "--token-file",
                                   token_file.empty() ? OperatorTokenFile() : token_file};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv);
}

nlohmann::json ControlPlaneHarness::CtlJson(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"-o", "json"};
  full.insert(full.end(), args.begin(), args.end());
  return ParseJsonOutput(Ctl(full), &last_error_);
}

nlohmann::json ControlPlaneHarness::Host(const std::string& host_id) {
  nlohmann::json hosts = CtlJson({"hosts"});
  if (!hosts.is_object() || !hosts.contains("hosts")) return nullptr;
  for (const auto& h : hosts["hosts"]) {
    if (h.value("host_id", "") == host_id) return h;
  }
  return nullptr;
}

}  // namespace herd::testing

// The control plane's /metrics end to end, and what deploy/ ships for it, on loopback: a real
// controlplane --http and a real agentd linked to it running a plain unit ("sleeper") and a
// generated Python module ("svc", with probes, awkward names among them), shared by the tests.
// Then
//   - /metrics: the token, the content type, the host's and modules' series (each numeric
//     probe a herd_probe_<name> family), the control plane's own numbers, and
//     `promtool check metrics` (Debian's prometheus package);
//   - Debian's Prometheus server scraping it with deploy/prometheus/prometheus.yml (interval
//     and addresses swapped for the test's) and its alert rules loaded, queried over its API;
//   - deploy/: promtool on the config and rules, and every metric name that the Grafana
//     dashboard and the rules use exists in a real exposition.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/fakes/temp_dir.h"
#include "tests/integration/agent_harness.h"

extern char** environ;

namespace herd::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;


void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Debian's prometheus package (scripts/install-deps.sh installs it) gives both binaries.
std::string Tool(const std::string& name) {
  const std::string path = "/usr/bin/" + name;
  return access(path.c_str(), X_OK) == 0 ? path : "";
}
#define REQUIRE_TOOL(var, name)                                                           \
  const std::string var = Tool(name);                                                     \
  ASSERT_FALSE(var.empty()) << "/usr/bin/" name " is missing: run scripts/install-deps.sh " \
                               "(it installs Debian's prometheus package)"

// `sh -c script` (for a redirection).
CmdResult Shell(const std::string& script) { return Run({"/bin/sh", "-c", script}); }

std::string Quote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

// Percent-encodes everything but unreserved characters (a query-string value).
std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// One sample line of an exposition: "name{labels} value".
struct Sample {
  std::string name, labels;
  double value = 0;
};
std::vector<Sample> Samples(const std::string& text) {
  std::vector<Sample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t space = line.rfind(' ');
    Sample s;
    std::string series(line.substr(0, space));
    const size_t brace = series.find('{');
    s.name = series.substr(0, brace);
    if (brace != std::string::npos) s.labels = series.substr(brace);
    if (!absl::SimpleAtod(line.substr(space + 1), &s.value)) continue;
    out.push_back(s);
  }
  return out;
}
// The value of the one sample of `name` whose labels contain every `label="value"` given;
// NaN when there is none.
double Value(const std::string& text, const std::string& name,
             const std::vector<std::string>& labels = {}) {
  for (const Sample& s : Samples(text)) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& l : labels) all = all && absl::StrContains(s.labels, l);
    if (all) return s.value;
  }
  return std::nan("");
}

// How many times `needle` occurs in `text`.
int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// What a PromQL expression needs of /metrics: the metric names (herd_*, process_*) it uses,
// and the patterns of its `__name__=~"herd_..."` matchers (each must match some exposed name;
// matchers on a dashboard variable, `__name__=~"$probe_metric"`, are the variable's business).
struct Uses {
  std::set<std::string> names, patterns;
};
void AddUses(std::string expr, Uses* out) {
  static const std::regex kNameMatcher(R"re(__name__\s*=~\s*"((herd|process)_[^"]*)")re");
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), kNameMatcher);
       it != std::sregex_iterator(); ++it) {
    out->patterns.insert((*it)[1].str());
  }
  expr = std::regex_replace(expr, kNameMatcher, "");
  static const std::regex kName(R"(\b(herd|process)_[a-zA-Z0-9_]+)");
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), kName);
       it != std::sregex_iterator(); ++it) {
    out->names.insert(it->str());
  }
}

// The PromQL of the Grafana dashboard: panels' targets (`expr`) and template variables'
// queries (label_values(SELECTOR, label) → SELECTOR).
void CollectExprs(const json& j, std::vector<std::string>* out) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (k == "expr" && v.is_string()) out->push_back(v.get<std::string>());
      if (k == "definition" && v.is_string()) {
        static const std::regex kLabelValues(R"(^label_values\((.*),\s*\w+\)$)");
        std::smatch m;
        const std::string q = v.get<std::string>();
        if (std::regex_match(q, m, kLabelValues)) out->push_back(m[1].str());
      }
      CollectExprs(v, out);
    }
  } else if (j.is_array()) {
    for (const auto& v : j) CollectExprs(v, out);
  }
}
std::vector<std::string> DashboardExprs() {
  json dash = json::parse(ReadFile(SourceDir() + "/deploy/grafana/herd-fleet.json"), nullptr,
                          /*allow_exceptions=*/false);
  std::vector<std::string> out;
  if (!dash.is_discarded()) CollectExprs(dash, &out);
  return out;
}
// The rules' expressions (one `expr:` per line in herd-rules.yml).
std::vector<std::string> RuleExprs() {
  std::vector<std::string> out;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(SourceDir() + "/deploy/prometheus/herd-rules.yml"), '\n')) {
    line = absl::StripLeadingAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, "expr:")) out.emplace_back(absl::StripAsciiWhitespace(line));
  }
  return out;
}

// A server the test started: SIGTERM and wait (SIGKILL after 15 s) when it goes, always.
class ServerProcess {
 public:
  ~ServerProcess() { Stop(); }
  bool Start(const std::vector<std::string>& argv, const std::string& log_path) {
    log_path_ = log_path;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) pid_ = 0;
    return rc == 0;
  }
  // 0 when it exited cleanly.
  int Stop() {
    if (pid_ <= 0) return 0;
    kill(pid_, SIGTERM);
    int status = -1;
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    pid_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // True once it has exited on its own (it is reaped then).
  bool Exited() {
    if (pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = 0;
    return pid_ == 0;
  }
  std::string Log() const { return ReadFile(log_path_); }

 private:
  pid_t pid_ = 0;
  std::string log_path_;
};

// One control plane and one linked agent for every test here (starting them is most of the
// time a test takes): a plain unit and a Python module with probes.
class PrometheusTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cp_ = new ControlPlaneHarness();
    agent_ = new AgentHarness();
    setup_error_ = Prepare();
  }
  static void TearDownTestSuite() {
    delete agent_;  // stops its units
    delete cp_;
    agent_ = nullptr;
    cp_ = nullptr;
  }
  void SetUp() override { ASSERT_EQ(setup_error_, "") << "shared setup failed"; }

  static std::string Prepare() {
    if (!cp_->Start({"--http", "127.0.0.1:0", "--metrics-interval-ms", "500"})) {
      return cp_->last_error();
    }
    http_ = cp_->http_address();
    if (http_.empty()) return "controlplane --http wrote no http-address";
    viewer_ = ReadTrimmed(cp_->ViewerTokenFile());
    if (!agent_->StartAgent(cp_->AgentArgs("env=test"))) return agent_->last_error();
    CmdResult start = agent_->Ctl({"start", AgentHarness::ChildBinary(), "--name", "sleeper"});
    if (start.exit_code != 0) return "start sleeper: " + start.err;
    const std::string dir = agent_->Path("src/svc");
    CmdResult gen = agent_->Ctl({"generate", "svc", "--lang", "python", "--dir", dir});
    if (gen.exit_code != 0) return "generate svc: " + gen.err;
    // Probes named as module authors do, beside the template's ticks, last_tick and latency.
    std::string main_py = ReadFile(dir + "/main.py");
    const std::string anchor = "latency = mod.histogram(\"latency\", unit=\"ms\")";
    const size_t at = main_py.find(anchor);
    if (at == std::string::npos) return "generate svc: no latency probe in main.py:\n" + main_py;
    std::string awkward = "\nfor _i, (_name, _unit) in enumerate([";
    for (const auto& [name, unit] : AwkwardProbes()) {
      absl::StrAppend(&awkward, "(", PyString(name), ", ", PyString(unit), "), ");
    }
    absl::StrAppend(&awkward, "]):\n    mod.gauge(_name, unit=_unit).set(_i + 1)\n");
    main_py.insert(main_py.find('\n', at), awkward);
    WriteFile(dir + "/main.py", main_py);
    CmdResult inst = agent_->Ctl({"install", dir});
    if (inst.exit_code != 0) return "install svc: " + inst.err;
    json info = agent_->CtlJson({"info"});
    host_id_ = info.is_object() ? info.value("host_id", "") : "";
    if (host_id_.empty()) return "no host id: " + agent_->last_error();
    // Both sampled, and the module's probes in.
    const std::string h = "host=\"" + host_id_ + "\"";
    if (!WaitFor([&] {
          std::string m = HttpCall(http_, "GET", "/metrics", "", viewer_).body;
          return Value(m, "herd_module_memory_rss_bytes", {h, "module=\"sleeper\""}) > 0 &&
                 Value(m, "herd_module_up", {h, "module=\"svc\""}) == 1 &&
                 SvcProbesIn(m);
        }, absl::Seconds(30))) {
      return "the host's units never showed in /metrics:\n" +
             HttpCall(http_, "GET", "/metrics", "", viewer_).body;
    }
    return "";
  }

  // Probe names a module may well use, with their units, and their families. Names that
  // sanitise alike ("Memory MB", "memory"; "ms", "%") share a family as distinct series.
  struct AwkwardProbe {
    std::string name, unit, family;
  };
  static std::vector<AwkwardProbe> AwkwardProbeFamilies() {
    return {{"req/s", "req/s", "herd_probe_req"},
            {"Memory MB", "", "herd_probe_memory"},
            {"memory", "MB", "herd_probe_memory"},
            {"reqMin", "", "herd_probe_req_min"},
            {"HTTPRequests", "", "herd_probe_http_requests"},
            {"errors_total", "", "herd_probe_errors_total_value"},
            {"p95 latency (ms)", "ms", "herd_probe_p95_latency"},
            {"5xx", "", "herd_probe__5xx"},
            {"\xc3\x9c" "berCount", "", "herd_probe_ber_count_value"},  // ÜberCount
            {"uptime hours", "h", "herd_probe_uptime"},
            {"fuel gauge", "%", "herd_probe_fuel"},
            {"ms", "", "herd_probe_unnamed"},
            {"%", "", "herd_probe_unnamed"},
            {"say \"hi\" \\ bye", "", "herd_probe_say_hi_bye"}};
  }
  static std::vector<std::pair<std::string, std::string>> AwkwardProbes() {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& p : AwkwardProbeFamilies()) out.emplace_back(p.name, p.unit);
    return out;
  }
  // A Python string literal of UTF-8 text.
  static std::string PyString(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(c));
      } else if (c < 0x20) {
        absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
      } else {
        out.push_back(static_cast<char>(c));
      }
    }
    return out + "\"";
  }
  // The `probe="..."` matcher of a probe name, escaped as in the exposition.
  static std::string ProbeLabel(const std::string& name) {
    return "probe=\"" + absl::StrReplaceAll(name, {{"\\", "\\\\"}, {"\"", "\\\""}}) + "\"";
  }

  // The module reports its probes a moment after it starts.
  static bool SvcProbesIn(const std::string& m) {
    const std::string h = "host=\"" + host_id_ + "\"";
    if (!(Value(m, "herd_probe_ticks", {h, "module=\"svc\"", "probe=\"ticks\""}) >= 0 &&
          Value(m, "herd_probe_latency", {h, "module=\"svc\"", "probe=\"latency\""}) >= 0)) {
      return false;
    }
    for (const auto& p : AwkwardProbeFamilies()) {
      if (!(Value(m, p.family, {h, "module=\"svc\"", ProbeLabel(p.name)}) > 0)) return false;
    }
    return true;
  }

  static std::string Metrics() {
    HttpReply r = HttpCall(http_, "GET", "/metrics", "", viewer_);
    EXPECT_EQ(r.status, 200) << r.error << r.body;
    return r.body;
  }
  static std::vector<std::string> Host() { return {"host=\"" + host_id_ + "\""}; }
  static std::vector<std::string> Unit(const std::string& module) {
    return {"host=\"" + host_id_ + "\"", "module=\"" + module + "\""};
  }

  static inline ControlPlaneHarness* cp_ = nullptr;
  static inline AgentHarness* agent_ = nullptr;
  static inline std::string setup_error_, http_, viewer_, host_id_;
};

TEST_F(PrometheusTest, MetricsNeedAViewerOrOperatorToken) {
  EXPECT_EQ(HttpCall(http_, "GET", "/metrics").status, 401);
  EXPECT_EQ(HttpCall(http_, "GET", "/metrics", "", "hv_not-a-token").status, 401);
  const std::string op =
      ReadTrimmed(cp_->OperatorTokenFile());
  EXPECT_EQ(HttpCall(http_, "GET", "/metrics", "", op).status, 200);
  HttpReply r = HttpCall(http_, "GET", "/metrics", "", viewer_);
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.content_type, HasSubstr("text/plain"));
  EXPECT_THAT(r.content_type, HasSubstr("version=0.0.4"));
}

TEST_F(PrometheusTest, ExpositionHasTheHostAndItsUnits) {
  const std::string m = Metrics();
  EXPECT_EQ(Value(m, "herd_host_up", Host()), 1) << m;
  EXPECT_GT(Value(m, "herd_host_memory_total_bytes", Host()), 0);
  EXPECT_GE(Value(m, "herd_module_cpu_usage_ratio", Unit("sleeper")), 0);
  EXPECT_GT(Value(m, "herd_module_memory_rss_bytes", Unit("sleeper")), 0);
  EXPECT_EQ(Value(m, "herd_module_restarts_total", Unit("sleeper")), 0);
  EXPECT_GT(Value(m, "herd_module_uptime_seconds", Unit("sleeper")), 0);
  EXPECT_EQ(Value(m, "herd_module_up", Unit("sleeper")), 1);
  auto online = Unit("sleeper");
  online.push_back("state=\"online\"");
  EXPECT_EQ(Value(m, "herd_module_state", online), 1);
  // The module: its issues and its numeric probes, a gauge family each (name and unit as
  // labels).
  EXPECT_GE(Value(m, "herd_module_issues_total", Unit("svc")), 0);
  auto latency = Unit("svc");
  latency.push_back("probe=\"latency\"");
  latency.push_back("unit=\"ms\"");
  EXPECT_GE(Value(m, "herd_probe_latency", latency), 0) << m;
  EXPECT_THAT(m, HasSubstr("# TYPE herd_probe_latency gauge\n"));
  auto last_tick = Unit("svc");
  last_tick.push_back("probe=\"last_tick\"");
  last_tick.push_back("unit=\"s\"");
  EXPECT_GE(Value(m, "herd_probe_last_tick", last_tick), 0);
  EXPECT_THAT(m, Not(HasSubstr("herd_module_probe_value")));
}

// Awkward probe names: each in its family with the name kept exactly, the unit as a label, and
// one HELP and TYPE per family however many probes share it.
TEST_F(PrometheusTest, AwkwardProbeNamesAreSanitisedFamiliesKeepingTheName) {
  const std::string m = Metrics();
  int i = 0;
  for (const auto& p : AwkwardProbeFamilies()) {
    ++i;
    auto labels = Unit("svc");
    labels.push_back(ProbeLabel(p.name));
    if (!p.unit.empty()) labels.push_back("unit=\"" + p.unit + "\"");
    EXPECT_EQ(Value(m, p.family, labels), i) << p.name << "\n" << m;
    EXPECT_EQ(CountOf(m, "# TYPE " + p.family + " gauge\n"), 1) << p.family;
    EXPECT_EQ(CountOf(m, "# HELP " + p.family + " "), 1) << p.family;
  }
  EXPECT_EQ(CountOf(m, "herd_probe_memory{"), 2) << m;
  EXPECT_EQ(CountOf(m, "herd_probe_unnamed{"), 2) << m;
}

TEST_F(PrometheusTest, ExpositionHasTheControlPlanesOwnNumbers) {
  const std::string m = Metrics();
  EXPECT_EQ(Value(m, "herd_controlplane_connected_agents"), 1);
  const double messages = Value(m, "herd_controlplane_agent_messages_total");
  EXPECT_GT(messages, Value(m, "herd_controlplane_metric_batches_total"));  // + hello, events
  // The store is timed: Bootstrap and registration read and wrote it.
  const std::string h = "herd_controlplane_store_operation_duration_seconds";
  for (const char* op : {"op=\"read\"", "op=\"write\""}) {
    const double count = Value(m, h + "_count", {op});
    EXPECT_GT(count, 0) << op;
    EXPECT_EQ(Value(m, h + "_bucket", {op, "le=\"+Inf\""}), count) << op;
    EXPECT_LE(Value(m, h + "_bucket", {op, "le=\"0.0005\""}), count) << op;
    EXPECT_GT(Value(m, h + "_sum", {op}), 0) << op;
    EXPECT_EQ(Value(m, "herd_controlplane_store_errors_total", {op}), 0) << op;
  }
  EXPECT_GT(Value(m, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_GT(Value(m, "process_open_fds"), 3);
  EXPECT_GT(Value(m, "process_cpu_seconds_total"), 0);
  const double start = Value(m, "process_start_time_seconds");
  EXPECT_LT(std::abs(start - absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch())), 600);
  // Messages keep coming (metric batches every 500 ms).
  EXPECT_TRUE(WaitFor([&] {
    return Value(Metrics(), "herd_controlplane_agent_messages_total") > messages;
  }));
}

// scope=controlplane: the control plane's own numbers without a series per host or module
// (what a frequent health scrape of a large fleet wants); a scope it does not know is a 400.
TEST_F(PrometheusTest, ControlPlaneScopeLeavesTheFleetOut) {
  HttpReply own = HttpCall(http_, "GET", "/metrics?scope=controlplane", "", viewer_);
  ASSERT_EQ(own.status, 200) << own.error << own.body;
  EXPECT_EQ(Value(own.body, "herd_controlplane_connected_agents"), 1);
  EXPECT_GT(Value(own.body, "herd_controlplane_metric_batches_total"), 0);
  EXPECT_GT(Value(own.body, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_FALSE(absl::StrContains(own.body, "herd_module_")) << own.body;
  EXPECT_FALSE(absl::StrContains(own.body, "herd_host_")) << own.body;
  EXPECT_FALSE(absl::StrContains(own.body, host_id_)) << own.body;
  // The default, and scope=fleet, have the hosts.
  const std::string h = "host=\"" + host_id_ + "\"";
  EXPECT_EQ(Value(Metrics(), "herd_module_up", {h, "module=\"svc\""}), 1);
  HttpReply fleet = HttpCall(http_, "GET", "/metrics?scope=fleet", "", viewer_);
  ASSERT_EQ(fleet.status, 200) << fleet.error;
  EXPECT_EQ(Value(fleet.body, "herd_module_up", {h, "module=\"svc\""}), 1);

  HttpReply bad = HttpCall(http_, "GET", "/metrics?scope=hosts", "", viewer_);
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(absl::StrContains(bad.body, "scope=controlplane")) << bad.body;
  // Still behind the token.
  EXPECT_EQ(HttpCall(http_, "GET", "/metrics?scope=controlplane").status, 401);
}

TEST_F(PrometheusTest, RolloutsAreCountedByFinalState) {
  const std::string before = Metrics();
  const double succeeded = Value(before, "herd_controlplane_rollouts_total", {"state=\"succeeded\""});
  EXPECT_GE(succeeded, 0) << before;
  EXPECT_EQ(Value(before, "herd_controlplane_rollouts_total", {"state=\"failed\""}), 0);
  EXPECT_EQ(Value(before, "herd_controlplane_rollouts_total", {"state=\"aborted\""}), 0);
  CmdResult r = cp_->Ctl({"restart", "svc", "--all-hosts", "--wait-healthy", "200ms"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string after = Metrics();
  EXPECT_EQ(Value(after, "herd_controlplane_rollouts_total", {"state=\"succeeded\""}),
            succeeded + 1);
  EXPECT_EQ(Value(after, "herd_controlplane_rollouts_running"), 0);
  // The restarted module shows it (and its probes are back, for the tests after this one).
  EXPECT_TRUE(WaitFor([&] {
    const std::string m = Metrics();
    return Value(m, "herd_module_restarts_total", Unit("svc")) >= 1 && SvcProbesIn(m);
  }, absl::Seconds(20)));
}

TEST_F(PrometheusTest, ExpositionPassesPromtoolCheckMetrics) {
  REQUIRE_TOOL(promtool, "promtool");
  ScopedTempDir dir("herd-prom");
  const std::string m = Metrics();
  WriteFile(dir.Path("metrics.txt"), m);
  // Lint findings are printed and make it exit non-zero (3); both must stay clean.
  CmdResult r = Shell(promtool + " check metrics < " + Quote(dir.Path("metrics.txt")));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << "\n--- exposition:\n" << m;
  EXPECT_EQ(absl::StripAsciiWhitespace(r.out + r.err), "") << m;
}

TEST_F(PrometheusTest, DeployConfigAndRulesPassPromtool) {
  REQUIRE_TOOL(promtool, "promtool");
  const std::string deploy = SourceDir() + "/deploy/prometheus";
  // The file as shipped (its token file is on the Prometheus host, not here).
  CmdResult syntax = herd::testing::Run(
      {promtool, "check", "config", "--syntax-only", deploy + "/prometheus.yml"});
  EXPECT_EQ(syntax.exit_code, 0) << syntax.out << syntax.err;
  CmdResult replicas = herd::testing::Run(
      {promtool, "check", "config", "--syntax-only", deploy + "/replicas.yml"});
  EXPECT_EQ(replicas.exit_code, 0) << replicas.out << replicas.err;
  CmdResult rules = herd::testing::Run(
      {promtool, "check", "rules", "--lint=all", "--lint-fatal", deploy + "/herd-rules.yml"});
  EXPECT_EQ(rules.exit_code, 0) << rules.out << rules.err;
  // Fully (referenced files included), with this test's token file.
  ScopedTempDir dir("herd-prom");
  std::string config = ReadFile(deploy + "/prometheus.yml");
  ASSERT_EQ(absl::StrReplaceAll({{"credentials_file: /etc/herd/viewer-token",
                                  "credentials_file: " + cp_->ViewerTokenFile()}},
                                &config),
            1);
  WriteFile(dir.Path("prometheus.yml"), config);
  fs::copy_file(deploy + "/herd-rules.yml", dir.Path("herd-rules.yml"));
  CmdResult full = herd::testing::Run({promtool, "check", "config", "--lint=all", "--lint-fatal",
                        dir.Path("prometheus.yml")});
  EXPECT_EQ(full.exit_code, 0) << full.out << full.err;
}

TEST_F(PrometheusTest, DashboardAndRulesUseOnlyMetricsTheControlPlaneExposes) {
  std::set<std::string> exposed;
  for (const Sample& s : Samples(Metrics())) exposed.insert(s.name);
  std::vector<std::string> exprs = DashboardExprs();
  ASSERT_GT(exprs.size(), 20u) << "deploy/grafana/herd-fleet.json: no expressions found";
  Uses uses;
  for (const auto& e : exprs) AddUses(e, &uses);
  std::vector<std::string> rules = RuleExprs();
  ASSERT_GE(rules.size(), 3u);
  for (const auto& e : rules) AddUses(e, &uses);
  for (const char* needed :
       {"herd_host_up", "herd_controlplane_connected_agents",
        "herd_controlplane_agent_messages_total",
        "herd_controlplane_store_operation_duration_seconds_bucket",
        "herd_controlplane_rollouts_total", "herd_module_cpu_usage_ratio",
        "herd_module_memory_rss_bytes", "herd_module_restarts_total",
        "herd_module_uptime_seconds"}) {
    EXPECT_TRUE(uses.names.count(needed)) << "the dashboard does not show " << needed;
  }
  for (const auto& n : uses.names) {
    EXPECT_TRUE(exposed.count(n)) << n << " is used in deploy/ but not in /metrics";
  }
  // The probe panels find their families by name: herd_probe_.+ must match some of them.
  EXPECT_TRUE(uses.patterns.count("herd_probe_.+")) << "the dashboard does not show probes";
  for (const auto& pattern : uses.patterns) {
    const std::regex re(pattern);
    bool any = false;
    for (const auto& n : exposed) any = any || std::regex_match(n, re);
    EXPECT_TRUE(any) << "__name__=~\"" << pattern << "\" is used in deploy/ but matches "
                     << "nothing in /metrics";
  }
}

// Prometheus query API: the parsed answer, or null.
json PromQuery(const std::string& address, const std::string& expr) {
  HttpReply r = HttpCall(address, "GET", "/api/v1/query?query=" + UrlEncode(expr));
  if (r.status == 0) return nullptr;
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? json(nullptr) : j;
}

TEST_F(PrometheusTest, PrometheusScrapesTheControlPlaneWithTheShippedConfig) {
  REQUIRE_TOOL(prometheus, "prometheus");
  ScopedTempDir dir("herd-prom");
  const std::string deploy = SourceDir() + "/deploy/prometheus";
  // The shipped config at this control plane, scraping every 2 s (a scrape may take over 1 s
  // on a loaded CI machine) and evaluating every second.
  std::string config = ReadFile(deploy + "/prometheus.yml");
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"scrape_interval: 15s", "scrape_interval: 2s"},
           {"evaluation_interval: 15s", "evaluation_interval: 1s"},
           {"scrape_timeout: 10s", "scrape_timeout: 2s"},
           {"credentials_file: /etc/herd/viewer-token",
            "credentials_file: " + cp_->ViewerTokenFile()},
           {"targets: ['herd-controlplane:8080']", "targets: ['" + http_ + "']"}}) {
    ASSERT_EQ(absl::StrReplaceAll({{from, to}}, &config), 1) << from;
  }
  WriteFile(dir.Path("prometheus.yml"), config);
  fs::copy_file(deploy + "/herd-rules.yml", dir.Path("herd-rules.yml"));
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  ServerProcess server;
  ASSERT_TRUE(server.Start({prometheus, "--config.file=" + dir.Path("prometheus.yml"),
                            "--storage.tsdb.path=" + dir.Path("data"),
                            "--web.listen-address=" + address, "--log.level=warn",
                            "--storage.tsdb.retention.time=1h"},
                           dir.Path("prometheus.log")));
  const auto log = [&] { return "--- prometheus log:\n" + server.Log(); };
  ASSERT_TRUE(WaitFor([&] {
    return server.Exited() || HttpCall(address, "GET", "/-/ready").status == 200;
  }, absl::Seconds(30))) << log();
  ASSERT_FALSE(server.Exited()) << log();

  // The host, up, with its units, as Prometheus stored them from the scrapes.
  json up;
  ASSERT_TRUE(WaitFor([&] {
    up = PromQuery(address, "herd_host_up");
    if (!up.is_object() || up["status"] != "success") return false;
    for (const auto& s : up["data"]["result"]) {
      if (s["metric"].value("host", "") == host_id_ && s["value"][1] == "1") return true;
    }
    return false;
  }, absl::Seconds(30))) << up.dump() << "\n" << PromQuery(address, "up").dump() << log();
  json target = PromQuery(address, "up{job=\"herd\"}");
  ASSERT_EQ(target["data"]["result"].size(), 1u) << target.dump();
  EXPECT_EQ(target["data"]["result"][0]["value"][1], "1");
  json rss = PromQuery(address, "herd_module_memory_rss_bytes{module=\"sleeper\"}");
  ASSERT_EQ(rss["data"]["result"].size(), 1u) << rss.dump();
  EXPECT_EQ(rss["data"]["result"][0]["metric"]["host"], host_id_);
  json probes = PromQuery(address, "herd_probe_ticks{module=\"svc\",probe=\"ticks\"}");
  EXPECT_EQ(probes["data"]["result"].size(), 1u) << probes.dump();
  // Probes that share a family stay distinct series, with their names as written.
  json memory = PromQuery(address, "herd_probe_memory{module=\"svc\"}");
  std::set<std::string> memory_probes;
  for (const auto& s : memory["data"]["result"]) {
    memory_probes.insert(s["metric"].value("probe", ""));
  }
  EXPECT_EQ(memory_probes, (std::set<std::string>{"Memory MB", "memory"})) << memory.dump();
  // What the dashboard's probe_metric variable lists.
  json families = PromQuery(address, "count by (__name__) ({__name__=~\"herd_probe_.+\"})");
  std::set<std::string> family_names;
  for (const auto& s : families["data"]["result"]) {
    family_names.insert(s["metric"].value("__name__", ""));
  }
  for (const auto& p : AwkwardProbeFamilies()) {
    EXPECT_TRUE(family_names.count(p.family)) << p.family << "\n" << families.dump();
  }

  // Every dashboard expression is valid PromQL here, with Grafana's variables filled in.
  for (std::string e : DashboardExprs()) {
    absl::StrReplaceAll({{"$__rate_interval", "1m"},
                         {"$__interval", "15s"},
                         {"$host", ".*"},
                         {"$module", ".*"},
                         {"$probe_metric", "herd_probe_.+"}},
                        &e);
    json r = PromQuery(address, e);
    EXPECT_TRUE(r.is_object() && r["status"] == "success") << e << "\n" << r.dump();
  }
  // Once scraped a few times, rates work: the store's p99 from the histogram is a number.
  EXPECT_TRUE(WaitFor([&] {
    json p99 = PromQuery(address,
        "histogram_quantile(0.99, sum by (le) (rate("
        "herd_controlplane_store_operation_duration_seconds_bucket[1m])))");
    return p99.is_object() && !p99["data"]["result"].empty() &&
           p99["data"]["result"][0]["value"][1] != "NaN";
  }, absl::Seconds(20)));
  // The alert rules loaded and evaluate cleanly.
  json rules;
  EXPECT_TRUE(WaitFor([&] {
    HttpReply r = HttpCall(address, "GET", "/api/v1/rules");
    rules = json::parse(r.body, nullptr, false);
    if (!rules.is_object() || rules["data"]["groups"].empty()) return false;
    for (const auto& rule : rules["data"]["groups"][0]["rules"]) {
      if (rule["health"] != "ok") return false;
    }
    return true;
  })) << rules.dump();

  EXPECT_EQ(server.Stop(), 0) << log();
}

}  // namespace
}  // namespace herd::testing

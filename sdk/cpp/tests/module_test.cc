// Tests of the C++ module SDK against the other end of a real socketpair (the agent's side).
#include "herd/module.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace herd {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// The agent's end of the channel.
class Peer {
 public:
  explicit Peer(int fd) : fd_(fd) {}
  ~Peer() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // The next line as JSON, or nullopt after `timeout`.
  std::optional<json> Next(std::chrono::milliseconds timeout = 2000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return json::parse(line);
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char tmp[65536];
      ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  // The next message of `type` (others skipped); fails the test when none comes.
  json Expect(const std::string& type, std::chrono::milliseconds timeout = 2000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      auto msg = Next(std::max(left, 0ms));
      if (!msg) {
        ADD_FAILURE() << "no " << type << " message";
        return json();
      }
      if ((*msg)["type"] == type) return *msg;
    }
  }

  void Write(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
      ASSERT_GT(n, 0);
      off += static_cast<size_t>(n);
    }
  }

 private:
  int fd_;
  std::string buf_;
};

class ModuleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("HERD_CHANNEL_FD");
    ::unsetenv("HERD_MODULE_CONFIG");
    ::unsetenv("HERD_MODULE_NAME");
    ::unsetenv("HERD_MODULE_DIR");
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    module_fd_ = sv[0];
    peer_ = std::make_unique<Peer>(sv[1]);
  }

  ModuleOptions Options(const std::string& config = R"({"interval": 5, "greeting": "hi"})") {
    ModuleOptions o;
    o.channel_fd = module_fd_;
    o.flush_interval = std::chrono::hours(1);  // tests flush by hand
    o.config_json = config;
    o.name = "testmod";
    o.handle_signals = false;
    return o;
  }

  // A module whose configuration message has been consumed.
  std::unique_ptr<Module> Start(ModuleOptions o) {
    auto m = Module::Init(std::move(o));
    peer_->Expect("axm:option:configuration");
    return m;
  }
  std::unique_ptr<Module> Start() { return Start(Options()); }

  int module_fd_ = -1;
  std::unique_ptr<Peer> peer_;
};

TEST_F(ModuleTest, ConfigurationIsAnnouncedFirst) {
  auto o = Options();
  o.main_probes = {"ticks"};
  o.description = "a test";
  o.version = "1.2.3";
  o.widget_type = "custom";
  auto m = Module::Init(o);
  auto msg = peer_->Next();
  ASSERT_TRUE(msg);
  EXPECT_EQ((*msg)["type"], "axm:option:configuration");
  const json& d = (*msg)["data"];
  EXPECT_EQ(d["module_name"], "testmod");
  EXPECT_EQ(d["module_version"], "1.2.3");
  EXPECT_EQ(d["description"], "a test");
  EXPECT_EQ(d["module_conf"], json::parse(R"({"interval": 5, "greeting": "hi"})"));
  EXPECT_EQ(d["widget"]["type"], "custom");
  EXPECT_EQ(d["widget"]["el"], json::parse(R"({"probes": true, "actions": true})"));
  EXPECT_EQ(d["widget"]["block"]["main_probes"], json::array({"ticks"}));
  EXPECT_EQ(d["widget"]["block"]["issues"], true);
  EXPECT_EQ(d["widget"]["theme"].size(), 4u);
  EXPECT_TRUE(m->has_channel());
}

TEST_F(ModuleTest, EnvironmentGivesChannelNameConfigAndPackageInfo) {
  char dir[] = "/tmp/herd_sdk_test_XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string pkg = std::string(dir) + "/package.json";
  FILE* f = std::fopen(pkg.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs(R"({"name": "envmod", "version": "0.4.2", "description": "from package.json"})", f);
  std::fclose(f);
  ::setenv("HERD_CHANNEL_FD", std::to_string(module_fd_).c_str(), 1);
  ::setenv("HERD_MODULE_CONFIG", R"({"interval": 7, "verbose": true})", 1);
  ::setenv("HERD_MODULE_NAME", "envmod", 1);
  ::setenv("HERD_MODULE_DIR", dir, 1);
  ModuleOptions o;
  o.handle_signals = false;
  auto m = Module::Init(o);
  auto msg = peer_->Next();
  ASSERT_TRUE(msg);
  EXPECT_EQ((*msg)["type"], "axm:option:configuration");
  EXPECT_EQ((*msg)["data"]["module_name"], "envmod");
  EXPECT_EQ((*msg)["data"]["module_version"], "0.4.2");
  EXPECT_EQ((*msg)["data"]["description"], "from package.json");
  EXPECT_EQ((*msg)["data"]["module_conf"]["interval"], 7);
  EXPECT_EQ(m->name(), "envmod");
  EXPECT_EQ(m->GetInt("interval", 0), 7);
  EXPECT_TRUE(m->GetBool("verbose", false));
  m.reset();
  std::remove(pkg.c_str());
  ::rmdir(dir);
}

TEST_F(ModuleTest, TypedConfigAccessors) {
  auto m = Start(Options(R"({"s": "text", "i": 42, "big": -9000000000, "d": 2.5, "b": true,
                             "si": " 5 ", "sd": "1.25", "sb": "yes", "sb0": "off", "n0": 0})"));
  EXPECT_EQ(m->GetString("s", "x"), "text");
  EXPECT_EQ(m->GetInt("i", 0), 42);
  EXPECT_EQ(m->GetInt("big", 0), -9000000000LL);
  EXPECT_DOUBLE_EQ(m->GetDouble("d", 0), 2.5);
  EXPECT_DOUBLE_EQ(m->GetDouble("i", 0), 42.0);
  EXPECT_TRUE(m->GetBool("b", false));
  EXPECT_EQ(m->GetInt("si", 0), 5);
  EXPECT_DOUBLE_EQ(m->GetDouble("sd", 0), 1.25);
  EXPECT_TRUE(m->GetBool("sb", false));
  EXPECT_FALSE(m->GetBool("sb0", true));
  EXPECT_FALSE(m->GetBool("n0", true));
  EXPECT_EQ(m->GetInt("d", 0), 2);  // truncated
  EXPECT_EQ(m->GetString("i", ""), "42");
  EXPECT_EQ(m->GetString("b", ""), "true");
  EXPECT_EQ(m->config()["s"], "text");
}

TEST_F(ModuleTest, WrongTypesAndMissingKeysGiveDefaults) {
  auto m = Start(Options(R"({"s": "abc", "o": {"a": 1}, "a": [1], "nul": null, "half": "5x"})"));
  EXPECT_EQ(m->GetInt("s", 9), 9);
  EXPECT_EQ(m->GetInt("half", 9), 9);
  EXPECT_EQ(m->GetInt("o", 9), 9);
  EXPECT_DOUBLE_EQ(m->GetDouble("s", 1.5), 1.5);
  EXPECT_TRUE(m->GetBool("s", true));
  EXPECT_FALSE(m->GetBool("a", false));
  EXPECT_EQ(m->GetString("o", "def"), "def");
  EXPECT_EQ(m->GetString("nul", "def"), "def");
  EXPECT_EQ(m->GetString("missing", "def"), "def");
  EXPECT_EQ(m->GetInt("missing", -1), -1);
}

TEST_F(ModuleTest, BadJsonConfigBecomesEmptyWithAMessage) {
  for (const char* bad : {"{not json", "[1,2]", "42"}) {
    SCOPED_TRACE(bad);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    Peer peer(sv[1]);
    auto o = Options(bad);
    o.channel_fd = sv[0];
    ::testing::internal::CaptureStderr();
    auto m = Module::Init(o);
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(err, ::testing::HasSubstr("not a JSON object"));
    EXPECT_TRUE(m->config().is_object());
    EXPECT_TRUE(m->config().empty());
    EXPECT_EQ(m->GetInt("interval", 3), 3);
    auto msg = peer.Expect("axm:option:configuration");
    EXPECT_EQ(msg["data"]["module_conf"], json::object());
  }
}

TEST_F(ModuleTest, MonitorCarriesEveryProbeWithTypeAndUnit) {
  auto m = Start();
  m->gauge("temp", "C").Set(21.5);
  m->counter("jobs").Inc(3);
  m->meter("hits").Mark(7);
  m->histogram("latency", "ms", Aggregation::kMax).Observe(12);
  m->SetText("state", "ready");
  m->Flush();
  json d = peer_->Expect("axm:monitor")["data"];
  EXPECT_EQ(d["temp"], json::parse(R"({"value": 21.5, "type": "gauge", "unit": "C"})"));
  EXPECT_EQ(d["jobs"], json::parse(R"({"value": 3, "type": "counter", "unit": ""})"));
  EXPECT_EQ(d["hits"]["type"], "meter");
  EXPECT_EQ(d["hits"]["unit"], "req/s");
  EXPECT_DOUBLE_EQ(d["hits"]["value"].get<double>(), 7.0);  // within the first second
  EXPECT_EQ(d["latency"],
            json::parse(R"({"value": 12.0, "type": "histogram", "unit": "ms", "agg_type": "max"})"));
  EXPECT_EQ(d["state"]["value"], "ready");
  EXPECT_EQ(d.size(), 5u);
}

TEST_F(ModuleTest, NoProbesNoMonitorMessage) {
  auto m = Start();
  m->Flush();
  m->NotifyIssue("marker");
  EXPECT_EQ((*peer_->Next())["type"], "process:exception");
}

TEST_F(ModuleTest, CounterIncDecReset) {
  auto m = Start();
  Counter& c = m->counter("c");
  c.Inc();
  c.Inc(10);
  c.Dec(4);
  EXPECT_EQ(c.Value(), 7);
  m->Flush();
  EXPECT_EQ(peer_->Expect("axm:monitor")["data"]["c"]["value"], 7);
  c.Reset();
  EXPECT_EQ(c.Value(), 0);
}

TEST_F(ModuleTest, MeterRateOverSlidingMinute) {
  using C = Meter::Clock;
  auto t0 = C::now();
  Meter meter("m", "req/s", t0);
  meter.MarkAt(10, t0);
  EXPECT_DOUBLE_EQ(meter.RateAt(t0 + 500ms), 10.0);  // younger than 1 s: over 1 s
  meter.MarkAt(10, t0 + 9s);
  EXPECT_DOUBLE_EQ(meter.RateAt(t0 + 10s), 2.0);  // 20 events over 10 s
  meter.MarkAt(120, t0 + 90s);
  EXPECT_DOUBLE_EQ(meter.RateAt(t0 + 90s), 2.0);  // the first 20 left the window: 120 / 60
  EXPECT_DOUBLE_EQ(meter.RateAt(t0 + 150s), 0.0);
  meter.MarkAt(60, t0 + 151s);  // reuses a bucket slot: its old count is dropped
  EXPECT_DOUBLE_EQ(meter.RateAt(t0 + 152s), 1.0);
}

TEST_F(ModuleTest, HistogramAggregatesAndAggType) {
  auto m = Start();
  Histogram& h = m->histogram("lat", "ms");  // p95 by default
  for (int i = 100; i >= 1; --i) h.Observe(i);
  EXPECT_DOUBLE_EQ(h.Aggregate(Aggregation::kMean), 50.5);
  EXPECT_DOUBLE_EQ(h.Aggregate(Aggregation::kMin), 1);
  EXPECT_DOUBLE_EQ(h.Aggregate(Aggregation::kMax), 100);
  EXPECT_DOUBLE_EQ(h.Aggregate(Aggregation::kP50), 50);
  EXPECT_DOUBLE_EQ(h.Aggregate(Aggregation::kP95), 95);
  EXPECT_DOUBLE_EQ(h.Aggregate(Aggregation::kP99), 99);
  EXPECT_EQ(h.Count(), 100u);
  m->histogram("p99", "ms", Aggregation::kP99).Observe(3);
  m->Flush();
  json d = peer_->Expect("axm:monitor")["data"];
  EXPECT_EQ(d["lat"]["agg_type"], "p95");
  EXPECT_DOUBLE_EQ(d["lat"]["value"].get<double>(), 95);
  EXPECT_EQ(d["p99"]["agg_type"], "p99");
  EXPECT_EQ(std::string(AggregationName(Aggregation::kMean)), "mean");
}

TEST_F(ModuleTest, HistogramKeepsTheLastMinuteBounded) {
  using C = Histogram::Clock;
  Histogram h("h", "", Aggregation::kMean);
  auto now = C::now();
  h.ObserveAt(1000, now - 120s);  // too old
  h.ObserveAt(2, now);
  h.ObserveAt(4, now);
  EXPECT_DOUBLE_EQ(h.AggregateAt(Aggregation::kMean, now), 3);
  Histogram empty("e", "", Aggregation::kP95);
  EXPECT_DOUBLE_EQ(empty.Value(), 0);
  Histogram big("b", "", Aggregation::kMin);
  for (size_t i = 0; i < Histogram::kMaxSamples + 100; ++i) big.Observe(static_cast<double>(i));
  EXPECT_EQ(big.Count(), Histogram::kMaxSamples);
  EXPECT_DOUBLE_EQ(big.Value(), 100);  // the oldest 100 were dropped
}

TEST_F(ModuleTest, SameNameReturnsSameMetric) {
  auto m = Start();
  Gauge* g = &m->gauge("g");
  EXPECT_EQ(g, &m->gauge("g", "other unit"));
  EXPECT_EQ(&m->counter("c"), &m->counter("c"));
  EXPECT_EQ(&m->meter("m"), &m->meter("m"));
  EXPECT_EQ(&m->histogram("h"), &m->histogram("h"));
  EXPECT_EQ(&m->text("t"), &m->text("t"));
  EXPECT_NE(static_cast<Metric*>(&m->gauge("g")), static_cast<Metric*>(&m->counter("c")));
  EXPECT_EQ(m->gauge("g").unit(), "");
  EXPECT_THROW(m->counter("g"), std::invalid_argument);
  // Concurrent first use still yields one object.
  Counter* seen[4] = {};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) ts.emplace_back([&, i] { seen[i] = &m->counter("race"); });
  for (auto& t : ts) t.join();
  for (Counter* c : seen) EXPECT_EQ(c, seen[0]);
}

TEST_F(ModuleTest, ActionRegistrationMessage) {
  auto m = Start();
  m->Action("echo", [](const json& p, Reply r) { r(p); });
  EXPECT_EQ(peer_->Expect("axm:action")["data"],
            json::parse(R"({"action_name": "echo", "action_type": "custom", "arity": 2})"));
}

TEST_F(ModuleTest, TriggerCallsHandlerWithParamsAndReplies) {
  auto m = Start();
  std::thread::id handler_thread;
  m->Action("echo", [&](const json& p, Reply r) {
    handler_thread = std::this_thread::get_id();
    r(json{{"got", p}});
  });
  peer_->Expect("axm:action");
  peer_->Write(R"({"msg": "echo", "action_name": "echo", "opts": {"x": "1"}})" "\n");
  json reply = peer_->Expect("axm:reply");
  EXPECT_EQ(reply["data"]["action_name"], "echo");
  EXPECT_EQ(reply["data"]["return"], json::parse(R"({"got": {"x": "1"}})"));
  EXPECT_NE(handler_thread, std::this_thread::get_id());  // the SDK thread
  // No opts: the handler sees {}.
  peer_->Write(R"({"msg": "echo"})" "\n");
  EXPECT_EQ(peer_->Expect("axm:reply")["data"]["return"], json::parse(R"({"got": {}})"));
}

TEST_F(ModuleTest, SecondReplyIsIgnored) {
  auto m = Start();
  m->Action("twice", [](const json&, Reply r) {
    Reply copy = r;
    r("first");
    copy("second");
    r("third");
    EXPECT_TRUE(copy.replied());
  });
  peer_->Expect("axm:action");
  peer_->Write("{\"msg\":\"twice\",\"opts\":{}}\n");
  auto first = peer_->Next();
  ASSERT_TRUE(first);
  EXPECT_EQ((*first)["data"]["return"], "first");
  m->NotifyIssue("marker");  // the next line is this, not another reply
  auto next = peer_->Next();
  ASSERT_TRUE(next);
  EXPECT_EQ((*next)["type"], "process:exception");
}

TEST_F(ModuleTest, AsyncReplyFromAnotherThread) {
  auto m = Start();
  std::thread worker;
  m->Action("slow", [&](const json& p, Reply r) {
    worker = std::thread([p, r] {
      std::this_thread::sleep_for(20ms);
      r(p.value("v", std::string("?")));
    });
  });
  peer_->Expect("axm:action");
  peer_->Write("{\"msg\":\"slow\",\"opts\":{\"v\":\"done\"}}\n");
  EXPECT_EQ(peer_->Expect("axm:reply")["data"]["return"], "done");
  worker.join();
}

TEST_F(ModuleTest, ThrowingHandlerRepliesErrorAndReportsIssue) {
  auto m = Start();
  m->Action("fail", [](const json&, Reply) { throw std::runtime_error("boom"); });
  m->Action("fail2", [](const json&, Reply) { throw 42; });
  peer_->Expect("axm:action");
  peer_->Expect("axm:action");
  peer_->Write("{\"msg\":\"fail\"}\n");
  json reply = peer_->Expect("axm:reply");
  EXPECT_EQ(reply["data"]["action_name"], "fail");
  EXPECT_EQ(reply["data"]["return"], json::parse(R"({"error": "boom"})"));
  json issue = peer_->Expect("process:exception");
  EXPECT_THAT(issue["data"]["message"].get<std::string>(), ::testing::HasSubstr("boom"));
  EXPECT_EQ(issue["data"]["name"], "Error");
  peer_->Write("{\"msg\":\"fail2\"}\n");
  EXPECT_EQ(peer_->Expect("axm:reply")["data"]["return"]["error"], "unknown exception");
}

TEST_F(ModuleTest, UnknownActionRepliesError) {
  auto m = Start();
  peer_->Write("{\"msg\":\"nope\",\"opts\":{}}\n");
  json reply = peer_->Expect("axm:reply");
  EXPECT_EQ(reply["data"]["action_name"], "nope");
  EXPECT_EQ(reply["data"]["return"], json::parse(R"({"error": "unknown action nope"})"));
}

TEST_F(ModuleTest, FramingSplitAndBatchedTriggers) {
  auto m = Start();
  m->Action("echo", [](const json& p, Reply r) { r(p); });
  peer_->Expect("axm:action");
  peer_->Write(R"({"msg": "ec)");
  std::this_thread::sleep_for(30ms);  // let the SDK read the first half alone
  peer_->Write(R"(ho", "opts": {"n": "1"}})" "\n");
  EXPECT_EQ(peer_->Expect("axm:reply")["data"]["return"]["n"], "1");
  peer_->Write("{\"msg\":\"echo\",\"opts\":{\"n\":\"2\"}}\n{\"msg\":\"echo\",\"opts\":{\"n\":\"3\"}}\n");
  EXPECT_EQ(peer_->Expect("axm:reply")["data"]["return"]["n"], "2");
  EXPECT_EQ(peer_->Expect("axm:reply")["data"]["return"]["n"], "3");
}

TEST_F(ModuleTest, GarbageAndOversizedLinesAreIgnored) {
  auto m = Start();
  m->Action("echo", [](const json& p, Reply r) { r(p); });
  peer_->Expect("axm:action");
  peer_->Write("this is not json\n[1,2,3]\n{\"no_msg\":1}\n{\"msg\":5}\n\n");
  std::string huge = "{\"msg\":\"echo\",\"opts\":{\"x\":\"" + std::string(1100 * 1024, 'a') + "\"}}\n";
  peer_->Write(huge);  // > 1 MiB: dropped, not answered
  peer_->Write("{\"msg\":\"echo\",\"opts\":{\"ok\":\"yes\"}}\n");
  json reply = peer_->Expect("axm:reply");
  EXPECT_EQ(reply["data"]["return"], json::parse(R"({"ok": "yes"})"));
}

TEST_F(ModuleTest, PeerClosedModuleKeepsRunning) {
  auto m = Start();
  auto& g = m->gauge("g");
  peer_->Close();
  // Sends after the agent is gone: no crash, no SIGPIPE (which would kill this test).
  for (int i = 0; i < 50; ++i) {
    g.Set(i);
    m->Flush();
    m->NotifyIssue("nobody listens");
    m->EmitEvent("e");
  }
  for (int i = 0; i < 100 && m->has_channel(); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(m->has_channel());
  EXPECT_DOUBLE_EQ(g.Value(), 49);
  m->Action("late", [](const json&, Reply r) { r(1); });
  EXPECT_FALSE(m->WaitForShutdown(10ms));
}

TEST_F(ModuleTest, NotifyIssueAndEmitEventShapes) {
  auto m = Start();
  m->NotifyIssue("disk full", "at main.cc:10");
  EXPECT_EQ(peer_->Expect("process:exception")["data"],
            json::parse(R"({"message": "disk full", "stack": "at main.cc:10", "name": "Error"})"));
  m->EmitEvent("deployed", {{"version", "1.0"}, {"ok", true}});
  EXPECT_EQ(peer_->Expect("human:event")["data"],
            json::parse(R"({"__name": "deployed", "version": "1.0", "ok": true})"));
  m->EmitEvent("plain");
  EXPECT_EQ(peer_->Expect("human:event")["data"], json::parse(R"({"__name": "plain"})"));
  m->EmitEvent("scalar", 5);
  EXPECT_EQ(peer_->Expect("human:event")["data"], json::parse(R"({"__name": "scalar", "data": 5})"));
  m->Send("application:dependencies", {{"a", 1}});
  EXPECT_EQ(peer_->Expect("application:dependencies")["data"]["a"], 1);
}

TEST_F(ModuleTest, PeriodicFlushFromTheSdkThread) {
  auto o = Options();
  o.flush_interval = 30ms;
  auto m = Start(o);
  m->counter("ticks").Inc(2);
  EXPECT_EQ(peer_->Expect("axm:monitor")["data"]["ticks"]["value"], 2);
  m->counter("ticks").Inc();
  json d;
  do {
    d = peer_->Expect("axm:monitor")["data"];
  } while (d["ticks"]["value"] != 3 && !::testing::Test::HasFailure());
  EXPECT_EQ(d["ticks"]["value"], 3);
}

TEST_F(ModuleTest, StandaloneWithoutChannel) {
  ModuleOptions o;
  o.config_json = R"({"interval": 3})";
  o.handle_signals = false;
  o.flush_interval = 10ms;
  auto m = Module::Init(o);  // HERD_CHANNEL_FD is unset
  EXPECT_FALSE(m->has_channel());
  EXPECT_FALSE(m->name().empty());
  EXPECT_EQ(m->GetInt("interval", 0), 3);
  m->counter("c").Inc();
  m->histogram("h").Observe(1);
  m->Action("a", [](const json&, Reply r) { r(1); });
  m->NotifyIssue("x");
  m->EmitEvent("y");
  m->Flush();
  std::this_thread::sleep_for(30ms);  // a few periodic flushes with nowhere to go
  EXPECT_EQ(m->counter("c").Value(), 1);
  // The peer of this fixture received nothing.
  EXPECT_FALSE(peer_->Next(20ms));
}

TEST_F(ModuleTest, ShutdownByRequestAndBySigterm) {
  auto m = Start();
  EXPECT_FALSE(m->ShutdownRequested());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(m->WaitForShutdown(50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    m->RequestShutdown();
  });
  EXPECT_TRUE(m->WaitForShutdown(5s));
  t.join();
  m->Run();  // returns at once, sends the probes a last time and stops the thread
  m->Stop();

  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Peer peer(sv[1]);
  auto o = Options();
  o.channel_fd = sv[0];
  o.handle_signals = true;
  auto m2 = Module::Init(o);
  EXPECT_FALSE(m2->ShutdownRequested());
  std::thread killer([] {
    std::this_thread::sleep_for(20ms);
    ::kill(::getpid(), SIGTERM);
  });
  EXPECT_TRUE(m2->WaitForShutdown(5s));
  killer.join();
  m2->gauge("last").Set(1);
  m2->Run();
  EXPECT_EQ(peer.Expect("axm:monitor")["data"]["last"]["value"], 1.0);
  // A module created after the signal does not see it.
  auto o3 = Options();
  o3.channel_fd = -1;
  o3.handle_signals = true;
  auto m3 = Module::Init(o3);
  EXPECT_FALSE(m3->ShutdownRequested());
}

TEST_F(ModuleTest, ReplyOutlivesTheModule) {
  auto m = Start();
  std::promise<Reply> promise;
  m->Action("keep", [&](const json&, Reply r) { promise.set_value(r); });
  peer_->Expect("axm:action");
  peer_->Write("{\"msg\":\"keep\"}\n");
  auto future = promise.get_future();
  ASSERT_EQ(future.wait_for(2s), std::future_status::ready);
  Reply kept = future.get();
  EXPECT_EQ(kept.action_name(), "keep");
  EXPECT_FALSE(kept.replied());
  m.reset();
  kept("too late");  // no crash, nothing sent (the channel is closed)
  EXPECT_TRUE(kept.replied());
}

}  // namespace
}  // namespace herd

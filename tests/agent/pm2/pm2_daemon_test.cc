// PM2's daemon API (agent/pm2/pm2_daemon.h) on a real EventLoop (its own thread) and real Unix
// sockets, spoken to as pm2-axon's req and sub-emitter sockets do, with a fake backend.
#include "agent/pm2/pm2_daemon.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/temp_dir.h"

namespace herd::agent::pm2 {
namespace {

using json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeBackend final : public Pm2Backend {
 public:
  explicit FakeBackend(EventLoop& loop) : loop_(loop) {}
  json Processes() override {
    json out = json::array();
    for (const auto& [name, status] : units) {
      out.push_back({{"name", name},
                     {"pid", 100},
                     {"monit", {{"cpu", 0}, {"memory", 0}}},
                     {"pm2_env", {{"status", status}, {"pm_out_log_path", "/l/" + name}}}});
    }
    return out;
  }
  void ReopenLogs() override { ++reopened; }
  void Act(Verb verb, const std::string& unit, Done done) override {
    acted.push_back(unit);
    // Answers later, as a stop that waits for the process does.
    loop_.RunAfter(absl::Milliseconds(20), [this, verb, unit, done] {
      if (verb == Verb::kDelete) units.erase(unit);
      if (verb == Verb::kStop) units[unit] = "stopped";
      done(absl::OkStatus());
    });
  }
  void NoteForProcess(pid_t pid, const std::string& line) override {
    notes.emplace_back(pid, line);
  }

  std::map<std::string, std::string> units = {{"web", "online"}, {"pm2-logrotate", "online"}};
  int reopened = 0;
  std::vector<std::string> acted;
  std::vector<std::pair<pid_t, std::string>> notes;

 private:
  EventLoop& loop_;
};

// A blocking client of one of the daemon's sockets.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { close(fd_); }
  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  void Write(const std::string& bytes) {
    ASSERT_EQ(write(fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  // pm2-axon-rpc's call: [{type: "call", method, args}, id].
  void Call(const std::string& method, json args, const std::string& id) {
    Write(EncodeAmp({PackJson({{"type", "call"}, {"method", method}, {"args", args}}),
                     PackString(id)}));
  }
  // The next message, or nullopt after 5 s or when the daemon closed the connection.
  std::optional<std::vector<std::string>> Next() {
    while (pending_.empty()) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 5000) != 1) return std::nullopt;
      char buf[65536];
      ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) return std::nullopt;
      if (!decoder_.Feed(absl::string_view(buf, static_cast<size_t>(n)), &pending_).ok()) {
        return std::nullopt;
      }
    }
    auto m = pending_.front();
    pending_.erase(pending_.begin());
    return m;
  }
  // The answer to a call: its JSON, checked to carry `id`.
  json Answer(const std::string& id) {
    auto m = Next();
    if (!m || m->size() != 2) return json("no answer");
    EXPECT_EQ((*m)[1], PackString(id));
    auto j = UnpackJson((*m)[0]);
    return j.ok() ? *j : json("undecodable");
  }
  // True when the daemon closed the connection (within 5 s).
  bool Closed() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return false;
    char c;
    return read(fd_, &c, 1) == 0;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  AmpDecoder decoder_{16 << 20};
  std::vector<std::vector<std::string>> pending_;
};

class Pm2DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create(SystemClock::Get());
    ASSERT_TRUE(loop.ok());
    loop_ = *std::move(loop);
    backend_ = std::make_unique<FakeBackend>(*loop_);
    thread_ = std::thread([this] { loop_->Run(); });
    Pm2DaemonOptions o;
    o.dir = dir_.path() + "/pm2";
    o.max_connections = 4;
    o.max_message_bytes = 4096;
    o.max_pending_bytes = 64 * 1024;
    o.on_listeners = [this](bool on) { listening_.push_back(on); };
    absl::Status started = OnLoop([&] {
      daemon_ = std::make_unique<Pm2Daemon>(*loop_, *backend_, o);
      return daemon_->Start();
    });
    ASSERT_TRUE(started.ok()) << started;
  }
  void TearDown() override {
    OnLoop([&] {
      daemon_.reset();
      return 0;
    });
    loop_->Stop();
    thread_.join();
  }
  template <typename F>
  auto OnLoop(F f) -> decltype(f()) {
    std::promise<decltype(f())> p;
    loop_->Post([&] { p.set_value(f()); });
    return p.get_future().get();
  }

  herd::testing::ScopedTempDir dir_{"herd-pm2"};
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<FakeBackend> backend_;
  std::unique_ptr<Pm2Daemon> daemon_;
  std::thread thread_;
  std::vector<bool> listening_;  // on_listeners' calls (loop thread)
};

TEST_F(Pm2DaemonTest, AnswersPingVersionAndTheProcessListAsPm2Does) {
  Client c(daemon_->rpc_path());
  ASSERT_TRUE(c.connected());
  c.Call("ping", json::array(), "123:0");
  EXPECT_EQ(c.Answer("123:0"), json({{"args", {{{"msg", "pong"}}}}}));
  c.Call("getVersion", json::array(), "123:1");
  EXPECT_EQ(c.Answer("123:1")["args"][0], "5.4.3");
  c.Call("getMonitorData", json::array({json::object()}), "123:2");
  json list = c.Answer("123:2")["args"][0];
  ASSERT_TRUE(list.is_array()) << list;
  ASSERT_EQ(list.size(), 2u);
  // pm_id: a number per unit, the same in pm2_env, kept across calls.
  std::map<std::string, int> ids;
  for (const auto& p : list) {
    EXPECT_EQ(p["pm_id"], p["pm2_env"]["pm_id"]);
    ids[p["name"].get<std::string>()] = p["pm_id"].get<int>();
  }
  EXPECT_NE(ids["web"], ids["pm2-logrotate"]);
  c.Call("getMonitorData", json::array({json::object()}), "123:3");
  const json again = c.Answer("123:3");  // kept: the loop below reads into it
  for (const auto& p : again["args"][0]) {
    EXPECT_EQ(ids[p["name"].get<std::string>()], p["pm_id"].get<int>());
  }
  // {type: "methods"}: what is served.
  c.Write(EncodeAmp({PackJson({{"type", "methods"}}), PackString("123:4")}));
  EXPECT_TRUE(c.Answer("123:4")["methods"].contains("reloadLogs"));
}

TEST_F(Pm2DaemonTest, ActsOnAUnitByItsPm2IdAndAnswersOnceDone) {
  Client c(daemon_->rpc_path());
  c.Call("getMonitorData", json::array({json::object()}), "1:0");
  int web = -1;
  const json listed = c.Answer("1:0");  // kept: the loop below reads into it
  for (const auto& p : listed["args"][0]) {
    if (p["name"] == "web") web = p["pm_id"].get<int>();
  }
  ASSERT_GE(web, 0);
  // stopProcessId takes the id, restartProcessId {id, env}; ids may come as strings.
  c.Call("stopProcessId", json::array({web}), "1:1");
  json stopped = c.Answer("1:1");
  EXPECT_EQ(stopped["args"][0]["name"], "web") << stopped;
  EXPECT_EQ(stopped["args"][0]["pm2_env"]["status"], "stopped");
  c.Call("restartProcessId", json::array({{{"id", std::to_string(web)}, {"env", json::object()}}}),
         "1:2");
  EXPECT_EQ(c.Answer("1:2")["args"][0]["name"], "web");
  c.Call("stopProcessId", json::array({99}), "1:3");
  EXPECT_THAT(c.Answer("1:3")["error"].get<std::string>(), HasSubstr("id unknown"));
  // Ids that would wrap to a unit's when narrowed to an int are unknown too.
  c.Call("stopProcessId", json::array({4294967296ull + static_cast<uint64_t>(web)}), "1:5");
  EXPECT_THAT(c.Answer("1:5")["error"].get<std::string>(), HasSubstr("id unknown"));
  c.Call("stopProcessId", json::array({-4294967296ll + web}), "1:6");
  EXPECT_THAT(c.Answer("1:6")["error"].get<std::string>(), HasSubstr("id unknown"));
  EXPECT_THAT(OnLoop([&] { return backend_->acted; }), ElementsAre("web", "web"));
  c.Call("reloadLogs", json::array({json::object()}), "1:4");
  EXPECT_TRUE(c.Answer("1:4").contains("args"));
  EXPECT_EQ(OnLoop([&] { return backend_->reopened; }), 1);
}

TEST_F(Pm2DaemonTest, ACallNotServedIsAnErrorNamingItAndANoteInTheCallersLog) {
  Client c(daemon_->rpc_path());
  c.Call("profileCPU", json::array({json::object()}), "7:0");
  const std::string error = c.Answer("7:0").value("error", "");
  EXPECT_THAT(error, HasSubstr("\"profileCPU\""));
  EXPECT_THAT(error, HasSubstr("getMonitorData"));  // what is served instead
  auto notes = OnLoop([&] { return backend_->notes; });
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].first, getpid());  // the caller, from the socket's credentials
  EXPECT_THAT(notes[0].second, HasSubstr("profileCPU"));
  EXPECT_EQ(OnLoop([&] { return daemon_->counts().unserved_calls; }), 1u);
}

TEST_F(Pm2DaemonTest, TheBusReachesEverySubscriberAsPubEmitterSendsIt) {
  Client a(daemon_->pub_path()), b(daemon_->pub_path());
  ASSERT_TRUE(a.connected() && b.connected());
  // Connections are taken on the loop: wait until both are.
  for (int i = 0; i < 200 && OnLoop([&] { return daemon_->connections(); }) < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  OnLoop([&] {
    daemon_->Publish("process:event", {{"event", "restart"}, {"process", {{"name", "web"}}}});
    return 0;
  });
  for (Client* c : {&a, &b}) {
    auto m = c->Next();
    ASSERT_TRUE(m.has_value());
    ASSERT_EQ(m->size(), 2u);
    EXPECT_EQ((*m)[0], "s:process:event");
    EXPECT_EQ((*UnpackJson((*m)[1]))["process"]["name"], "web");
  }
  // Told once when the first subscriber came, and once the last is gone.
  EXPECT_THAT(OnLoop([&] { return listening_; }), ElementsAre(true));
  EXPECT_TRUE(OnLoop([&] { return daemon_->has_listeners(); }));
}

TEST_F(Pm2DaemonTest, TheLastSubscriberLeavingIsTold) {
  {
    Client a(daemon_->pub_path());
    for (int i = 0; i < 200 && !OnLoop([&] { return daemon_->has_listeners(); }); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  for (int i = 0; i < 200 && OnLoop([&] { return daemon_->has_listeners(); }); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_THAT(OnLoop([&] { return listening_; }), ElementsAre(true, false));
}

TEST_F(Pm2DaemonTest, BadInputClosesOnlyThatConnectionAndIsCounted) {
  Client bad(daemon_->rpc_path()), good(daemon_->rpc_path());
  bad.Write("GET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(bad.Closed());
  Client big(daemon_->rpc_path());
  big.Write(EncodeAmp({PackJson({{"type", "call"}, {"method", std::string(5000, 'x')}}),
                       PackString("1")}));
  EXPECT_TRUE(big.Closed());
  // Not a call: an error answer, the connection kept.
  good.Write(EncodeAmp({PackString("hello"), PackString("9:0")}));
  EXPECT_THAT(good.Answer("9:0").value("error", ""), HasSubstr("JSON object"));
  good.Call("ping", json::array(), "9:1");
  EXPECT_EQ(good.Answer("9:1")["args"][0]["msg"], "pong");
  EXPECT_EQ(OnLoop([&] { return daemon_->counts().bad_messages; }), 3u);
}

TEST_F(Pm2DaemonTest, DeepJsonIsAnErrorAndAFloodingPeerDoesNotHoldTheOthers) {
  Client deep(daemon_->rpc_path()), flood(daemon_->rpc_path()), good(daemon_->rpc_path());
  // Arguments nested 2,000 deep (within the 4 KiB message bound): an error, agentd goes on.
  deep.Write(EncodeAmp({"j:{\"type\":\"call\",\"method\":\"x\",\"args\":" +
                            std::string(2000, '[') + std::string(2000, ']') + "}",
                        PackString("d:0")}));
  EXPECT_THAT(deep.Answer("d:0").value("error", ""), HasSubstr("JSON object"));
  // A peer that sends requests without reading the answers: once they pile up it is not
  // read, and the others are answered meanwhile.
  std::string burst;
  for (int i = 0; i < 3000; ++i) {
    burst += EncodeAmp({PackJson({{"type", "call"}, {"method", "getMonitorData"},
                                  {"args", json::array({json::object()})}}),
                        PackString(absl::StrCat("f:", i))});
  }
  std::thread writer([&] {
    size_t off = 0;
    // Until the daemon stops reading (the socket's buffers full): then give up.
    while (off < burst.size()) {
      pollfd p{flood.fd(), POLLOUT, 0};
      if (poll(&p, 1, 2000) != 1) break;
      ssize_t n = send(flood.fd(), burst.data() + off, burst.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  });
  good.Call("ping", json::array(), "g:0");
  EXPECT_EQ(good.Answer("g:0")["args"][0]["msg"], "pong");
  writer.join();
}

TEST_F(Pm2DaemonTest, ConnectionsPastTheBoundAreRefusedAndASubscriberThatDoesNotReadIsDropped) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(std::make_unique<Client>(daemon_->pub_path()));
  for (int i = 0; i < 200 && OnLoop([&] { return daemon_->connections(); }) < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Client extra(daemon_->rpc_path());
  EXPECT_TRUE(extra.Closed());
  EXPECT_EQ(OnLoop([&] { return daemon_->counts().refused_connections; }), 1u);
  // Nobody reads: past 64 KiB waiting (plus what the kernel takes), each is dropped.
  const json line = {{"data", std::string(4000, 'l')}};
  for (int i = 0; i < 2000 && OnLoop([&] { return daemon_->connections(); }) > 0; ++i) {
    OnLoop([&] {
      daemon_->Publish("log:out", line);
      return 0;
    });
  }
  EXPECT_EQ(OnLoop([&] { return daemon_->connections(); }), 0u);
  EXPECT_EQ(OnLoop([&] { return daemon_->counts().dropped_subscribers; }), 4u);
}

TEST_F(Pm2DaemonTest, SocketsAreTheOwnersOnlyAndGoneAfterStop) {
  struct stat st {};
  ASSERT_EQ(stat(daemon_->rpc_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir_.path() + "/pm2").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const std::string rpc = daemon_->rpc_path();
  OnLoop([&] {
    daemon_.reset();
    return 0;
  });
  EXPECT_NE(access(rpc.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace herd::agent::pm2

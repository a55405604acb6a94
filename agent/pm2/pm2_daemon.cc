#include "agent/pm2/pm2_daemon.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/logging.h"

namespace herd::agent::pm2 {
namespace {

using json = nlohmann::json;

// The calls served, for {type: "methods"} and the error naming them.
const std::vector<std::string>& Served() {
  static const std::vector<std::string> kServed = {
      "ping",           "getVersion",     "getMonitorData",   "reloadLogs",
      "startProcessId", "stopProcessId",  "restartProcessId", "deleteProcessId",
      "notifyByProcessId"};
  return kServed;
}

// A name from a peer, for a log line or a message: at most 64 bytes, printable ASCII.
std::string Printable(const std::string& s) {
  std::string out;
  for (char ch : s.substr(0, 64)) out.push_back(ch >= 0x20 && ch < 0x7f && ch != '"' ? ch : '?');
  if (s.size() > 64) out += "...";
  return out;
}

// j[key] when j is an object holding a string there; "" otherwise (json::value would throw
// on a number where a string is expected, and what is read here comes from a module).
std::string StrField(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// pm2-axon-rpc's answer to a call whose callback got (null, value).
json Answer(json value) {
  json args = json::array();
  args.push_back(std::move(value));
  return json{{"args", std::move(args)}};
}

}  // namespace

struct Pm2Daemon::Conn {
  uint64_t id = 0;
  int fd = -1;
  Kind kind = Kind::kRpc;
  pid_t peer_pid = 0;
  AmpDecoder decoder;
  std::string out;  // bytes not sent yet
  EventLoop::Handle watch = 0;
  bool want_write = false;
  bool want_read = true;
  explicit Conn(size_t max_message_bytes) : decoder(max_message_bytes) {}
};

Pm2Daemon::Pm2Daemon(EventLoop& loop, Pm2Backend& backend, Pm2DaemonOptions options)
    : loop_(loop), backend_(backend), options_(std::move(options)), log_(herd::Logger("pm2")) {}

Pm2Daemon::~Pm2Daemon() {
  while (!conns_.empty()) Close(conns_.begin()->second.get());
  if (resume_timer_) loop_.CancelTimer(resume_timer_);
  StopListening();
}

std::string Pm2Daemon::rpc_path() const { return options_.dir + "/rpc.sock"; }
std::string Pm2Daemon::pub_path() const { return options_.dir + "/pub.sock"; }

absl::Status Pm2Daemon::Start() {
  absl::Status st = Bind();
  if (!st.ok()) StopListening();  // nothing half-open: a client fails at once, not hangs
  return st;
}

absl::Status Pm2Daemon::Bind() {
  if (mkdir(options_.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("cannot make ", options_.dir, " (PM2_HOME for the "
                                            "units): ", strerror(errno)));
  }
  // Not through a link, and ours only: whoever could write here could answer for agentd.
  struct stat st {};
  if (lstat(options_.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        options_.dir, " (PM2_HOME for the units) is not a directory of agentd's user: remove it, "
        "agentd makes it again"));
  }
  chmod(options_.dir.c_str(), 0700);
  auto rpc = Listen(rpc_path());
  if (!rpc.ok()) return rpc.status();
  rpc_fd_ = *rpc;
  auto pub = Listen(pub_path());
  if (!pub.ok()) return pub.status();
  pub_fd_ = *pub;
  if (auto s = WatchListening(Kind::kRpc); !s.ok()) return s;
  if (auto s = WatchListening(Kind::kPub); !s.ok()) return s;
  log_->info("event=pm2_api_listening dir={}", options_.dir);
  return absl::OkStatus();
}

absl::Status Pm2Daemon::WatchListening(Kind kind) {
  const int fd = kind == Kind::kRpc ? rpc_fd_ : pub_fd_;
  EventLoop::Handle& watch = kind == Kind::kRpc ? rpc_watch_ : pub_watch_;
  auto w = loop_.WatchFd(fd, EPOLLIN, [this, fd, kind](uint32_t) { Accept(fd, kind); });
  if (!w.ok()) return w.status();
  watch = *w;
  return absl::OkStatus();
}

void Pm2Daemon::StopListening() {
  for (auto* pair : {&rpc_watch_, &pub_watch_}) {
    if (*pair) loop_.UnwatchFd(*pair);
    *pair = 0;
  }
  if (rpc_fd_ >= 0) {
    close(rpc_fd_);
    unlink(rpc_path().c_str());
  }
  if (pub_fd_ >= 0) {
    close(pub_fd_);
    unlink(pub_path().c_str());
  }
  rpc_fd_ = pub_fd_ = -1;
}

absl::StatusOr<int> Pm2Daemon::Listen(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the socket path ", path, " is longer than a Unix socket allows (",
        sizeof(addr.sun_path) - 1, " bytes): give agentd a shorter --home"));
  }
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  unlink(path.c_str());  // a previous agentd's
  const mode_t old = umask(0177);
  const int bound = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (bound != 0 || listen(fd, 64) != 0) {
    const int e = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("cannot listen on ", path, ": ", strerror(e)));
  }
  return fd;
}

void Pm2Daemon::Accept(int listen_fd, Kind kind) {
  while (true) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
      // Out of descriptors: the socket stays readable, so stop watching it for a second
      // instead of spinning the loop.
      log_->warn("event=pm2_api_paused reason=\"{}\"", strerror(errno));
      PauseAccepting();
      return;
    }
    if (fd < 0) return;  // EAGAIN, or a connection gone before it was taken
    ucred cred{};
    socklen_t len = sizeof(cred);
    const bool same_user = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
                           (cred.uid == geteuid() || cred.uid == 0);
    if (!same_user || conns_.size() >= options_.max_connections) {
      // Logged the first time and every 100th after: refusals must not flood the log.
      if (counts_.refused_connections++ % 100 == 0) {
        log_->warn("event=pm2_api_refused pid={} reason=\"{}\" refused_so_far={}", cred.pid,
                   same_user ? "too many connections" : "another user",
                   counts_.refused_connections);
      }
      close(fd);
      continue;
    }
    auto c = std::make_unique<Conn>(options_.max_message_bytes);
    c->id = next_conn_++;
    c->fd = fd;
    c->kind = kind;
    c->peer_pid = cred.pid;
    Conn* raw = c.get();
    conns_.emplace(c->id, std::move(c));
    if (kind == Kind::kPub && ++subscribers_ == 1 && options_.on_listeners) {
      options_.on_listeners(true);
    }
    Watch(raw);
  }
}

void Pm2Daemon::PauseAccepting() {
  if (resume_timer_) return;
  for (auto* pair : {&rpc_watch_, &pub_watch_}) {
    if (*pair) loop_.UnwatchFd(*pair);
    *pair = 0;
  }
  resume_timer_ = loop_.RunAfter(absl::Seconds(1), [this] {
    resume_timer_ = 0;
    if (rpc_fd_ >= 0) (void)WatchListening(Kind::kRpc);
    if (pub_fd_ >= 0) (void)WatchListening(Kind::kPub);
  });
}

// Reads are watched while the answers waiting for the peer are under half the bound (a peer
// that does not read them is not read either); writes while any wait.
void Pm2Daemon::Watch(Conn* c) {
  const bool want_write = !c->out.empty();
  const bool want_read = c->out.size() <= options_.max_pending_bytes / 2;
  if (c->watch && c->want_write == want_write && c->want_read == want_read) return;
  if (c->watch) loop_.UnwatchFd(c->watch);
  c->want_write = want_write;
  c->want_read = want_read;
  uint32_t mask = want_read ? static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP) : 0u;
  if (want_write) mask |= static_cast<uint32_t>(EPOLLOUT);
  const uint64_t id = c->id;
  auto w = loop_.WatchFd(c->fd, mask, [this, id](uint32_t events) {
    auto it = conns_.find(id);
    if (it != conns_.end()) OnEvents(it->second.get(), events);
  });
  c->watch = w.ok() ? *w : 0;
  if (!w.ok()) Close(c);
}

void Pm2Daemon::Close(Conn* c) {
  if (c->watch) loop_.UnwatchFd(c->watch);
  close(c->fd);
  const bool last = c->kind == Kind::kPub && --subscribers_ == 0;
  conns_.erase(c->id);
  if (last && options_.on_listeners) options_.on_listeners(false);
}

void Pm2Daemon::OnEvents(Conn* c, uint32_t events) {
  const uint64_t id = c->id;
  if (events & EPOLLOUT) {
    Flush(c);
    if (!conns_.count(id)) return;
  }
  if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
  // At most kReadPerWakeup bytes, then back to the loop (epoll is level-triggered: the rest
  // comes at the next turn), so that a peer writing without pause neither holds the loop nor
  // grows what waits to be handled; each read's requests are answered before the next read,
  // and a peer that does not read its answers is not read either.
  constexpr size_t kReadPerWakeup = 64 * 1024;
  char buf[16384];
  size_t taken = 0;
  bool peer_closed = false;
  while (taken < kReadPerWakeup) {
    if (c->out.size() > options_.max_pending_bytes / 2) break;
    const ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {  // the peer closed, or the socket failed
      peer_closed = true;
      break;
    }
    taken += static_cast<size_t>(n);
    if (c->kind == Kind::kPub) continue;  // a subscriber has nothing to say
    std::vector<std::vector<std::string>> msgs;
    absl::Status s = c->decoder.Feed(absl::string_view(buf, static_cast<size_t>(n)), &msgs);
    if (!s.ok()) {
      ++counts_.bad_messages;
      log_->warn("event=pm2_api_closed pid={} reason=\"{}\"", c->peer_pid, s.message());
      Close(c);
      return;
    }
    for (const auto& m : msgs) {
      HandleRequest(c, m);
      auto it = conns_.find(id);
      if (it == conns_.end()) return;  // closed while answering (its peer went away)
      c = it->second.get();
    }
  }
  // Requests that came with the close were handled above; their answers have nowhere to go.
  if (peer_closed) Close(c);
}

void Pm2Daemon::HandleRequest(Conn* c, const std::vector<std::string>& msg) {
  std::string id;
  auto req = ParseRpcRequest(msg, &id);
  if (!req.ok()) {
    ++counts_.bad_messages;
    if (!id.empty()) ReplyError(c->id, id, std::string(req.status().message()));
    return;
  }
  if (req->type == "methods") {
    json methods = json::object();
    for (const auto& m : Served()) methods[m] = {{"name", m}, {"params", json::array()}};
    Reply(c->id, id, {{"methods", methods}});
    return;
  }
  ++counts_.calls;
  Call(c, id, req->method, req->args);
}

void Pm2Daemon::Call(Conn* c, const std::string& id, const std::string& method,
                     const json& args) {
  const uint64_t conn = c->id;
  static const json kNone;
  const json& first = args.empty() ? kNone : args[0];
  if (method == "ping") return Reply(conn, id, Answer({{"msg", "pong"}}));
  if (method == "getVersion") return Reply(conn, id, Answer(options_.version));
  if (method == "getMonitorData") return Reply(conn, id, Answer(ProcessesWithIds()));
  if (method == "reloadLogs") {
    backend_.ReopenLogs();
    return Reply(conn, id, Answer(json::object()));
  }
  if (method == "notifyByProcessId") {
    const std::string unit = UnitOfId(first);
    if (unit.empty()) return ReplyError(conn, id, "process id doesnt exists");
    Publish("process:event",
            {{"event", StrField(first, "action_name")},
             {"manually", first.contains("manually")},
             {"process", {{"name", unit}, {"pm_id", IdOf(unit)}}},
             {"at", absl::ToUnixMillis(absl::Now())}});
    return Reply(conn, id, {{"args", json::array()}});
  }
  static const std::map<std::string, Pm2Backend::Verb> kVerbs = {
      {"startProcessId", Pm2Backend::Verb::kStart},
      {"stopProcessId", Pm2Backend::Verb::kStop},
      {"restartProcessId", Pm2Backend::Verb::kRestart},
      {"deleteProcessId", Pm2Backend::Verb::kDelete}};
  if (auto v = kVerbs.find(method); v != kVerbs.end()) {
    const std::string unit = UnitOfId(first);
    if (unit.empty()) return ReplyError(conn, id, absl::StrCat(first.dump(), " : id unknown"));
    backend_.Act(v->second, unit, [this, conn, id, unit](absl::Status s) {
      if (!s.ok()) return ReplyError(conn, id, std::string(s.message()));
      json procs = ProcessesWithIds();
      for (auto& p : procs) {
        if (StrField(p, "name") == unit) return Reply(conn, id, Answer(p));
      }
      Reply(conn, id, Answer(json::object()));  // deleted
    });
    return;
  }
  ++counts_.unserved_calls;
  const std::string name = Printable(method);
  const std::string why = absl::StrCat(
      "agentd (Herd) does not serve PM2's \"", name, "\" call; it serves ",
      absl::StrJoin(Served(), ", "), ". Use agentctl for the rest.");
  // Logged and noted in the caller's log once per process and call (a module retrying every
  // second would fill both), in a bounded set.
  if (noted_.size() < kMaxNoted && noted_.emplace(c->peer_pid, name).second) {
    log_->warn("event=pm2_call_unserved pid={} method=\"{}\"", c->peer_pid, name);
    backend_.NoteForProcess(c->peer_pid, absl::StrCat("[herd] ", why));
  }
  ReplyError(conn, id, why);
}

json Pm2Daemon::ProcessesWithIds() {
  json procs = backend_.Processes();
  if (!procs.is_array()) return json::array();
  for (auto& p : procs) {
    if (!p.is_object()) continue;
    const int pm_id = IdOf(StrField(p, "name"));
    p["pm_id"] = pm_id;
    if (p.contains("pm2_env") && p["pm2_env"].is_object()) p["pm2_env"]["pm_id"] = pm_id;
  }
  return procs;
}

int Pm2Daemon::IdOf(const std::string& unit) {
  auto [it, added] = ids_.emplace(unit, next_id_);
  if (added) ++next_id_;
  return it->second;
}

std::string Pm2Daemon::UnitOfId(const json& id_or_opts) {
  // PM2 passes an id, or {id: ...} (stopProcessId, restartProcessId), as a number or a
  // numeric string.
  const json& id =
      id_or_opts.is_object() && id_or_opts.contains("id") ? id_or_opts["id"] : id_or_opts;
  int n = -1;
  if (id.is_number_unsigned()) {
    // Not narrowed: 2^32 would be taken for 0.
    if (id.get<uint64_t>() > static_cast<uint64_t>(next_id_)) return "";
    n = static_cast<int>(id.get<uint64_t>());
  } else if (id.is_number_integer()) {
    const int64_t v = id.get<int64_t>();
    if (v < 0 || v > next_id_) return "";
    n = static_cast<int>(v);
  } else if (id.is_string()) {
    const std::string s = id.get<std::string>();
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) {
      return "";
    }
    n = std::stoi(s);
  }
  for (const auto& [unit, pm_id] : ids_) {
    if (pm_id == n) return unit;
  }
  return "";
}

void Pm2Daemon::Reply(uint64_t conn_id, const std::string& id, const json& answer) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;  // the caller went away
  Send(it->second.get(), EncodeAmp({PackJson(answer), id}));
}

void Pm2Daemon::ReplyError(uint64_t conn_id, const std::string& id, const std::string& error) {
  Reply(conn_id, id, {{"error", error}});
}

void Pm2Daemon::Publish(const std::string& topic, const json& data) {
  std::string bytes;
  std::vector<Conn*> subs;
  for (auto& [id, c] : conns_) {
    if (c->kind == Kind::kPub) subs.push_back(c.get());
  }
  if (subs.empty()) return;
  bytes = EncodeAmp({PackString(topic), PackJson(data)});
  for (Conn* c : subs) Send(c, bytes);
}

bool Pm2Daemon::Send(Conn* c, std::string bytes) {
  // Past the bound only once something already waits: one answer larger than the bound (a
  // big getMonitorData) still goes to a peer that reads.
  if (!c->out.empty() && c->out.size() + bytes.size() > options_.max_pending_bytes) {
    if (c->kind == Kind::kPub) ++counts_.dropped_subscribers;
    log_->warn("event=pm2_api_closed pid={} reason=\"{} bytes wait to be read\"", c->peer_pid,
               c->out.size());
    Close(c);
    return false;
  }
  c->out.append(bytes);
  const uint64_t id = c->id;
  Flush(c);
  return conns_.count(id) > 0;
}

void Pm2Daemon::Flush(Conn* c) {
  while (!c->out.empty()) {
    const ssize_t n = send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c->out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    Close(c);  // the peer is gone
    return;
  }
  Watch(c);
}

}  // namespace herd::agent::pm2

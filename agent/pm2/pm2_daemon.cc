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
  explicit Conn(size_t max_message_bytes) : decoder(max_message_bytes) {}
};

Pm2Daemon::Pm2Daemon(EventLoop& loop, Pm2Backend& backend, Pm2DaemonOptions options)
    : loop_(loop), backend_(backend), options_(std::move(options)), log_(herd::Logger("pm2")) {}

Pm2Daemon::~Pm2Daemon() {
  while (!conns_.empty()) Close(conns_.begin()->second.get());
  for (auto [fd, watch] : {std::pair{rpc_fd_, rpc_watch_}, std::pair{pub_fd_, pub_watch_}}) {
    if (watch) loop_.UnwatchFd(watch);
    if (fd >= 0) close(fd);
  }
  if (rpc_fd_ >= 0) unlink(rpc_path().c_str());
  if (pub_fd_ >= 0) unlink(pub_path().c_str());
}

std::string Pm2Daemon::rpc_path() const { return options_.dir + "/rpc.sock"; }
std::string Pm2Daemon::pub_path() const { return options_.dir + "/pub.sock"; }

absl::Status Pm2Daemon::Start() {
  if (mkdir(options_.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("cannot make ", options_.dir, " (PM2_HOME for the "
                                            "units): ", strerror(errno)));
  }
  chmod(options_.dir.c_str(), 0700);
  auto rpc = Listen(rpc_path());
  if (!rpc.ok()) return rpc.status();
  rpc_fd_ = *rpc;
  auto pub = Listen(pub_path());
  if (!pub.ok()) return pub.status();
  pub_fd_ = *pub;
  auto rw = loop_.WatchFd(rpc_fd_, EPOLLIN, [this](uint32_t) { Accept(rpc_fd_, Kind::kRpc); });
  if (!rw.ok()) return rw.status();
  rpc_watch_ = *rw;
  auto pw = loop_.WatchFd(pub_fd_, EPOLLIN, [this](uint32_t) { Accept(pub_fd_, Kind::kPub); });
  if (!pw.ok()) return pw.status();
  pub_watch_ = *pw;
  log_->info("event=pm2_api_listening dir={}", options_.dir);
  return absl::OkStatus();
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
    if (fd < 0) return;  // EAGAIN, or a connection gone before it was taken
    ucred cred{};
    socklen_t len = sizeof(cred);
    const bool same_user = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
                           (cred.uid == geteuid() || cred.uid == 0);
    if (!same_user || conns_.size() >= options_.max_connections) {
      ++counts_.refused_connections;
      log_->warn("event=pm2_api_refused pid={} reason={}", cred.pid,
                 same_user ? "too many connections" : "another user");
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
    Watch(raw, false);
  }
}

void Pm2Daemon::Watch(Conn* c, bool want_write) {
  if (c->watch && c->want_write == want_write) return;
  if (c->watch) loop_.UnwatchFd(c->watch);
  c->want_write = want_write;
  const uint64_t id = c->id;
  auto w = loop_.WatchFd(c->fd, static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP) | (want_write ? static_cast<uint32_t>(EPOLLOUT) : 0u),
                         [this, id](uint32_t events) {
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
  char buf[16384];
  std::vector<std::vector<std::string>> msgs;
  while (true) {
    const ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n > 0) {
      if (c->kind == Kind::kPub) continue;  // a subscriber has nothing to say
      absl::Status s = c->decoder.Feed(absl::string_view(buf, static_cast<size_t>(n)), &msgs);
      if (!s.ok()) {
        ++counts_.bad_messages;
        log_->warn("event=pm2_api_closed pid={} reason=\"{}\"", c->peer_pid, s.message());
        Close(c);
        return;
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    Close(c);  // the peer closed (n == 0) or the socket failed
    c = nullptr;
    break;
  }
  for (const auto& m : msgs) {
    auto it = conns_.find(id);
    // A closed connection's last requests are still answered where possible: not here.
    if (it == conns_.end()) return;
    HandleRequest(it->second.get(), m);
  }
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
  const json first = args.empty() ? json() : args[0];
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
  const std::string why = absl::StrCat(
      "agentd (Herd) does not serve PM2's \"", method, "\" call; it serves ",
      absl::StrJoin(Served(), ", "), ". Use agentctl for the rest.");
  log_->warn("event=pm2_call_unserved pid={} method={}", c->peer_pid, method);
  backend_.NoteForProcess(c->peer_pid, absl::StrCat("[herd] ", why));
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
  json id = id_or_opts.is_object() && id_or_opts.contains("id") ? id_or_opts["id"] : id_or_opts;
  int n = -1;
  if (id.is_number_integer()) {
    n = id.get<int>();
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
  if (c->out.size() + bytes.size() > options_.max_pending_bytes) {
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
  Watch(c, !c->out.empty());
}

}  // namespace herd::agent::pm2

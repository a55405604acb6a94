// Pm2Daemon: PM2's daemon API, served by agentd to the processes it runs (issue 23), so that a
// module built on `require('pm2')` (pm2-logrotate, health checkers, notifiers) talks to agentd
// instead of starting a PM2 daemon of its own. PM2's client (lib/Client.js) finds the daemon
// through $PM2_HOME: agentd sets PM2_HOME for its units to `dir` and answers there on
//   - rpc.sock: pm2-axon's req/rep over AMP (amp.h). A request is [JSON {type: "call",
//     method, args}, id]; the answer is [JSON {args: [...]} or {error, stack}, id], as
//     pm2-axon-rpc's server sends them. Served: ping, getVersion, getMonitorData (every unit as
//     PM2 describes a process), reloadLogs, startProcessId, stopProcessId, restartProcessId,
//     deleteProcessId, notifyByProcessId, and {type: "methods"}. Anything else is answered
//     with an error naming the call and what is served (never a silent fallback), and noted
//     in the calling unit's error log;
//   - pub.sock: pm2-axon's pub-emitter, the bus (PM2's launchBus): [topic, JSON data] to every
//     connected subscriber, who filters by topic. Publish() sends process:event and log lines.
//
// PM2 numbers its processes (pm_id): a unit gets the next number the first time it is seen,
// and keeps it while agentd runs.
//
// Bounds (everything here comes from a module): connections at once, bytes per message (a
// larger one closes its connection), bytes waiting to be sent to one connection (a subscriber
// that does not read is dropped, counted). Only processes of agentd's own user (or root) may
// connect (SO_PEERCRED); the sockets are 0600 in a 0700 directory. Threading: the loop thread
// only (the sockets are watched on the EventLoop, the backend is called there).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/loop/event_loop.h"
#include "agent/pm2/amp.h"
#include "nlohmann/json.hpp"
#include "spdlog/logger.h"

namespace herd::agent::pm2 {

// What the daemon API asks of agentd (on the loop thread).
class Pm2Backend {
 public:
  enum class Verb { kStart, kStop, kRestart, kDelete };
  using Done = std::function<void(absl::Status)>;

  virtual ~Pm2Backend() = default;
  // Every unit as PM2 describes a process (getMonitorData): objects with at least "name",
  // "pid", "monit" and "pm2_env"; the daemon adds "pm_id".
  virtual nlohmann::json Processes() = 0;
  // Reopens every unit's log files (reloadLogs: after a rotation by rename).
  virtual void ReopenLogs() = 0;
  // Starts, stops, restarts or deletes the unit; done once it is (on the loop thread).
  virtual void Act(Verb verb, const std::string& unit, Done done) = 0;
  // A line for the log of the unit whose process (or a descendant's) `pid` is, if any.
  virtual void NoteForProcess(pid_t pid, const std::string& line) = 0;
};

struct Pm2DaemonOptions {
  std::string dir;  // PM2_HOME: rpc.sock and pub.sock are made here
  std::string version = "5.4.3";  // getVersion's answer: the PM2 whose API this follows
  // Called when the bus gets its first subscriber (true) or loses its last (false): what is
  // only sent on the bus (every log line) need not be made while nobody listens.
  std::function<void(bool)> on_listeners;
  size_t max_connections = 64;
  size_t max_message_bytes = 1 << 20;
  size_t max_pending_bytes = 4 << 20;  // waiting to be sent to one connection
};

class Pm2Daemon {
 public:
  struct Counts {
    uint64_t calls = 0;
    uint64_t unserved_calls = 0;
    uint64_t refused_connections = 0;  // past max_connections, or another user
    uint64_t bad_messages = 0;         // not AMP, too large, not a call
    uint64_t dropped_subscribers = 0;  // did not read the bus
  };

  Pm2Daemon(EventLoop& loop, Pm2Backend& backend, Pm2DaemonOptions options);
  // Closes the sockets and every connection.
  ~Pm2Daemon();
  Pm2Daemon(const Pm2Daemon&) = delete;
  Pm2Daemon& operator=(const Pm2Daemon&) = delete;

  // Makes the directory (0700) and binds both sockets, replacing stale ones.
  absl::Status Start();
  // The bus: `data` under `topic` to every subscriber.
  void Publish(const std::string& topic, const nlohmann::json& data);
  // The unit's PM2 number (given on first sight).
  int IdOf(const std::string& unit);

  bool has_listeners() const { return subscribers_ > 0; }
  const Counts& counts() const { return counts_; }
  size_t connections() const { return conns_.size(); }
  std::string rpc_path() const;
  std::string pub_path() const;

 private:
  struct Conn;
  enum class Kind { kRpc, kPub };

  absl::Status Bind();
  absl::StatusOr<int> Listen(const std::string& path);
  absl::Status WatchListening(Kind kind);
  void StopListening();
  void PauseAccepting();
  void Accept(int listen_fd, Kind kind);
  void OnEvents(Conn* c, uint32_t events);
  void HandleRequest(Conn* c, const std::vector<std::string>& msg);
  void Call(Conn* c, const std::string& id, const std::string& method,
            const nlohmann::json& args);
  void Reply(uint64_t conn_id, const std::string& id, const nlohmann::json& answer);
  void ReplyError(uint64_t conn_id, const std::string& id, const std::string& error);
  // Queues bytes for the connection; false (and the connection closed) past the bound.
  bool Send(Conn* c, std::string bytes);
  void Flush(Conn* c);
  void Watch(Conn* c);
  void Close(Conn* c);
  nlohmann::json ProcessesWithIds();
  std::string UnitOfId(const nlohmann::json& id_or_opts);

  EventLoop& loop_;
  Pm2Backend& backend_;
  const Pm2DaemonOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  int rpc_fd_ = -1, pub_fd_ = -1;
  EventLoop::Handle rpc_watch_ = 0, pub_watch_ = 0;
  EventLoop::Handle resume_timer_ = 0;  // accepting paused (out of descriptors)
  uint64_t next_conn_ = 1;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::map<std::string, int> ids_;
  int next_id_ = 0;
  size_t subscribers_ = 0;  // pub.sock connections
  static constexpr size_t kMaxNoted = 256;
  std::set<std::pair<pid_t, std::string>> noted_;  // unserved calls already logged
  Counts counts_;
};

}  // namespace herd::agent::pm2

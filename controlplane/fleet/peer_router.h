// PeerRouter: what makes a Fleet API call on any replica work for the whole fleet (issue 22;
// docs/controlplane.md, "Replicas"). Every replica has every host's record, but only the
// replica holding a host's stream (ReplicaDirectory::HolderOf) has its live state and can
// reach it. So FleetService, for a call that is not itself forwarded (local scope, see
// peer_links.h), asks the router:
//   - listings (ListHosts, ListModules): every peer is asked in parallel, with a deadline,
//     for the hosts it holds (for ListHosts, only its page after the request's key); the
//     answers are merged by host id, the holder's entry winning over the records here. A peer that does not answer is named (unreachable_replicas) and
//     its hosts are listed from the records here;
//   - one host's reads (GetHost, QuerySeries) and its log (StreamLogs): forwarded to the
//     holder; a forwarded log is a stream, cancelled both ways;
//   - WatchMetrics: this replica's feed, merged with a stream from each peer that holds a
//     watched host (every peer, for a fleet-wide watch); a stream that ends (a peer gone, or
//     a host moved) is opened again at the next Refresh;
//   - TriggerAction: the target is resolved here and its hosts grouped by holder: this
//     replica's (and those held by none: the local relay answers them "not connected") run
//     here, each peer's group is forwarded with explicit host ids; one merged response, one
//     audit entry (written here; the parts are not audited again).
// Forwarded Fleet calls carry the user's bearer, so the holder checks the role as usual.
//
// Calls are asynchronous (gRPC's callback API): no gRPC thread waits for a peer. Callbacks
// run on gRPC's threads. Stop (or the destructor) cancels the calls still open and waits for
// their callbacks. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/scheduler.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/fleet/peer_links.h"

namespace herd::controlplane {

struct PeerRouterOptions {
  // How often merged watches open the peer streams they lack, and channels to peers that left
  // are dropped.
  absl::Duration refresh = absl::Seconds(5);
  // Added to an action's own timeout for the forwarded call's deadline.
  absl::Duration action_grace = absl::Seconds(10);
};

class PeerRouter {
 public:
  // Replicas named because they did not answer.
  using Unreachable = std::vector<std::string>;
  // `hosts`, `relay` and `audit` are this replica's own (the hub's); all, and `scheduler`,
  // must outlive the router.
  PeerRouter(PeerLinks& links, HostDirectory& hosts, RequestRelay& relay, AuditLog& audit,
             Scheduler& scheduler, PeerRouterOptions options = {});
  ~PeerRouter();
  PeerRouter(const PeerRouter&) = delete;
  PeerRouter& operator=(const PeerRouter&) = delete;
  // Cancels the calls still open and waits for their callbacks; later calls fail at once.
  void Stop();

  PeerLinks& links() { return links_; }

  // ---- Reads. `local` is this replica's answer; `done` gets the fleet's.
  void ListHosts(const ForwardedCall& call, const herd::v1::ListHostsRequest& req,
                 std::vector<herd::v1::Host> local,
                 std::function<void(std::vector<herd::v1::Host>, Unreachable)> done);
  void ListModules(const ForwardedCall& call, const herd::v1::ListModulesRequest& req,
                   std::vector<herd::v1::ModuleInstance> local,
                   std::function<void(std::vector<herd::v1::ModuleInstance>, Unreachable)> done);
  void GetHost(const ReplicaInfo& holder, const ForwardedCall& call,
               const herd::v1::GetHostRequest& req,
               std::function<void(grpc::Status, herd::v1::HostDetail)> done);
  void QuerySeries(const ReplicaInfo& holder, const ForwardedCall& call,
                   const herd::v1::QuerySeriesRequest& req,
                   std::function<void(grpc::Status, herd::v1::Series)> done);

  // ---- Actions (see the header comment). `actor` was authenticated as an operator.
  void TriggerAction(const ForwardedCall& call, const herd::v1::FleetActionRequest& req,
                     const Actor& actor,
                     std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done);

  // ---- Streams.
  // The log from the host's holder, as RequestRelay::StreamLogs; an id for CancelLogs.
  std::string StreamLogs(const ReplicaInfo& holder, const ForwardedCall& call,
                         const herd::v1::FleetLogsRequest& req,
                         std::function<void(const herd::v1::LogChunk&)> on_lines,
                         std::function<void(absl::Status)> on_end);
  void CancelLogs(const std::string& id);
  // The peers' side of a merged WatchMetrics (the caller watches its own feed): batches of
  // the watched hosts held by peers, to `watcher`. `hosts` is the target resolved here
  // (empty: every host). An id for Unwatch.
  uint64_t WatchPeers(const ForwardedCall& call, const herd::v1::WatchMetricsRequest& req,
                      std::set<std::string> hosts, MetricsFeed::MetricsWatcher watcher);
  void Unwatch(uint64_t id);
  // Streams open to peers for merged watches (for tests and /metrics).
  size_t watch_streams() const;

  // One round of what `refresh` runs: channels of peers that left are dropped, and merged
  // watches open the streams they lack.
  void Refresh();

 private:
  struct Watch;
  class LogsCall;
  class MetricsCall;
  template <typename Entry>
  struct ListGather;
  struct ActionGather;

  // Calls open, for Stop: false once stopping (the call is not made).
  bool Track(const std::shared_ptr<grpc::ClientContext>& ctx);
  void Untrack(grpc::ClientContext* ctx);
  // One unary Fleet call to `peer`; `start` issues it on the stub.
  template <typename Req, typename Resp, typename Start>
  void Unary(const ReplicaInfo& peer, const ForwardedCall& call, absl::Duration timeout,
             const Req& req, Start start, std::function<void(grpc::Status, Resp)> done);
  // Opens the streams `w` lacks.
  void OpenWatchStreams(const std::shared_ptr<Watch>& w);
  // A peer's own part of an action, merged into `g` at `index` (positions in the target).
  void ForwardAction(const ReplicaInfo& peer, const ForwardedCall& call,
                     const herd::v1::FleetActionRequest& req, std::vector<size_t> index,
                     std::shared_ptr<ActionGather> g);
  // Asks every peer for its part of a listing (Ask issues the call), merges the answers into
  // `g` by host id and runs `finish` once all have answered or failed.
  template <typename Entry, typename Req, typename Resp, typename Ask, typename Take>
  void Scatter(const ForwardedCall& call, const Req& req, std::shared_ptr<ListGather<Entry>> g,
               Ask ask, Take take);
  void NoteUnreachable(const ReplicaInfo& peer, const char* what, const grpc::Status& s);

  PeerLinks& links_;
  HostDirectory& hosts_;
  RequestRelay& relay_;
  AuditLog& audit_;
  const PeerRouterOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  httpd::RateLimitedLog limited_log_;

  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Calls open (shared: a cancel runs outside mu_, and gRPC may end the call inside it).
  std::map<grpc::ClientContext*, std::shared_ptr<grpc::ClientContext>> open_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<grpc::ClientContext>> logs_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<Watch>> watches_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  PeriodicTask refresher_;  // last: stopped first
};

}  // namespace herd::controlplane

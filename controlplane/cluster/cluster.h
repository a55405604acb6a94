// What one control-plane replica knows of the others (issue 22: several replicas over one
// etcd; docs/scale.md). Single node (the SQLite store): SingleReplica — no peers, every
// connected host is held here. On etcd: EtcdMembership (membership.h) — each replica holds a
// lease, a key naming itself and its address under it, and a presence key per host whose
// stream it holds (so a dead replica's hosts are released when its lease expires).
//
// Key layout under the etcd prefix (default /herd), so that no two parts collide:
//   <p>/config/...          overrides and the config revision    (EtcdStore)
//   <p>/hosts/<id>          host records                         (EtcdStore)
//   <p>/hosts/<id>/status   a host's status written apart          (EtcdStore)
//   <p>/rollouts/<id>       rollouts                             (EtcdStore)
//   <p>/tokens/..., <p>/audit/..., <p>/settings/<key>             (EtcdStore)
//   <p>/replicas/<replica>  a live replica: its address (leased) (EtcdMembership)
//   <p>/presence/<host>     the replica holding the host (leased)(EtcdMembership)
//   <p>/rollout-owners/<id> the replica running a rollout (leased)(rollout ownership)
//   <p>/cluster/peer-secret authenticates replica-to-replica calls (EtcdMembership)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace herd::controlplane {

struct ReplicaInfo {
  std::string id;
  // host:port of its gRPC server, as peers dial it (--advertise).
  std::string address;
  // When this replica started; 0 for peers (their key holds only the address).
  int64_t started_at_unix_ms = 0;
};

// Thread-safe; answers from memory (kept current by watches), never blocking on etcd.
class ReplicaDirectory {
 public:
  virtual ~ReplicaDirectory() = default;
  virtual const std::string& self_id() const = 0;
  // The live replicas other than this one, by id.
  virtual std::vector<ReplicaInfo> Peers() const = 0;
  // The replica holding the host's stream (this one included); nullopt when none does.
  virtual std::optional<ReplicaInfo> HolderOf(const std::string& host_id) const = 0;
  // Sent by a replica calling another (metadata "x-herd-peer-secret"); "" = no peers.
  virtual std::string peer_secret() const = 0;
  // This replica's etcd lease (0 on a single node, or while it has none).
  virtual int64_t lease_id() const = 0;
};

// The single-node directory: no peers; HolderOf says "here" for every host the caller
// reports connected (no etcd).
class SingleReplica final : public ReplicaDirectory {
 public:
  explicit SingleReplica(std::string self_id = "local") : self_id_(std::move(self_id)) {}
  const std::string& self_id() const override { return self_id_; }
  std::vector<ReplicaInfo> Peers() const override { return {}; }
  std::optional<ReplicaInfo> HolderOf(const std::string&) const override {
    return ReplicaInfo{self_id_, "", 0};
  }
  std::string peer_secret() const override { return ""; }
  int64_t lease_id() const override { return 0; }

 private:
  std::string self_id_;
};

}  // namespace herd::controlplane

// EtcdClient: the control plane's client of etcd v3 (etcd 3.4, Debian's etcd-server), over
// etcd's gRPC API (a wire-compatible subset of etcd's rpc.proto / kv.proto in proto/etcd/:
// field numbers and service names are etcd's public API). What the etcd store
// (controlplane/store/etcd_store.h) and the replicas' coordination (controlplane/cluster/)
// need, and nothing else: KV Range/Put/DeleteRange/Txn, Compact, Lease Grant/Revoke/KeepAlive,
// Watch, and etcd's own authentication (user/password → a token sent with every call,
// renewed when etcd says it is invalid), over TLS or mTLS.
//
// Endpoints: any number, one gRPC channel each (so every member is verified against its own
// name under TLS, and hostnames work). Calls go to the member that answered last and move on
// round the members when one cannot be reached or has no leader, until Options::timeout
// (the deadline over all attempts). Reads and idempotent writes (Put, Delete, LeaseGrant)
// also move on when lost in flight or slow (each attempt gets a third of the deadline); a
// Txn or Compact lost in flight is not repeated — it may have applied, so the caller gets
// UNAVAILABLE and reads again. Every call but a serializable read carries etcd's "hasleader"
// requirement, so a member cut from its cluster answers "no leader" at once.
//
// Errors (absl::Status), so callers and operators can act on them:
//   UNAVAILABLE "the store has no quorum: ..." — etcd answered "no leader" / "request timed
//     out", or no endpoint answered within the timeout. The message names the endpoints.
//   UNAUTHENTICATED / PERMISSION_DENIED — etcd's auth refused the user or the call.
//   FAILED_PRECONDITION "... compacted" — a Range or Watch at a revision etcd compacted.
//   INVALID_ARGUMENT — etcd refused the request (too large: --max-request-bytes, too many
//     operations in one Txn: --max-txn-ops, default 128).
// Nothing throws; the client never crashes on what etcd sends.
//
// Keys are full keys: the client does not add a prefix (callers build keys under theirs).
//
// Threads: every method is thread-safe. Watch callbacks and lease-loss callbacks run on the
// client's own threads (one per Watch / KeptLease), one at a time per Watch / KeptLease, and
// must not block for long nor destroy their own Watch / KeptLease (its destructor joins the
// thread the callback runs on). Watches and KeptLeases share the client's connection, so
// they may outlive the Client.
//
// Implementation: GrpcEtcdClient (grpc_etcd_client.h), over EtcdConnection (members,
// deadlines, auth), EtcdWatch and EtcdLeaseKeeper; docs/controlplane.md "The etcd client".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace herd::etcd {

struct Options {
  // host:port of each member (or of a proxy / load balancer).
  std::vector<std::string> endpoints;
  // TLS: the CA that signed etcd's certificates (enables TLS); a client certificate and key
  // for etcd's --client-cert-auth.
  std::string ca_file, cert_file, key_file;
  // etcd's auth (etcdctl user add / auth enable); empty = auth off.
  std::string user, password;
  // Deadline of every unary call.
  absl::Duration timeout = absl::Seconds(5);
  // TLS with the system's roots when no ca_file is given ("etcds://"); a ca_file, cert_file
  // or key_file turns TLS on too.
  bool tls = false;
  // Bounds etcd enforces (its --max-request-bytes and --max-txn-ops defaults): a request
  // over them is refused here with INVALID_ARGUMENT naming the key, before it is sent.
  int64_t max_request_bytes = 1536 * 1024;
  int max_txn_ops = 128;
};

// Parses "etcd://HOST:PORT[,HOST:PORT...]" (also "etcds://" = TLS required) into endpoints.
// INVALID_ARGUMENT with the reason and an example otherwise.
absl::StatusOr<Options> ParseEtcdUrl(const std::string& url);

// The smallest key greater than every key starting with `prefix` (etcd's range_end for a
// prefix): "/herd/hosts/" → "/herd/hosts0".
std::string PrefixEnd(const std::string& prefix);

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct RangeOptions {
  // Empty: the key alone; PrefixEnd(key): every key with that prefix.
  std::string range_end;
  int64_t limit = 0;  // 0 = no limit
  enum class Sort { kNone, kKeyAscend, kKeyDescend };
  Sort sort = Sort::kNone;
  bool keys_only = false;
  bool count_only = false;
  // Read at this store revision (0 = latest).
  int64_t revision = 0;
  // Serializable (served by any member, possibly stale, works without quorum) instead of
  // linearizable.
  bool serializable = false;
};

struct RangeResult {
  std::vector<KeyValue> kvs;
  int64_t count = 0;     // keys in the range (all of them, not only those returned)
  bool more = false;     // limit cut the answer
  int64_t revision = 0;  // the store's revision when it was read
};

// A Txn's guard (etcd's Compare).
struct Compare {
  enum class Target { kVersion, kCreateRevision, kModRevision, kValue, kLease };
  enum class Result { kEqual, kGreater, kLess, kNotEqual };
  std::string key;
  std::string range_end;  // optional: compare every key in [key, range_end)
  Target target = Target::kVersion;
  Result result = Result::kEqual;
  int64_t number = 0;     // version / revisions / lease
  std::string value;      // kValue

  // Shorthands: the key does not exist; its value is `v`; its mod revision is `rev`.
  static Compare Absent(std::string key) {
    Compare c;
    c.key = std::move(key);
    c.target = Target::kCreateRevision;
    c.number = 0;
    return c;
  }
  static Compare ValueIs(std::string key, std::string v) {
    Compare c;
    c.key = std::move(key);
    c.target = Target::kValue;
    c.value = std::move(v);
    return c;
  }
  static Compare ModRevisionIs(std::string key, int64_t rev) {
    Compare c;
    c.key = std::move(key);
    c.target = Target::kModRevision;
    c.number = rev;
    return c;
  }
};

// One operation of a Txn branch.
struct Op {
  enum class Kind { kPut, kDelete, kRange };
  Kind kind = Kind::kPut;
  std::string key;
  std::string range_end;  // kDelete / kRange over a range
  std::string value;      // kPut
  int64_t lease = 0;      // kPut: attach to this lease (0 = none)
  RangeOptions range;     // kRange (its range_end is used only when the Op's is empty)

  static Op Put(std::string key, std::string value, int64_t lease = 0) {
    Op op;
    op.kind = Kind::kPut;
    op.key = std::move(key);
    op.value = std::move(value);
    op.lease = lease;
    return op;
  }
  static Op Delete(std::string key, std::string range_end = "") {
    Op op;
    op.kind = Kind::kDelete;
    op.key = std::move(key);
    op.range_end = std::move(range_end);
    return op;
  }
  static Op Get(std::string key, std::string range_end = "") {
    Op op;
    op.kind = Kind::kRange;
    op.key = std::move(key);
    op.range_end = std::move(range_end);
    return op;
  }
};

struct TxnResult {
  bool succeeded = false;  // the compares held: the success branch ran
  int64_t revision = 0;    // the store's revision after the Txn
  // One per kRange op of the branch that ran, in order.
  std::vector<RangeResult> ranges;
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: key and mod_revision only
};

// What a watch delivers: the events of one or more store revisions, in order. `compacted`:
// the revisions from the watch's start were compacted away, events were lost: the caller must
// read the range again (its RangeResult::revision + 1 is where to watch from) — the watch is
// ended then. `error`: the watch ended for another reason (cancelled by etcd, auth).
struct WatchBatch {
  std::vector<WatchEvent> events;
  int64_t revision = 0;  // the store's revision of the last event (or of a progress notice)
  bool compacted = false;
  absl::Status error;
};

// A running watch; destroying it cancels it and waits until no callback runs.
class Watch {
 public:
  virtual ~Watch() = default;
};

// A lease kept alive in the background (KeepAlive every ttl/3). If etcd says it is gone
// (expired while etcd could not be reached long enough, or revoked), `on_lost` runs and a new
// lease is granted and reported through `on_new` once etcd answers again, so the owner puts
// its keys again under the new id. Destroying it revokes the lease (best effort, bounded by
// the timeout) and waits until no callback runs.
class KeptLease {
 public:
  virtual ~KeptLease() = default;
  // The current lease id (0 while none is held).
  virtual int64_t id() const = 0;
};

class Client {
 public:
  // Dials the endpoints (lazily) and, with a user, authenticates. Bad options (no endpoint,
  // unreadable TLS files) are INVALID_ARGUMENT; an unreachable etcd is not an error here.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const Options& options);
  virtual ~Client() = default;

  virtual absl::StatusOr<RangeResult> Range(const std::string& key,
                                            const RangeOptions& options = {}) = 0;
  // The key's value, or nullopt if absent.
  virtual absl::StatusOr<std::optional<KeyValue>> Get(const std::string& key) = 0;
  // The store revision after the put.
  virtual absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                                      int64_t lease = 0) = 0;
  // Keys deleted.
  virtual absl::StatusOr<int64_t> Delete(const std::string& key,
                                         const std::string& range_end = "") = 0;
  virtual absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& compares,
                                        const std::vector<Op>& success,
                                        const std::vector<Op>& failure = {}) = 0;
  // Compacts the key-value history up to `revision` (physical: waits for it).
  virtual absl::Status Compact(int64_t revision) = 0;

  virtual absl::StatusOr<int64_t> LeaseGrant(absl::Duration ttl) = 0;
  virtual absl::Status LeaseRevoke(int64_t lease) = 0;
  // Grants a lease and keeps it alive until the KeptLease is destroyed (see KeptLease).
  virtual absl::StatusOr<std::unique_ptr<KeptLease>> KeepLease(
      absl::Duration ttl, std::function<void()> on_lost,
      std::function<void(int64_t lease)> on_new) = 0;

  // Watches [key, range_end) from `start_revision` (0 = from now). Reconnects by itself
  // (resuming after the last revision delivered) while etcd is unreachable; `on_batch`
  // runs for every batch, in revision order, on the client's thread.
  virtual absl::StatusOr<std::unique_ptr<Watch>> WatchRange(
      const std::string& key, const std::string& range_end, int64_t start_revision,
      std::function<void(const WatchBatch&)> on_batch) = 0;

  // The endpoints, for messages ("127.0.0.1:2379,127.0.0.1:22379").
  virtual std::string EndpointsText() const = 0;
  // Requests refused before they were sent (over a bound above): for metrics.
  virtual int64_t RefusedRequests() const { return 0; }
};

}  // namespace herd::etcd

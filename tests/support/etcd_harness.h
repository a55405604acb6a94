// EtcdHarness: a real etcd (Debian's /usr/bin/etcd 3.4) for tests: one member or a cluster of
// several, on loopback with free ports, its data in a temporary directory; members can be
// killed and restarted (quorum loss and recovery); the destructor stops every member and
// removes the directory. Plain HTTP by default; with Options::tls_dir (a PKI made by
// MakeTestPki) the client URLs are HTTPS with client certificates required.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace herd::testing {

class EtcdHarness {
 public:
  struct Options {
    int members = 1;
    // A directory holding ca.pem, server.pem/.key (MakeTestPki): TLS + client-cert auth.
    std::string tls_dir;
    // Passed to every member (e.g. "--auto-compaction-retention=1").
    std::vector<std::string> extra_args;
  };
  // Options for an n-member cluster, the rest default.
  static Options Cluster(int n) {
    Options o;
    o.members = n;
    return o;
  }
  EtcdHarness() : EtcdHarness(Options{}) {}
  explicit EtcdHarness(Options options);
  ~EtcdHarness();
  EtcdHarness(const EtcdHarness&) = delete;
  EtcdHarness& operator=(const EtcdHarness&) = delete;

  // Starts every member and waits until the cluster is healthy (has a leader). False with
  // error() when it did not come up (its log is printed).
  bool Start(absl::Duration timeout = absl::Seconds(30));
  const std::string& error() const { return error_; }

  int members() const { return static_cast<int>(members_.size()); }
  // host:port of member i's client URL.
  std::string Endpoint(int i) const;
  // Every member's endpoint, comma-separated ("127.0.0.1:23791,127.0.0.1:23793").
  std::string Endpoints() const;
  // "etcd://" + Endpoints() (or "etcds://" with TLS): what controlplane --store takes.
  std::string Url() const;
  std::vector<std::string> EndpointList() const;

  // SIGKILL of member i (its data stays); RestartMember brings it back with the same data.
  void KillMember(int i);
  bool RestartMember(int i, absl::Duration timeout = absl::Seconds(30));
  bool MemberRunning(int i) const;
  pid_t MemberPid(int i) const;
  // True when member i answers /health with a leader (the cluster has quorum).
  bool Healthy(int i) const;

  // Runs etcdctl against the cluster (with the TLS files when TLS is on); its exit code
  // and output.
  int Etcdctl(const std::vector<std::string>& args, std::string* out = nullptr) const;

  const std::string& dir() const { return dir_; }

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = 0;
  };
  bool Launch(int i, bool initial);
  bool WaitHealthy(absl::Duration timeout);
  std::string Scheme() const { return options_.tls_dir.empty() ? "http" : "https"; }

  Options options_;
  std::string dir_;
  std::vector<Member> members_;
  std::string error_;
};

}  // namespace herd::testing

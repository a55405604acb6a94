// An agent's messages into the control plane: a Hello through Hub::Connect, then
// AgentMessages as the gateway hands them over (Hub::OnMessageBytes, and when it does not take
// them, parsed, Hub::OnMessage), then what the Fleet API and /metrics read from the
// hub. The hub runs over a real SQLite store in a temporary directory, as
// tests/controlplane/hub_test.cc does, with a fake clock and a fake session.
//
// Input: records of [length: 2 bytes, little endian][protobuf bytes]. The first record is the
// Hello (a realistic one if it does not parse), every other one an AgentMessage. The host id
// is one of four, so hosts are replaced rather than piled up across runs. Seeds are
// serialized realistic messages (tests/fuzz/corpus/hub/, see README.md).
#include <stdlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "controlplane/http/prometheus.h"
#include "controlplane/store/store.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using herd::controlplane::Hub;

class FakeSession : public herd::controlplane::HostSession {
 public:
  bool Send(herd::v1::ControlMessage msg) override {
    HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(msg));  // what the agent must be able to read
    return true;
  }
  void Close(const std::string&) override {}
  std::string Peer() const override { return "127.0.0.1:5000"; }
};

struct World {
  World() {
    char tmpl[] = "/tmp/herd-fuzz-hub-XXXXXX";
    const char* dir = mkdtemp(tmpl);
    HERD_FUZZ_CHECK(dir != nullptr);
    auto s = herd::controlplane::OpenSqliteStore(std::string(dir) + "/herd.db");
    HERD_FUZZ_CHECK(s.ok());
    store = std::move(*s);
    HERD_FUZZ_CHECK(store->PutSetting("join_token_sha256", herd::controlplane::Sha256Hex("jt")).ok());
    herd::controlplane::HubOptions options;
    options.series.points = 8;
    options.series.probe_points = 4;
    options.events_kept = 8;
    hub = std::make_unique<Hub>(*store, clock, options);
    HERD_FUZZ_CHECK(hub->Start().ok());
  }
  // Never destroyed: libFuzzer exits from its own threads' point of view at any time.
  herd::FakeClock clock;
  std::unique_ptr<herd::controlplane::Store> store;
  std::unique_ptr<Hub> hub;
};

World& TheWorld() {
  static World* w = new World();
  return *w;
}

herd::v1::Hello DefaultHello() {
  herd::v1::Hello h;
  h.set_hostname("web-1.example");
  h.set_agent_version("0.1.0");
  h.set_boot_id("boot-1");
  h.set_kernel("6.1.0");
  h.set_arch("x86_64");
  h.set_cpu_count(2);
  (*h.mutable_labels())["env"] = "prod";
  return h;
}

// The next record, or false at the end of the input.
bool NextRecord(const uint8_t*& p, const uint8_t* end, std::string* out) {
  if (end - p < 2) return false;
  size_t n = static_cast<size_t>(p[0]) | (static_cast<size_t>(p[1]) << 8);
  p += 2;
  n = std::min(n, static_cast<size_t>(end - p));
  out->assign(reinterpret_cast<const char*>(p), n);
  p += n;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  std::string record;
  if (!NextRecord(p, end, &record)) return 0;
  herd::v1::Hello hello;
  if (!hello.ParseFromString(record)) hello = DefaultHello();
  const std::string host_id = absl::StrCat("fuzz-", size % 4);
  hello.set_host_id(host_id);
  auto session = std::make_shared<FakeSession>();
  if (!w.hub->Connect("jt", hello, session).ok()) return 0;
  while (NextRecord(p, end, &record)) {
    // As the gateway: the bytes first (metrics taken in place), parsed only when refused.
    if (!w.hub->OnMessageBytes(host_id, session.get(), record)) {
      herd::v1::AgentMessage msg;
      if (!msg.ParseFromString(record)) continue;
      if (msg.has_hello()) continue;  // the gateway refuses a second Hello
      w.hub->OnMessage(host_id, session.get(), msg);
    }
    w.clock.Advance(absl::Seconds(1));
  }
  // What the Fleet API, the dashboard and /metrics read back.
  herd::v1::Target all;
  all.set_all(true);
  auto hosts = w.hub->ListHosts(all);
  HERD_FUZZ_CHECK(hosts.ok());
  for (const auto& h : *hosts) HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(h));
  auto detail = w.hub->GetHost(host_id);
  HERD_FUZZ_CHECK(detail.ok());
  HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(*detail));
  auto modules = w.hub->ListModules(all, "");
  if (modules.ok()) {
    for (const auto& m : *modules) HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(m));
  }
  for (const char* metric : {"cpu", "memory_available", "load1"}) {
    herd::v1::QuerySeriesRequest q;
    q.set_host_id(host_id);
    q.set_metric(metric);
    (void)w.hub->QuerySeries(q);
  }
  (void)herd::controlplane::RenderPrometheus(w.hub->Snapshot(), {}, w.clock.Now());
  w.hub->OnDisconnect(host_id, session.get());
  return 0;
}

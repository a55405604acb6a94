// A ListHosts page token as a client sends it (controlplane/fleet/host_pages.h): any bytes
// are refused or read as a key, never thrown; a key read back makes the same token, and a
// page cut after it holds only hosts after it, in order.
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "controlplane/fleet/host_pages.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string token(reinterpret_cast<const char*>(data), size);
  auto key = herd::controlplane::ParsePageToken(token);
  if (!key.ok() || !key->has_value()) return 0;
  herd::v1::Host at;
  at.set_hostname((*key)->hostname);
  at.set_host_id((*key)->host_id);
  auto again = herd::controlplane::ParsePageToken(herd::controlplane::PageTokenAfter(at));
  HERD_FUZZ_CHECK(again.ok() && again->has_value() && (*again)->hostname == (*key)->hostname &&
                  (*again)->host_id == (*key)->host_id);
  // Hosts around the key: the page after it starts past it.
  std::vector<herd::v1::Host> hosts;
  for (const std::string& suffix : {"", "a", "\xff"}) {
    herd::v1::Host h = at;
    h.set_host_id(at.host_id() + suffix);
    hosts.push_back(h);
  }
  herd::v1::ListHostsRequest req;
  req.set_page_size(2);
  herd::v1::ListHostsResponse resp;
  herd::controlplane::PageHosts(req, *key, hosts, &resp);
  HERD_FUZZ_CHECK(resp.total_size() == 3 && resp.hosts_size() == 2);
  for (const auto& h : resp.hosts()) HERD_FUZZ_CHECK(h.host_id() != at.host_id());
  return 0;
}

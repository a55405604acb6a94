// What a replica reads from etcd and from its flags, where any process with etcd access (or a
// newer Herd) could have written anything: a key under <p>/hosts/ (ParseHostKey), a host
// record and a host status value (DecodeHostRecord / DecodeHostStatus), and --store's URL
// (ParseEtcdUrl). The first byte picks the parser; the rest is split at the first NUL into key
// and value. Nothing may throw or crash; what decodes must encode and decode again to itself.
#include <cstddef>
#include <cstdint>
#include <string>

#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/etcd_layout.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herd::controlplane;
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nul = rest.find('\0');
  const std::string key = rest.substr(0, nul);
  const std::string value = nul == std::string::npos ? "" : rest.substr(nul + 1);
  const EtcdKeys keys("/herd");
  switch (data[0] % 4) {
    case 0: {
      auto hk = ParseHostKey(keys, "/herd/hosts/" + key);
      if (hk) HERD_FUZZ_CHECK(!hk->host_id.empty());
      break;
    }
    case 1: {
      auto h = DecodeHostRecord(key, value);
      if (!h.ok()) break;
      auto again = DecodeHostRecord(key, EncodeHostRecord(*h));
      HERD_FUZZ_CHECK(again.ok() && *again == *h);
      break;
    }
    case 2: {
      auto st = DecodeHostStatus(key, "h1", value);
      if (!st.ok()) break;
      auto again = DecodeHostStatus(key, "h1", EncodeHostStatus(*st));
      HERD_FUZZ_CHECK(again.ok() && again->acked_config_version == st->acked_config_version &&
                      again->last_seen_unix_ms == st->last_seen_unix_ms);
      break;
    }
    default: {
      auto o = herd::etcd::ParseEtcdUrl(rest);
      if (o.ok()) HERD_FUZZ_CHECK(!o->endpoints.empty());
      break;
    }
  }
  return 0;
}

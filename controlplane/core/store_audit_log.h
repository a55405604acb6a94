// StoreAuditLog: the AuditLog (fleet_interfaces.h) kept in the Store, with the clock's wall
// time on each entry. A failed append is logged, not returned: who changed what must not
// stop the change itself. Thread-safe (the store is); no lock of its own.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/logging.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

class StoreAuditLog final : public AuditLog {
 public:
  StoreAuditLog(Store& store, const Clock& clock)
      : store_(store), clock_(clock), log_(herd::Logger("hub")) {}

  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) const override {
    return store_.ListAudit(limit);
  }
  void Audit(const std::string& actor, const std::string& action,
             const std::string& detail_json) override {
    herd::v1::AuditEntry e;
    e.set_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
    e.set_actor(actor);
    e.set_action(action);
    e.set_detail_json(detail_json);
    if (auto s = store_.AppendAudit(e); !s.ok()) {
      log_->error("event=audit_not_saved action={} error=\"{}\"", action, s.message());
    }
  }

 private:
  Store& store_;
  const Clock& clock_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace herd::controlplane

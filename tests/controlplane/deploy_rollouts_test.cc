// DeployMover on fakes: what it pins, the health gate it applies to what hosts report, and
// what it does to the declaration when a rollout ends (new version, or the failed hosts
// moved back). The engine's batching is RolloutsTest's; here the mover is driven alone.
#include "controlplane/fleet/deploy_rollouts.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <optional>

#include "common/clock.h"
#include "tests/fakes/fake_scheduler.h"

namespace herd::controlplane {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// GetHost only: what each host's agent reported (its deployments and units).
class GateHosts final : public HostDirectory {
 public:
  std::map<std::string, herd::v1::HostDetail> hosts;
  void Report(const std::string& id, const std::string& state, const std::string& version,
              herd::v1::UnitState unit, uint32_t restarts, const std::string& error = "") {
    herd::v1::HostDetail& d = hosts[id];
    d.Clear();
    d.mutable_host()->set_host_id(id);
    d.mutable_host()->set_online(true);
    auto* dep = d.add_deployments();
    dep->set_name("m");
    dep->set_state(state);
    dep->set_desired_version("2.0.0");
    dep->set_error(error);
    auto* u = d.add_units();
    u->set_name("m");
    u->set_is_module(true);
    u->set_version(version);
    u->set_state(unit);
    u->set_restarts(restarts);
  }
  absl::StatusOr<std::vector<std::string>> ResolveTarget(const herd::v1::Target&) const override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<std::vector<herd::v1::Host>> ListHosts(const herd::v1::Target&) const override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<herd::v1::HostDetail> GetHost(const std::string& id) const override {
    auto it = hosts.find(id);
    if (it == hosts.end()) return absl::NotFoundError("unknown host " + id);
    return it->second;
  }
  absl::StatusOr<std::vector<herd::v1::ModuleInstance>> ListModules(
      const herd::v1::Target&, const std::string&) const override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> HostsWithModule(
      const herd::v1::Target&, const std::string&) const override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<herd::v1::Series> QuerySeries(const herd::v1::QuerySeriesRequest&) const override {
    return absl::UnimplementedError("");
  }
};

// One declaration, as stored, and every rewrite of it.
class OneDeclaration final : public ConfigService {
 public:
  Declared d;
  std::vector<std::string> actions;
  absl::StatusOr<herd::v1::FleetConfig> GetConfig(const std::string&,
                                                  const std::string&) const override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<herd::v1::FleetConfigChange> SetConfig(const herd::v1::FleetSetConfigRequest&,
                                                        const Actor&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<herd::v1::FleetConfigChange> UnsetConfig(
      const herd::v1::FleetUnsetConfigRequest&, const Actor&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<Declared> GetDeclaration(const herd::v1::Scope&, const std::string&) override {
    return d;
  }
  absl::StatusOr<herd::v1::DeployResponse> PutDeclaration(const std::string&, const Declared& nd,
                                                          const Actor&, const std::string& action,
                                                          const std::string&) override {
    d = nd;
    actions.push_back(action);
    return herd::v1::DeployResponse();
  }
};

class DeployMoverTest : public ::testing::Test {
 protected:
  DeployMoverTest() : sched_(clock_), mover_(hosts_, config_, sched_, absl::Milliseconds(500)) {
    config_.d.scope.set_global(true);
    config_.d.base.set_source("sha256:" + std::string(64, '1'));
    config_.d.base.set_version("1.0.0");
    r_.set_id("ro-1");
    r_.set_module("m");
    r_.set_wait_healthy_ms(2000);
    r_.set_created_by("ops");
    auto* dep = r_.mutable_deploy();
    dep->mutable_scope()->set_global(true);
    dep->set_from_source("sha256:" + std::string(64, '1'));
    dep->set_from_version("1.0.0");
    dep->set_to_source("sha256:" + std::string(64, '2'));
    dep->set_to_version("2.0.0");
    dep->set_host_timeout_ms(60000);
  }
  void Move(std::vector<std::string> hosts) {
    mover_.Move(r_, hosts, [this](size_t i, absl::StatusOr<herd::v1::RestartResult> res) {
      answers_[i] = res.ok() ? (res->units(0).ok() ? "ok" : res->units(0).error())
                             : std::string(res.status().message());
    });
  }

  FakeClock clock_;
  testing::FakeScheduler sched_;
  GateHosts hosts_;
  OneDeclaration config_;
  DeployMover mover_;
  herd::v1::Rollout r_;
  std::map<size_t, std::string> answers_;
};

TEST_F(DeployMoverTest, AHostPassesOnceOnlineAtTheNewVersionForTheWholeWait) {
  hosts_.Report("a", "converged", "1.0.0", herd::v1::UNIT_STATE_ONLINE, 0);
  Move({"a"});
  EXPECT_EQ(config_.d.pins.rollout_id, "ro-1");
  EXPECT_THAT(config_.d.pins.hosts, ElementsAre("a"));
  EXPECT_EQ(config_.d.pins.to.version(), "2.0.0");
  EXPECT_THAT(config_.actions, ElementsAre("rollout.deploy.batch"));
  sched_.Advance(absl::Seconds(5));
  EXPECT_TRUE(answers_.empty()) << "still at the old version";
  hosts_.Report("a", "converged", "2.0.0", herd::v1::UNIT_STATE_ONLINE, 4);
  sched_.Advance(absl::Milliseconds(1500));
  EXPECT_TRUE(answers_.empty()) << "online, not yet for 2 s";
  sched_.Advance(absl::Seconds(1));
  EXPECT_EQ(answers_[0], "ok");
  EXPECT_EQ(mover_.waiting(), 0u);
}

TEST_F(DeployMoverTest, ARestartAFailedInstallOrTheTimeoutFailsTheGate) {
  hosts_.Report("a", "converged", "2.0.0", herd::v1::UNIT_STATE_ONLINE, 0);
  hosts_.Report("b", "installing", "1.0.0", herd::v1::UNIT_STATE_ONLINE, 0);
  hosts_.Report("c", "pending", "1.0.0", herd::v1::UNIT_STATE_ONLINE, 0);
  Move({"a", "b", "c"});
  sched_.Advance(absl::Milliseconds(600));
  hosts_.Report("a", "converged", "2.0.0", herd::v1::UNIT_STATE_ONLINE, 1);  // crashed once
  hosts_.Report("b", "failed", "1.0.0", herd::v1::UNIT_STATE_ONLINE, 0, "npm: E404");
  sched_.Advance(absl::Milliseconds(600));
  EXPECT_THAT(answers_[0], HasSubstr("restarted within its health gate"));
  EXPECT_THAT(answers_[1], HasSubstr("npm: E404"));
  EXPECT_FALSE(answers_.count(2));
  sched_.Advance(absl::Seconds(60));
  EXPECT_THAT(answers_[2], HasSubstr("in time (last: pending)"));
}

TEST_F(DeployMoverTest, SuccessWritesTheNewVersionAndFailureMovesTheFailedHostsBack) {
  Move({"a", "b"});
  r_.add_hosts()->set_host_id("a");
  r_.mutable_hosts(0)->set_state(herd::v1::ROLLOUT_HOST_STATE_DONE);
  r_.add_hosts()->set_host_id("b");
  r_.mutable_hosts(1)->set_state(herd::v1::ROLLOUT_HOST_STATE_FAILED);
  herd::v1::Rollout failed = r_;
  failed.set_state(herd::v1::ROLLOUT_STATE_FAILED);
  mover_.Finished(failed);
  EXPECT_THAT(failed.deploy().rolled_back(), ElementsAre("b"));
  EXPECT_THAT(config_.d.pins.hosts, ElementsAre("a")) << "a passed: it stays at 2.0.0";
  EXPECT_EQ(config_.d.base.version(), "1.0.0");
  EXPECT_EQ(config_.actions.back(), "module.rollback");
  EXPECT_EQ(mover_.waiting(), 0u) << "its hosts are no longer watched";

  // Another rollout of the same declaration, this one succeeding.
  r_.set_id("ro-2");
  config_.d.pins = DeployPins{};
  Move({"a", "b"});
  herd::v1::Rollout ok = r_;
  ok.set_state(herd::v1::ROLLOUT_STATE_SUCCEEDED);
  mover_.Finished(ok);
  EXPECT_EQ(config_.d.base.version(), "2.0.0");
  EXPECT_EQ(config_.d.base.source(), "sha256:" + std::string(64, '2'));
  EXPECT_TRUE(config_.d.pins.rollout_id.empty());
  EXPECT_EQ(config_.actions.back(), "module.deploy");
}

TEST_F(DeployMoverTest, NoRollbackLeavesTheFailedHostsAndAChangedDeclarationIsLeftAlone) {
  r_.mutable_deploy()->set_no_rollback(true);
  Move({"a"});
  r_.add_hosts()->set_host_id("a");
  r_.mutable_hosts(0)->set_state(herd::v1::ROLLOUT_HOST_STATE_FAILED);
  r_.set_state(herd::v1::ROLLOUT_STATE_FAILED);
  mover_.Finished(r_);
  EXPECT_THAT(config_.d.pins.hosts, ElementsAre("a"));
  EXPECT_TRUE(r_.deploy().rolled_back().empty());
  // Deployed again meanwhile (all at once, another version): neither moved nor rewritten.
  config_.d.base.set_version("1.5.0");
  const size_t writes = config_.actions.size();
  Move({"b"});
  EXPECT_THAT(answers_[0], HasSubstr("changed meanwhile (it now wants 1.5.0)"));
  EXPECT_EQ(config_.actions.size(), writes);
}

// Pins a rollout left that no longer runs (its control plane restarted mid-way) give way.
TEST_F(DeployMoverTest, PinsOfARolloutThatNoLongerRunsAreReplaced) {
  config_.d.pins.rollout_id = "ro-old";
  config_.d.pins.to.set_version("9.9.9");
  config_.d.pins.hosts = {"a", "z"};
  Move({"b"});
  EXPECT_EQ(config_.d.pins.rollout_id, "ro-1");
  EXPECT_EQ(config_.d.pins.to.version(), "2.0.0");
  EXPECT_THAT(config_.d.pins.hosts, ElementsAre("b"));
  EXPECT_TRUE(answers_.empty()) << "b is watched, not failed";
}

}  // namespace
}  // namespace herd::controlplane

#include "agent/modules/pending_actions.h"

#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_scheduler.h"

namespace herd::agent {
namespace {

using ::herd::testing::FakeScheduler;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;
using Result = absl::StatusOr<herd::v1::TriggerActionResponse>;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

class PendingActionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Declare({{"action_name", "flush"}});
    Declare({{"action_name", "reset"}});
    Declare({{"action_name", "tail"}, {"action_type", "scoped"}});
  }
  void Declare(const json& data) {
    channel_.HandleLine(json{{"type", "axm:action"}, {"data", data}}.dump(), kT0);
  }
  herd::v1::TriggerActionRequest Req(const std::string& action, uint32_t timeout_ms = 0) {
    herd::v1::TriggerActionRequest r;
    r.set_module("cache");
    r.set_action(action);
    r.set_timeout_ms(timeout_ms);
    return r;
  }
  // Triggers `action`; its result lands in `*out`.
  void Trigger(const std::string& action, std::optional<Result>* out, uint32_t timeout_ms = 0) {
    actions_.Trigger(Req(action, timeout_ms), channel_, send_,
                     [out](Result r) { *out = std::move(r); });
  }

  FakeClock clock_;
  FakeScheduler scheduler_{clock_};
  ModuleChannelState channel_;
  std::vector<std::string> sent_;
  bool writable_ = true;
  PendingActions::Send send_ = [this](const std::string& line) {
    if (writable_) sent_.push_back(line);
    return writable_;
  };
  PendingActions actions_{scheduler_, "cache", absl::Seconds(30)};
};

TEST_F(PendingActionsTest, AReplyCompletesItsActionWithTheElapsedTime) {
  std::optional<Result> flush;
  Trigger("flush", &flush);
  ASSERT_EQ(sent_.size(), 1u);
  json msg = json::parse(sent_[0]);
  EXPECT_EQ(msg["msg"], "flush");
  EXPECT_EQ(msg["action_name"], "flush");
  EXPECT_FALSE(msg.contains("uuid"));
  scheduler_.Advance(absl::Milliseconds(250));
  EXPECT_FALSE(flush.has_value());
  actions_.OnReply("flush", json{{"flushed", 12}});
  ASSERT_TRUE(flush.has_value() && flush->ok()) << (flush ? flush->status() : absl::OkStatus());
  EXPECT_EQ((*flush)->reply_json(), R"({"flushed":12})");
  EXPECT_EQ((*flush)->elapsed_ms(), 250u);
  EXPECT_EQ(actions_.size(), 0u);
  EXPECT_EQ(scheduler_.pending(), 0u);  // its timeout is cancelled
}

TEST_F(PendingActionsTest, AnActionWithoutReplyTimesOutOnTheScheduler) {
  std::optional<Result> flush;
  Trigger("flush", &flush, 2000);
  scheduler_.Advance(absl::Milliseconds(1999));
  EXPECT_FALSE(flush.has_value());
  scheduler_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(flush.has_value());
  EXPECT_EQ(flush->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(flush->status().message(), "cache did not reply to flush within 2s");
  // A late reply is dropped, and the action can be triggered again.
  actions_.OnReply("flush", json(1));
  std::optional<Result> again;
  Trigger("flush", &again);
  EXPECT_FALSE(again.has_value());
  EXPECT_EQ(actions_.size(), 1u);
}

TEST_F(PendingActionsTest, TheDefaultTimeoutAppliesWhenNoneIsAsked) {
  std::optional<Result> flush;
  Trigger("flush", &flush);
  scheduler_.Advance(absl::Seconds(29));
  EXPECT_FALSE(flush.has_value());
  scheduler_.Advance(absl::Seconds(1));
  ASSERT_TRUE(flush.has_value());
  EXPECT_EQ(flush->status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(PendingActionsTest, OneTriggerPerActionIsInFlight) {
  std::optional<Result> first, second, other;
  Trigger("flush", &first);
  Trigger("flush", &second);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second->status().message()),
              HasSubstr("flush is already running on cache"));
  EXPECT_EQ(sent_.size(), 1u);  // the second never reached the module
  Trigger("reset", &other);     // another action may run beside it
  EXPECT_EQ(sent_.size(), 2u);
  EXPECT_FALSE(first.has_value());
  EXPECT_FALSE(other.has_value());
}

TEST_F(PendingActionsTest, RepliesAreRoutedByActionName) {
  std::optional<Result> flush, reset;
  Trigger("flush", &flush);
  Trigger("reset", &reset);
  actions_.OnReply("reset", json("done"));
  EXPECT_FALSE(flush.has_value());
  ASSERT_TRUE(reset.has_value() && reset->ok());
  EXPECT_EQ((*reset)->reply_json(), R"("done")");
  actions_.OnReply("unknown", json(1));  // unsolicited: dropped
  actions_.OnReply("flush", json(2));
  ASSERT_TRUE(flush.has_value() && flush->ok());
  EXPECT_EQ((*flush)->reply_json(), "2");
}

TEST_F(PendingActionsTest, AScopedActionCollectsItsStreamUntilTheEndOfItsUuid) {
  std::optional<Result> tail;
  Trigger("tail", &tail);
  ASSERT_EQ(sent_.size(), 1u);
  const std::string uuid = json::parse(sent_[0])["uuid"];
  EXPECT_EQ(uuid.size(), 32u);
  actions_.OnScoped("tail", uuid, "stream", json("line 1"));
  actions_.OnScoped("tail", "another-uuid", "stream", json("not ours"));
  actions_.OnScoped("tail", uuid, "error", json("disk slow"));
  actions_.OnScoped("tail", "another-uuid", "end", json("not ours"));
  EXPECT_FALSE(tail.has_value());
  actions_.OnScoped("tail", uuid, "end", json{{"lines", 1}});
  ASSERT_TRUE(tail.has_value() && tail->ok());
  EXPECT_THAT((*tail)->stream(), ElementsAre("line 1", "error: disk slow"));
  EXPECT_EQ((*tail)->reply_json(), R"({"lines":1})");
}

TEST_F(PendingActionsTest, UndeclaredActionsAndUnwritableChannelsAreRefused) {
  std::optional<Result> nope, stuck;
  Trigger("nope", &nope);
  ASSERT_TRUE(nope.has_value());
  EXPECT_EQ(nope->status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(nope->status().message(),
            "cache has no action \"nope\" (its actions: flush, reset, tail)");
  writable_ = false;
  Trigger("flush", &stuck);
  ASSERT_TRUE(stuck.has_value());
  EXPECT_EQ(stuck->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(actions_.size(), 0u);
  EXPECT_EQ(scheduler_.pending(), 0u);
}

TEST_F(PendingActionsTest, AClosedChannelFailsEveryPendingAction) {
  std::optional<Result> flush, reset;
  Trigger("flush", &flush);
  Trigger("reset", &reset);
  actions_.FailAll("module exited");
  ASSERT_TRUE(flush.has_value() && reset.has_value());
  EXPECT_EQ(flush->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(flush->status().message(),
            "cache's channel closed before it replied (module exited)");
  EXPECT_EQ(reset->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(scheduler_.pending(), 0u);
}

}  // namespace
}  // namespace herd::agent

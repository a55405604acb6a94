// HERD_RETURN_IF_ERROR and HERD_ASSIGN_OR_RETURN: the status passes through unchanged, the
// value is moved out, and what follows a failure does not run.
#include "common/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace herd {
namespace {

absl::Status Fails() { return absl::NotFoundError("no such host h1"); }
absl::StatusOr<int> Seven() { return 7; }
absl::StatusOr<int> NoNumber() { return absl::InvalidArgumentError("not a number"); }

absl::Status TwoSteps(absl::Status first, int* reached) {
  HERD_RETURN_IF_ERROR(first);
  ++*reached;
  return absl::OkStatus();
}

TEST(StatusMacros, ReturnIfErrorPassesTheStatusOnAndStops) {
  int reached = 0;
  absl::Status s = TwoSteps(Fails(), &reached);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no such host h1");
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(TwoSteps(absl::OkStatus(), &reached).ok());
  EXPECT_EQ(reached, 1);
}

absl::StatusOr<int> Sum(absl::StatusOr<int> a, absl::StatusOr<int> b) {
  HERD_ASSIGN_OR_RETURN(int x, std::move(a));
  HERD_ASSIGN_OR_RETURN(const int y, std::move(b));  // two on adjacent lines
  return x + y;
}

TEST(StatusMacros, AssignOrReturnDeclaresOrReturnsTheError) {
  EXPECT_EQ(*Sum(Seven(), Seven()), 14);
  absl::StatusOr<int> bad = Sum(Seven(), NoNumber());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "not a number");
}

absl::Status MoveOut(absl::StatusOr<std::unique_ptr<std::string>> in, std::string* out) {
  std::unique_ptr<std::string> p;
  HERD_ASSIGN_OR_RETURN(p, std::move(in));  // into an existing variable, move-only type
  *out = *p;
  return absl::OkStatus();
}

TEST(StatusMacros, AssignOrReturnMovesMoveOnlyValuesIntoExistingVariables) {
  std::string out;
  ASSERT_TRUE(MoveOut(std::make_unique<std::string>("ok"), &out).ok());
  EXPECT_EQ(out, "ok");
  EXPECT_EQ(MoveOut(absl::UnavailableError("store locked"), &out).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace herd

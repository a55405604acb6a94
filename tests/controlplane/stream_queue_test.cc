// StreamQueue: a Fleet API stream's outbound queue, bounded in messages and bytes, and how it
// tells a reader that stopped reading.
#include "controlplane/fleet/stream_queue.h"

#include <gtest/gtest.h>

#include <string>

#include "common/clock.h"
#include "herd/v1/types.pb.h"

namespace herd::controlplane {
namespace {

using Queue = StreamQueue<herd::v1::LogLine>;

herd::v1::LogLine Line(const std::string& text) {
  herd::v1::LogLine l;
  l.set_text(text);
  return l;
}

TEST(StreamQueue, FirstMessageIsWrittenAtOnceOthersWaitInOrder) {
  FakeClock clock;
  Queue q({}, clock);
  EXPECT_EQ(q.Push(Line("a")), Queue::Pushed::kWrite);
  EXPECT_EQ(q.front()->text(), "a");
  EXPECT_EQ(q.Push(Line("b")), Queue::Pushed::kQueued);
  EXPECT_EQ(q.Push(Line("c")), Queue::Pushed::kQueued);
  EXPECT_EQ(q.size(), 3u);
  ASSERT_TRUE(q.WriteDone());
  EXPECT_EQ(q.front()->text(), "b");
  ASSERT_TRUE(q.WriteDone());
  EXPECT_EQ(q.front()->text(), "c");
  EXPECT_FALSE(q.WriteDone());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.bytes(), 0u);
}

TEST(StreamQueue, PastMaxMessagesTheOldestWaitingIsDroppedNeverTheOneBeingWritten) {
  FakeClock clock;
  StreamQueueLimits limits;
  limits.max_messages = 3;
  Queue q(limits, clock);
  q.Push(Line("0"));  // being written
  herd::v1::LogLine* in_flight = q.front();
  for (int i = 1; i <= 5; ++i) q.Push(Line(std::to_string(i)));
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.TakeDropped(), 3u);
  EXPECT_EQ(q.TakeDropped(), 0u);
  // What gRPC is writing did not move or change.
  EXPECT_EQ(q.front(), in_flight);
  EXPECT_EQ(in_flight->text(), "0");
  ASSERT_TRUE(q.WriteDone());
  EXPECT_EQ(q.front()->text(), "4");
  ASSERT_TRUE(q.WriteDone());
  EXPECT_EQ(q.front()->text(), "5");
}

TEST(StreamQueue, PastMaxBytesTheOldestWaitingIsDroppedButTheNewestStays) {
  FakeClock clock;
  StreamQueueLimits limits;
  limits.max_messages = 1000;
  limits.max_bytes = 10 * 1024;
  Queue q(limits, clock);
  const std::string kib(1024, 'x');
  for (int i = 0; i < 100; ++i) q.Push(Line(kib));
  EXPECT_LE(q.bytes(), limits.max_bytes);
  EXPECT_GE(q.TakeDropped(), 90u);
  // One message larger than the bound still goes.
  q.Push(Line(std::string(50 * 1024, 'y')));
  EXPECT_EQ(q.size(), 2u);  // the one being written and the large one
  ASSERT_TRUE(q.WriteDone());
  EXPECT_EQ(q.front()->text().size(), 50u * 1024u);
}

TEST(StreamQueue, AWriteThatWaitsPastTheStallTimeoutMakesTheNextPushStalled) {
  FakeClock clock;
  StreamQueueLimits limits;
  limits.stall_timeout = absl::Seconds(30);
  Queue q(limits, clock);
  q.Push(Line("a"));
  clock.Advance(absl::Seconds(29));
  EXPECT_EQ(q.Push(Line("b")), Queue::Pushed::kQueued);
  EXPECT_FALSE(q.Stalled());
  clock.Advance(absl::Seconds(2));
  EXPECT_TRUE(q.Stalled());
  EXPECT_EQ(q.Push(Line("c")), Queue::Pushed::kStalled);
  EXPECT_EQ(q.size(), 2u);  // "c" was not queued
  q.DropWaiting();
  EXPECT_EQ(q.size(), 1u);  // what is in flight stays until gRPC is done with it
}

TEST(StreamQueue, AReaderThatKeepsReadingIsNeverStalled) {
  FakeClock clock;
  Queue q({}, clock);
  for (int i = 0; i < 100; ++i) {
    q.Push(Line("x"));
    clock.Advance(absl::Seconds(10));
    EXPECT_FALSE(q.Stalled());
    q.WriteDone();
  }
  // Idle (nothing being written) is not stalled either.
  clock.Advance(absl::Hours(1));
  EXPECT_FALSE(q.Stalled());
}

TEST(StreamQueue, AWallClockStepDoesNotStallAStream) {
  FakeClock clock;
  Queue q({}, clock);
  q.Push(Line("a"));
  clock.StepWall(absl::Hours(1));
  EXPECT_FALSE(q.Stalled());
  clock.StepWall(absl::Hours(-2));
  EXPECT_FALSE(q.Stalled());
  EXPECT_EQ(q.Push(Line("b")), Queue::Pushed::kQueued);
}

}  // namespace
}  // namespace herd::controlplane

// FakeUplinkTransport: the Uplink's transport (agent/uplink/uplink_transport.h) with the test
// playing the control plane. The test sees every dial (address, metadata: the join token or
// the credential presented) and every message the Uplink writes, and answers: Welcome,
// snapshots and requests (Send), the stream's end with any status (End), or silence (writes
// held in flight as under flow control, nothing read).
//
// Like the real transport, callbacks never run inside a call: they are tasks on the Scheduler
// (delay 0, as EventLoop::Post would run them), so a test calls FakeScheduler::RunDue (or
// Advance) to deliver them. A stream the Uplink destroyed gets no callback. The fake checks
// gRPC's rule of one write at a time (FakeUplinkDial::overlapping_writes).
//
//   FakeUplinkTransport transport(sched);
//   Uplink uplink(options, handler, sched, transport);
//   uplink.Start(); sched.RunDue();             // dialled, Hello written
//   transport.Welcome("hc_1"); sched.RunDue();  // connected
//   transport.End(absl::UnavailableError("gone")); sched.RunDue();  // backoff
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/uplink/uplink_transport.h"
#include "common/scheduler.h"
#include "herd/v1/gateway.pb.h"

namespace herd::testing {

// One dial the Uplink made, and what happened on its stream.
struct FakeUplinkDial {
  std::string address;
  std::map<std::string, std::string> metadata;
  std::vector<herd::v1::AgentMessage> written;  // in order (the last may still be in flight)
  bool write_in_flight = false;
  int overlapping_writes = 0;  // a Write while one was in flight: a bug of the caller
  bool cancelled = false;      // the Uplink called Cancel
  bool released = false;       // the Uplink destroyed its stream
  bool ended = false;          // the end was delivered or is on its way
  agent::UplinkStreamObserver* observer = nullptr;  // null once released

  std::string authorization() const {
    auto it = metadata.find("authorization");
    return it == metadata.end() ? "" : it->second;
  }
  // The messages written of one kind, e.g. AgentMessage::kMetrics.
  std::vector<herd::v1::AgentMessage> Written(herd::v1::AgentMessage::MsgCase kind) const {
    std::vector<herd::v1::AgentMessage> out;
    for (const auto& m : written) {
      if (m.msg_case() == kind) out.push_back(m);
    }
    return out;
  }
};

class FakeUplinkTransport final : public agent::UplinkTransport {
 public:
  explicit FakeUplinkTransport(Scheduler& loop) : loop_(loop) {}

  // --- the Uplink's side ---
  absl::Status CheckSettings() const override { return settings_error_; }

  absl::StatusOr<std::unique_ptr<agent::UplinkStream>> Dial(
      const agent::UplinkDial& dial, agent::UplinkStreamObserver& observer) override {
    auto d = std::make_shared<FakeUplinkDial>();
    d->address = dial.address;
    d->metadata = dial.metadata;
    dials_.push_back(d);
    if (!dial_errors_.empty()) {
      absl::Status error = std::move(dial_errors_.front());
      dial_errors_.erase(dial_errors_.begin());
      d->ended = true;
      d->released = true;
      return error;
    }
    d->observer = &observer;
    return std::make_unique<Stream>(*this, d);
  }

  // --- the test's side ---
  void set_settings_error(absl::Status s) { settings_error_ = std::move(s); }
  // The next dials fail at once with these errors, in order.
  void FailNextDial(absl::Status s) { dial_errors_.push_back(std::move(s)); }
  // Held: writes stay in flight until CompleteWrite (a control plane that does not read).
  void set_hold_writes(bool hold) { hold_writes_ = hold; }
  void CompleteWrite(bool ok = true) { DeliverWriteDone(dials_.back(), ok); }

  size_t dial_count() const { return dials_.size(); }
  FakeUplinkDial& dial(size_t i) { return *dials_.at(i); }
  FakeUplinkDial& last() { return *dials_.back(); }

  // A message from the control plane on the latest stream.
  void Send(herd::v1::ControlMessage msg) {
    Deliver(dials_.back(), [msg = std::move(msg)](agent::UplinkStreamObserver& o) mutable {
      o.OnRead(std::move(msg));
    });
  }
  void Welcome(const std::string& credential = "", uint32_t metrics_interval_ms = 1000,
               uint32_t batches_per_message = 0) {
    herd::v1::ControlMessage m;
    m.mutable_welcome()->set_host_credential(credential);
    m.mutable_welcome()->set_metrics_interval_ms(metrics_interval_ms);
    m.mutable_welcome()->set_metrics_batches_per_message(batches_per_message);
    Send(std::move(m));
  }
  // The control plane ends the latest stream with `status` (a write in flight fails first).
  void End(absl::Status status) { EndStream(dials_.back(), std::move(status)); }

 private:
  class Stream final : public agent::UplinkStream {
   public:
    Stream(FakeUplinkTransport& t, std::shared_ptr<FakeUplinkDial> d) : t_(t), d_(std::move(d)) {}
    ~Stream() override {
      d_->observer = nullptr;
      d_->released = true;
    }
    void Write(herd::v1::AgentMessage msg) override {
      if (d_->write_in_flight) ++d_->overlapping_writes;
      d_->written.push_back(std::move(msg));
      d_->write_in_flight = true;
      if (d_->ended) return t_.DeliverWriteDone(d_, false);
      if (!t_.hold_writes_) t_.DeliverWriteDone(d_, true);
    }
    void Cancel() override {
      d_->cancelled = true;
      t_.EndStream(d_, absl::CancelledError("Cancelled"));
    }

   private:
    FakeUplinkTransport& t_;
    std::shared_ptr<FakeUplinkDial> d_;
  };

  template <typename F>
  void Deliver(const std::shared_ptr<FakeUplinkDial>& d, F f) {
    loop_.RunAfter(absl::ZeroDuration(), [d, f = std::move(f)]() mutable {
      if (d->observer) f(*d->observer);
    });
  }
  void DeliverWriteDone(const std::shared_ptr<FakeUplinkDial>& d, bool ok) {
    loop_.RunAfter(absl::ZeroDuration(), [d, ok] {
      if (!d->write_in_flight) return;
      d->write_in_flight = false;
      if (d->observer) d->observer->OnWriteDone(ok);
    });
  }
  void EndStream(const std::shared_ptr<FakeUplinkDial>& d, absl::Status status) {
    if (d->ended) return;
    d->ended = true;
    if (d->write_in_flight) DeliverWriteDone(d, false);
    loop_.RunAfter(absl::ZeroDuration(), [d, status = std::move(status)] {
      if (agent::UplinkStreamObserver* o = std::exchange(d->observer, nullptr)) o->OnDone(status);
    });
  }

  Scheduler& loop_;
  absl::Status settings_error_;
  std::vector<absl::Status> dial_errors_;
  bool hold_writes_ = false;
  std::vector<std::shared_ptr<FakeUplinkDial>> dials_;
};

}  // namespace herd::testing

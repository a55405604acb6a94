#include "controlplane/core/send_pool.h"

#include <pthread.h>

#include <utility>

namespace herd::controlplane {

void SendPool::Start(size_t threads) {
  for (size_t i = 0; i < threads; ++i) {
    outboxes_.push_back(std::make_unique<Outbox>());
    Outbox* box = outboxes_.back().get();
    box->thread = std::thread([box] { Loop(*box); });
  }
}

void SendPool::Stop() {
  for (auto& box : outboxes_) {
    {
      absl::MutexLock l(&box->mu);
      box->stop = true;
    }
    if (box->thread.joinable()) box->thread.join();
  }
}

void SendPool::Post(const std::string& host_id, std::shared_ptr<HostSession> session,
                    herd::v1::ControlMessage msg, std::function<void()> on_fail) {
  std::vector<Outgoing> out;
  out.push_back({host_id, std::move(session), std::move(msg), std::move(on_fail)});
  PostAll(std::move(out));
}

void SendPool::PostAll(std::vector<Outgoing> out) {
  if (outboxes_.empty()) {
    for (auto& o : out) {
      if (!o.session->Send(std::move(o.msg)) && o.on_fail) o.on_fail();
    }
    return;
  }
  // A host's messages always go through the same send thread, so they keep their order.
  std::vector<std::vector<Outbox::Item>> per_box(outboxes_.size());
  for (auto& o : out) {
    per_box[std::hash<std::string>{}(o.host_id) % outboxes_.size()].push_back(
        {std::move(o.session), std::move(o.msg), std::move(o.on_fail)});
  }
  std::vector<std::function<void()>> refused;
  for (size_t i = 0; i < per_box.size(); ++i) {
    if (per_box[i].empty()) continue;
    Outbox& box = *outboxes_[i];
    bool taken = false;
    {
      absl::MutexLock l(&box.mu);
      if (!box.stop) {
        for (auto& item : per_box[i]) box.items.push_back(std::move(item));
        taken = true;
      }
    }
    if (!taken) {
      for (auto& item : per_box[i]) {
        if (item.on_fail) refused.push_back(std::move(item.on_fail));
      }
    }
  }
  for (auto& f : refused) f();  // outside the locks: they may post again
}

void SendPool::Loop(Outbox& box) {
  pthread_setname_np(pthread_self(), "hub-send");
  std::deque<Outbox::Item> batch;
  while (true) {
    {
      absl::MutexLock l(&box.mu);
      auto ready = [&box]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(box.mu) {
        return !box.items.empty() || box.stop;
      };
      box.mu.Await(absl::Condition(&ready));
      if (box.items.empty()) return;  // stopping, nothing left
      batch.swap(box.items);
    }
    for (auto& item : batch) {
      if (!item.session->Send(std::move(item.msg)) && item.on_fail) item.on_fail();
    }
    batch.clear();
  }
}

}  // namespace herd::controlplane

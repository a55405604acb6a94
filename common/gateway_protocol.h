// Bounds of the agent ↔ control plane protocol (proto/herd/v1/gateway.proto) that both ends
// and the fleet simulator must agree on.
#pragma once

#include <cstdint>

namespace herd {

// Batches in one MetricsBatches message: what agentd groups at most (a replay after a
// reconnection, or Welcome.metrics_batches_per_message, which is clamped to it); the control
// plane cuts and counts the rest.
inline constexpr uint32_t kMaxMetricsBatchesPerMessage = 60;

}  // namespace herd

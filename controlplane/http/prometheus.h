// The Prometheus text exposition (format 0.0.4) of the fleet: hosts, units and modules with
// their numeric probes, and the control plane's own counters. Pure rendering: the HTTP
// server hands it a snapshot.
//
// Names follow Prometheus conventions: base units (bytes, seconds, ratios of one core),
// `_total` for counters, labels `host` (the host id) and `module`. A probe becomes
// `herd_probe_<name>` with its name sanitised to [a-zA-Z0-9_].
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "controlplane/core/hub.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

std::string RenderPrometheus(const std::vector<herd::v1::HostDetail>& hosts,
                             const Hub::Stats& stats, absl::Time now);

// "req/s latency" → "req_s_latency"; a leading digit gets an underscore in front.
std::string SanitizeMetricName(const std::string& name);
// Escapes a label value (\\, \", \n).
std::string EscapeLabelValue(const std::string& value);

}  // namespace herd::controlplane

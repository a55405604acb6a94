#!/usr/bin/env bash
# Writes tests/fuzz/corpus/metrics_view/: realistic batches and metrics messages in
# metrics_view_fuzz's input format ([mode][limits][protobuf bytes]), from the text-format
# messages below, with protoc --encode. Run it again after changing gateway.proto.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fuzz/corpus/metrics_view
mkdir -p "$out"
enc() {  # enc MODE LIMITS TYPE TEXT > file: the two header bytes, then the message
  printf "\\x$1\\x$2"
  printf '%s' "$4" | protoc --encode="herd.v1.$3" -I proto proto/herd/v1/gateway.proto
}
BATCH='at_unix_ms: 1700000001000 dropped_batches: 2
host { cpu_percent: 12.5 memory_total_bytes: 4000000000 memory_available_bytes: 2500000000 load1: 0.4 load5: 0.3 load15: 0.2 }
units { name: "api" state: UNIT_STATE_ONLINE pid: 4242 restarts: 1 started_at_unix_ms: 1700000000000 status_reason: "ok"
  usage { cpu_percent: 3.5 rss_bytes: 52428800 pss_bytes: 1000 threads: 7 processes: 2 sampled_at_unix_ms: 1700000000900 } }
units { name: "redis-mon" is_module: true state: UNIT_STATE_ONLINE pid: 4300 version: "1.2.0" issues_count: 2
  usage { cpu_percent: 0.5 rss_bytes: 1048576 }
  probes { name: "ops/s" value: "83.37" number: 83.37 numeric: true type: "gauge" unit: "ops" agg_type: "avg" updated_at_unix_ms: 1700000000500 }
  probes { name: "status" value: "ok" }
  probes { name: "lag" value: "nan" number: nan numeric: true }
  main_probes: "ops/s" main_probes: "lag" }'
SMALL='at_unix_ms: 1700000002000 replayed: true host { cpu_percent: 1 }
units { name: "a" probes { name: "p" value: "1" number: 1 numeric: true } main_probes: "p" }'
enc 00 00 MetricsBatch "$BATCH" >"$out/batch"
enc 00 00 MetricsBatch "$SMALL" >"$out/batch-small"
enc 00 ff MetricsBatch "$SMALL" >"$out/batch-small-limits"
enc fe 55 MetricsBatch "$BATCH" >"$out/batch-past-limits"
enc 01 00 AgentMessage "metrics { $BATCH }" >"$out/message-metrics"
enc 01 00 AgentMessage "metrics_batches { batches { $BATCH } batches { $SMALL } batches { $BATCH replayed: true } }" >"$out/message-group"
enc 01 02 AgentMessage "metrics_batches { batches { $SMALL } batches { $SMALL } batches { $SMALL } }" >"$out/message-group-past-max"
enc 01 00 AgentMessage 'event { unit: "api" kind: "started" }' >"$out/message-event"
ls -l "$out"

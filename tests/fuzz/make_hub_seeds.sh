#!/usr/bin/env bash
# Writes tests/fuzz/corpus/hub/: realistic agent conversations in hub_fuzz's input format
# ([2-byte little-endian length][protobuf bytes]..., the first record a Hello), from the
# text-format messages below, with protoc --encode. Run it again after changing gateway.proto.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fuzz/corpus/hub
mkdir -p "$out"
enc() {  # enc TYPE TEXT -> framed record on stdout
  local bin
  bin=$(mktemp)
  printf '%s' "$2" | protoc --encode="herd.v1.$1" -I proto proto/herd/v1/gateway.proto >"$bin"
  python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.stdout.buffer.write(len(d).to_bytes(2,"little")+d)' "$bin"
  rm -f "$bin"
}
HELLO='hostname: "web-1.example" labels { key: "env" value: "prod" } labels { key: "role" value: "web" }
agent_version: "0.1.0" boot_id: "b-1" kernel: "6.1.0" arch: "x86_64" cpu_count: 2
memory_total_bytes: 4000000000
modules { name: "redis-mon" version: "1.2.0" source: "redis-mon" defaults_json: "{\"interval\":1000,\"host\":\"127.0.0.1\",\"debug\":false,\"ratio\":0.5}" state: UNIT_STATE_ONLINE
  actions { name: "flush" type: "custom" arity: 1 } }'
BATCH='at_unix_ms: 1700000001000 host { cpu_percent: 12.5 memory_total_bytes: 4000000000 memory_available_bytes: 2500000000 load1: 0.4 load5: 0.3 load15: 0.2 }
units { name: "api" state: UNIT_STATE_ONLINE pid: 4242 restarts: 1 started_at_unix_ms: 1700000000000 usage { cpu_percent: 3.5 rss_bytes: 52428800 threads: 7 } }
units { name: "redis-mon" is_module: true state: UNIT_STATE_ONLINE pid: 4300 version: "1.2.0"
  probes { name: "ops/s" value: "83.37" number: 83.37 numeric: true type: "gauge" unit: "ops" }
  probes { name: "status" value: "ok" } main_probes: "ops/s" issues_count: 2 }'
METRICS="metrics { $BATCH }"
# A group, as agentd sends it in a large fleet (and after a reconnection: replayed batches).
GROUP="metrics_batches { batches { $BATCH } batches { $BATCH replayed: true } batches { $BATCH } }"
INVENTORY='inventory { modules { name: "redis-mon" version: "1.2.1" source: "redis-mon" defaults_json: "{\"interval\":1000}" state: UNIT_STATE_ONLINE
  recent_issues { name: "Error" message: "connection refused" } } }'
EVENT='event { at_unix_ms: 1700000002000 unit: "api" kind: "restart" detail: "exit code 1" }'
ACK='config_ack { version: 1 accepted: false rejections { module: "redis-mon" key: "interval" reason: "not an integer" } restarted: "redis-mon" }'
ACTION='action_result { request_id: "r-1" ok: true reply_json: "{\"flushed\":3}" stream: "line 1" elapsed_ms: 12 }'
RESTART='restart_result { request_id: "r-2" units { unit: "redis-mon" ok: true pid: 4400 } }'
LOGS='log_chunk { request_id: "r-3" lines { stream: "out" text: "hello" unit: "api" } end: true }'
{ enc Hello "$HELLO"; enc AgentMessage "$METRICS"; enc AgentMessage "$METRICS"; } >"$out/hello-metrics"
{ enc Hello "$HELLO"; enc AgentMessage "$INVENTORY"; enc AgentMessage "$EVENT"; enc AgentMessage "$ACK"; } >"$out/inventory-event-ack"
{ enc Hello "$HELLO"; enc AgentMessage "$ACTION"; enc AgentMessage "$RESTART"; enc AgentMessage "$LOGS"; } >"$out/relayed-results"
{ enc Hello 'hostname: "bare"'; enc AgentMessage "$METRICS"; } >"$out/bare-hello"
{ enc Hello "$HELLO"; enc AgentMessage "$GROUP"; enc AgentMessage "$METRICS"; } >"$out/metrics-groups"
ls -l "$out"

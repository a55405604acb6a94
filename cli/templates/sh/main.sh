#!/usr/bin/env bash
# {{NAME}}: a Herd module in bash. Install it with
#   agentctl install .        (development mode: restarts when you edit a file)
# herd-module.sh (beside this file) is the SDK; docs/module-protocol.md is what it speaks.
set -uo pipefail
source "$(dirname "$0")/herd-module.sh"

herd_init "" ticks
# Defaults come from package.json "config"; `agentctl set {{NAME}}:greeting hi` overrides.
interval_ms=$(herd_config interval 1000)
[[ $interval_ms =~ ^[0-9]+$ ]] || interval_ms=1000
greeting=$(herd_config greeting hello)

ticks=0
tick() {
  ticks=$((ticks + 1))
  herd_probe ticks "$ticks" "" counter
  # A made-up measurement, to show a gauge with a unit: replace with your own.
  herd_probe latency "$((RANDOM % 10)).$((RANDOM % 10))" ms gauge
}

# agentctl action {{NAME}} greet --param name=you
greet() {
  echo "$greeting, ${HERD_OPTS[name]:-stranger}"
}
herd_action greet greet

herd_issue "{{NAME}} started: this is how an issue looks"
# interval is in milliseconds; herd_loop takes seconds (fractions allowed).
printf -v interval_s '%d.%03d' $((interval_ms / 1000)) $((interval_ms % 1000))
herd_loop "$interval_s" tick   # until SIGTERM, then exit 0

#!/usr/bin/env bash
# A sample unit: prints a line every second, and a warning to stderr every ten.
n=0
trap 'echo "ticker: SIGTERM, exiting cleanly"; exit 0' TERM
while true; do
  n=$((n + 1))
  echo "tick $n (pid $$, unit ${HERD_UNIT:-?}, greeting ${GREETING:-none})"
  if (( n % 10 == 0 )); then echo "ticker: $n ticks so far" >&2; fi
  sleep 1 & wait $!
done

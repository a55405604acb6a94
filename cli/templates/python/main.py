#!/usr/bin/env python3
"""{{NAME}}: a Herd module in Python. Install it with
    agentctl install .        (development mode: restarts when you edit a file)

herd_module.py (beside this file) is the SDK; docs/module-protocol.md is what it speaks.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import herd_module  # noqa: E402

# Defaults come from package.json "config"; `agentctl set {{NAME}}:greeting hi` overrides.
mod = herd_module.init(main_probes=["ticks"])
interval_ms = float(mod.get("interval", 1000))

ticks = mod.counter("ticks")
last_tick = mod.gauge("last_tick", unit="s")
latency = mod.histogram("latency", unit="ms")  # p95 of the last minute


def tick():
    ticks.inc()
    last_tick.set(ticks.value())
    latency.observe(round(random.random() * 100) / 10)


# agentctl action {{NAME}} greet --param name=you
@mod.action("greet")
def greet(params, reply):
    reply("%s, %s" % (mod.get("greeting", "hello"), params.get("name") or "stranger"))


mod.notify_issue("{{NAME}} started: this is how an issue looks")
mod.run(tick=tick, interval=interval_ms / 1000.0)  # until SIGTERM, then exit 0

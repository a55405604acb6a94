#!/usr/bin/env python3
"""Drives shell modules (bash + sdk/shell/herd-module.sh) through a real channel: the agent's
end of a socketpair here, the module's end as fd 3 (HERD_CHANNEL_FD=3) in bash.

Run by tests/run.sh; exits non-zero and names the failed cases on failure.
Usage: drive.py [CASE...]  (all cases by default)
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.join(os.path.dirname(HERE), "herd-module.sh")


class Mod:
    """One bash module process and the agent's end of its channel."""

    def __init__(self, script, config=None, channel=True, env=None, strict=False):
        self.agent, child = socket.socketpair()
        e = dict(os.environ)
        for k in ("HERD_CHANNEL_FD", "HERD_MODULE_CONFIG", "HERD_MODULE_NAME", "HERD_MODULE_DIR"):
            e.pop(k, None)
        e["HERD_MODULE_NAME"] = "shmod"
        if config is not None:
            e["HERD_MODULE_CONFIG"] = config if isinstance(config, str) else json.dumps(config)
        if channel:
            e["HERD_CHANNEL_FD"] = "3"
        e.update(env or {})
        prelude = "set -euo pipefail\n" if strict else ""
        # The module's end becomes fd 3, as agentd leaves it.
        wrapper = 'exec 3<&%d %d<&-\n%ssource %s\n%s\n' % (
            child.fileno(), child.fileno(), prelude, SDK, script)
        self.proc = subprocess.Popen(["bash", "-c", wrapper], env=e, pass_fds=[child.fileno()],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child.close()
        self.buf = b""

    def line(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no message from the module within %.1fs" % timeout)
            r, _, _ = select.select([self.agent], [], [], left)
            if r:
                chunk = self.agent.recv(65536)
                if not chunk:
                    raise AssertionError("the module closed its channel")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def msg(self, type_=None, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            raw = self.line(max(0.01, deadline - time.monotonic()))
            try:
                m = json.loads(raw)
            except ValueError:
                raise AssertionError("invalid JSON from the module: %r" % raw)
            check(isinstance(m, dict) and set(m) == {"type", "data"}, "bad message shape %r" % m)
            if type_ is None or m["type"] == type_:
                return m

    def send(self, raw):
        self.agent.sendall(raw)

    def trigger(self, name, opts=None):
        self.send(json.dumps({"msg": name, "opts": opts or {}}).encode() + b"\n")

    def reply(self, name, opts=None, timeout=5.0):
        self.trigger(name, opts)
        m = self.msg("axm:reply", timeout)
        check(m["data"]["action_name"] == name, "reply names %r" % m["data"])
        return m["data"]["return"]

    def finish(self, timeout=5.0):
        """Wait for the process to end by itself; returns (rc, stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            self.close()
        return self.proc.returncode, out.decode(), err.decode()

    def terminate(self, timeout=5.0):
        self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.agent.close()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what or "value", got, want))


# --- cases ----------------------------------------------------------------------------------

def case_configuration_message():
    d = tempfile.mkdtemp()
    try:
        with open(os.path.join(d, "package.json"), "w") as f:
            json.dump({"name": "shmod", "version": "2.3.4", "description": "from manifest"}, f)
        conf = {"interval": 5, "greeting": 'say "hi"', "verbose": False}
        m = Mod('herd_init "a shell module" ticks load', config=conf,
                env={"HERD_MODULE_DIR": d})
        try:
            c = m.msg()
            eq(c["type"], "axm:option:configuration", "first message")
            data = c["data"]
            eq(data["module_name"], "shmod", "module_name")
            eq(data["module_version"], "2.3.4", "module_version")
            eq(data["description"], "a shell module", "description")
            eq(data["module_conf"], conf, "module_conf")
            w = data["widget"]
            eq(w["type"], "generic", "widget type")
            eq(len(w["theme"]), 4, "theme")
            eq(w["el"], {"probes": True, "actions": True}, "el")
            eq(w["block"], {"actions": True, "issues": True, "cpu": True, "mem": True,
                            "main_probes": ["ticks", "load"]}, "block")
            rc, _, _ = m.finish()
            eq(rc, 0, "exit status")
        finally:
            m.close()
    finally:
        os.unlink(os.path.join(d, "package.json"))
        os.rmdir(d)


def case_config_parsing():
    conf = ('{ "interval" : 1000, "ratio": -1.5e3, "greeting": "say \\"hi\\" \\\\ there",\n'
            ' "verbose": true, "quiet": false, "empty": "", "nothing": null,'
            ' "uni": "caf\\u00e9 \\/ \\t|", "nested": {"a": [1, "}"]}, "last": "x"}')
    script = r'''
for k in interval ratio greeting verbose quiet empty nothing uni nested last missing; do
  printf '%s=<%s>\n' "$k" "$(herd_config "$k" DEF)"
done
printf 'nodefault=<%s>\n' "$(herd_config missing)"
'''
    m = Mod(script, config=conf)
    rc, out, err = m.finish()
    eq(rc, 0, "exit status (stderr %r)" % err)
    got = dict(l.split("=", 1) for l in out.splitlines())
    want = {"interval": "<1000>", "ratio": "<-1.5e3>", "greeting": '<say "hi" \\ there>',
            "verbose": "<true>", "quiet": "<false>", "empty": "<>", "nothing": "<DEF>",
            "uni": "<caf\u00e9 / \t|>", "nested": '<{"a": [1, "}"]}>', "last": "<x>",
            "missing": "<DEF>", "nodefault": "<>"}
    eq(got, want, "herd_config values")


def case_bad_config():
    m = Mod('herd_init; printf "<%s>" "$(herd_config interval 7)"', config='{"interval": ')
    c = m.msg("axm:option:configuration")
    eq(c["data"]["module_conf"], {}, "module_conf of a bad config")
    rc, out, err = m.finish()
    eq((rc, out), (0, "<7>"), "bad config falls back to defaults")
    check("HERD_MODULE_CONFIG" in err, "a warning on stderr, got %r" % err)


def case_probe_flush():
    script = r'''
herd_init
herd_probe count 42
herd_probe ratio -0.25 %
herd_probe big 1e6
herd_probe text "hello world" "" status
herd_probe weird 'q"uote \back
nl	tab'
herd_probe notnum 012
herd_probe count 43 req counter
herd_flush
'''
    m = Mod(script)
    d = m.msg("axm:monitor")["data"]
    eq(list(d), ["count", "ratio", "big", "text", "weird", "notnum"], "probe order")
    eq(d["count"], {"value": 43, "type": "counter", "unit": "req"}, "count")
    eq(d["ratio"], {"value": -0.25, "type": "gauge", "unit": "%"}, "ratio")
    eq(d["big"]["value"], 1e6, "big")
    eq(d["text"], {"value": "hello world", "type": "status", "unit": ""}, "text")
    eq(d["weird"]["value"], 'q"uote \\back\nnl\ttab', "weird")
    eq(d["notnum"]["value"], "012", "a non-JSON number is a string")
    rc, _, err = m.finish()
    eq(rc, 0, "exit status (%s)" % err)


def case_escaping_every_control_char():
    # Every control character (bash strings cannot hold NUL), quotes, backslashes, UTF-8.
    value = "".join(chr(c) for c in range(1, 32)) + '"\\/ é 漢 \x7f'
    script = 'herd_init; herd_probe s "$(printf %%s %s)x"; herd_flush' % shell_quote(value)
    m = Mod(script)
    d = m.msg("axm:monitor")["data"]
    eq(d["s"]["value"], value + "x", "escaped round trip")
    m.finish()


def case_actions():
    script = r'''
herd_init
n=0
greet() {
  local a
  for a in "$@"; do echo "arg:$a"; done
  echo "name:${HERD_OPTS[name]:-stranger}"
  n=$((n + 1))
}
fail() { echo "went wrong"; return 3; }
quiet_fail() { return 4; }
count() { printf '%s' "$n"; }
name=global; line=global; rc=global
globals() { printf '%s %s %s' "$name" "$line" "$rc"; }
herd_action globals globals
herd_action greet greet
herd_action fail fail
herd_action quiet_fail quiet_fail
herd_action count count
herd_loop 0.2
'''
    m = Mod(script)
    try:
        m.msg("axm:option:configuration")
        regs = [m.msg("axm:action")["data"] for _ in range(5)]
        eq(regs[1], {"action_name": "greet", "action_type": "custom", "arity": 2}, "register")
        eq([r["action_name"] for r in regs], ["globals", "greet", "fail", "quiet_fail", "count"],
           "names")
        eq(m.reply("globals"), "global global global", "the SDK's locals hide no globals")
        eq(m.reply("greet", {"name": 'Bob "the" \\ builder', "x": "1=2"}),
           'arg:name=Bob "the" \\ builder\narg:x=1=2\nname:Bob "the" \\ builder', "greet")
        eq(m.reply("greet"), "name:stranger", "greet without opts")
        eq(m.reply("count"), "2", "actions run in the module's shell (state kept)")
        eq(m.reply("fail"), {"error": "went wrong"}, "failing action")
        eq(m.reply("quiet_fail"), {"error": "exit status 4"}, "failing action without output")
        eq(m.reply("nope"), {"error": "unknown action nope"}, "unknown action")
        rc, _, err = m.terminate()
        eq(rc, 0, "exit status on SIGTERM (%s)" % err)
    finally:
        m.close()


def case_issue_and_event():
    script = r'''
herd_init
oops() { herd_issue 'disk "full"'; }
oops
herd_event deployed version=2 who='a b' note='x=y' bogus
'''
    m = Mod(script)
    i = m.msg("process:exception")["data"]
    eq(i["message"], 'disk "full"', "issue message")
    eq(i["name"], "Error", "issue name")
    check("oops" in i["stack"], "stack names the function: %r" % i["stack"])
    e = m.msg("human:event")["data"]
    eq(e, {"__name": "deployed", "version": 2, "who": "a b", "note": "x=y"}, "event")
    eq(m.finish()[0], 0, "exit status")


def case_loop_ticks_and_sigterm():
    script = r'''
herd_init
ticks=0
tick() { ticks=$((ticks + 1)); herd_probe ticks "$ticks" "" counter; }
herd_loop 0.1 tick
'''
    m = Mod(script, strict=True)
    try:
        t0 = time.monotonic()
        v = 0
        while v < 5:
            v = m.msg("axm:monitor")["data"]["ticks"]["value"]
        check(time.monotonic() - t0 < 3, "5 ticks at 0.1 s took too long")
        t1 = time.monotonic()
        rc, out, err = m.terminate()
        eq(rc, 0, "exit status on SIGTERM (stderr %r)" % err)
        check(time.monotonic() - t1 < 2, "SIGTERM handled promptly")
    finally:
        m.close()


def case_sigterm_during_a_long_wait():
    # The loop waits 30 s for triggers; SIGTERM must end it at once, channel or not.
    for channel in (True, False):
        m = Mod("herd_init; herd_loop 30", channel=channel)
        try:
            time.sleep(0.3)
            t0 = time.monotonic()
            rc, _, err = m.terminate()
            eq(rc, 0, "exit status (channel=%s, stderr %r)" % (channel, err))
            check(time.monotonic() - t0 < 2, "SIGTERM ends a long wait promptly")
        finally:
            m.close()


def case_framing():
    script = r'''
herd_init
echo_() { printf '%s' "${HERD_OPTS[v]:-}"; }
herd_action echo echo_
herd_loop 0.3
'''
    m = Mod(script, strict=True)
    try:
        m.msg("axm:action")
        # A line in pieces, across the loop's read timeouts.
        m.send(b'{"msg":"echo","op')
        time.sleep(0.4)
        m.send(b'ts":{"v":"1"}}\n')
        eq(m.msg("axm:reply")["data"]["return"], "1", "partial line")
        # Several lines in one write, with invalid ones in between.
        m.send(b'not json\n{"msg":"echo","opts":{"v":"2"}}\n[1]\n\n{"nomsg":1}\n'
               b'{"msg":"echo","opts":{"v":"3"}}\n')
        eq(m.msg("axm:reply")["data"]["return"], "2", "first of several lines")
        eq(m.msg("axm:reply")["data"]["return"], "3", "second of several lines")
        rc, _, err = m.terminate()
        eq(rc, 0, "exit status (stderr %r)" % err)
    finally:
        m.close()


def case_long_line_dropped():
    script = r'''
herd_init
echo_() { printf '%s' "${HERD_OPTS[v]:-}"; }
herd_action echo echo_
herd_loop 1
'''
    m = Mod(script)
    try:
        m.msg("axm:action")
        big = b'{"msg":"echo","opts":{"v":"' + b"x" * (1 << 20) + b'"}}\n'
        m.send(big + b'{"msg":"echo","opts":{"v":"after"}}\n')
        eq(m.msg("axm:reply", timeout=60)["data"]["return"], "after", "line after a long one")
        rc, _, err = m.terminate()
        eq(rc, 0, "exit status (stderr %r)" % err)
    finally:
        m.close()


def case_standalone():
    script = r'''
herd_init
herd_probe x 1
herd_flush
herd_issue nothing
herd_event nothing
g() { echo hi; }
herd_action g g
tick() { echo tick; }
herd_loop 0.05 tick
'''
    m = Mod(script, channel=False, strict=True)
    time.sleep(0.5)
    rc, out, err = m.terminate()
    eq(rc, 0, "exit status (stderr %r)" % err)
    check(out.count("tick") >= 3, "ticks run standalone: %r" % out)
    eq(err, "", "nothing on stderr")


def case_peer_closed():
    script = r'''
herd_init
tick() { herd_probe t 1; echo tick; }
herd_loop 0.05 tick
'''
    m = Mod(script, strict=True)
    try:
        m.msg("axm:monitor")
        m.agent.shutdown(socket.SHUT_RDWR)
        m.agent.close()
        time.sleep(0.5)
        check(m.proc.poll() is None, "the module keeps running when the agent is gone")
        m.proc.send_signal(signal.SIGTERM)
        out, err = m.proc.communicate(timeout=5)
        eq(m.proc.returncode, 0, "exit status (stderr %r)" % err)
        check(out.decode().count("tick") >= 5, "ticks went on: %r" % out)
    finally:
        if m.proc.poll() is None:
            m.proc.kill()
            m.proc.wait()


def shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


CASES = [(n[5:], f) for n, f in sorted(globals().items()) if n.startswith("case_")]


def main(argv):
    wanted = set(argv[1:])
    failed = []
    for name, fn in CASES:
        if wanted and name not in wanted:
            continue
        t0 = time.monotonic()
        try:
            fn()
            print("ok   %-32s %.2fs" % (name, time.monotonic() - t0), flush=True)
        except Exception as e:
            failed.append(name)
            print("FAIL %-32s %s" % (name, e), flush=True)
            traceback.print_exc(limit=3)
    if failed:
        print("drive.py: %d failed: %s" % (len(failed), ", ".join(failed)))
        return 1
    print("drive.py: all %d passed" % (len(CASES) if not wanted else len(wanted)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

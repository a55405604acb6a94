"""Tests for sdk/python/herd_module.py, over a real socketpair (the agent's side is the test).

Run: python3 -m unittest discover -s sdk/python/tests -t sdk/python -v
"""

import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import unittest
from contextlib import redirect_stderr
from unittest import mock

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SDK_DIR not in sys.path:
    sys.path.insert(0, SDK_DIR)

import herd_module  # noqa: E402


class Agent:
    """The agent's end of the channel: reads the module's lines, writes triggers."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self, timeout=3.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no message from the module within %.1fs" % timeout)
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("module closed the channel")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def msg(self, type_=None, timeout=3.0):
        """The next message (of type_, skipping others such as periodic monitors)."""
        deadline = time.monotonic() + timeout
        while True:
            m = json.loads(self.line(max(0.01, deadline - time.monotonic())))
            self.assert_shape(m)
            if type_ is None or m["type"] == type_:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("no %s message" % type_)

    def none(self, type_, wait=0.3):
        """Assert that no message of type_ arrives within `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                m = json.loads(self.line(left))
            except AssertionError:
                return
            if m["type"] == type_:
                raise AssertionError("unexpected %s: %r" % (type_, m))

    @staticmethod
    def assert_shape(m):
        assert isinstance(m, dict) and set(m) == {"type", "data"}, m

    def trigger(self, name, opts=None, uuid=None):
        t = {"msg": name, "opts": opts or {}}
        if uuid:
            t["uuid"] = uuid
        self.sock.sendall(json.dumps(t).encode() + b"\n")


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class ChannelTest(unittest.TestCase):
    flush_interval = 30.0  # no periodic flush unless a test asks

    def setUp(self):
        self.agent_sock, self.module_sock = socket.socketpair()
        self.agent = Agent(self.agent_sock)
        env = {"HERD_MODULE_NAME": "demo",
               "HERD_MODULE_CONFIG": '{"interval": 5, "greeting": "hi \\"you\\"", "verbose": false}'}
        with mock.patch.dict(os.environ, env):
            self.mod = herd_module.init(description="a test", version="1.2.3",
                                        main_probes=["ticks"],
                                        flush_interval=self.flush_interval,
                                        channel_fd=self.module_sock.fileno())
        self.conf = self.agent.msg()

    def tearDown(self):
        self.mod.close()
        self.agent_sock.close()
        self.module_sock.close()


class TestConfiguration(ChannelTest):
    def test_configuration_is_the_first_message(self):
        self.assertEqual(self.conf["type"], "axm:option:configuration")
        d = self.conf["data"]
        self.assertEqual(d["module_name"], "demo")
        self.assertEqual(d["module_version"], "1.2.3")
        self.assertEqual(d["description"], "a test")
        self.assertEqual(d["module_conf"], {"interval": 5, "greeting": 'hi "you"',
                                            "verbose": False})
        w = d["widget"]
        self.assertEqual(w["type"], "generic")
        self.assertEqual(len(w["theme"]), 4)
        self.assertEqual(w["el"], {"probes": True, "actions": True})
        self.assertEqual(w["block"], {"actions": True, "issues": True, "cpu": True,
                                      "mem": True, "main_probes": ["ticks"]})

    def test_logo_and_theme_are_announced_when_given(self):
        self.assertEqual(self.conf["data"]["widget"]["logo"], "")
        sock_a, sock_b = socket.socketpair()
        try:
            with mock.patch.dict(os.environ, {"HERD_MODULE_NAME": "themed"}):
                mod = herd_module.init(logo="https://example.invalid/logo.svg",
                                       theme=["#9F1414", "#591313", "white", "white"],
                                       flush_interval=30.0, channel_fd=sock_b.fileno())
            w = Agent(sock_a).msg()["data"]["widget"]
            mod.close()
            self.assertEqual(w["logo"], "https://example.invalid/logo.svg")
            self.assertEqual(w["theme"], ["#9F1414", "#591313", "white", "white"])
        finally:
            sock_a.close()
            sock_b.close()

    def test_config_access(self):
        self.assertEqual(self.mod.config["interval"], 5)
        self.assertEqual(self.mod.get("greeting"), 'hi "you"')
        self.assertIs(self.mod.get("verbose"), False)
        self.assertEqual(self.mod.get("missing", 42), 42)
        self.assertIsNone(self.mod.get("missing"))


class TestStandalone(unittest.TestCase):
    def test_no_channel_everything_works(self):
        with mock.patch.dict(os.environ, {}, clear=False):
            os.environ.pop("HERD_CHANNEL_FD", None)
            os.environ.pop("HERD_MODULE_CONFIG", None)
            mod = herd_module.init()
        self.assertFalse(mod.connected)
        self.assertEqual(mod.config, {})
        mod.counter("c").inc()
        mod.gauge("g").set(3)
        mod.flush()
        mod.notify_issue("nothing is sent")
        mod.emit_event("e", a=1)
        got = []
        mod.action("a", lambda p, reply: got.append(p) or reply("ok"))
        mod.trigger("a", {"x": "1"})
        self.assertEqual(got, [{"x": "1"}])
        self.assertEqual(mod.monitor_payload()["c"]["value"], 1)
        mod.close()

    def test_bad_config_json_warns_and_is_empty(self):
        err = io.StringIO()
        with mock.patch.dict(os.environ, {"HERD_MODULE_CONFIG": "{not json"}), \
                redirect_stderr(err):
            os.environ.pop("HERD_CHANNEL_FD", None)
            mod = herd_module.init()
        self.assertEqual(mod.config, {})
        self.assertIn("HERD_MODULE_CONFIG", err.getvalue())
        mod.close()

    def test_explicit_config_and_env_channel(self):
        a, b = socket.socketpair()
        try:
            with mock.patch.dict(os.environ, {"HERD_CHANNEL_FD": str(b.fileno()),
                                              "HERD_MODULE_NAME": "envname"}):
                mod = herd_module.init(config={"k": "v"})
            m = Agent(a).msg()
            self.assertEqual(m["data"]["module_name"], "envname")
            self.assertEqual(m["data"]["module_conf"], {"k": "v"})
            self.assertEqual(mod.get("k"), "v")
            mod.close()
        finally:
            a.close()
            b.close()


class TestMetrics(ChannelTest):
    def test_all_probes_in_one_monitor_message(self):
        g = self.mod.gauge("temp", unit="C")
        c = self.mod.counter("ticks")
        self.mod.gauge("unset")  # never set: not reported
        self.mod.metric("computed", lambda: 7, unit="x")
        g.set(21.5)
        c.inc()
        c.inc(4)
        c.dec()
        self.mod.flush()
        m = self.agent.msg("axm:monitor")
        self.assertEqual(m["data"], {
            "temp": {"value": 21.5, "type": "gauge", "unit": "C"},
            "ticks": {"value": 4, "type": "counter", "unit": ""},
            "computed": {"value": 7, "type": "gauge", "unit": "x"},
        })
        c.reset()
        self.assertEqual(c.value(), 0)

    def test_same_name_same_object(self):
        self.assertIs(self.mod.counter("a"), self.mod.counter("a"))
        self.assertIs(self.mod.gauge("b"), self.mod.gauge("b"))
        self.assertIs(self.mod.histogram("h"), self.mod.histogram("h"))
        with self.assertRaises(ValueError):
            self.mod.gauge("a")

    def test_metric_errors_are_skipped_for_that_flush(self):
        state = {"fail": True}

        def fn():
            if state["fail"]:
                raise RuntimeError("boom")
            return "ok"
        self.mod.metric("flaky", fn)
        self.mod.counter("n").inc()
        self.mod.flush()
        self.assertEqual(set(self.agent.msg("axm:monitor")["data"]), {"n"})
        state["fail"] = False
        self.mod.flush()
        self.assertEqual(self.agent.msg("axm:monitor")["data"]["flaky"]["value"], "ok")

    def test_non_finite_values_do_not_break_json(self):
        self.mod.gauge("nan").set(float("nan"))
        self.mod.gauge("obj").set(object())
        self.mod.gauge("flag").set(True)
        self.mod.flush()
        d = self.agent.msg("axm:monitor")["data"]  # valid JSON (msg() parsed it)
        self.assertNotIn("nan", d)
        self.assertIsInstance(d["obj"]["value"], str)
        self.assertIs(d["flag"]["value"], True)

    def test_counter_is_thread_safe(self):
        c = self.mod.counter("hits")

        def work():
            for _ in range(5000):
                c.inc()
        ts = [threading.Thread(target=work) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(c.value(), 40000)

    def test_meter_rate_over_sliding_minute(self):
        clock = FakeClock()
        m = herd_module.Meter("rps", clock=clock)
        self.assertEqual(m.unit, "req/s")
        clock.t += 120  # an old meter: rate over a whole minute
        m.mark(60)
        self.assertAlmostEqual(m.value(), 1.0)
        clock.t += 30
        m.mark(60)
        self.assertAlmostEqual(m.value(), 2.0)
        clock.t += 31  # the first 60 events left the window
        self.assertAlmostEqual(m.value(), 1.0)
        clock.t += 60
        self.assertEqual(m.value(), 0)

    def test_young_meter_divides_by_its_age(self):
        clock = FakeClock()
        m = herd_module.Meter("rps", clock=clock)
        clock.t += 10
        m.mark(50)
        self.assertAlmostEqual(m.value(), 5.0)

    def test_meter_in_monitor_payload(self):
        self.mod.meter("req").mark(3)
        self.mod.flush()
        d = self.agent.msg("axm:monitor")["data"]["req"]
        self.assertEqual(d["type"], "meter")
        self.assertEqual(d["unit"], "req/s")
        self.assertGreater(d["value"], 0)

    def test_histogram_aggregates_and_window(self):
        clock = FakeClock()
        h = herd_module.Histogram("lat", unit="ms", clock=clock)
        self.assertIsNone(h.value())
        for v in range(1, 101):
            h.observe(v)
        self.assertAlmostEqual(h.aggregate("mean"), 50.5)
        self.assertEqual(h.aggregate("min"), 1)
        self.assertEqual(h.aggregate("max"), 100)
        self.assertAlmostEqual(h.aggregate("p50"), 50.5)
        self.assertAlmostEqual(h.aggregate("p95"), 95.05)
        self.assertAlmostEqual(h.aggregate("p99"), 99.01)
        self.assertAlmostEqual(h.value(), 95.05)  # p95 by default
        clock.t += 61
        h.observe(1000)
        self.assertEqual(h.aggregate("min"), 1000)  # the old samples left the window
        with self.assertRaises(ValueError):
            herd_module.Histogram("bad", agg="p42")

    def test_histogram_keeps_the_newest_1024(self):
        h = herd_module.Histogram("lat", agg="min", clock=FakeClock())
        for v in range(2000):
            h.observe(v)
        self.assertEqual(h.value(), 2000 - 1024)
        self.assertEqual(h.aggregate("max"), 1999)

    def test_histogram_payload_has_agg_type(self):
        h = self.mod.histogram("latency", unit="ms", agg="mean")
        h.observe(10)
        h.observe(20)
        self.mod.flush()
        d = self.agent.msg("axm:monitor")["data"]["latency"]
        self.assertEqual(d, {"value": 15, "type": "histogram", "unit": "ms",
                             "agg_type": "mean"})


class TestPeriodicFlush(ChannelTest):
    flush_interval = 0.1

    def test_monitor_sent_periodically(self):
        c = self.mod.counter("ticks")
        c.inc()
        first = self.agent.msg("axm:monitor", timeout=2)
        c.inc()
        t0 = time.monotonic()
        second = self.agent.msg("axm:monitor", timeout=2)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(first["data"]["ticks"]["value"], 1)
        self.assertEqual(second["data"]["ticks"]["value"], 2)


class TestActions(ChannelTest):
    def test_registration_message(self):
        @self.mod.action("greet")
        def greet(params, reply):
            reply("hi")
        m = self.agent.msg("axm:action")
        self.assertEqual(m["data"], {"action_name": "greet", "action_type": "custom",
                                     "arity": 2})
        self.assertTrue(callable(greet))

    def test_trigger_calls_handler_and_replies(self):
        seen = []

        def greet(params, reply):
            seen.append(params)
            reply("%s, %s" % (self.mod.get("greeting"), params.get("name", "stranger")))
        self.mod.action("greet", greet)
        self.agent.msg("axm:action")
        self.agent.trigger("greet", {"name": "bob"})
        r = self.agent.msg("axm:reply")
        self.assertEqual(r["data"], {"action_name": "greet", "return": 'hi "you", bob'})
        self.assertEqual(seen, [{"name": "bob"}])

    def test_second_reply_is_ignored(self):
        def twice(params, reply):
            self.assertTrue(reply(1))
            self.assertFalse(reply(2))
            return 3
        self.mod.action("twice", twice)
        self.agent.trigger("twice")
        self.assertEqual(self.agent.msg("axm:reply")["data"]["return"], 1)
        self.agent.none("axm:reply")

    def test_return_value_is_the_reply(self):
        self.mod.action("sum", lambda p, reply: {"sum": int(p["a"]) + int(p["b"])})
        self.mod.action("one_arg", lambda p: p.get("x"))
        self.agent.trigger("sum", {"a": "2", "b": "3"})
        self.assertEqual(self.agent.msg("axm:reply")["data"],
                         {"action_name": "sum", "return": {"sum": 5}})
        self.agent.trigger("one_arg", {"x": "y"})
        self.assertEqual(self.agent.msg("axm:reply")["data"],
                         {"action_name": "one_arg", "return": "y"})

    def test_async_reply_from_another_thread(self):
        def later(params, reply):
            threading.Timer(0.1, reply, args=("done",)).start()
        self.mod.action("later", later)
        self.agent.trigger("later")
        self.assertEqual(self.agent.msg("axm:reply")["data"]["return"], "done")

    def test_exception_replies_error_and_reports_issue(self):
        def bad(params, reply):
            raise ValueError("no way")
        self.mod.action("bad", bad)
        self.agent.trigger("bad")
        msgs = [self.agent.msg(), self.agent.msg(), self.agent.msg()]
        by_type = {m["type"]: m["data"] for m in msgs}
        self.assertEqual(by_type["axm:reply"], {"action_name": "bad",
                                                "return": {"error": "no way"}})
        issue = by_type["process:exception"]
        self.assertEqual(issue["message"], "no way")
        self.assertEqual(issue["name"], "ValueError")
        self.assertIn("Traceback", issue["stack"])
        self.assertIn("raise ValueError", issue["stack"])

    def test_unknown_action(self):
        self.agent.trigger("nope")
        r = self.agent.msg("axm:reply")
        self.assertEqual(r["data"]["action_name"], "nope")
        self.assertIn("unknown action", r["data"]["return"]["error"])

    def test_missing_or_bad_opts_become_empty_dict(self):
        got = []
        self.mod.action("a", lambda p, reply: got.append(p) or reply(len(p)))
        self.agent_sock.sendall(b'{"msg":"a"}\n{"msg":"a","opts":[1]}\n')
        self.assertEqual(self.agent.msg("axm:reply")["data"]["return"], 0)
        self.assertEqual(self.agent.msg("axm:reply")["data"]["return"], 0)
        self.assertEqual(got, [{}, {}])

    def test_scoped_action_streams_by_uuid(self):
        def stream(params, res):
            res.send("a")
            res.send("b")
            res.end("done")
        self.mod.scoped_action("tail", stream)
        self.assertEqual(self.agent.msg("axm:action")["data"]["action_type"], "scoped")
        self.agent.trigger("tail", uuid="u-1")
        types = []
        for _ in range(3):
            m = self.agent.msg()
            self.assertEqual(m["data"]["uuid"], "u-1")
            types.append((m["type"], m["data"]["data"]))
        self.assertEqual(types, [("axm:scoped_action:stream", "a"),
                                 ("axm:scoped_action:stream", "b"),
                                 ("axm:scoped_action:end", "done")])


class TestFraming(ChannelTest):
    def setUp(self):
        super().setUp()
        self.mod.action("echo", lambda p, reply: reply(p.get("v")))
        self.agent.msg("axm:action")

    def test_partial_lines_and_several_lines_in_one_write(self):
        self.agent_sock.sendall(b'{"msg":"echo","op')
        time.sleep(0.1)
        self.agent_sock.sendall(b'ts":{"v":"1"}}\n{"msg":"echo","opts":{"v":"2"}}\n{"msg":"e')
        time.sleep(0.1)
        self.agent_sock.sendall(b'cho","opts":{"v":"3"}}\n')
        got = sorted(self.agent.msg("axm:reply")["data"]["return"] for _ in range(3))
        self.assertEqual(got, ["1", "2", "3"])

    def test_invalid_json_is_ignored(self):
        self.agent_sock.sendall(b'not json\n[1,2]\n{"no_msg":1}\n\xff\xfe\n\n'
                                b'{"msg":"echo","opts":{"v":"ok"}}\n')
        self.assertEqual(self.agent.msg("axm:reply")["data"]["return"], "ok")
        self.assertEqual(self.mod.invalid_lines, 4)

    def test_line_over_one_mib_is_dropped(self):
        big = b'{"msg":"echo","opts":{"v":"' + b"x" * (herd_module.MAX_LINE + 10) + b'"}}\n'
        t = threading.Thread(target=self.agent_sock.sendall,
                             args=(big + b'{"msg":"echo","opts":{"v":"after"}}\n',))
        t.start()
        r = self.agent.msg("axm:reply", timeout=10)
        t.join()
        self.assertEqual(r["data"]["return"], "after")
        self.assertEqual(self.mod.dropped_lines, 1)


class TestIssuesAndEvents(ChannelTest):
    def test_notify_issue_with_message(self):
        self.mod.notify_issue("disk almost full", stack="here")
        self.assertEqual(self.agent.msg("process:exception")["data"],
                         {"message": "disk almost full", "stack": "here", "name": "Error"})

    def test_notify_issue_with_exception(self):
        try:
            raise KeyError("k")
        except KeyError as e:
            self.mod.notify_issue(e)
        d = self.agent.msg("process:exception")["data"]
        self.assertEqual(d["name"], "KeyError")
        self.assertIn("Traceback", d["stack"])

    def test_emit_event(self):
        self.mod.emit_event("deployed", version="2", ok=True)
        self.assertEqual(self.agent.msg("human:event")["data"],
                         {"__name": "deployed", "version": "2", "ok": True})


class TestPeerClosed(ChannelTest):
    def test_sends_become_noops(self):
        self.agent_sock.close()
        time.sleep(0.2)
        for _ in range(3):  # the first send may still succeed into the buffer
            self.mod.counter("c").inc()
            self.mod.flush()
            self.mod.notify_issue("x")
        self.assertFalse(self.mod.connected)
        self.mod.emit_event("still", alive=True)  # no exception
        self.mod.trigger("nothing")
        self.assertTrue(self.mod._thread.is_alive())


class TestRun(unittest.TestCase):
    def test_run_ticks_and_exits_0_on_sigterm(self):
        a, b = socket.socketpair()
        script = textwrap.dedent("""
            import sys
            sys.path.insert(0, %r)
            import herd_module
            mod = herd_module.init(flush_interval=0.05)
            c = mod.counter("ticks")
            mod.run(tick=c.inc, interval=0.02)
            print("stopped", flush=True)
        """ % SDK_DIR)
        env = dict(os.environ, HERD_CHANNEL_FD=str(b.fileno()), HERD_MODULE_NAME="runner")
        p = subprocess.Popen([sys.executable, "-c", script], env=env, pass_fds=[b.fileno()],
                             stdout=subprocess.PIPE)
        b.close()
        try:
            agent = Agent(a)
            self.assertEqual(agent.msg()["data"]["module_name"], "runner")
            deadline = time.monotonic() + 5
            while agent.msg("axm:monitor")["data"]["ticks"]["value"] < 3:
                self.assertLess(time.monotonic(), deadline)
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=5)
            self.assertEqual(p.returncode, 0)
            self.assertEqual(out.strip(), b"stopped")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            a.close()


if __name__ == "__main__":
    unittest.main()

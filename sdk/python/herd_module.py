"""herd_module: the Python SDK for native Herd modules (stdlib only, Python 3.9+).

A module is any program `agentd` starts with one end of a socketpair as fd 3
(HERD_CHANNEL_FD=3). It speaks PM2's module protocol over it: newline-delimited JSON,
`{"type": ..., "data": ...}` from the module, `{"msg": ..., "opts": {...}}` from the agent.
docs/module-protocol.md is the contract.

    import herd_module

    mod = herd_module.init(description="my module", main_probes=["ticks"])
    ticks = mod.counter("ticks")
    latency = mod.histogram("latency", unit="ms")

    @mod.action("greet")
    def greet(params, reply):
        reply("%s, %s" % (mod.get("greeting", "hello"), params.get("name", "stranger")))

    mod.run(tick=ticks.inc, interval=mod.get("interval", 1000) / 1000)

Without HERD_CHANNEL_FD (run by hand) the module works the same and sends nothing.
"""

import collections
import errno
import inspect
import json
import math
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback

__all__ = ["init", "Module", "Gauge", "Counter", "Meter", "Histogram", "Metric",
           "MAX_LINE"]

MAX_LINE = 1 << 20           # lines longer than this (from the agent) are dropped
WINDOW = 60                  # seconds of history for meters and histograms
HISTOGRAM_SAMPLES = 1024     # newest samples kept by a histogram
AGGREGATES = ("mean", "min", "max", "p50", "p95", "p99")
THEME = ["#1d3b53", "#0f2436", "white", "white"]


def _warn(msg):
    try:
        sys.stderr.write("herd_module: %s\n" % msg)
        sys.stderr.flush()
    except Exception:  # stderr closed: nothing to do
        pass


def _jsonable(v):
    """A probe value as JSON can carry it: numbers (finite), strings, booleans; None skips."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    try:
        f = float(v)  # Decimal, numpy scalars...
        return f if math.isfinite(f) else None
    except (TypeError, ValueError):
        return str(v)


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------

class _Probe:
    kind = "gauge"

    def __init__(self, name, unit=""):
        self.name = name
        self.unit = unit
        self._lock = threading.Lock()

    def value(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def payload(self):
        v = _jsonable(self.value())
        if v is None:
            return None
        return {"value": v, "type": self.kind, "unit": self.unit}


class Gauge(_Probe):
    """A value set by the module (`set(v)`); not reported until first set."""
    kind = "gauge"

    def __init__(self, name, unit=""):
        super().__init__(name, unit)
        self._value = None

    def set(self, v):
        with self._lock:
            self._value = v

    def value(self):
        with self._lock:
            return self._value


class Counter(_Probe):
    """An integer incremented and decremented by the module, starting at 0."""
    kind = "counter"

    def __init__(self, name, unit=""):
        super().__init__(name, unit)
        self._value = 0

    def inc(self, n=1):
        with self._lock:
            self._value += n

    def dec(self, n=1):
        with self._lock:
            self._value -= n

    def reset(self):
        with self._lock:
            self._value = 0

    def value(self):
        with self._lock:
            return self._value


class Meter(_Probe):
    """Events per second over a sliding minute, counted in 1-second buckets."""
    kind = "meter"

    def __init__(self, name, unit="req/s", clock=time.monotonic):
        super().__init__(name, unit)
        self._clock = clock
        self._created = clock()
        self._buckets = collections.OrderedDict()  # whole second -> events

    def _expire(self, now):
        oldest = int(now) - WINDOW + 1
        while self._buckets:
            sec = next(iter(self._buckets))
            if sec >= oldest:
                break
            del self._buckets[sec]

    def mark(self, n=1):
        with self._lock:
            now = self._clock()
            sec = int(now)
            self._buckets[sec] = self._buckets.get(sec, 0) + n
            self._expire(now)

    def value(self):
        with self._lock:
            now = self._clock()
            self._expire(now)
            total = sum(self._buckets.values())
            # A young meter divides by the time it has existed, not by a whole minute.
            span = min(float(WINDOW), max(1.0, now - self._created))
            return round(total / span, 3)


def _percentile(sorted_vals, p):
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(math.floor(k))
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


class Histogram(_Probe):
    """Samples of the last minute (the newest 1024), reported as one aggregate."""
    kind = "histogram"

    def __init__(self, name, unit="", agg="p95", clock=time.monotonic):
        if agg not in AGGREGATES:
            raise ValueError("histogram %r: agg must be one of %s" % (name, ", ".join(AGGREGATES)))
        super().__init__(name, unit)
        self.agg = agg
        self._clock = clock
        self._samples = collections.deque(maxlen=HISTOGRAM_SAMPLES)  # (time, value)

    def observe(self, v):
        v = float(v)
        if not math.isfinite(v):
            return
        with self._lock:
            self._samples.append((self._clock(), v))

    def _values(self):
        limit = self._clock() - WINDOW
        while self._samples and self._samples[0][0] < limit:
            self._samples.popleft()
        return [v for _, v in self._samples]

    def aggregate(self, agg=None):
        agg = agg or self.agg
        with self._lock:
            vals = self._values()
        if not vals:
            return None
        if agg == "mean":
            r = sum(vals) / len(vals)
        elif agg == "min":
            r = min(vals)
        elif agg == "max":
            r = max(vals)
        else:
            r = _percentile(sorted(vals), float(agg[1:]))
        return round(r, 6)

    def value(self):
        return self.aggregate()

    def payload(self):
        p = super().payload()
        if p is not None:
            p["agg_type"] = self.agg
        return p


class Metric(_Probe):
    """A value computed by a function at each flush; an error skips that flush."""
    kind = "gauge"

    def __init__(self, name, fn, unit=""):
        super().__init__(name, unit)
        self._fn = fn

    def value(self):
        try:
            return self._fn()
        except Exception:
            return None


# ---------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------

class _Reply:
    """`reply(value)` for one trigger: the first call sends, later calls are ignored."""

    def __init__(self, module, name):
        self._module = module
        self._name = name
        self._lock = threading.Lock()
        self.done = False

    def __call__(self, value=None):
        with self._lock:
            if self.done:
                return False
            self.done = True
        self._module._send("axm:reply", {"action_name": self._name, "return": value})
        return True


class _Scoped:
    """The emitter given to a scoped action: send/error/end, matched by the trigger's uuid."""

    def __init__(self, module, name, uuid):
        self._module = module
        self._name = name
        self._uuid = uuid
        self.ended = False

    def _out(self, kind, data):
        if self.ended:
            return
        self._module._send("axm:scoped_action:" + kind,
                           {"action_name": self._name, "uuid": self._uuid, "data": data})

    def send(self, data):
        self._out("stream", data)

    def error(self, data):
        self._out("error", data)

    def end(self, data=None):
        self._out("end", data)
        self.ended = True


def _arity(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    n = 0
    for p in params:
        if p.kind in (p.VAR_POSITIONAL,):
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return min(n, 2)


# ---------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------

class Module:
    """The module's side of the channel. Build it with `init()`."""

    def __init__(self, name, config, description="", version="", widget_type="generic",
                 main_probes=(), flush_interval=1.0, channel_fd=None, logo="", theme=None):
        self.name = name
        self.config = config
        self.description = description
        self.version = version
        self.flush_interval = max(0.01, float(flush_interval))
        self._probes = collections.OrderedDict()
        self._probes_lock = threading.Lock()
        self._actions = {}
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._sock = None
        self._thread = None
        self._wake_r = self._wake_w = None
        self.dropped_lines = 0
        self.invalid_lines = 0
        if channel_fd is not None:
            try:
                # A duplicate: closing the module never closes the caller's descriptor.
                self._sock = socket.socket(fileno=os.dup(int(channel_fd)))
            except OSError as e:
                _warn("channel fd %s is unusable (%s): running standalone" % (channel_fd, e))
                self._sock = None
        self._send("axm:option:configuration", {
            "module_name": name,
            "module_version": version,
            "description": description,
            "module_conf": config,
            "widget": {
                "type": widget_type,
                "logo": str(logo or ""),
                "theme": list(theme) if theme else list(THEME),
                "el": {"probes": True, "actions": True},
                "block": {"actions": True, "issues": True, "cpu": True, "mem": True,
                          "main_probes": list(main_probes)},
            },
        })
        if self._sock is not None:
            self._wake_r, self._wake_w = os.pipe()  # close() wakes the loop through it
            self._thread = threading.Thread(target=self._loop, name="herd-module", daemon=True)
            self._thread.start()

    # -- state -------------------------------------------------------------------------

    @property
    def connected(self):
        """True while the channel is usable (False standalone or once the agent is gone)."""
        return self._sock is not None and not self._closed

    def get(self, key, default=None):
        return self.config.get(key, default)

    # -- sending -----------------------------------------------------------------------

    def _send(self, type_, data):
        if self._sock is None or self._closed:
            return False
        try:
            line = json.dumps({"type": type_, "data": data}, allow_nan=False, default=str)
        except (TypeError, ValueError) as e:
            _warn("cannot encode %s message: %s" % (type_, e))
            return False
        payload = line.encode("utf-8") + b"\n"
        with self._send_lock:
            if self._closed:
                return False
            try:
                self._sock.sendall(payload, getattr(socket, "MSG_NOSIGNAL", 0))
                return True
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF) \
                        or isinstance(e, (BrokenPipeError, ConnectionError)):
                    # The agent is gone: keep running unmonitored.
                    self._closed = True
                    return False
                _warn("send failed: %s" % e)
                return False

    # -- metrics -----------------------------------------------------------------------

    def _probe(self, cls, name, *args, **kwargs):
        with self._probes_lock:
            p = self._probes.get(name)
            if p is not None:
                if type(p) is not cls:
                    raise ValueError("probe %r already exists as a %s" % (name, type(p).__name__))
                return p
            p = cls(name, *args, **kwargs)
            self._probes[name] = p
            return p

    def gauge(self, name, unit=""):
        return self._probe(Gauge, name, unit)

    def counter(self, name, unit=""):
        return self._probe(Counter, name, unit)

    def meter(self, name, unit="req/s"):
        return self._probe(Meter, name, unit)

    def histogram(self, name, unit="", agg="p95"):
        return self._probe(Histogram, name, unit, agg)

    def metric(self, name, fn, unit=""):
        return self._probe(Metric, name, fn, unit)

    def monitor_payload(self):
        """What the next `axm:monitor` carries: {name: {value, type, unit[, agg_type]}}."""
        with self._probes_lock:
            probes = list(self._probes.values())
        out = collections.OrderedDict()
        for p in probes:
            try:
                d = p.payload()
            except Exception:
                d = None
            if d is not None:
                out[p.name] = d
        return out

    def flush(self):
        """Send every probe now, in one `axm:monitor` message."""
        data = self.monitor_payload()
        if data:
            self._send("axm:monitor", data)

    # -- actions -----------------------------------------------------------------------

    def action(self, name, fn=None):
        """Register `fn(params, reply)` as action `name`; without fn, a decorator."""
        if fn is None:
            def deco(f):
                self.action(name, f)
                return f
            return deco
        self._actions[name] = (fn, False)
        self._send("axm:action", {"action_name": name, "action_type": "custom", "arity": 2})
        return fn

    def scoped_action(self, name, fn=None):
        """Register `fn(params, res)`, a streaming action: res.send(data), res.error(data),
        res.end(data). Without fn, a decorator."""
        if fn is None:
            def deco(f):
                self.scoped_action(name, f)
                return f
            return deco
        self._actions[name] = (fn, True)
        self._send("axm:action", {"action_name": name, "action_type": "scoped", "arity": 2})
        return fn

    def trigger(self, name, opts=None, uuid=None):
        """Run action `name` as a trigger from the agent would (in the calling thread)."""
        opts = opts if isinstance(opts, dict) else {}
        entry = self._actions.get(name)
        if entry is None:
            if uuid is not None:
                _Scoped(self, name, uuid).end({"error": "unknown action %s" % name})
            else:
                self._send("axm:reply", {"action_name": name,
                                         "return": {"error": "unknown action %s" % name}})
            return
        fn, scoped = entry
        if scoped:
            res = _Scoped(self, name, uuid)
            try:
                fn(opts, res)
            except Exception as e:
                self.notify_issue(e)
                res.error(str(e))
                res.end({"error": str(e)})
            return
        reply = _Reply(self, name)
        try:
            n = _arity(fn)
            result = fn(opts, reply) if n >= 2 else fn(opts) if n == 1 else fn()
        except Exception as e:
            self.notify_issue(e)
            reply({"error": str(e)})
            return
        # A handler that cannot reply itself, or that returned a value, is answered with it.
        if not reply.done and (n < 2 or result is not None):
            reply(result)

    def _dispatch(self, line):
        try:
            msg = json.loads(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            self.invalid_lines += 1
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("msg"), str):
            self.invalid_lines += 1
            return
        uuid = msg.get("uuid")
        # Each trigger runs in its own thread: a slow action never stalls the probes.
        t = threading.Thread(target=self.trigger, args=(msg["msg"], msg.get("opts"), uuid),
                             name="herd-action-" + msg["msg"], daemon=True)
        t.start()

    # -- issues and events -------------------------------------------------------------

    def notify_issue(self, error, stack=None):
        """Report an issue: a message or an exception (its traceback becomes the stack)."""
        if isinstance(error, BaseException):
            name = type(error).__name__
            message = str(error) or name
            if stack is None:
                stack = "".join(traceback.format_exception(type(error), error,
                                                           error.__traceback__))
        else:
            name = "Error"
            message = str(error)
            if stack is None:
                stack = "".join(traceback.format_stack()[:-1])
        self._send("process:exception", {"message": message, "stack": stack, "name": name})

    def emit_event(self, name, **data):
        d = {"__name": name}
        d.update(data)
        self._send("human:event", d)

    # -- the loop ----------------------------------------------------------------------

    def _loop(self):
        buf = bytearray()
        discarding = False  # inside a line longer than MAX_LINE
        reading = True
        next_flush = time.monotonic() + self.flush_interval
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_flush:
                try:
                    self.flush()
                except Exception as e:  # never let the loop die
                    _warn("flush failed: %s" % e)
                next_flush = now + self.flush_interval
            timeout = max(0.0, next_flush - time.monotonic())
            watch = [self._wake_r] + ([self._sock] if reading else [])
            try:
                r, _, _ = select.select(watch, [], [], timeout)
            except (OSError, ValueError):
                reading = False
                self._stop.wait(min(timeout, 0.2))
                continue
            if self._sock not in r:
                continue
            try:
                chunk = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                reading = False  # the agent closed its end: keep running, unmonitored
                continue
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > MAX_LINE:
                        if not discarding:
                            self.dropped_lines += 1
                        discarding = True
                        buf.clear()
                    break
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                if discarding:
                    discarding = False
                    continue
                if len(line) > MAX_LINE:
                    self.dropped_lines += 1
                    continue
                if line.strip():
                    self._dispatch(line)

    def run(self, tick=None, interval=1.0):
        """Block until SIGTERM or SIGINT, calling `tick()` every `interval` seconds if given,
        then close the module. Returns normally so the program exits 0."""
        stop = threading.Event()
        previous = {}

        def handler(signum, frame):
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, handler)
        try:
            interval = max(0.001, float(interval))
            next_tick = time.monotonic()
            while not stop.is_set():
                if tick is not None:
                    now = time.monotonic()
                    if now >= next_tick:
                        try:
                            tick()
                        except Exception as e:
                            self.notify_issue(e)
                        next_tick = max(next_tick + interval, now)
                    wait = min(0.5, max(0.0, next_tick - time.monotonic()))
                else:
                    wait = 0.5
                stop.wait(wait)
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
            self.close()

    def close(self):
        """Send the last probes, stop the loop and release the channel. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        try:
            self.flush()
        except Exception:
            pass
        with self._send_lock:
            self._closed = True
            if self._sock is not None:
                try:
                    self._sock.close()
                except OSError:
                    pass
            for fd in (self._wake_r, self._wake_w):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _manifest():
    d = os.environ.get("HERD_MODULE_DIR")
    if not d:
        return {}
    try:
        with open(os.path.join(d, "package.json"), encoding="utf-8") as f:
            m = json.load(f)
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        return {}


def init(description="", version="", widget_type="generic", main_probes=(),
         flush_interval=1.0, channel_fd=None, config=None, logo="", theme=None):
    """Connect to the agent and announce the module; returns the Module.

    logo (an https: or data: image URL) and theme (PM2's four colours: main, secondary,
    main border, secondary border) are how the dashboard shows the module's widget.

    channel_fd defaults to $HERD_CHANNEL_FD (absent: standalone, nothing is sent); config
    defaults to $HERD_MODULE_CONFIG, the effective typed config. Version and description
    default to the module's package.json (in $HERD_MODULE_DIR) when known."""
    if channel_fd is None:
        env_fd = os.environ.get("HERD_CHANNEL_FD", "").strip()
        if env_fd:
            try:
                channel_fd = int(env_fd)
            except ValueError:
                _warn("HERD_CHANNEL_FD=%r is not a descriptor: running standalone" % env_fd)
    if config is None:
        raw = os.environ.get("HERD_MODULE_CONFIG")
        config = {}
        if raw:
            try:
                config = json.loads(raw)
            except ValueError as e:
                _warn("HERD_MODULE_CONFIG is not valid JSON (%s): using {}" % e)
                config = {}
            if not isinstance(config, dict):
                _warn("HERD_MODULE_CONFIG is not a JSON object: using {}")
                config = {}
    config = dict(config)
    manifest = None
    if not version or not description:
        manifest = _manifest()
        version = version or str(manifest.get("version", "") or "")
        description = description or str(manifest.get("description", "") or "")
    name = os.environ.get("HERD_MODULE_NAME") or (manifest or {}).get("name") or \
        os.path.splitext(os.path.basename(sys.argv[0] or "module"))[0] or "module"
    return Module(str(name), config, description=description, version=version,
                  widget_type=widget_type, main_probes=main_probes,
                  flush_interval=flush_interval, channel_fd=channel_fd, logo=logo,
                  theme=theme)

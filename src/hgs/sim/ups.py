"""A simulated UPS that plays a power timeline, served as apcupsd NIS and as NUT upsd.

``SimUps`` holds the power state (on line, on battery, low battery, comm lost) and a
battery that drains on battery and recharges on line; a timeline of (seconds, state) plays
by itself, and ``set_state`` changes it by hand. ``NisServer`` and ``UpsdServer`` answer
the two daemons' protocols from it, as the real daemons format them, so hgs's readers and a
REAL apcupsd (net mode, which reads STATFLAG from its master) can be pointed at it.
"""

import socketserver
import struct
import threading
import time

from hgs.ups.nut import quote

STATES = ("online", "onbatt", "lowbatt", "commlost")

# apcupsd STATFLAG bits: 0x08 online, 0x10 on battery, 0x40 low battery, 0x100 comm lost;
# 0x05000000 are the "battery present" and "SmartUPS" bits a real master reports.
STATFLAGS = {"online": 0x05000008, "onbatt": 0x05000010, "lowbatt": 0x05000050, "commlost": 0x05000100}
APC_STATUS = {"online": "ONLINE", "onbatt": "ONBATT", "lowbatt": "ONBATT LOWBATT", "commlost": "COMMLOST"}
NUT_STATUS = {"online": "OL", "onbatt": "OB DISCHRG", "lowbatt": "OB DISCHRG LB"}


def parse_timeline(text):
    """Given '0:online,10:onbatt,40:lowbatt,60:online', returns [(0.0,'online'), ...].

    Raises ValueError naming the bad entry.
    """
    events = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        at, _, state = item.partition(":")
        try:
            at_s = float(at)
        except ValueError:
            raise ValueError(f"timeline entry {item!r}: expected SECONDS:STATE") from None
        if state not in STATES or at_s < 0:
            raise ValueError(f"timeline entry {item!r}: state must be one of {', '.join(STATES)}")
        events.append((at_s, state))
    return sorted(events)


class SimUps:
    """A UPS whose state follows a timeline (simulated seconds) or ``set_state``.

    ``time_scale`` simulated seconds pass per real second. The battery holds
    ``full_runtime_s`` of runtime at 100 % and recharges in ``recharge_s``.
    """

    def __init__(self, timeline=(), time_scale=1.0, full_runtime_s=1800.0, recharge_s=7200.0,
                 charge_pct=100.0, clock=time.monotonic, name="simups"):
        self.name = name
        self.time_scale = time_scale
        self.full_runtime_s = full_runtime_s
        self.recharge_s = recharge_s
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._timeline = list(timeline)
        self._state = "online"
        self._charge = charge_pct
        self._since = 0.0  # simulated time the charge was last brought up to date
        self._on_battery_since = None
        self.requests = 0

    def elapsed_s(self):
        """Simulated seconds since the UPS was made."""
        return (self._clock() - self._start) * self.time_scale

    def _advance(self, now_s):
        """Plays the timeline up to ``now_s``, draining or charging the battery on the way."""
        while self._timeline and self._timeline[0][0] <= now_s:
            at_s, state = self._timeline.pop(0)
            self._charge_to(max(at_s, self._since))
            self._enter(state, at_s)
        self._charge_to(now_s)

    def _charge_to(self, now_s):
        span = max(0.0, now_s - self._since)
        if self._state in ("onbatt", "lowbatt"):
            self._charge = max(0.0, self._charge - 100.0 * span / self.full_runtime_s)
        elif self._state == "online":
            self._charge = min(100.0, self._charge + 100.0 * span / self.recharge_s)
        self._since = max(self._since, now_s)

    def _enter(self, state, at_s):
        if state in ("onbatt", "lowbatt") and self._state not in ("onbatt", "lowbatt"):
            self._on_battery_since = at_s
        elif state == "online":
            self._on_battery_since = None
        self._state = state

    def set_state(self, state, charge_pct=None):
        """Changes the power state now (and the charge, if given)."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        with self._lock:
            now_s = self.elapsed_s()
            self._advance(now_s)
            self._enter(state, now_s)
            if charge_pct is not None:
                self._charge = float(charge_pct)

    def snapshot(self):
        """Returns {'state', 'charge_pct', 'runtime_s', 'on_battery_s'} as of now."""
        with self._lock:
            now_s = self.elapsed_s()
            self._advance(now_s)
            self.requests += 1
            on_battery = 0.0 if self._on_battery_since is None else now_s - self._on_battery_since
            return {
                "state": self._state,
                "charge_pct": round(self._charge, 1),
                "runtime_s": int(self.full_runtime_s * self._charge / 100.0),
                "on_battery_s": int(on_battery),
            }


def nis_records(snap, name="simups", when=None):
    """Given a snapshot, returns the NIS status record lines, formatted as apcupsd does."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(when)) + "  "
    state = snap["state"]
    body = [
        ("DATE", stamp),
        ("HOSTNAME", "hgs-sim"),
        ("VERSION", "3.14.14 (31 May 2016) debian"),
        ("UPSNAME", name),
        ("CABLE", "Custom Cable Smart"),
        ("DRIVER", "APC Smart UPS (any)"),
        ("UPSMODE", "Stand Alone"),
        ("STARTTIME", stamp),
        ("MODEL", "Simulated Smart-UPS"),
        ("STATUS", APC_STATUS[state] + " "),
        ("LINEV", "0.0 Volts" if state in ("onbatt", "lowbatt") else "230.0 Volts"),
        ("LOADPCT", "25.0 Percent"),
        ("BCHARGE", f"{snap['charge_pct']:.1f} Percent"),
        ("TIMELEFT", f"{snap['runtime_s'] / 60.0:.1f} Minutes"),
        ("MBATTCHG", "5 Percent"),
        ("MINTIMEL", "3 Minutes"),
        ("MAXTIME", "0 Seconds"),
        ("TONBATT", f"{snap['on_battery_s']} Seconds"),
        ("STATFLAG", f"0x{STATFLAGS[state]:08X}"),
    ]
    lines = [f"{key:<9}: {value}\n" for key, value in body]
    lines.append(f"{'END APC':<9}: {stamp}\n")
    size = sum(len(line) for line in lines)
    header = f"{'APC':<9}: 001,{len(lines) + 1:03d},{size:04d}\n"
    return [header] + lines


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler, ups):
        self.ups = ups
        super().__init__(address, handler)


class _Served:
    """Runs a server in a thread; ``port`` is where it listens; ``stop()`` ends it."""

    handler = None

    def __init__(self, ups, host="127.0.0.1", port=0):
        self.server = _Server((host, port), self.handler, ups)
        self.host, self.port = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class _NisHandler(socketserver.BaseRequestHandler):
    def _read_exact(self, count):
        data = b""
        while len(data) < count:
            chunk = self.request.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def handle(self):
        while True:
            head = self._read_exact(2)
            if head is None:
                return
            (length,) = struct.unpack(">H", head)
            command = self._read_exact(length)
            if command is None:
                return
            if command.strip() == b"status":
                records = nis_records(self.server.ups.snapshot(), self.server.ups.name)
                out = b"".join(struct.pack(">H", len(r)) + r.encode("ascii") for r in records)
            else:
                message = b"Invalid command\n"
                out = struct.pack(">H", len(message)) + message
            self.request.sendall(out + b"\x00\x00")


class NisServer(_Served):
    """apcupsd's NIS, served from a SimUps."""

    handler = _NisHandler


class _UpsdHandler(socketserver.StreamRequestHandler):
    def handle(self):
        ups = self.server.ups
        for raw in self.rfile:
            words = raw.decode("utf-8", "replace").split()
            if not words:
                continue
            verb = words[0].upper()
            if verb == "LOGOUT":
                self.wfile.write(b"OK Goodbye\n")
                return
            self.wfile.write(self._answer(ups, verb, words[1:]).encode("utf-8"))

    @staticmethod
    def _answer(ups, verb, args):
        if verb in ("USERNAME", "PASSWORD", "LOGIN") and args:
            return "OK\n"
        if verb == "VER":
            return "Network UPS Tools upsd 2.8.0 - hgs simulated UPS\n"
        if verb in ("LIST", "GET") and len(args) >= 2 and args[0].upper() == "VAR":
            if args[1] != ups.name:
                return "ERR UNKNOWN-UPS\n"
            snap = ups.snapshot()
            if snap["state"] == "commlost":
                return "ERR DATA-STALE\n"
            variables = {
                "battery.charge": f"{snap['charge_pct']:.0f}",
                "battery.runtime": str(snap["runtime_s"]),
                "device.type": "ups",
                "driver.name": "hgs-sim",
                "ups.mfr": "hgs",
                "ups.model": "Simulated UPS",
                "ups.status": NUT_STATUS[snap["state"]],
            }
            if verb == "GET":
                if len(args) < 3 or args[2] not in variables:
                    return "ERR VAR-NOT-SUPPORTED\n"
                return f"VAR {ups.name} {args[2]} {quote(variables[args[2]])}\n"
            lines = [f"BEGIN LIST VAR {ups.name}"]
            lines += [f"VAR {ups.name} {k} {quote(v)}" for k, v in sorted(variables.items())]
            lines.append(f"END LIST VAR {ups.name}")
            return "\n".join(lines) + "\n"
        return "ERR UNKNOWN-COMMAND\n"


class UpsdServer(_Served):
    """NUT's upsd, served from a SimUps (the UPS name is ``ups.name``)."""

    handler = _UpsdHandler

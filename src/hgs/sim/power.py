"""Host power for the simulated site: Wake-on-LAN in, power changes out.

``WolListener`` receives magic packets on a UDP port (loopback, or inside a test network
namespace) and boots the host with that MAC. ``PowerWatcher`` follows the site clock and
calls ``on_change(host_name, reachable)`` when a host stops answering (powered off) or
answers again (booted far enough for its network and sshd), so a front door can close or
reopen the host's SSH port, or a test can take a namespace link down and up.
"""

import socket
import threading
import time

from hgs.sim import site as sitemod

MAGIC_PREFIX = b"\xff" * 6


def parse_magic_packet(data):
    """Given a UDP payload, returns the MAC it wakes ('aa:bb:...') or None if it is not a magic packet."""
    if len(data) < 102 or not data.startswith(MAGIC_PREFIX):
        return None
    mac = data[6:12]
    if data[6:102] != mac * 16:
        return None
    return ":".join(f"{b:02x}" for b in mac)


class WolListener:
    """Listens for magic packets on ``host:port``; wakes the site's host with that MAC.

    ``drop_first`` packets are received and ignored (a lost packet). ``received`` lists
    (time, mac) of every packet that counted.
    """

    def __init__(self, store, host="127.0.0.1", port=0, drop_first=0):
        self.store = store
        self.drop_first = drop_first
        self.received = []
        self.dropped = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            mac = parse_magic_packet(data)
            if mac is None:
                continue
            if len(self.dropped) < self.drop_first:
                self.dropped.append((time.time(), mac))
                continue
            self.received.append((time.time(), mac))
            self.store.wake(mac)

    def stop(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


class PowerWatcher:
    """Polls the site and reports each host's reachability changes to ``on_change``."""

    def __init__(self, store, on_change, interval_s=0.05):
        self.store = store
        self.on_change = on_change
        self.interval_s = interval_s
        self.reachable = {}
        self._stop = threading.Event()
        self._look()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _look(self):
        """Reports the changes; returns the real seconds until the next known host power change."""
        state = self.store.read_hosts()
        for host in state["hosts"].values():
            now = sitemod.host_phase(state, host) in ("starting", "up")
            if self.reachable.get(host["name"]) != now:
                self.reachable[host["name"]] = now
                self.on_change(host["name"], now)
        due = [h["shutdown_at"] for h in state["hosts"].values() if h["shutdown_at"] is not None]
        due += [h["boot_at"] + h["boot_s"] for h in state["hosts"].values() if h["boot_at"] is not None]
        now = sitemod.sim_now(state)
        return min((sitemod.real_seconds(state, t - now) for t in due if t > now), default=None)

    def _run(self):
        wait_s = self.interval_s
        while not self._stop.wait(wait_s):
            try:
                until = self._look()
            except Exception:  # a watcher must outlive one bad read (e.g. during teardown)
                until = None
            # a change the site already knows of is met on time; others are found by polling
            wait_s = self.interval_s if until is None else min(self.interval_s, until + 0.001)

    def stop(self):
        self._stop.set()
        self.thread.join(2)


def main(argv=None):
    """``python -m hgs.sim.power --site SITE.json --listen ADDR:PORT [--log FILE] [--drop-first N]``:
    a WOL listener as its own process (run it inside a test network namespace)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m hgs.sim.power", description=main.__doc__)
    parser.add_argument("--site", required=True)
    parser.add_argument("--listen", default="0.0.0.0:9")
    parser.add_argument("--log", help="append one line per packet received (and whether it counted)")
    parser.add_argument("--drop-first", type=int, default=0)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    from hgs.sim.server import SiteClient

    listener = WolListener(SiteClient(args.site), host, int(port), drop_first=args.drop_first)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    seen = 0
    while not done.wait(0.05):
        packets = [("dropped", t, m) for t, m in listener.dropped] + [("woke", t, m) for t, m in listener.received]
        if args.log and len(packets) > seen:
            with open(args.log, "a") as handle:
                for kind, t, mac in sorted(packets, key=lambda p: p[1])[seen:]:
                    handle.write(f"{t:.3f} {kind} {mac}\n")
            seen = len(packets)
    listener.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

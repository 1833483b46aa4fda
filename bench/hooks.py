#!/usr/bin/env python3
"""Hook latency: from the start of the apccontrol shim (`onbattery`, as `hgs install apcupsd`
writes it) to its return, over N runs; apccontrol and upssched wait for it, so it must be
short. The flow each call starts runs detached; the UPS here is a closed port on loopback,
so each flow ends by itself after its 0.5 s confirmation window (nothing confirmed).

Usage: .venv/bin/python bench/hooks.py [--runs 50]
"""

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hgs.box.lock import SiteLock
from hgs.setup import hooks


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    hgs = str(Path(sys.executable).with_name("hgs"))
    with tempfile.TemporaryDirectory(prefix="hgs-bench-hooks-") as folder:
        folder = Path(folder)
        config = folder / "config.py"
        config.write_text(
            f"UPS = {{'daemon': 'apcupsd', 'address': '127.0.0.1:{closed_port()}', 'timeout_s': 0.5}}\n"
            f"HOSTS = [{{'name': 'xen1', 'address': '127.0.0.1', 'ssh_port': {closed_port()}}}]\n"
            "TIMINGS = {'confirm_outage_s': 0.5}\n"
            f"PATHS = {{'state_dir': '{folder}/state', 'log_file': '{folder}/hgs.log', 'lock_dir': '{folder}/lock'}}\n"
            "LOGGING = {'syslog': False}\nMAIL = {'when': 'never'}\n")
        config.chmod(0o600)
        shim = folder / "onbattery"
        shim.write_text(hooks.render("onbattery", hgs, str(config)))
        shim.chmod(0o755)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([str(shim), "testups", "1", "0"], check=False)
            times.append((time.perf_counter() - start) * 1000)
            time.sleep(0.05)
        version = []
        for _ in range(20):
            start = time.perf_counter()
            subprocess.run([hgs, "--version"], stdout=subprocess.DEVNULL)
            version.append((time.perf_counter() - start) * 1000)
        # the detached flows end by themselves: wait for the last one before the folder goes
        lock = SiteLock(folder / "lock")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if lock.acquire():
                lock.release()
                break
            time.sleep(0.2)
        time.sleep(1.0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"apccontrol onbattery shim, start to return, {args.runs} runs: median {statistics.median(times):.0f} ms, "
          f"worst {max(times):.0f} ms")
    print(f"hgs --version cold start, 20 runs: median {statistics.median(version):.0f} ms, worst {max(version):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Cold start of the hgs command: median and worst of N runs of `hgs --version` and
`hgs check-config` (on config.example.py). A hook calls hgs at the worst moment, so its
start must be cheap: paramiko (a few hundred ms of imports) is loaded only where SSH is used.

Usage: .venv/bin/python bench/startup.py [--runs 20]
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_VERSION_MS = 150


def measure(argv, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - start) * 1000)
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed: {result.stderr.decode()}")
    return statistics.median(times), max(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    hgs = str(Path(sys.executable).with_name("hgs"))
    config = str(REPO / "config.example.py")
    rows = [
        ("hgs --version", [hgs, "--version"]),
        ("hgs check-config", [hgs, "check-config", "-q", "--config", config]),
        ("python3 -c pass (floor)", [sys.executable, "-c", "pass"]),
    ]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {args.runs} runs each")
    print(f"{'command':<26} {'median ms':>10} {'worst ms':>9}")
    results = {}
    for name, argv in rows:
        median, worst = measure(argv, args.runs)
        results[name] = median
        print(f"{name:<26} {median:>10.1f} {worst:>9.1f}")
    verdict = "met" if results["hgs --version"] < TARGET_VERSION_MS else "MISSED"
    print(f"target: hgs --version under {TARGET_VERSION_MS} ms: {verdict}")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())

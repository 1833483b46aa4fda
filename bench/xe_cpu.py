#!/usr/bin/env python3
"""CPU per simulated xe call: the client process + the simulator server, with 1000 VMs.

Starts a one-host site of ``--vms`` VMs behind its simulator server, runs each call
``--runs`` times through the host's `xe` (the C client, and the Python fallback client),
and prints the median CPU milliseconds of the client process (from wait4) plus the
server's CPU over the same calls (from /proc), per call.

Usage: .venv/bin/python bench/xe_cpu.py [--vms 1000] [--runs 30]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hgs.hypervisors.xen import xe as hxe
from hgs.sim.server import SiteServerProcess
from hgs.sim.site import SiteStore
from hgs.sim.xeclient import write_xe_wrapper


def measure(server, wrapper, argv, runs):
    """Returns (median client CPU ms, server CPU ms per call, bytes of stdout)."""
    client, size = [], 0
    before = server.cpu_seconds()
    for _ in range(runs):
        proc = subprocess.Popen([wrapper, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = proc.stdout.read()
        proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.stdout.close()
        proc.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"xe {' '.join(argv)} failed")
        client.append((usage.ru_utime + usage.ru_stime) * 1000)
        size = len(out)
    return statistics.median(client), (server.cpu_seconds() - before) * 1000 / runs, size


def run(vms=1000, runs=30):
    """Returns [(client kind, call label, client ms, server ms, stdout bytes)]."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="hgs-xe-cpu-") as tmp:
        scenario = {"hosts": [{"name": "xen1"}], "vms": [{"name": f"vm{i:04d}"} for i in range(vms)]}
        store = SiteStore.create(Path(tmp) / "site.json", scenario)
        one = next(u for u, v in store.state["vms"].items() if not v["control_domain"])
        store.close()
        server = SiteServerProcess(store.path)
        try:
            calls = [(f"vm-list of {vms} VMs (hgs's params)", ["vm-list", "is-control-domain=false",
                                                               f"params={hxe.VM_PARAMS}"]),
                     (f"vm-list power-state=running --minimal ({vms} VMs)",
                      ["vm-list", "power-state=running", "--minimal"]),
                     ("vm-param-get power-state", ["vm-param-get", f"uuid={one}", "param-name=power-state"])]
            for kind, compiled in (("C client", True), ("Python client", False)):
                folder = Path(tmp) / kind.split()[0]
                folder.mkdir()
                wrapper = write_xe_wrapper(str(folder), store.path, "xen1", compiled=compiled)
                for label, argv in calls:
                    rows.append((kind, label, *measure(server, wrapper, argv, runs)))
        finally:
            server.stop()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    for kind, label, client_ms, server_ms, size in run(args.vms, args.runs):
        print(f"{kind:13s} {label:50s} client {client_ms:5.1f} ms + server {server_ms:5.1f} ms "
              f"= {client_ms + server_ms:5.1f} ms CPU per call ({size} bytes out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

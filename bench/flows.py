#!/usr/bin/env python3
"""How close hgs gets to the physical limit, and how it scales.

Drives the REAL flows (`hgs onbattery --foreground`, `hgs offbattery --foreground`, as the
hooks run them) against the simulated site behind a real OpenSSH server (the in-process SSH
server when sshd cannot run here; the table says which), with a time scale, and writes
bench/results.md. The simulated site is one resident simulator process with a small C `xe`
client per call (bench/xe_cpu.py measures what a call costs), so the figures measure hgs.

Figures (each run ``--runs`` times, the pools ``--pool-runs`` times, the median shown; every figure of one row comes from
the run with the median ratio):

- shutdown: one host, 1-200 VMs with varied shutdown times (one group);
- pool: 10 hosts x 100 VMs in one pool, and 10 x 500 (``pool500``);
- restore: a 3-host pool (boot 20 s, xapi 10 s, time scale 1) from the power return to
  every VM running, against its bound for each member-wake policy;
- confirm: confirmation end to the first `xe vm-shutdown`, 3 hosts;
- serial: the same VMs shut down one after another (`xe vm-shutdown --multiple`, once);
- hooks: hook latency and `hgs --version` cold start (bench/hooks.py);
- xecpu: CPU per simulated xe call (bench/xe_cpu.py).

An outage's makespan runs from the end of the confirmation ("outage confirmed" in hgs's
log, stamped as hgs writes it) to the end of the hgs process. Its lower bound: each order
group's slowest VM + per host stage (members, then the master) the host's shutdown + the
down-confirmation time. The seconds over the bound are split by phase: confirmation to the
first vm-shutdown, VM calls that ended after their group's slowest VM would (late starts),
gaps between groups, last VM down (or the previous host stage confirmed down) to the
first host-disable, the first host-disable to the last host-shutdown of the stage,
power-off to confirmed down beyond host_down_confirm_s, and the rest (the exit). hgs's CPU seconds
and peak RSS come from wait4 on its process; the simulator's CPU from its own getrusage.

Usage: sudo .venv/bin/python bench/flows.py [--only shutdown,pool,...] [--runs 3] [--no-write]
"""

import argparse
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hgs.sim.lab import SimSite
from hgs.sim.ups import NisServer, SimUps

REPO = Path(__file__).resolve().parent.parent
HGS = str(Path(sys.executable).with_name("hgs"))
HOST_SHUTDOWN_S = 20  # simulated seconds from host-shutdown to power off
DOWN_CONFIRM_S = 1.0  # real seconds a host must stay silent (TIMINGS["host_down_confirm_s"])
FIGURES = ("shutdown", "pool", "pool500", "restore", "confirm", "serial", "hooks", "xecpu")
WAKE_POLICIES = ("together", "after_master_ping", "after_master_xapi")


def door():
    return "openssh" if os.geteuid() == 0 and os.path.exists("/usr/sbin/sshd") else "inprocess"


def shutdown_times(count):
    """Varied, repeatable shutdown times: 30..179 simulated seconds."""
    return [30 + (index * 37) % 150 for index in range(count)]


def members_wake_setting():
    """Returns the config section holding a ``members_wake`` setting, or None if hgs has none."""
    from hgs import config

    for name, (fields, _) in config.SECTIONS.items():
        if "members_wake" in fields:
            return name
    return None


class Run:
    """One simulated site + UPS + hgs config in a temp folder."""

    def __init__(self, folder, scenario, timings, front_door, extra=""):
        self.scenario = scenario
        self.scale = scenario["time_scale"]
        self.site = SimSite(folder / "site", scenario, front_door=front_door)
        self.ups = SimUps()
        self.ups.set_state("onbatt")
        self.nis = NisServer(self.ups)
        self.config = folder / "config.py"
        ups = f"{{'daemon': 'apcupsd', 'address': '127.0.0.1:{self.nis.port}', 'poll_interval_s': 0.2}}"
        self.config.write_text(self.site.config_text(ups, timings, extra="MAIL = {'when': 'never'}\n" + extra))
        self.config.chmod(0o600)
        self.lines = []

    def hgs(self, command):
        """Runs `hgs -v COMMAND --foreground`, stamping each log line as it comes; returns a dict:
        start and end times, hgs's CPU seconds and peak RSS (MiB), the simulator's CPU seconds."""
        sim_before, dom0_before = self.site.server.cpu_seconds(), self.dom0_cpu()
        start = time.time()
        proc = subprocess.Popen([HGS, "--config", str(self.config), "-v", command, "--foreground"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out = []
        readers = [threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True),
                   threading.Thread(target=self._stamp, args=(proc.stderr,), daemon=True)]
        for reader in readers:
            reader.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # stopped: leave no hgs running against a site about to go away
            proc.kill()
            proc.wait()
            raise
        end = time.time()
        for reader in readers:
            reader.join(10)
        proc.stdout.close()
        proc.stderr.close()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"hgs {command} failed ({code}):\n{''.join(out)[-2000:]}")
        time.sleep(0.2)  # the sshd sessions end and are reaped
        return {"start": start, "end": end, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024,
                "sim_cpu": self.site.server.cpu_seconds() - sim_before, "dom0_cpu": self.dom0_cpu() - dom0_before}

    def dom0_cpu(self):
        """Returns the CPU seconds used so far by the hosts' sshd and what their sessions ran (the
        shells of hgs's scripts and the xe clients), or nan without real sshds."""
        doors = self.site.doors.values()
        if not all(hasattr(d, "cpu_seconds") for d in doors):
            return float("nan")
        return sum(d.cpu_seconds for d in doors)

    def _stamp(self, stream):
        for line in stream:
            self.lines.append((time.time(), line.rstrip("\n")))

    def stamp(self, pattern, since=0.0, last=False):
        """Returns the time hgs logged the first (or last) line matching ``pattern`` after ``since``, or None."""
        hits = [t for t, line in self.lines if t >= since and re.search(pattern, line)]
        return (hits[-1] if last else hits[0]) if hits else None

    def calls(self, command, since=0.0):
        return [c for c in self.site.store.calls() if c["argv"] and c["argv"][0] == command and c["t"] >= since]

    def connections(self):
        return {name: d.connections for name, d in self.site.doors.items()}

    def stop(self):
        self.site.stop()
        self.nis.stop()


def outage_timings(confirm_s=0):
    return {"confirm_outage_s": confirm_s, "vm_shutdown_timeout_s": 900, "vm_force_timeout_s": 60, "xe_timeout_s": 60,
            "host_shutdown_timeout_s": 120, "host_down_confirm_s": DOWN_CONFIRM_S, "restore_confirm_s": 0,
            "host_boot_timeout_s": 300, "wol_resend_interval_s": 30, "xapi_ready_timeout_s": 300,
            "vm_start_timeout_s": 300, "verify_timeout_s": 300}


def one_host(times, scale):
    """One host with a VM per shutdown time (simulated seconds)."""
    return {"time_scale": scale, "hosts": [{"name": "xen1", "mac": "02:00:00:00:00:01", "shutdown_s": HOST_SHUTDOWN_S}],
            "vms": [{"name": f"vm{i:03d}", "shutdown_s": t} for i, t in enumerate(times)]}


def pool(scale, hosts, per_host, shutdown_s=None):
    return {"time_scale": scale, "pool": {"name": "big", "ha_enabled": True},
            "hosts": [{"name": f"xen{h:02d}", "master": h == 0, "mac": f"02:00:00:00:01:{h:02x}",
                       "shutdown_s": HOST_SHUTDOWN_S} for h in range(hosts)],
            "vms": [{"name": f"h{h:02d}-vm{i:03d}", "host": f"xen{h:02d}", "shutdown_s": t}
                    for h in range(hosts) for i, t in enumerate(shutdown_s or shutdown_times(per_host))]}


def outage_figures(run, result):
    """Given a finished outage run, returns its makespan, bound, ratio and the seconds over the
    bound by phase."""
    scale = run.scale
    vms = {v["name"]: v for v in run.scenario["vms"]}
    state = run.site.store.read()
    by_uuid = {u: v["name"] for u, v in state["vms"].items()} | {u: h["name"] for u, h in state["hosts"].items()}
    hosts = {h["name"]: h for h in run.scenario["hosts"]}
    master = next((h["name"] for h in run.scenario["hosts"] if h.get("master")), run.scenario["hosts"][0]["name"])
    confirmed = run.stamp(r"outage confirmed") or result["start"]
    shutdowns = run.calls("vm-shutdown", confirmed - 5)
    halted, first_call, groups = {}, {}, {}
    for call in shutdowns:
        uuid = next((a[5:] for a in call["argv"] if a.startswith("uuid=")), None)
        name = by_uuid.get(uuid)
        if name is None or name in halted:
            continue
        halted[name] = call["t"] + vms[name]["shutdown_s"] / scale
        order = vms[name].get("order", 0)
        groups.setdefault(order, []).append(name)
        first_call[order] = min(first_call.get(order, call["t"]), call["t"])
    orders = sorted(groups)
    slowest = sum(max(vms[n]["shutdown_s"] for n in groups[o]) for o in orders) / scale
    stages = [[h for h in hosts if h != master], [master]] if len(hosts) > 1 else [[master]]
    bound = slowest + sum(max(hosts[h]["shutdown_s"] for h in stage) / scale + DOWN_CONFIRM_S for stage in stages)
    makespan = result["end"] - confirmed
    last_halted = max(halted.values())
    gaps = sum(first_call[b] - max(halted[n] for n in groups[a]) for a, b in zip(orders, orders[1:]))
    first = min(c["t"] for c in shutdowns)
    late = (last_halted - first) - slowest - gaps
    def target(call):
        return next((by_uuid.get(a.partition("=")[2]) for a in call["argv"][1:] if a.startswith(("uuid=", "host="))), None)

    disables = run.calls("host-disable", confirmed - 5)
    host_shutdowns = run.calls("host-shutdown", confirmed - 5)
    to_disable = sends = down_lag = 0.0
    stage_start = last_halted
    for stage in stages:
        disabled = [c["t"] for c in disables if target(c) in stage]
        sent = {target(c): c["t"] for c in reversed(host_shutdowns) if target(c) in stage}  # the first per host
        seen = [run.stamp(rf"\b{re.escape(name)}: down\b", confirmed - 5) for name in stage]
        if not disabled or len(sent) < len(stage) or None in seen:
            to_disable = sends = down_lag = float("nan")  # not measurable (a host failed, or the log changed)
            break
        to_disable += min(disabled) - stage_start
        sends += max(sent.values()) - min(disabled)
        power_off = max(t + hosts[name]["shutdown_s"] / scale for name, t in sent.items())
        down_lag += max(seen) - power_off - DOWN_CONFIRM_S
        stage_start = max(seen)
    over = makespan - bound
    phases = {"confirm_to_first": first - confirmed, "late": late, "gaps": gaps, "to_disable": to_disable,
              "sends": sends, "down_lag": down_lag}
    phases["other"] = over - sum(v for v in phases.values() if v == v)
    return {"makespan": makespan, "bound": bound, "ratio": makespan / bound, "over": over, "phases": phases,
            "cpu": result["cpu"], "rss": result["rss"], "sim_cpu": result["sim_cpu"], "dom0_cpu": result["dom0_cpu"],
            "spread": max(c["t"] for c in shutdowns) - first, "xe_calls": len(run.site.store.calls()),
            "connections": max(run.connections().values())}


def median_run(function, runs):
    """Runs ``function()`` ``runs`` times; returns the result with the median ratio and all ratios."""
    results = []
    for _ in range(runs):
        results.append(function())
    results.sort(key=lambda r: r["ratio"])
    chosen = dict(results[(len(results) - 1) // 2])
    chosen["ratios"] = [r["ratio"] for r in results]
    chosen["cpu_median"] = statistics.median(r["cpu"] for r in results)
    chosen["rss_median"] = statistics.median(r["rss"] for r in results)
    return chosen


def bench_outage(scenario, front_door, folder, confirm_s):
    run = Run(folder, scenario, outage_timings(confirm_s), front_door)
    try:
        result = run.hgs("onbattery")
        figures = outage_figures(run, result)
        calls = run.site.store.calls()
        start = min(c["t"] for c in calls if c["argv"][0] == "vm-shutdown")
        stop = max(c["t"] for c in calls if c["argv"][0] == "host-disable")
        reads = [c for c in calls if c["argv"][0] == "vm-list" and start <= c["t"] <= stop]
        figures["reads_per_poll"] = len(reads) / max(1, int(stop - start))
        if figures["ratio"] > 2:  # far off: keep what happened for a person to read
            keep = Path(tempfile.gettempdir()) / f"hgs-bench-slow-{int(time.time())}.log"
            keep.write_text("\n".join(f"{t - result['start']:8.3f} {line}" for t, line in run.lines) + "\n\n"
                            + "\n".join(f"{c['t'] - result['start']:8.3f} xe on {c.get('host')}: {' '.join(c['argv'])}"
                                        for c in calls if c["argv"][0].startswith("host-")) + "\n")
            print(f"a run {figures['ratio']:.2f} x its bound: its log is kept in {keep}", file=sys.stderr)
        return figures
    finally:
        run.stop()


def bench_serial(count, scale, front_door, folder):
    """The usual script: `xe vm-shutdown --multiple` (one VM after another), then the host."""
    from hgs.config import load
    from hgs.net.probe import ssh_banner
    from hgs.net.ssh import Connection

    run = Run(folder, one_host(shutdown_times(count), scale), outage_timings(), front_door)
    try:
        host = load(run.config).hosts[0]
        xe = host.xe_path
        start = time.time()
        connection = Connection(host, 10)
        result = connection.run(f"{xe} vm-shutdown --multiple power-state=running", 100000)
        assert result.ok, result.stderr
        host_uuid = connection.run(f"{xe} host-list --minimal", 60).stdout.strip()
        connection.run(f"{xe} host-disable uuid={host_uuid}; {xe} host-shutdown uuid={host_uuid}", 60)
        connection.close()
        silent_since = None
        while True:
            if ssh_banner(host.address, host.ssh_port, 1.0):
                silent_since = None
            elif silent_since is None:
                silent_since = time.time()
            elif time.time() - silent_since >= DOWN_CONFIRM_S:
                break
            time.sleep(0.1)
        return time.time() - start
    finally:
        run.stop()


RESTORE_BOOT_S, RESTORE_XAPI_S = 20, 10
RESTORE_GROUPS = [(1, [("xen1", 6), ("xen2", 4)], 3), (2, [("xen1", 3), ("xen2", 5), ("xen3", 4)], 0)]


def restore_bounds():
    """Returns {policy: lower bound in seconds} of the restore scenario (time scale 1)."""
    boot, xapi = RESTORE_BOOT_S, RESTORE_XAPI_S
    starts = sum(max(s for _, s in vms) for _, vms, _ in RESTORE_GROUPS)
    delays = sum(max(1, delay) for _, _, delay in RESTORE_GROUPS[:-1])  # xe reports whole seconds, at least 1
    ready = {"together": boot + xapi,  # every host woken at once: the members are ready with the master
             "after_master_ping": boot + boot + xapi,  # members woken when the master's OS answers ping
             "after_master_xapi": 2 * (boot + xapi)}  # members woken once the master's xapi answers
    return {policy: ready[policy] + starts + delays for policy in WAKE_POLICIES}


def bench_restore(front_door, folder, policy=None):
    vms = [{"name": f"o{order}-{host}", "host": host, "order": order, "start_s": start, "start_delay": delay,
            "shutdown_s": 2} for order, members, delay in RESTORE_GROUPS for host, start in members]
    scenario = {"time_scale": 1, "pool": {"name": "p3"},
                "hosts": [{"name": f"xen{i}", "master": i == 1, "mac": f"02:00:00:00:02:0{i}", "shutdown_s": 3,
                           "boot_s": RESTORE_BOOT_S, "xapi_start_s": RESTORE_XAPI_S} for i in (1, 2, 3)],
                "vms": vms}
    section = members_wake_setting()
    extra = ""
    timings = outage_timings()
    if policy and section == "TIMINGS":
        timings["members_wake"] = policy
    elif policy and section:
        extra = f"{section} = {{'members_wake': {policy!r}}}\n"
    run = Run(folder, scenario, timings, front_door, extra=extra)
    try:
        run.hgs("onbattery")
        run.ups.set_state("online")
        since = time.time()
        result = run.hgs("offbattery")
        start = run.stamp(r"confirming the power is back", since) or result["start"]
        woke = min((t for t, _ in run.site.wol.received if t >= since), default=float("nan"))
        master_ready = run.stamp(r"xen1: xapi answers", since)
        ready = run.stamp(r"xapi answers", since, last=True)
        makespan = result["end"] - start
        bounds = restore_bounds()
        chosen = policy or "after_master_xapi"
        return {"makespan": makespan, "bound": bounds[chosen], "ratio": makespan / bounds[chosen],
                "ratio_together": makespan / bounds["together"], "policy": policy or "today's (none set)",
                "to_wol": woke - start,
                "master_ready_lag": (master_ready - woke - RESTORE_BOOT_S - RESTORE_XAPI_S) if master_ready else None,
                "members_after_master": (ready - master_ready) if ready and master_ready else None,
                "starts": (result["end"] - ready) if ready else None,
                "cpu": result["cpu"], "rss": result["rss"], "sim_cpu": result["sim_cpu"],
                "connections": max(run.connections().values())}
    finally:
        run.stop()


def bench_confirm(front_door, folder):
    """Confirmation end to the first vm-shutdown, 3 hosts of 5 VMs, a 2 s confirmation window."""
    scenario = pool(20, 3, 5, shutdown_s=[10, 12, 14, 16, 18])
    run = Run(folder, scenario, outage_timings(confirm_s=2), front_door)
    try:
        result = run.hgs("onbattery")
        confirmed = run.stamp(r"outage confirmed")
        first = min(c["t"] for c in run.calls("vm-shutdown"))
        return {"ratio": first - confirmed, "first_shutdown": first - confirmed, "cpu": result["cpu"],
                "rss": result["rss"]}
    finally:
        run.stop()


def hook_latency(runs=50):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "hooks.py"), "--runs", str(runs)],
                            capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if "ms" in line]


def xe_cpu():
    sys.path.insert(0, str(REPO / "bench"))
    import xe_cpu as bench_xe

    return bench_xe.run(1000, 30)


# -- the report --------------------------------------------------------------------------------


def phase_cells(row):
    p = row["phases"]
    fmt = lambda v: "-" if v != v else f"{v:.2f}"  # noqa: E731 (nan: not measured)
    return " | ".join(fmt(p[k]) for k in ("confirm_to_first", "late", "gaps", "to_disable", "sends", "down_lag",
                                          "other"))


PHASE_HEAD = ("confirm to 1st shutdown | VM calls late | gaps between groups | last VM (or stage) to host-disable | "
              "host-disable to last host-shutdown | power-off to confirmed down | other")


def outage_table(title, rows, targets):
    lines = [f"## {title}", "",
             f"| VMs | makespan (s) | bound (s) | ratio (runs) | target | over (s) | {PHASE_HEAD} | hgs CPU (s) | "
             f"hgs peak RSS (MiB) | simulator CPU (s) | hosts' sshd + shells CPU (s) |",
             "|" + "---|" * 17]
    for label, row in rows:
        ratios = ", ".join(f"{r:.3f}" for r in row["ratios"])
        lines.append(f"| {label} | {row['makespan']:.2f} | {row['bound']:.2f} | **{row['ratio']:.3f}** ({ratios}) | "
                     f"{targets.get(label, '')} | {row['over']:.2f} | {phase_cells(row)} | {row['cpu_median']:.2f} | "
                     f"{row['rss_median']:.0f} | {row['sim_cpu']:.2f} | {row['dom0_cpu']:.1f} |")
    return lines


def report(args, front_door, figures, load_before, load_after):
    loaded = max(load_before[0], load_after[0]) > 1.5
    lines = [
        "# hgs benchmark results", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}. Front door: "
        + ("a real OpenSSH sshd on loopback in front of the simulated xe" if front_door == "openssh"
           else "the in-process SSH server (paramiko) in front of the simulated xe")
        + f" (one simulator process per site, a C `xe` client per call). Time scale {args.scale:g}. Confirmation "
        f"window (not counted: makespans start at its end) {args.confirm:g} s, {args.pool_confirm:g} s for the 10-host "
        f"pools (hgs connects and reads the site meanwhile). "
        f"Each figure: median of {args.runs} runs ({args.pool_runs} for the 10-host pools). Written by `bench/flows.py` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
        + ("; taken while the machine was loaded by other work: indicative figures" if loaded else "") + ").", "",
        "Makespan: from the end of the confirmation (hgs's \"outage confirmed\" log line) to the end of the hgs "
        "process. Lower bound: each order group's slowest VM + per host stage (the members, then the master) the "
        "host's shutdown + the down-confirmation time. The seconds over the bound are split by phase (summed over "
        "the host stages); \"other\" is the rest (writing the state, the exit). hgs CPU and peak RSS: wait4 on the hgs process. "
        "Simulator CPU: the site's simulator process (every xe call's work). Hosts' sshd + shells CPU: each simulated "
        "host's sshd with its sessions and what they ran (hgs's batch scripts: per VM a subshell, a command "
        "substitution, the xe client, base64 and tr), from /proc; on a real pool each host's dom0 pays its own share.",
    ]
    targets = {"50": "<= 1.05", "200": "<= 1.10", "10 x 100": "<= 1.10"}
    if "shutdown" in figures:
        lines += [""] + outage_table("Shutdown, one host, one group", [(str(c), r) for c, r in figures["shutdown"]],
                                     targets)
    pools = [(label, figures[key]) for key, label in (("pool", "10 x 100"), ("pool500", "10 x 500")) if key in figures]
    if pools:
        lines += [""] + outage_table("Shutdown, 10 hosts in one pool (HA on)", pools, targets)
        lines += ["", "VM calls late: every VM's `xe vm-shutdown` is a process started by the batch's shell (a fork, "
                  "a command substitution, the xe client's exec: about 1.5 ms of CPU with the simulator's share of "
                  "the call, bench/xe_cpu.py), on the 2 cores that the 10 simulated hosts' sshds, the simulator and "
                  "hgs share; a VM whose call starts late ends late. On a real pool the master's dom0 starts them "
                  "(hgs sends a pool's VM calls through its master)."]
        if "pool500" in figures:
            cpu = figures["pool500"]["cpu_median"]
            lines += ["", f"10 x 500 (5000 VMs): hgs used {cpu:.1f} CPU seconds over a {figures['pool500']['makespan']:.0f} s "
                      f"outage and {figures['pool500']['rss_median']:.0f} MiB at most. A Raspberry Pi 4 is about 4x "
                      f"slower per core: about {4 * cpu:.0f} CPU seconds there, spread over the same outage."]
    if "confirm" in figures:
        c = figures["confirm"]
        lines += ["", "## Confirmation end to the first vm-shutdown (3 hosts x 5 VMs, 2 s window)", "",
                  f"{c['first_shutdown']:.3f} s (median of {args.runs}: "
                  + ", ".join(f"{r:.3f}" for r in c["ratios"]) + "); target: under 0.3 s."]
    if "restore" in figures:
        bounds = restore_bounds()
        lines += ["", f"## Restore, 3-host pool (boot {RESTORE_BOOT_S} s, xapi {RESTORE_XAPI_S} s, time scale 1)", "",
                  "From the power return (the restore confirmation) to the end of the restore. Bounds: the groups' "
                  "slowest starts + start delays + the time until every host's xapi answers: "
                  + "; ".join(f"{p} {b:.0f} s" for p, b in bounds.items())
                  + " (\"together\": every host woken at once, the members ready with the master).", "",
                  "| member wake | makespan (s) | its bound (s) | ratio (runs) | ratio vs \"together\" | power return to "
                  "WOL (s) | master xapi late (s) | members after master (s) | VM starts (s) | hgs CPU (s) |",
                  "|" + "---|" * 10]
        for r in figures["restore"]:
            fmt = lambda v: "-" if v is None or v != v else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {r['policy']} | {r['makespan']:.2f} | {r['bound']:.0f} | **{r['ratio']:.3f}** ("
                         + ", ".join(f"{x:.3f}" for x in r["ratios"]) + f") | {r['ratio_together']:.3f} | "
                         f"{fmt(r['to_wol'])} | {fmt(r['master_ready_lag'])} | {fmt(r['members_after_master'])} | "
                         f"{fmt(r['starts'])} | {r['cpu_median']:.2f} |")
        if not members_wake_setting():
            lines += ["", "This hgs has no `members_wake` setting: the members are woken once the master's xapi "
                      "answers, so its bound is \"after_master_xapi\" (sequential)."]
    if "serial" in figures:
        lines += ["", f"## One after another (`xe vm-shutdown --multiple`, then the host) against hgs, time scale "
                      f"{args.serial_scale:g}, one run", "",
                  "| VMs | one after another (s) | hgs (s) | speed-up |", "|---|---|---|---|"]
        for count, slow, fast in figures["serial"]:
            lines.append(f"| {count} | {slow:.2f} | {fast:.2f} | {slow / fast:.1f}x |")
    if "shutdown" in figures:
        lines += ["", "## SSH connections and xe calls (one host)", "",
                  "| VMs | SSH connections (whole outage) | vm-list reads per 1 s poll | xe calls in all |",
                  "|---|---|---|---|"]
        for count, row in figures["shutdown"]:
            lines.append(f"| {count} | {row['connections']} | {row['reads_per_poll']:.2f} | {row['xe_calls']} |")
    if "xecpu" in figures:
        lines += ["", "## CPU per simulated xe call (1000 VMs; client process + simulator server)", "",
                  "| client | call | client (ms) | server (ms) | total (ms) |", "|---|---|---|---|---|"]
        for kind, label, client_ms, server_ms, _ in figures["xecpu"]:
            lines.append(f"| {kind} | {label} | {client_ms:.1f} | {server_ms:.1f} | {client_ms + server_ms:.1f} |")
        lines += ["", "Before the simulator server (one Python process per call, the site re-read and rewritten "
                      "as JSON under a file lock), on the same machine: 54 ms (vm-param-get) to 62 ms (vm-list of "
                      "1000 VMs) of CPU per call."]
    if "hooks" in figures:
        lines += ["", "## Hook latency and cold start", ""] + [f"- {h}" for h in figures["hooks"]]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(FIGURES),
                        help=f"comma-separated figures to run (default all): {', '.join(FIGURES)}")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--pool-runs", type=int, default=5,
                        help="runs of each 10-host pool figure (default 5: their spread is the widest)")
    parser.add_argument("--scale", type=float, default=20, help="simulated seconds per real second (default 20)")
    parser.add_argument("--sizes", default="1,10,50,200", help="VM counts of the one-host shutdown (default 1,10,50,200)")
    parser.add_argument("--serial-scale", type=float, default=60,
                        help="time scale of the one-after-another comparison (default 60; hgs is rerun at it)")
    parser.add_argument("--serial-sizes", default="1,10,50")
    parser.add_argument("--confirm", type=float, default=5,
                        help="confirm_outage_s of the one-host outages (default 5; hgs reads the site meanwhile)")
    parser.add_argument("--pool-confirm", type=float, default=10,
                        help="confirm_outage_s of the 10-host outages (default 10)")
    parser.add_argument("--no-write", action="store_true", help="print the report, do not write bench/results.md")
    parser.add_argument("--output", default=str(REPO / "bench" / "results.md"))
    args = parser.parse_args()
    only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}: choose from {', '.join(FIGURES)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still stop every site started
    front_door = door()
    settle_until = time.monotonic() + 90  # what ran just before (a stopped run, a build) is not this run's load
    while os.getloadavg()[0] > 1.0 and time.monotonic() < settle_until:
        time.sleep(5)
    load_before = os.getloadavg()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="hgs-bench-") as tmp:
        tmp = Path(tmp)
        counter = iter(range(1_000_000))

        def folder(name):
            return tmp / f"{name}-{next(counter)}"

        if "shutdown" in only:
            figures["shutdown"] = []
            for count in (int(s) for s in args.sizes.split(",")):
                row = median_run(lambda: bench_outage(one_host(shutdown_times(count), args.scale), front_door,
                                                      folder(f"s{count}"), args.confirm), args.runs)
                figures["shutdown"].append((count, row))
                print(f"shutdown {count:4d} VMs: ratio {row['ratio']:.3f} {row['ratios']}, over {row['over']:.2f} s "
                      f"{ {k: round(v, 2) for k, v in row['phases'].items()} }, hgs CPU {row['cpu_median']:.2f} s, "
                      f"RSS {row['rss_median']:.0f} MiB, simulator CPU {row['sim_cpu']:.2f} s, sshd+shells CPU "
                      f"{row['dom0_cpu']:.1f} s", flush=True)
        for key, per_host in (("pool", 100), ("pool500", 500)):
            if key in only:
                row = median_run(lambda: bench_outage(pool(args.scale, 10, per_host), front_door, folder(key),
                                                      args.pool_confirm), args.pool_runs)
                figures[key] = row
                print(f"pool 10 x {per_host}: ratio {row['ratio']:.3f} {row['ratios']}, over {row['over']:.2f} s "
                      f"{ {k: round(v, 2) for k, v in row['phases'].items()} }, hgs CPU {row['cpu_median']:.2f} s, "
                      f"RSS {row['rss_median']:.0f} MiB, simulator CPU {row['sim_cpu']:.2f} s, sshd+shells CPU "
                      f"{row['dom0_cpu']:.1f} s", flush=True)
        if "confirm" in only:
            figures["confirm"] = median_run(lambda: bench_confirm(front_door, folder("confirm")), args.runs)
            print(f"confirmation end to first vm-shutdown: {figures['confirm']['first_shutdown']:.3f} s "
                  f"{figures['confirm']['ratios']}", flush=True)
        if "restore" in only:
            policies = ["together", "after_master_ping", "after_master_xapi"] if members_wake_setting() else [None]
            figures["restore"] = []
            for policy in policies:
                row = median_run(lambda: bench_restore(front_door, folder("restore"), policy), args.runs)
                figures["restore"].append(row)
                print(f"restore ({row['policy']}): makespan {row['makespan']:.1f} s, bound {row['bound']:.0f} s, "
                      f"ratio {row['ratio']:.3f} {row['ratios']}, vs together {row['ratio_together']:.3f}", flush=True)
        if "serial" in only:
            figures["serial"] = []
            for count in (int(s) for s in args.serial_sizes.split(",")):
                fast = bench_outage(one_host(shutdown_times(count), args.serial_scale), front_door, folder(f"p{count}"),
                                    args.confirm)
                slow = bench_serial(count, args.serial_scale, front_door, folder(f"q{count}"))
                figures["serial"].append((count, slow, fast["makespan"]))
                print(f"serial {count:4d} VMs: {slow:.1f} s vs hgs {fast['makespan']:.1f} s", flush=True)
    if "hooks" in only:
        figures["hooks"] = hook_latency()
    if "xecpu" in only:
        figures["xecpu"] = xe_cpu()
    text = report(args, front_door, figures, load_before, os.getloadavg())
    print(text)
    if not args.no_write:
        Path(args.output).write_text(text)
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

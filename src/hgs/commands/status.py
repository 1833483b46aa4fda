"""hgs status: the UPS, each host, the VMs, the current phase and the last runs (or --json)."""

import json
import os
import time

STATUS_CONNECT_S = 3.0
STATUS_XE_S = 4.0
STATUS_BUDGET_S = 6.0


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print one JSON object (for monitoring)")
    parser.add_argument("--ups-only", action="store_true", help="only ask the UPS daemon (no SSH to the hosts)")


def format_runtime(seconds):
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def ups_report(settings):
    from hgs.errors import UpsError
    from hgs.ups import reader_for

    try:
        status = reader_for(settings.ups)()
        return dict(status.as_dict(), error=None), status
    except UpsError as err:
        return {"daemon": settings.ups.daemon, "address": settings.ups.address, "state": None,
                "error": str(err)}, None


def phase_report(settings):
    from hgs import history
    from hgs.errors import HgsError
    from hgs.lock import SiteLock
    from hgs.state import StateFile

    try:
        state = StateFile(settings.paths.state_dir).load()
        phase, error = state.get("phase"), None
        snapshot = state.get("snapshot") or {}
    except HgsError as err:
        phase, error, snapshot = None, str(err), {}
    pid, kind = running_flow(SiteLock(settings.paths.lock_dir))
    runs = [{"id": r.get("id"), "command": r.get("command"), "result": r.get("result"), "failed": r.get("failed"),
             "ended": r.get("ended")} for r in history.recent(settings.paths.state_dir, 5)]
    return {"phase": phase, "state_error": error, "snapshot_vms": len(snapshot.get("vms", {})),
            "running_flow": {"pid": pid, "kind": kind} if pid else None, "last_runs": runs}


def running_flow(lock):
    """Returns (pid, kind) of the flow holding the site lock, or (None, None), WITHOUT taking
    the lock: a reader holding it for an instant would make an onbattery arriving then see a
    holder that is not a restore and drop the outage. Linux lists every flock() in /proc/locks."""
    try:
        info = os.stat(lock.path)
        with open("/proc/locks") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None, None
    where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in lines:
        fields = line.split()
        if "->" in fields:
            continue  # a process waiting for the lock, not holding it
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where:
            holder = int(fields[4]) if fields[4].isdigit() else None
            pid, kind = lock.holder()
            return (holder, kind) if pid == holder or holder is None else (holder, "flow")
    return None, None


def run(ctx):
    from hgs.inspect import inspect_site
    from hgs.log import RunLog

    settings = ctx.settings
    started = time.monotonic()
    ups, status = ups_report(settings)
    report = {"ups": ups}
    if not ctx.args.ups_only:
        log = RunLog("status", stderr=ctx.stderr).logger
        report["hosts"] = inspect_site(settings.hosts, log, min(STATUS_CONNECT_S, settings.timings.ssh_connect_timeout_s),
                                       min(STATUS_XE_S, settings.timings.xe_timeout_s), STATUS_BUDGET_S)
        for host in report["hosts"]:
            host.pop("running", None)
        report.update(phase_report(settings))
    report["took_s"] = round(time.monotonic() - started, 2)
    failed = ups["error"] is not None or any(not h["reachable"] for h in report.get("hosts", []))
    if ctx.args.json:
        ctx.out(json.dumps(report, indent=2, sort_keys=True))
        return 1 if failed else 0
    if status:
        ctx.out(f"UPS ({status.daemon} at {status.address}): {status.state.value}")
        ctx.out(f"  battery charge: {'unknown' if status.charge_pct is None else f'{status.charge_pct:g} %'}")
        ctx.out(f"  runtime left:   {format_runtime(status.runtime_s)}")
        ctx.out(f"  daemon says:    {status.raw or '(nothing)'}")
    else:
        ctx.out(f"UPS ({ups['daemon']} at {ups['address']}): cannot be read")
        ctx.out(f"  {ups['error']}")
    for host in report.get("hosts", []):
        if host["reachable"]:
            role = "master" if host.get("master") else "member" if host.get("master") is False else "?"
            ctx.out(f"host {host['name']} ({host['address']}): reachable, {role}, "
                    f"{'enabled' if host.get('enabled') else 'DISABLED'}, pool HA {'on' if host.get('ha_enabled') else 'off'}")
            ctx.out(f"  VMs: {host['vms_running']} running here, {host['vms_halted']} halted in the pool"
                    + (f"; without tools (would be forced): {', '.join(host['no_tools'])}" if host["no_tools"] else ""))
        else:
            ctx.out(f"host {host['name']} ({host['address']}): NOT REACHABLE ({host['error_kind']})")
            ctx.out(f"  {host['error']}")
    if "phase" in report:
        flow = report["running_flow"]
        ctx.out(f"phase: {report['phase'] or 'unknown'}"
                + (f" ({report['snapshot_vms']} VMs in the snapshot)" if report["snapshot_vms"] else "")
                + (f"; a {flow['kind']} flow is running (pid {flow['pid']})" if flow else ""))
        if report["state_error"]:
            ctx.out(f"  {report['state_error']}")
        for item in report["last_runs"]:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(item["ended"])) if item.get("ended") else "?"
            ctx.out(f"  run {item['id']} {item['command']}: {item['result']}{' (FAILED)' if item['failed'] else ''}, {when}")
        if not report["last_runs"]:
            ctx.out("  no runs yet")
    return 1 if failed else 0

"""hgs status: the UPS, each host and its VMs by name, the current phase, where each VM of the
snapshot stands during an outage or a restore, and the last runs (or --json)."""

import json
import os
import time

STATUS_CONNECT_S = 3.0
STATUS_XE_S = 4.0
STATUS_BUDGET_S = 6.0


def add_arguments(parser):
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object (for monitoring)")
    output.add_argument("--prometheus", action="store_true",
                        help="print metrics in Prometheus's text exposition format (UPS, hosts, phase, last runs)")
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
    from hgs.box import history
    from hgs.box.lock import SiteLock
    from hgs.box.state import StateFile
    from hgs.errors import HgsError

    try:
        state = StateFile(settings.paths.state_dir).read()
        phase, error = state.phase, None
    except HgsError as err:
        state, phase, error = None, None, str(err)
    pid, kind = running_flow(SiteLock(settings.paths.lock_dir))
    snapshot = state.snapshot if state is not None else None
    stands = snapshot_stands(settings, state, pid) if state is not None else []
    runs = [{"id": r.id, "command": r.command, "result": r.result, "failed": r.failed, "ended": r.ended}
            for r in history.recent(settings.paths.state_dir, 5)]
    return {"phase": phase, "state_error": error, "snapshot_vms": len(snapshot.vms) if snapshot else 0,
            "snapshot": stands, "running_flow": {"pid": pid, "kind": kind} if pid else None, "last_runs": runs}


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


OUTAGE_KINDS = ("outage", "forced shutdown")


def snapshot_stands(settings, state, running_pid):
    """Given the State and the running flow's pid, returns one dict per VM of the snapshot:
    its name, host, order and where it stands, from the flow's progress file."""
    from hgs.box import progress as progressmod
    from hgs.box.state import RESTORING, SITE_DOWN

    snapshot = state.snapshot
    if snapshot is None or not snapshot.vms:
        return []
    progress = progressmod.read(settings.paths.state_dir)
    restoring = state.phase == RESTORING or (progress is not None and running_pid == progress.get("pid")
                                             and progress.get("kind") == "restore")
    wanted = ("restore",) if restoring else OUTAGE_KINDS
    items = {}
    if progress is not None and progress.get("kind") in wanted and (
            running_pid is None or running_pid == progress.get("pid")):
        items = {item["name"]: item for item in progress.get("vms", [])}
    pending = state.restore_pending
    out = []
    for vm in sorted(snapshot.vms.values(), key=lambda v: (-v.order, v.name)):
        item = items.get(vm.name)
        if item is not None:
            stands = _stand(item, restoring)
        elif restoring:
            stands = "to start" if pending is None or vm.uuid in pending else "its start group is done"
        elif state.phase == SITE_DOWN:
            stands = "down"
        elif vm.shed:
            stands = "down: shed (started again if the power returns first)"
        else:
            stands = "running: to " + ("suspend" if vm.action == "suspend" else "shut down")
        host = snapshot.hosts.get(vm.host) if vm.host is not None else None
        out.append({"name": vm.name, "uuid": vm.uuid, "host": host.name if host else None, "order": vm.order,
                    "tools": vm.tools, "stands": stands, "action": vm.action,
                    "outcome": item["outcome"] if item else None, "seconds": item.get("seconds") if item else None})
    return out


OUTAGE_WORDS = {"clean": "down: clean shutdown", "forced": "down: forced", "reset": "down: power state reset",
                "already halted": "down: was already halted", "gone": "gone: no longer exists",
                "suspended": "down: suspended (the restore resumes it)", "started again": "running: started again",
                "shed (clean)": "down: shed, clean shutdown", "shed (forced)": "down: shed, forced"}
RESTORE_WORDS = {"started": "running: started", "already running": "running: was already running",
                 "resumed": "running: resumed"}


def _stand(item, restoring):
    """Says where a VM stands from its outcome in the flow's report."""
    outcome = item["outcome"]
    label = (RESTORE_WORDS if restoring else OUTAGE_WORDS).get(outcome, outcome)
    took = "" if item.get("seconds") is None else f" in {item['seconds']:.1f} s"
    detail = f" ({item['detail']})" if item.get("detail") and label == outcome else ""
    return f"{label}{took}{detail}"


def host_groups(settings, hosts):
    """Returns {vm uuid: shutdown group number (1 = first)} for the VMs running on the reachable hosts."""
    from hgs.flows import plan
    from hgs.flows.snapshot import VmRecord

    running = {vm["uuid"]: VmRecord.from_dict(vm["uuid"], vm) for host in hosts for vm in host.get("running") or []}
    groups = plan.build_groups(list(running.values()), settings.vms)
    return {vm.uuid: index for index, group in enumerate(groups, 1) for vm in group}


def _article(word):
    return "an" if word[:1] in "aeiou" else "a"


def _vm_line(vm):
    tools = "tools" if vm["tools"] else "NO TOOLS (forced)"
    group = f", shutdown group {vm['group']}" if vm.get("group") else ""
    action = {"shed": ", shed early", "suspend": ", suspended instead of shut down"}.get(vm.get("action"), "")
    return f"    {vm['name']}: {vm['power_state']}, {tools}, order {vm['order']}{group}{action}"


def run(ctx):
    from hgs.box.log import RunLog
    from hgs.flows.inspect import inspect_site

    settings = ctx.settings
    started = time.monotonic()
    ups, status = ups_report(settings)
    report = {"ups": ups}
    if not ctx.args.ups_only:
        log = RunLog("status", stderr=ctx.stderr).logger
        report["hosts"] = inspect_site(settings.hosts, log, min(STATUS_CONNECT_S, settings.timings.ssh_connect_timeout_s),
                                       min(STATUS_XE_S, settings.timings.xe_timeout_s), STATUS_BUDGET_S)
        groups = host_groups(settings, report["hosts"])
        for host in report["hosts"]:
            host.pop("running", None)
            for vm in host.get("vms") or []:
                vm["group"] = groups.get(vm["uuid"])
                vm["action"] = settings.vms.action(vm)
        report.update(phase_report(settings))
    report["took_s"] = round(time.monotonic() - started, 2)
    failed = ups["error"] is not None or any(not h["reachable"] for h in report.get("hosts", []))
    if ctx.args.json:
        ctx.out(json.dumps(report, indent=2, sort_keys=True))
        return 1 if failed else 0
    if ctx.args.prometheus:
        from hgs.box import metrics

        ctx.stdout.write(metrics.from_status(report, metrics.last_runs(settings.paths.state_dir)))
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
        if host["reachable"] and host.get("error"):  # it answered, then a later xe call failed
            ctx.out(f"host {host['name']} ({host['address']}): reachable, but {host['error_kind']} failed")
            ctx.out(f"  {host['error']}")
        elif host["reachable"]:
            role = "master" if host.get("master") else "member" if host.get("master") is False else "?"
            ctx.out(f"host {host['name']} ({host['address']}): reachable, {role}, "
                    f"{'enabled' if host.get('enabled') else 'DISABLED'}, pool HA {'on' if host.get('ha_enabled') else 'off'}")
            ctx.out(f"  VMs: {host['vms_running']} running here, {host['vms_halted']} halted in the pool"
                    + (f"; without tools (would be forced): {', '.join(host['no_tools'])}" if host["no_tools"] else ""))
            for vm in host.get("vms") or []:
                ctx.out(_vm_line(vm))
            if host.get("master") and host.get("halted"):
                ctx.out(f"    halted in the pool: {', '.join(host['halted'])}")
        else:
            ctx.out(f"host {host['name']} ({host['address']}): NOT REACHABLE ({host['error_kind']})")
            ctx.out(f"  {host['error']}")
    if "phase" in report:
        flow = report["running_flow"]
        ctx.out(f"phase: {report['phase'] or 'unknown'}"
                + (f" ({report['snapshot_vms']} VMs in the snapshot)" if report["snapshot_vms"] else "")
                + (f"; {_article(flow['kind'])} {flow['kind']} flow is running (pid {flow['pid']})" if flow else ""))
        if report["state_error"]:
            ctx.out(f"  {report['state_error']}")
        if report["snapshot"]:
            ctx.out("  the snapshot's VMs (what hgs shut down and brings back):")
            for vm in report["snapshot"]:
                action = "" if vm.get("action", "shutdown") == "shutdown" else f", {vm['action']}"
                ctx.out(f"    {vm['name']} (on {vm['host'] or '?'}, order {vm['order']}{action}): {vm['stands']}")
        for item in report["last_runs"]:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(item["ended"])) if item.get("ended") else "?"
            ctx.out(f"  run {item['id']} {item['command']}: {item['result']}{' (FAILED)' if item['failed'] else ''}, {when}")
        if not report["last_runs"]:
            ctx.out("  no runs yet")
    return 1 if failed else 0

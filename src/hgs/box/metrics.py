"""Metrics in Prometheus's text exposition format (0.0.4), standard library only.

``from_status`` renders what `hgs status --json` gathers (UPS, hosts, phase) plus the last run
of each flow command; ``write_textfile`` writes the last runs' metrics atomically for
node_exporter's textfile collector, at the end of each run (METRICS['textfile']).
"""

import os
import time

from hgs.box import history
from hgs.box.files import write_atomic

FLOW_COMMANDS = ("onbattery", "offbattery", "doshutdown")
PHASES = ("idle", "shutting_down", "site_down", "restoring")
FORCED = ("forced", "reset")


class Exposition:
    """Collects metric families and renders them; each family's HELP and TYPE come once, first."""

    def __init__(self):
        self.families = {}

    def add(self, name, kind, help_text, value, **labels):
        family = self.families.setdefault(name, (kind, help_text, []))
        if value is not None:
            family[2].append((labels, value))

    def text(self):
        lines = []
        for name, (kind, help_text, samples) in self.families.items():
            lines.append(f"# HELP {name} {_escape_help(help_text)}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                shown = ",".join(f'{key}="{_escape_label(str(val))}"' for key, val in labels.items())
                lines.append(f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}")
        return "\n".join(lines) + "\n"


def _escape_label(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def last_runs(state_dir):
    """Returns {command: newest RunRecord} for the flow commands, from the run history."""
    out = {}
    for record in history.recent(state_dir, history.KEEP):
        if record.command in FLOW_COMMANDS and record.command not in out:
            out[record.command] = record
    return out


def add_runs(exposition, runs):
    """Adds the last-run families for ``runs`` ({command: RunRecord})."""
    e = exposition
    for command, run in sorted(runs.items()):
        vms, hosts = run.vms, run.hosts
        started, ended = run.started, run.ended
        e.add("hgs_last_run_timestamp_seconds", "gauge", "When the last run of this flow command ended (Unix time).",
              ended, command=command)
        e.add("hgs_last_run_success", "gauge", "1 when the last run of this flow command ended without a failure.",
              not run.failed, command=command)
        e.add("hgs_last_run_duration_seconds", "gauge", "How long the last run of this flow command took.",
              None if started is None or ended is None else max(0.0, ended - started), command=command)
        e.add("hgs_last_run_result", "gauge", "The result of the last run of this flow command, as a label (always 1).",
              1, command=command, result=run.result or "unknown")
        e.add("hgs_last_run_vms", "gauge", "VMs the last run of this flow command shut down or started.",
              len(vms), command=command)
        e.add("hgs_last_run_vms_forced", "gauge", "VMs the last run of this flow command had to force off.",
              sum(1 for vm in vms if vm.outcome in FORCED), command=command)
        e.add("hgs_last_run_hosts_down", "gauge", "Hosts the last run of this flow command confirmed down.",
              sum(1 for host in hosts if "confirmed down" in host.outcome), command=command)
        e.add("hgs_last_run_hosts_still_up", "gauge", "Hosts the last run of this flow command could not bring down.",
              sum(1 for host in hosts if host.outcome == "STILL UP"), command=command)


def from_status(report, runs):
    """Given the dict `hgs status --json` prints and the last runs, returns the exposition text."""
    e = Exposition()
    ups = report.get("ups") or {}
    readable = ups.get("error") is None and ups.get("state") is not None
    e.add("hgs_ups_up", "gauge", "1 when the UPS daemon answered hgs with a status.", readable)
    if readable:
        e.add("hgs_ups_on_battery", "gauge", "1 when the UPS runs on battery (or low battery, or forced shutdown).",
              ups.get("state") in ("on_battery", "low_battery", "forced_shutdown"))
        e.add("hgs_ups_battery_charge_percent", "gauge", "Battery charge the UPS reports.", ups.get("charge_pct"))
        e.add("hgs_ups_runtime_seconds", "gauge", "Runtime left on battery the UPS reports.", ups.get("runtime_s"))
    for host in report.get("hosts", []):
        name = host["name"]
        e.add("hgs_host_up", "gauge", "1 when hgs reached the host over SSH and xe answered.",
              bool(host.get("reachable")) and not host.get("error"), host=name)
        if host.get("reachable") and not host.get("error"):
            e.add("hgs_host_enabled", "gauge", "1 when the host is enabled in its pool.", bool(host.get("enabled")),
                  host=name)
            e.add("hgs_host_master", "gauge", "1 when the host is its pool's master.", bool(host.get("master")),
                  host=name)
            e.add("hgs_host_vms_running", "gauge", "VMs running on the host.", host.get("vms_running"), host=name)
            e.add("hgs_host_vms_without_tools", "gauge", "Running VMs on the host without guest tools (forced off).",
                  len(host.get("no_tools") or []), host=name)
            e.add("hgs_pool_ha_enabled", "gauge", "1 when the host's pool has HA on.", bool(host.get("ha_enabled")),
                  host=name)
    if "phase" in report:
        for phase in PHASES:
            e.add("hgs_phase", "gauge", "Where the site is: 1 for the current phase (state file).",
                  report.get("phase") == phase, phase=phase)
        flow = report.get("running_flow")
        e.add("hgs_flow_running", "gauge", "1 while an hgs flow holds the site lock.", flow is not None)
        e.add("hgs_snapshot_vms", "gauge", "VMs in the snapshot of what hgs shut down and will bring back.",
              report.get("snapshot_vms", 0))
        add_runs(e, runs)
    e.add("hgs_status_duration_seconds", "gauge", "How long `hgs status` took to gather this.", report.get("took_s"))
    return e.text()


def textfile_text(runs, now=None):
    """Returns the textfile collector's content: the last runs, and when it was written."""
    e = Exposition()
    add_runs(e, runs)
    e.add("hgs_textfile_timestamp_seconds", "gauge", "When hgs last wrote this file (Unix time).",
          time.time() if now is None else now)
    return e.text()


def write_textfile(path, state_dir):
    """Writes the last runs' metrics to ``path`` atomically (mode 0644, node_exporter reads it);
    raises OSError saying why it could not."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the folder {folder} does not exist (is node_exporter's textfile collector set up?)")
    text = textfile_text(last_runs(state_dir))
    write_atomic(path, text, mode=0o644, fsync=False, suffix=".prom.tmp")  # the collector reads *.prom only
    return text

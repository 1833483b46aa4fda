"""Planning an outage: shutdown groups, the battery budget, and the timeline a dry run prints.

Pure functions over plain data (VMs as ``flows.snapshot.VmRecord``), so they are tested with tables.
"""

import dataclasses
from dataclasses import dataclass, field

from hgs.box.text import shown


@dataclass
class Budget:
    """Deadlines for this run: graceful per group, force per VM, per host; and the worst case."""

    grace_s: float
    force_s: float
    host_s: float
    groups: int
    host_stages: int
    worst_case_s: float
    available_s: float | None
    shortened_from_s: float | None = None
    notes: list = field(default_factory=list)


def build_groups(vms, policy):
    """Given VmRecords (their uuid, name and order count) and VmPolicy, returns the shutdown groups.

    Order: VMs named in no group first, by xe 'order' (highest first, one group per value);
    then the config's groups as listed; then the 'stop_last' VMs. Empty groups are dropped.
    """
    def named(vm, names):
        return vm.uuid in names or vm.name in names

    last = [vm for vm in vms if named(vm, policy.stop_last)]
    rest = [vm for vm in vms if not named(vm, policy.stop_last)]
    explicit = [[vm for vm in rest if named(vm, set(group))] for group in policy.groups]
    listed = {vm.uuid for group in explicit for vm in group}
    unlisted = [vm for vm in rest if vm.uuid not in listed]
    by_order = {}
    for vm in unlisted:
        by_order.setdefault(vm.order, []).append(vm)
    groups = [by_order[o] for o in sorted(by_order, reverse=True)]
    # a VM named in two explicit groups goes with the first one
    seen = set()
    for group in explicit:
        kept = [vm for vm in group if vm.uuid not in seen]
        seen.update(vm.uuid for vm in kept)
        groups.append(kept)
    groups.append(last)
    return [sorted(g, key=lambda vm: vm.name) for g in groups if g]


def budget(timings, groups, host_stages, runtime_s, reserve_s):
    """Returns the Budget: the configured deadlines, shortened when the battery would not cover
    the worst case (runtime minus reserve). Forcing and host shutdown are never shortened."""
    grace, force, host = timings.vm_shutdown_timeout_s, timings.vm_force_timeout_s, timings.host_shutdown_timeout_s
    fixed = groups * force + host_stages * host
    worst = groups * grace + fixed
    available = None if runtime_s is None else max(0.0, runtime_s - reserve_s)
    result = Budget(grace, force, host, groups, host_stages, worst, available)
    if available is not None and groups and worst > available:
        new_grace = max(0.0, (available - fixed) / groups)
        result.shortened_from_s = grace
        result.grace_s = new_grace
        result.worst_case_s = groups * new_grace + fixed
        result.notes.append(
            f"battery: {runtime_s:.0f} s of runtime minus {reserve_s:.0f} s reserve leaves {available:.0f} s, less than "
            f"the worst case of {worst:.0f} s: graceful shutdown deadlines shortened from {grace:.0f} s to "
            f"{new_grace:.0f} s per group")
        if new_grace == 0:
            result.notes.append("battery: not even the forced path fits; every VM is forced at once")
    return result


def timeline(groups, host_order, b, runtime_s):
    """Returns the lines of the plan as a timeline (what a dry run prints)."""
    lines, t = [], 0.0
    for index, group in enumerate(groups, 1):
        names = ", ".join(f"{shown(vm.name)}{'' if vm.tools else ' (no tools: forced at once)'}"
                          for vm in group)
        lines.append(f"  +{t:6.0f} s  group {index}: clean shutdown of {len(group)} VM(s) in parallel: {names}")
        lines.append(f"  +{t + b.grace_s:6.0f} s  group {index}: deadline; VMs still running are forced "
                     f"(force deadline +{t + b.grace_s + b.force_s:.0f} s)")
        t += b.grace_s + b.force_s
    for stage in host_order:
        lines.append(f"  +{t:6.0f} s  hosts: disable + shutdown {', '.join(stage)}; confirm down within {b.host_s:.0f} s")
        t += b.host_s
    runtime = "unknown" if runtime_s is None else f"{runtime_s:.0f} s"
    lines.append(f"  worst case {b.worst_case_s:.0f} s; UPS runtime {runtime}"
                 + ("" if b.available_s is None else f" ({b.available_s:.0f} s after the reserve)"))
    lines += [f"  note: {n}" for n in b.notes]
    return lines


def _from_power_failure(at, confirm_s, runtime_s, charge_pct):
    """When a threshold ``at`` ('confirmed', ('charge_pct', N), ('runtime_s', N)) would be met,
    counted from the power failure, at the present load; a text."""
    if at == "confirmed":
        return f"+{confirm_s:6.0f} s"
    kind, value = at
    if kind == "runtime_s" and runtime_s is not None:
        return f"~+{max(confirm_s, runtime_s - value):5.0f} s"
    if kind == "charge_pct" and runtime_s is not None and charge_pct:
        return f"~+{max(confirm_s, runtime_s * (charge_pct - value) / charge_pct):5.0f} s"
    return "      ?  "


def stage_lines(shed_stages, main_trigger, confirm_s, runtime_s, charge_pct, trigger_s):
    """Given [(ShedRule, [VM name])], TIMINGS['main_trigger'], the confirmation window, the UPS's
    runtime and charge now and the runtime left that starts the main shutdown, returns the
    lines saying when each stage would start at the present load (a battery drains faster
    under more load: shedding makes the later stages come later)."""
    runtime = "unknown" if runtime_s is None else f"{runtime_s:.0f} s"
    charge = "unknown" if charge_pct is None else f"{charge_pct:g} %"
    lines = [f"  stages, from the power failure, at the present load (UPS runtime {runtime}, charge {charge}):"]
    for rule, names in shed_stages:
        when = _from_power_failure(rule.at, confirm_s, runtime_s, charge_pct)
        lines.append(f"  {when}  shed {', '.join(shown(n) for n in names)} ({rule.describe()})")
    if main_trigger == "window":
        lines.append(f"  +{confirm_s:6.0f} s  main shutdown (TIMINGS['main_trigger'] = 'window')")
    else:
        when = _from_power_failure(("runtime_s", trigger_s), confirm_s, runtime_s, charge_pct)
        lines.append(f"  {when}  main shutdown, when runtime left falls to {trigger_s:.0f} s (worst case plus "
                     "reserve; later as shedding lowers the load)")
    return lines


def escalated_timings(timings):
    """Returns the Timings a doshutdown flow runs with: each remote wait (connect, xe call,
    forced shutdown) cut to an eighth of TIMINGS['doshutdown_bound_s'], and no retry window for
    a host that does not answer, so the hosts are sent down well within the bound."""
    cut = max(1.0, timings.doshutdown_bound_s / 8)
    return dataclasses.replace(timings, xe_timeout_s=min(timings.xe_timeout_s, cut),
                               ssh_connect_timeout_s=min(timings.ssh_connect_timeout_s, cut),
                               vm_force_timeout_s=min(timings.vm_force_timeout_s, cut), unreachable_retry_s=0.0)

"""The outage flow: confirm the outage, snapshot, HA off, VMs down group by group, hosts down.

Plain orchestration over the interfaces in ``Deps``: it imports no paramiko, socket or
subprocess, and never asks whether it is a dry run. Every phase is best effort except the
protective one: a VM that will not stop is recorded and the hosts are still shut down.
"""

import time
from dataclasses import dataclass, field
from types import SimpleNamespace

from hgs import state as statemod
from hgs.errors import HgsError, UpsError
from hgs.flows import plan
from hgs.hypervisor import XeCallError
from hgs.remote import RemoteError
from hgs.ups import UpsState

FORCE_AT_ONCE = {"VM_LACKS_FEATURE", "VM_MISSING_PV_DRIVERS"}
GONE = {"NO_MATCHING_VMS", "UUID_INVALID"}
TICK_S = 0.02
POWER_POLL_S = 1.0


@dataclass
class Deps:
    """What a flow works with: settings, the UPS, one hypervisor per configured host, etc."""

    settings: object
    read_ups: object  # () -> UpsStatus; raises UpsError
    hypervisors: dict  # config host name -> Hypervisor (or its dry-run twin)
    prober: object  # is_up(host) / is_down(host)
    clock: object
    state_file: object
    log: object
    escalated: object = lambda: False  # () -> True once 'hgs doshutdown' asked to hurry
    waker: object = None
    last_event: object = lambda kind, since: None  # (event, wall time) -> wall time a hook last got it, or None


@dataclass
class PoolView:
    info: object  # PoolInfo
    hosts: list  # HostInfo
    executor: str  # the config host whose xe runs the pool's commands (the master when reachable)
    config: dict = field(default_factory=dict)  # host uuid -> HostSettings


@dataclass
class Track:
    """One VM's way down."""

    vm: dict
    pool: str
    stage: str = "clean"  # clean -> force -> done
    stage_started: float = 0.0
    deadline: float = 0.0
    batch: object = None
    done: bool = False
    detail: str = ""
    in_progress: bool = False  # xapi already runs a shutdown of it (e.g. from before a reconnect)


def match_config(host_infos, settings_hosts):
    """Returns {host uuid: HostSettings}: by name-label first, else by a unique address."""
    found = {}
    for info in host_infos:
        by_name = [h for h in settings_hosts if h.name == info.name]
        by_address = [h for h in settings_hosts if h.address == info.address]
        if by_name:
            found[info.uuid] = by_name[0]
        elif len(by_address) == 1:
            found[info.uuid] = by_address[0]
    return found


class OutageFlow:
    def __init__(self, deps, report):
        self.d = deps
        self.report = report
        self.log = deps.log
        self.timings = deps.settings.timings
        self.pools = {}
        self.snapshot = None

    # -- 1. confirm ---------------------------------------------------------------------

    def confirm(self):
        """Returns True once the power has been off for the whole confirmation window.

        The window follows the current continuous outage: the power back (a UPS reading on
        line, or an offbattery event the hooks recorded, however short) stops the flow, unless
        it failed again after that, in which case the window starts over.
        """
        window = self.timings.confirm_outage_s
        clock = self.d.clock
        began = outage_since = clock.wall()
        seen_battery, last = False, None
        self.log.info("confirming the outage: polling the UPS for %.0f s", window)
        while True:
            try:
                status = last = self.d.read_ups()
            except UpsError as err:
                status = None
                self.log.warning("UPS not readable during confirmation: %s", err)
            now = clock.wall()
            # the power came back when a reading says so now, or when a hook heard offbattery since
            back = [t for t in (now if status is not None and status.on_mains else None,
                                self.d.last_event("offbattery", outage_since)) if t is not None]
            back_at = max(back, default=None)
            if back_at is not None:
                failed_again = self.d.last_event("onbattery", back_at)
                if failed_again is None or (status is not None and status.on_mains):
                    waited = now - began
                    self.log.info("power is back after %.1f s of confirmation: stopping, nothing was touched", waited)
                    self.report.fact(f"power came back during confirmation ({waited:.1f} s): nothing was touched")
                    return False
                self.log.info("the power came back and failed again: the %.0f s confirmation starts over", window)
                outage_since = failed_again
            if status is not None and status.on_battery:
                seen_battery = True
                if status.state in (UpsState.LOW_BATTERY, UpsState.FORCED_SHUTDOWN):
                    self.log.warning("UPS reports %s: no time to wait, shutting down now", status.state.value)
                    break
            if self.d.escalated():
                self.log.warning("this box is shutting down: confirmation cut short")
                seen_battery = True
                break
            if now - outage_since >= window:
                break
            clock.sleep(min(self.d.settings.ups.poll_interval_s, window - (now - outage_since)))
        if not seen_battery and last is None and self.d.settings.ups.lost_contact == "outage" \
                and self.d.last_event("onbattery", began - window - 60) is not None:
            self.log.warning("the UPS daemon did not answer during the confirmation, after it reported the power "
                             "failure; UPS['lost_contact'] is 'outage': treated as confirmed")
            self.report.fact("UPS unreadable during confirmation after an onbattery event: treated as an outage "
                             "(UPS['lost_contact'] = 'outage')")
            return True
        if not seen_battery:
            self.log.warning("the UPS never reported running on battery during the confirmation window: "
                             "lost contact is not a confirmed outage (UPS['lost_contact']); nothing was touched")
            self.report.fact("outage not confirmed: the UPS never reported on battery; nothing was touched")
            return False
        took = clock.wall() - began
        text = "" if last is None else f" ({last.state.value}, {_battery(last)})"
        self.log.info("outage confirmed after %.1f s%s", took, text)
        self.report.fact(f"outage confirmed after {took:.1f} s{text}")
        return True

    # -- 2. discover and snapshot ----------------------------------------------------------

    def discover(self):
        """Asks every configured host for its pool; returns {pool uuid: PoolView}.

        A host that does not answer is retried every few seconds for
        TIMINGS['unreachable_retry_s'] (its sshd may be coming back), unless a pool found
        already covers it; a host whose key is wrong is not retried.
        """
        from hgs.remote import HostKeyError

        pools, pending = {}, list(self.d.settings.hosts)
        deadline = self.d.clock.now() + self.timings.unreachable_retry_s
        errors = {}
        while pending:
            for host in list(pending):
                hv = self.d.hypervisors[host.name]
                try:
                    info = hv.pool()
                    infos = hv.hosts()
                except HostKeyError as err:
                    self.log.error("%s", err)
                    errors[host.name] = err
                    pending.remove(host)
                    continue
                except (RemoteError, XeCallError, HgsError) as err:
                    if host.name not in errors:
                        self.log.warning("%s does not answer (%s): retrying for up to %.0f s", host.name, err,
                                         self.timings.unreachable_retry_s)
                    errors[host.name] = err
                    continue
                if errors.pop(host.name, None) is not None:
                    self.log.info("%s answers now", host.name)
                pending.remove(host)
                view = pools.get(info.uuid)
                if view is None:
                    view = pools[info.uuid] = PoolView(info, infos, host.name, match_config(infos, self.d.settings.hosts))
                master_config = view.config.get(info.master)
                if master_config is not None and master_config.name == host.name:
                    view.executor = host.name  # the master answered: it runs the pool's commands
            covered = {c.name for view in pools.values() for c in view.config.values()}
            pending = [h for h in pending if h.name not in covered]
            if not pending or self.d.clock.now() >= deadline or self.d.escalated():
                break
            self.d.clock.sleep(2.0)
        covered = {c.name for view in pools.values() for c in view.config.values()}
        for name, err in errors.items():
            if name in covered:  # its pool's master answered for it: shut down through the master
                self.report.notes.append(f"{name} did not answer itself ({err}); handled through its pool master")
            else:
                self.report.notes.append(f"{name} did not answer: {err}")
                self.report.failed = True
        self.pools = pools
        return pools

    def take_snapshot(self, state):
        """Writes the running VMs per pool to the state file BEFORE any change; returns it."""
        policy = self.d.settings.vms
        vms, pools, hosts = {}, {}, {}
        for pool_uuid, view in self.pools.items():
            hv = self.d.hypervisors[view.executor]
            pools[pool_uuid] = {"master": view.info.master, "ha_was_enabled": view.info.ha_enabled, "ha_srs": [],
                                "executor": view.executor}
            for info in view.hosts:
                config = view.config.get(info.uuid)
                hosts[info.uuid] = {"name": info.name, "config": config.name if config else None, "pool": pool_uuid,
                                    "master": info.uuid == view.info.master, "address": info.address}
            try:
                running = hv.vms(running_only=True)
            except (RemoteError, XeCallError) as err:
                self.log.error("%s: cannot list the running VMs: %s", view.executor, err)
                self.report.notes.append(f"VMs of pool {pool_uuid[:8]} could not be listed: {err}")
                continue
            for vm in running:
                if vm.uuid in policy.leave_alone or vm.name in policy.leave_alone:
                    self.log.info("leaving %s alone (VMS['leave_alone'])", vm.name)
                    continue
                vms[vm.uuid] = {"uuid": vm.uuid, "name": vm.name, "pool": pool_uuid, "host": vm.resident_on,
                                "order": vm.order, "start_delay": vm.start_delay, "tools": vm.tools}
        snapshot = {"taken": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run_id": self.report.run_id,
                    "pools": pools, "hosts": hosts, "vms": vms}
        previous = state.get("snapshot")
        if previous and state.get("phase") != statemod.IDLE:
            snapshot = merge_snapshots(previous, snapshot)
            self.log.info("an earlier outage left a snapshot (%d VMs): kept, with what runs now added",
                          len(previous.get("vms", {})))
        # everything of the snapshot is down again after this: a restore starts it all
        state.pop("restore_pending", None)
        state.update(phase=statemod.SHUTTING_DOWN, snapshot=snapshot)
        self.save(state, "the snapshot")
        self.snapshot = snapshot
        self.running_now = vms  # what this run found running: the VMs to shut down
        self.log.info("snapshot: %d running VM(s) to shut down: %s", len(vms),
                      names(sorted(v["name"] for v in vms.values())) or "none")
        return snapshot

    def save(self, state, what):
        try:
            self.d.state_file.save(state)
        except HgsError as err:
            import json

            self.log.error("%s; continuing (the hardware comes first). %s as JSON: %s", err, what,
                           json.dumps(state.get("snapshot")))
            self.report.notes.append(f"state not saved: {err}")

    # -- 3. HA ------------------------------------------------------------------------------

    def disable_ha(self, state):
        for pool_uuid, view in self.pools.items():
            if not view.info.ha_enabled:
                continue
            hv = self.d.hypervisors[view.executor]
            try:
                srs = hv.ha_statefile_srs(pool_uuid)
                state["snapshot"]["pools"][pool_uuid]["ha_srs"] = srs
                self.save(state, "the snapshot")
                hv.ha_disable()
                self.log.info("pool HA disabled (heartbeat SR %s); it is turned back on after the restore",
                              ", ".join(srs) or "unknown")
                self.report.fact("pool HA was on: turned off for the shutdown")
            except (RemoteError, XeCallError) as err:
                self.log.error("could not disable pool HA: %s (HA may restart VMs hgs stops)", err)
                self.report.notes.append(f"HA could not be disabled: {err}")

    # -- 4. VMs -------------------------------------------------------------------------------

    def shutdown_vms(self, groups, b):
        for index, group in enumerate(groups, 1):
            self.log.info("group %d/%d: shutting down %d VM(s) in parallel (deadline %.0f s): %s",
                          index, len(groups), len(group), b.grace_s, names(vm["name"] for vm in group))
            self._group(group, b)

    def _group(self, group, b):
        clock = self.d.clock
        start = clock.now()
        tracks = {vm["uuid"]: Track(vm, vm["pool"], stage_started=start, deadline=start + b.grace_s) for vm in group}
        for track in tracks.values():
            if not track.vm.get("tools", True):
                self._to_force(track, start, "no guest tools: forced at once")
        batches = []
        next_poll = start + POWER_POLL_S
        while not all(t.done for t in tracks.values()):
            now = clock.now()
            for batch, stage in batches:
                for outcome in batch.poll():
                    track = tracks.get(outcome.uuid)
                    if track and not track.done:
                        self._outcome(track, stage, outcome, start)
            for batch, stage in list(batches):
                if batch.lost:
                    self.log.warning("the connection dropped during the VM shutdowns: reconnecting")
                    batches.remove((batch, stage))
                    for track in tracks.values():
                        if track.batch is batch and not track.done:
                            track.batch = None
            hurry = self.d.escalated()
            for track in tracks.values():
                if track.done:
                    continue
                if track.stage == "clean" and (now >= track.deadline or hurry):
                    why = "this box is shutting down" if hurry else f"no clean shutdown within {b.grace_s:.0f} s"
                    self._to_force(track, now, why)
                elif track.stage == "force" and now >= track.stage_started + b.force_s:
                    self._reset(track, start, f"force did not finish within {b.force_s:.0f} s")
            batches += self._launch([t for t in tracks.values()
                                     if not t.done and t.batch is None and not (t.in_progress and t.stage == "clean")])
            if now >= next_poll:
                next_poll = now + POWER_POLL_S
                self._poll_power(tracks, start)
            clock.sleep(TICK_S)
        for batch, _ in batches:
            batch.close()

    def _launch(self, tracks):
        """Starts one batch per (executor, stage) for tracks without one; returns [(batch, stage)]."""
        from hgs import xe

        launched = {}
        for track in tracks:
            launched.setdefault((self.pools[track.pool].executor, track.stage), []).append(track)
        out = []
        for (executor, stage), group in launched.items():
            commands = [(t.vm["uuid"], xe.vm_shutdown(t.vm["uuid"], force=stage == "force")) for t in group]
            try:
                batch = self.d.hypervisors[executor].launch(commands)
            except (RemoteError, HgsError) as err:
                self.log.warning("%s: cannot start the %s shutdowns (%s); retrying", executor, stage, err)
                self.d.clock.sleep(0.5)
                continue
            for track in group:
                track.batch = batch
            out.append((batch, stage))
        return out

    def _to_force(self, track, now, why):
        self.log.info("%s: %s: forcing", track.vm["name"], why)
        track.stage, track.stage_started, track.batch, track.detail = "force", now, None, why
        track.in_progress = False

    def _finish(self, track, start, outcome, detail="", failed=False):
        track.done, track.batch = True, None
        took = self.d.clock.now() - start
        detail = detail or (track.detail if outcome != "clean" else "")
        level = self.log.error if failed else self.log.info
        level("%s: %s after %.1f s%s", track.vm["name"], outcome, took, f" ({detail})" if detail else "")
        self.report.vm(track.vm["name"], outcome, took, detail, failed=failed)

    def _outcome(self, track, stage, outcome, start):
        if outcome.status == 0:
            self._finish(track, start, "clean" if track.stage == "clean" else "forced")
            return
        error = outcome.error
        if error.code == "VM_BAD_POWER_STATE" and error.params.get("actual") == "halted":
            self._finish(track, start, "already halted" if track.stage == "clean" and stage == "clean" else "forced")
        elif error.code in GONE:
            self._finish(track, start, "gone", "the VM no longer exists")
        elif stage != track.stage:
            return  # a late answer from a stage the VM has left
        elif stage == "clean" and error.code == "OTHER_OPERATION_IN_PROGRESS":
            track.in_progress = True  # the earlier call's task still runs in xapi: wait for it, up to the deadline
            self.log.info("%s: its shutdown is already running in xapi: waiting for it", track.vm["name"])
        elif stage == "clean" and error.code in FORCE_AT_ONCE:
            self._to_force(track, self.d.clock.now(), "no guest tools (VM_LACKS_FEATURE)")
        elif stage == "clean":
            self._to_force(track, self.d.clock.now(), f"clean shutdown failed: {error.summary}")
        else:
            self._reset(track, start, f"force failed: {error.summary}")

    def _reset(self, track, start, why):
        hv = self.d.hypervisors[self.pools[track.pool].executor]
        self.log.warning("%s: %s: resetting its power state", track.vm["name"], why)
        try:
            hv.reset_powerstate(track.vm["uuid"])
            self._finish(track, start, "reset", f"{why}; vm-reset-powerstate")
        except (RemoteError, XeCallError) as err:
            self._finish(track, start, "FAILED", f"{why}; vm-reset-powerstate failed: {err}", failed=True)

    def _poll_power(self, tracks, start):
        """One vm-list per pool: catches VMs halted by other means and lost results."""
        for pool_uuid in {t.pool for t in tracks.values() if not t.done}:
            try:
                states = self.d.hypervisors[self.pools[pool_uuid].executor].power_states()
            except (RemoteError, XeCallError) as err:
                self.log.warning("cannot read the VM power states: %s", err)
                continue
            for track in tracks.values():
                if track.done or track.pool != pool_uuid:
                    continue
                power = states.get(track.vm["uuid"])
                if power is None:
                    self._finish(track, start, "gone", "the VM no longer exists")
                elif power == "halted":
                    self._finish(track, start, "clean" if track.stage == "clean" else "forced")

    # -- 5. hosts --------------------------------------------------------------------------------

    def host_stages(self):
        """Returns [[(pool uuid, HostInfo)], ...]: every pool's members, then the masters."""
        members, masters = [], []
        for pool_uuid, view in self.pools.items():
            for info in view.hosts:
                (masters if info.uuid == view.info.master else members).append((pool_uuid, info))
        return [stage for stage in (members, masters) if stage]

    def _probe_target(self, pool_uuid, info):
        config = self.pools[pool_uuid].config.get(info.uuid)
        if config is not None:
            return config
        return SimpleNamespace(name=info.name, address=info.address, ssh_port=22, down_check="ping+ssh")

    def _send_shutdown(self, pool_uuid, info):
        hv = self.d.hypervisors[self.pools[pool_uuid].executor]
        try:
            hv.host_disable(info.uuid)
        except XeCallError as err:
            self.log.warning("%s: host-disable failed: %s", info.name, err.error.summary)
        except RemoteError as err:
            return f"not sent: {err}"
        try:
            sent = hv.host_shutdown(info.uuid)
        except XeCallError as err:
            if err.error.code != "HOST_NOT_DISABLED":
                return f"not sent: {err.error.summary}"
            hv.host_disable(info.uuid)
            sent = hv.host_shutdown(info.uuid)
        except RemoteError as err:
            return f"not sent: {err}"
        self.log.info("%s: host-disable and host-shutdown %s", info.name, sent)
        return sent

    def shutdown_hosts(self, b):
        for stage in self.host_stages():
            self._host_stage(stage, b)

    def _host_stage(self, stage, b):
        clock = self.d.clock
        start = clock.now()
        pending = {}
        for pool_uuid, info in stage:
            sent = self._send_shutdown(pool_uuid, info)
            pending[info.uuid] = {"pool": pool_uuid, "info": info, "target": self._probe_target(pool_uuid, info),
                                  "sent": sent, "silent_since": None, "resent": False}
        confirm_s = self.timings.host_down_confirm_s
        while pending:
            now = clock.now()
            for host_uuid, p in list(pending.items()):
                if self.d.prober.is_down(p["target"]):
                    p["silent_since"] = p["silent_since"] if p["silent_since"] is not None else now
                    if now - p["silent_since"] >= confirm_s or self.d.escalated():
                        took = now - start
                        self.log.info("%s: down (confirmed after %.1f s)", p["info"].name, took)
                        self.report.host(p["info"].name, "shut down, confirmed down", took, p["sent"])
                        del pending[host_uuid]
                else:
                    p["silent_since"] = None
                    if not p["resent"] and now - start >= b.host_s / 2:
                        p["resent"] = True
                        self.log.warning("%s: still up after %.0f s: sending the shutdown once more",
                                         p["info"].name, now - start)
                        p["sent"] += "; sent again: " + self._send_shutdown(p["pool"], p["info"])
            if now - start >= b.host_s:
                for p in pending.values():
                    self.log.error("%s: still up %.0f s after host-shutdown", p["info"].name, now - start)
                    self.report.host(p["info"].name, "STILL UP", now - start, p["sent"], failed=True)
                break
            if pending:
                clock.sleep(min(0.5, max(0.05, confirm_s / 10)))

    # -- the whole flow -------------------------------------------------------------------

    def run(self, confirm=True):
        try:
            state = self.d.state_file.load()
        except HgsError as err:  # the hardware comes first: shut down without the old state
            self.log.error("%s; going on without it (a snapshot from an earlier outage, if any, is not merged)", err)
            self.report.notes.append(f"state not read: {err}")
            state = statemod.empty()
        if confirm and not self.confirm():
            self.report.finish("stopped: power back during confirmation" if self.report.lines and
                               "came back" in self.report.lines[-1] else "stopped: outage not confirmed")
            return self.report
        self.report.event("outage_confirmed", self.report.lines[-1] if confirm else f"{self.report.kind}: not waited for")
        self.discover()
        if not self.pools:
            self.report.finish("failed: no host answered", failed=True)
            return self.report
        self.take_snapshot(state)
        self.disable_ha(state)
        groups = plan.build_groups(list(self.running_now.values()), self.d.settings.vms)
        b = self.budget(groups)
        self.log.info("point of no return: VM shutdowns begin; a power return now only queues the restore")
        self.shutdown_vms(groups, b)
        self.shutdown_hosts(b)
        state["phase"] = statemod.SITE_DOWN
        self.save(state, "the snapshot")
        try:
            end = self.d.read_ups()
            self.report.fact(f"battery at the end: {_battery(end)} ({end.state.value})")
        except UpsError as err:
            self.report.fact(f"battery at the end: unknown ({err})")
        self.report.finish("site down" if not self.report.failed else "site down with failures")
        return self.report

    def budget(self, groups):
        try:
            runtime = self.d.read_ups().runtime_s
        except UpsError:
            runtime = None
        b = plan.budget(self.timings, len(groups), len(self.host_stages()), runtime,
                        self.d.settings.ups.runtime_reserve_s)
        for note in b.notes:
            self.log.warning("%s", note)
            self.report.notes.append(note)
        self.plan_lines = plan.timeline(groups, [[i.name for _, i in s] for s in self.host_stages()], b, runtime)
        return b


def merge_snapshots(old, new):
    """Keeps everything the old snapshot knew, adds what the new one found."""
    merged = {key: dict(old.get(key, {})) for key in ("pools", "hosts", "vms")}
    for key in ("pools", "hosts", "vms"):
        for k, v in new.get(key, {}).items():
            merged[key].setdefault(k, v)
    for pool_uuid, pool in new.get("pools", {}).items():
        kept = merged["pools"][pool_uuid]
        kept["ha_was_enabled"] = bool(kept.get("ha_was_enabled")) or pool["ha_was_enabled"]
        kept["ha_srs"] = kept.get("ha_srs") or pool["ha_srs"]
    return dict(old, **merged)


def names(items, most=12):
    """Returns 'a, b, c' for a log line, shortened to ``most`` names and a count of the rest."""
    items = list(items)
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _battery(status):
    charge = "charge unknown" if status.charge_pct is None else f"{status.charge_pct:g} %"
    runtime = "runtime unknown" if status.runtime_s is None else f"{status.runtime_s} s runtime"
    return f"{charge}, {runtime}"

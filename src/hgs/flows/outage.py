"""The outage flow: confirm the outage, snapshot, HA off, VMs down group by group, hosts down.

Plain orchestration over the interfaces in ``Deps``: it imports no paramiko, socket or
subprocess, and never asks whether it is a dry run.

The protective duty is unconditional. The flow is a sequence of phases (state, confirm,
discover, snapshot, HA, VMs, hosts, record); a phase's failure, whatever the exception, is a
fault: logged, named in the report and the mail, and the next phase still runs. The host stage
runs whatever happened before it, for every host, each on its own: one host's error never
skips another. Reading what the restore will need (the snapshot, HA's heartbeat SR) never
gates a protective step.
"""

import copy
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace

from hgs.errors import HgsError, HostKeyError, HypervisorError
from hgs.flows import plan, shed
from hgs.flows.base import Flow
from hgs.flows.ports import (HALTED, RUNNING, SUSPENDED, Clock, Hypervisor, Kind, Prober, StateStore, Waker,
                             host_stages, match_config)
from hgs.flows.snapshot import IDLE, SHUTTING_DOWN, SITE_DOWN, HostRecord, PoolRecord, Snapshot, State, VmRecord
from hgs.ups import UpsState

TICK_S = 0.02
WAIT_CAP_S = 0.25  # the longest a VM group waits for news before looking at escalation again
POWER_POLL_S = 1.0
READ_ATTEMPTS = 3  # a read the flow needs (the VM list) is tried this often before the flow goes on without it
HA_ATTEMPTS = 3  # pool-ha-disable is sent up to this often
SEND_RETRY_S = 2.0  # a host-shutdown that could not be sent is tried again this often, to the host deadline
ESCALATED_SENDS = 3  # escalated: attempts per host before the next stage is sent
UP_PROBE_S = 0.15  # a host that still answers is probed this often, so its silence is seen at once
PROBE_MARGIN_S = 0.02  # the last probe of a silent host ends this much after its silence is complete


def describe(err):
    """Returns the message a person reads for ``err``: hgs's own text, or the exception's type and text."""
    if isinstance(err, HgsError):
        return str(err)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


@dataclass
class Deps:
    """What a flow works with: settings, the UPS, one hypervisor per configured host, etc."""

    settings: object  # hgs.config.Settings
    read_ups: Callable[[], object]  # () -> UpsStatus; raises UpsError
    hypervisors: dict[str, Hypervisor]  # config host name -> its hypervisor (or its dry-run twin)
    prober: Prober
    clock: Clock
    state_file: StateStore
    log: logging.Logger
    escalated: Callable[[], bool] = lambda: False  # () -> True once 'hgs doshutdown' asked to hurry
    waker: Waker | None = None
    last_event: Callable[[str, float], float | None] = lambda kind, since: None  # wall time a hook last got it
    side_by_side: Callable = lambda call, items: [call(item) for item in items]  # threads in the real wiring


@dataclass
class PoolView:
    info: object  # PoolInfo
    hosts: list  # HostInfo
    executor: str  # the config host whose hypervisor runs the pool's commands (the master when reachable)
    config: dict = field(default_factory=dict)  # host uuid -> HostSettings


@dataclass
class Track:
    """One VM's way down."""

    vm: dict
    pool: str
    stage: str = "clean"  # [suspend ->] clean -> force -> done
    stage_started: float = 0.0
    deadline: float = 0.0
    batch: object = None
    done: bool = False
    detail: str = ""
    in_progress: bool = False  # xapi already runs a shutdown of it (e.g. from before a reconnect)


@dataclass
class HostTrack:
    """One host's way down."""

    pool: str
    info: object  # HostInfo
    target: object  # what the prober checks
    started: float
    sent: str | None = None  # what host-shutdown answered, once sent
    sent_at: float | None = None
    attempts: int = 0
    next_try: float = 0.0
    errors: list = field(default_factory=list)
    resent: bool = False
    silent_since: float | None = None  # when the first probe of its current silence began
    next_probe: float = 0.0
    probe_s: float = 0.0  # how long its last silent probe took
    mid_probe: bool = False  # its next probe is one between the first and the last of a silence
    result: str | None = None  # "down" or "up" once decided
    took: float | None = None


class OutageFlow(Flow):
    def __init__(self, deps, report):
        super().__init__(deps, report)  # plan_lines: filled by the budget
        self.pools = {}
        self.snapshot = None  # the Snapshot this run wrote
        self.running_now = {}  # what this run found running: the VMs to shut down (uuid -> VmRecord)
        self.outage_since = None  # wall time the current outage began (set by the confirmation)
        self.power_came_back = False  # the confirmation stopped because the power came back
        self.shedder = shed.ShedWait(self)
        self.earlier_state = None  # a state an earlier outage left (its snapshot not yet restored)
        self._said = set()
        # read ahead during the confirmation window (read-only): pools, VM lists, HA's heartbeat SR
        self.early = SimpleNamespace(pools={}, errors={}, vms={}, srs={}, steps=None)

    # -- faults and phases --------------------------------------------------------------

    def fault(self, where, err, recovered=False):
        """Records a fault: the log (with the traceback when it is not one of hgs's own errors),
        the report and so the mail. ``recovered`` when a retry or a fallback overcame it."""
        text = describe(err)
        key = (where, text, recovered)
        if key in self._said:  # the same fault again (e.g. each poll of a dead UPS): once is enough
            return
        self._said.add(key)
        self.report.fault(where, text, recovered)
        if recovered:
            self.log.warning("%s: %s (the flow goes on)", where, text)
        else:
            self.log.error("FAULT in %s: %s (the flow goes on: the hardware comes first)", where, text,
                           exc_info=err if isinstance(err, BaseException) and not isinstance(err, HgsError) else None)

    def escalated(self):
        """True once 'hgs doshutdown' asked to hurry; a check that fails counts as no (and is said)."""
        try:
            return bool(self.d.escalated())
        except Exception as err:
            self.fault("checking for an escalation by 'hgs doshutdown'", err, recovered=True)
            return False

    def phase(self, name, func, *args, default=None):
        """Runs one phase; any exception is a fault of ``name`` and ``default`` is returned."""
        try:
            return func(*args)
        except Exception as err:  # the next phase runs whatever this one did
            self.fault(name, err)
            return default

    # -- 1. confirm ---------------------------------------------------------------------

    def confirm(self):
        """Returns True once the power has been off for the whole confirmation window.

        The window follows the current continuous outage: the power back (a UPS reading on
        line, or an offbattery event the hooks recorded, however short) stops the flow, unless
        it failed again after that, in which case the window starts over.
        """
        window = self.timings.confirm_outage_s
        clock = self.d.clock
        began = outage_since = self.outage_since = clock.wall()
        seen_battery, last = False, None
        self.log.info("confirming the outage: polling the UPS for %.0f s", window)
        while True:
            try:
                status = last = self.d.read_ups()
            except Exception as err:  # a reader's bug is an unreadable UPS too
                status = None
                self.log.warning("UPS not readable during confirmation: %s", describe(err))
                self.fault("confirming the outage: reading the UPS", err, recovered=True)
            now = clock.wall()
            back, since = self.power_back(status, outage_since)
            if back:
                waited = now - began
                self.log.info("power is back after %.1f s of confirmation: stopping, nothing was touched", waited)
                self.report.fact(f"power came back during confirmation ({waited:.1f} s): nothing was touched")
                self.power_came_back = True
                return False
            if since != outage_since:
                self.log.info("the power came back and failed again: the %.0f s confirmation starts over", window)
                outage_since = self.outage_since = since
            if status is not None and status.on_battery:
                seen_battery = True
                if status.state in (UpsState.LOW_BATTERY, UpsState.FORCED_SHUTDOWN):
                    self.log.warning("UPS reports %s: no time to wait, shutting down now", status.state.value)
                    break
            if self.escalated():
                self.log.warning("this box is shutting down: confirmation cut short")
                seen_battery = True
                break
            if now - outage_since >= window:
                break
            until = clock.now() + min(self.d.settings.ups.poll_interval_s, window - (now - outage_since))
            self.read_ahead(until)
            clock.sleep(until - clock.now())
        # no reading said on line (that returned above) nor on battery: the daemon did not answer, or
        # answered that it lost the UPS (apcupsd COMMLOST, a NUT driver's stale data): contact is lost
        if not seen_battery and self.d.settings.ups.lost_contact == "outage" \
                and self.d.last_event("onbattery", began - window - 60) is not None:
            how = "did not answer" if last is None else f"reported {last.state.value} ({last.raw or 'no status'})"
            self.log.warning("the UPS daemon %s during the confirmation, after it reported the power failure; "
                             "UPS['lost_contact'] is 'outage': treated as confirmed", how)
            self.report.fact(f"UPS contact lost during confirmation (the daemon {how}) after an onbattery event: "
                             "treated as an outage (UPS['lost_contact'] = 'outage')")
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

    def power_back(self, status, outage_since):
        """Given a UPS reading (None when unreadable) and the wall time the current outage began,
        returns (back, outage_since): back when the power is on again now (a reading on line, or
        an offbattery event a hook recorded since, however short); when it came back and failed
        again since, not back, and the outage began when it failed again."""
        now = self.d.clock.wall()
        back = [t for t in (now if status is not None and status.on_mains else None,
                            self.d.last_event("offbattery", outage_since)) if t is not None]
        back_at = max(back, default=None)
        if back_at is None:
            return False, outage_since
        failed_again = self.d.last_event("onbattery", back_at)
        if failed_again is None or (status is not None and status.on_mains):
            return True, outage_since
        return False, failed_again

    # -- reading ahead during the confirmation -----------------------------------------------

    def read_ahead(self, until):
        """Does read-only work of the next phases (connections, pools, VM lists, HA's heartbeat
        SR) while the confirmation waits for its next UPS poll, one step at a time, until
        ``until`` (clock.now()). Nothing changes anywhere: a power return still cancels with
        nothing touched, and the first change follows the window at once."""
        if self.early.steps is None:
            self.early.steps = self._early_steps()
        while self.d.clock.now() < until:
            if next(self.early.steps, "done") == "done":
                return

    def _early_steps(self):
        pools = self.early.pools
        for host in self.d.settings.hosts:
            if host.name in {c.name for view in pools.values() for c in view.config.values()}:
                continue
            try:
                self._ask_host(host, pools)
            except Exception as err:  # asked again after the window
                self.early.errors[host.name] = err
                self.fault(f"reading ahead: {host.name} (asked again after the confirmation)", err, recovered=True)
            yield
        for pool_uuid, view in list(pools.items()):
            hv = self.d.hypervisors[view.executor]
            try:
                self.early.vms[pool_uuid] = hv.vms(running_only=True)
            except Exception as err:  # listed again after the window
                self.fault("reading ahead: the running VMs (listed again after the confirmation)", err, recovered=True)
            yield
            if view.info.ha_enabled:
                try:
                    self.early.srs[pool_uuid] = list(hv.ha_statefile_srs(pool_uuid))
                except Exception as err:  # read again after the window
                    self.fault("reading ahead: the HA heartbeat SR (read again after the confirmation)", err,
                               recovered=True)
                yield
        for view in list(pools.values()):  # last: the calls after the window then start at once
            try:
                self.d.hypervisors[view.executor].warm_up()
            except Exception as err:  # only a head start lost: those calls open their own channels
                self.log.info("%s: could not ready the calls after the confirmation (%s)", view.executor,
                              describe(err))
            yield

    # -- 2. discover and snapshot ----------------------------------------------------------

    def _ask_host(self, host, pools):
        """Asks the config host ``host`` for its pool and hosts; adds the answer to ``pools``.
        Raises whatever the host raised."""
        hv = self.d.hypervisors[host.name]
        info = hv.pool()
        infos = hv.hosts()
        view = pools.get(info.uuid)
        if view is None:
            view = pools[info.uuid] = PoolView(info, infos, host.name, match_config(infos, self.d.settings.hosts))
        master_config = view.config.get(info.master)
        if master_config is not None and master_config.name == host.name:
            view.executor = host.name  # the master answered: it runs the pool's commands

    def discover(self):
        """Asks every configured host for its pool; returns {pool uuid: PoolView}.

        A host that does not answer is retried every few seconds for
        TIMINGS['unreachable_retry_s'] (its sshd may be coming back), unless a pool found
        already covers it; a host whose key is wrong is not retried. Each host on its own:
        whatever one host raises, the others are asked.
        """
        pools = dict(self.early.pools)  # what the confirmation window read ahead
        covered = {c.name for view in pools.values() for c in view.config.values()}
        answered = covered - set(self.early.errors)
        pending = [h for h in self.d.settings.hosts if h.name not in answered
                   and not isinstance(self.early.errors.get(h.name), HostKeyError)]
        deadline = self.d.clock.now() + self.timings.unreachable_retry_s
        errors = {n: e for n, e in self.early.errors.items() if isinstance(e, HostKeyError)}
        once_failed = {}
        while pending:
            for host in list(pending):
                try:
                    self._ask_host(host, pools)
                except HostKeyError as err:
                    self.log.error("%s", err)
                    errors[host.name] = err
                    pending.remove(host)
                    continue
                except Exception as err:  # whatever one host does, the others are asked
                    if host.name not in errors:
                        self.log.warning("%s does not answer (%s): retrying for up to %.0f s", host.name,
                                         describe(err), self.timings.unreachable_retry_s)
                    errors[host.name] = once_failed[host.name] = err
                    continue
                if errors.pop(host.name, None) is not None:
                    self.log.info("%s answers now", host.name)
                    self.fault(f"discovery: {host.name}", once_failed[host.name], recovered=True)
                pending.remove(host)
            covered = {c.name for view in pools.values() for c in view.config.values()}
            pending = [h for h in pending if h.name not in covered]
            if not pending or self.d.clock.now() >= deadline or self.escalated():
                break
            self.d.clock.sleep(2.0)
        covered = {c.name for view in pools.values() for c in view.config.values()}
        for name, err in errors.items():
            if name in covered:  # its pool answered for it: shut down through another host of the pool
                self.fault(f"discovery: {name} did not answer itself (handled through its pool)", err, recovered=True)
            else:
                self.fault(f"discovery: {name} did not answer", err)
        self.pools = pools
        return pools

    def take_snapshot(self, state):
        """Writes the running VMs per pool to the state file BEFORE any change; returns it.

        A VM list that cannot be read is tried READ_ATTEMPTS times, each through the pool's
        hosts in turn; an old snapshot the state file holds is merged, keeping what can be kept.
        """
        policy = self.d.settings.vms
        vms, pools, hosts = {}, {}, {}
        for pool_uuid, view in self.pools.items():
            pools[pool_uuid] = PoolRecord(view.info.master, view.info.ha_enabled, [], executor=view.executor)
            for info in view.hosts:
                config = view.config.get(info.uuid)
                hosts[info.uuid] = HostRecord(info.name, config.name if config else None, pool_uuid,
                                              info.uuid == view.info.master, info.address)
            running = self._refresh(pool_uuid)
            if running is None:
                running = self._read(f"listing the running VMs of pool {pool_uuid[:8]}", pool_uuid,
                                     lambda hv: hv.vms(running_only=True))
            for vm in running or ():
                if vm.uuid in policy.leave_alone or vm.name in policy.leave_alone:
                    self.log.info("leaving %s alone (VMS['leave_alone'])", vm.name)
                    continue
                vms[vm.uuid] = VmRecord.running(vm, pool_uuid, policy.action({"uuid": vm.uuid, "name": vm.name}))
        self.running_now = vms  # what this run found running: the VMs to shut down
        snapshot = Snapshot(time.strftime("%Y-%m-%dT%H:%M:%S%z"), self.report.run_id, pools, hosts, vms)
        previous = state.snapshot
        if previous is not None and state.phase != IDLE:
            try:
                snapshot = previous.merged(snapshot)
                self.log.info("an earlier outage left a snapshot (%d VMs): kept, with what runs now added",
                              len(snapshot.vms) - len(vms))
            except Exception as err:  # the hardware comes first: the old snapshot goes to the log
                self.fault("merging the snapshot an earlier outage left", err)
                self.log.error("the earlier snapshot, as JSON: %s", _as_json(previous))
        # everything of the snapshot is down again after this: a restore starts it all
        state.restore_pending = None
        state.phase, state.snapshot = SHUTTING_DOWN, snapshot
        self.save(state, "the snapshot")
        self.snapshot = snapshot
        self.log.info("snapshot: %d running VM(s) to shut down: %s", len(vms),
                      names(sorted(v.name for v in vms.values())) or "none")
        return snapshot

    def _refresh(self, pool_uuid):
        """Returns the VMs read ahead during the confirmation that still run, after ONE fresh
        power-state read; None when there is nothing to refresh, the read fails, or a VM runs
        that the read-ahead did not see (the VMs are listed in full then)."""
        early = self.early.vms.get(pool_uuid)
        if early is None:
            return None
        try:
            states = self.d.hypervisors[self.pools[pool_uuid].executor].power_states()
        except Exception as err:
            self.fault("reading the VM power states after the confirmation (listing them in full)", err,
                       recovered=True)
            return None
        known = {vm.uuid for vm in early}
        if any(power == RUNNING and vm_uuid not in known for vm_uuid, power in states.items()):
            self.log.info("a VM started during the confirmation: listing the VMs again")
            return None
        return [vm for vm in early if states.get(vm.uuid) == RUNNING]

    def _read(self, what, pool_uuid, call, attempts=READ_ATTEMPTS):
        """Returns ``call(hypervisor)`` for a pool, tried ``attempts`` times through the pool's
        hosts in turn; None (a fault recorded) when every attempt failed."""
        failures = []
        for attempt in range(attempts):
            name = self._routes(pool_uuid)[attempt % len(self._routes(pool_uuid))]
            try:
                result = call(self.d.hypervisors[name])
            except Exception as err:
                failures.append(err)
                self.log.warning("%s: %s failed (%s)%s", name, what, describe(err),
                                 "; trying again" if attempt + 1 < attempts else "")
                if attempt + 1 < attempts and not self.escalated():
                    self.d.clock.sleep(1.0)
                continue
            for err in failures:
                self.fault(what, err, recovered=True)
            return result
        for err in failures:
            self.fault(what, err)
        return None

    def _routes(self, pool_uuid, host_uuid=None):
        """Returns the config host names to run a pool's commands through, best first: the
        pool's executor, its master, the host itself (``host_uuid``), the other pool hosts."""
        view = self.pools[pool_uuid]
        master = view.config.get(view.info.master)
        own = view.config.get(host_uuid) if host_uuid else None
        order = [view.executor, master.name if master else None, own.name if own else None]
        order += [c.name for c in view.config.values()]
        routes = []
        for name in order:
            if name is not None and name in self.d.hypervisors and name not in routes:
                routes.append(name)
        return routes

    def save(self, state, what):
        """Writes ``state`` (a State); a failure is a fault, and the snapshot goes to the log."""
        try:
            self.d.state_file.save(state.to_dict())
        except Exception as err:  # the hardware comes first: the snapshot goes to the log
            self.fault(f"state not saved ({what})", err)
            self.log.error("%s as JSON: %s", what, _as_json(state.snapshot))

    # -- 3. HA ------------------------------------------------------------------------------

    def disable_ha(self, state):
        """Turns pool HA off. Its heartbeat SR is read first, for the restore; that read failing
        (or answering nonsense) is recorded as 'unknown' and never keeps HA on."""
        for pool_uuid, view in self.pools.items():
            if not view.info.ha_enabled:
                continue
            record = self._pool_record(state, pool_uuid)
            srs = self.early.srs.get(pool_uuid)
            if srs is None:
                srs = self._read("reading the HA heartbeat SR (for the restore)", pool_uuid,
                                 lambda hv: hv.ha_statefile_srs(pool_uuid), attempts=1)
            if srs is None:
                if not record.ha_srs:  # an earlier outage's reading, if any, stands
                    record.ha_srs_unknown = "unknown: the read failed; the restore lets xapi pick the statefile SR"
            else:
                record.ha_srs, record.ha_srs_unknown = list(srs), None
            self.save(state, "the snapshot")
            self._ha_off(pool_uuid, srs)

    def _pool_record(self, state, pool_uuid):
        """Returns the snapshot's PoolRecord of ``pool_uuid``, marked HA on; when the snapshot
        failed, HA's record still goes in, in a snapshot of its own."""
        if state.snapshot is None:
            state.snapshot = self.snapshot if self.snapshot is not None else Snapshot()
        record = state.snapshot.pools.get(pool_uuid)
        if record is None:
            record = state.snapshot.pools[pool_uuid] = PoolRecord(self.pools[pool_uuid].info.master)
        record.ha_was_enabled = True
        return record

    def _ha_off(self, pool_uuid, srs):
        failures = []
        routes = self._routes(pool_uuid)
        for attempt in range(HA_ATTEMPTS):
            name = routes[attempt % len(routes)]
            try:
                self.d.hypervisors[name].disable_ha()
            except Exception as err:
                failures.append(err)
                self.log.warning("%s: pool-ha-disable failed (%s)%s", name, describe(err),
                                 "; sending it again" if attempt + 1 < HA_ATTEMPTS else "")
                continue
            for err in failures:
                self.fault("turning pool HA off", err, recovered=True)
            self.log.info("pool HA disabled (heartbeat SR %s); it is turned back on after the restore",
                          ", ".join(srs or ()) or "unknown")
            self.report.fact("pool HA was on: turned off for the shutdown")
            return True
        for err in failures:
            self.fault("turning pool HA off", err)
        self.log.error("could not disable pool HA (HA may restart VMs hgs stops)")
        self.report.notes.append("HA could not be disabled")
        return False

    # -- 4. VMs -------------------------------------------------------------------------------

    def shutdown_vms(self, groups, b):
        for index, group in enumerate(groups, 1):
            self.log.info("group %d/%d: shutting down %d VM(s) in parallel (deadline %.0f s): %s",
                          index, len(groups), len(group), b.grace_s, names(vm.name for vm in group))
            self.phase(f"shutting down VM group {index}", self._group, group, b)

    def _group(self, group, b):
        clock = self.d.clock
        start = clock.now()
        tracks = {vm.uuid: Track(vm, vm.pool, stage_started=start, deadline=start + b.grace_s) for vm in group}
        for track in tracks.values():
            if not track.vm.tools:
                self._to_force(track, start, "no guest tools: forced at once")
            elif track.vm.action == "suspend":
                track.stage = "suspend"  # VMS['suspend']: its memory kept; a failed suspend falls back to shutdown
        batches = []
        next_poll = start + POWER_POLL_S
        while not all(t.done for t in tracks.values()):
            now = clock.now()
            for batch, stage in list(batches):
                try:
                    outcomes = batch.poll()
                except Exception as err:  # a channel that cannot be read is one that dropped
                    self.fault("reading the VM shutdown results", err, recovered=True)
                    outcomes = None
                if outcomes is None or batch.lost:
                    self.log.warning("the connection dropped during the VM shutdowns: reconnecting")
                    self.fault("the VM shutdowns", HgsError("the connection dropped; reconnected"), recovered=True)
                    batches.remove((batch, stage))
                    self._close(batch)
                    for track in tracks.values():
                        if track.batch is batch and not track.done:
                            track.batch = None
                    continue
                for outcome in outcomes:
                    track = tracks.get(outcome.uuid)
                    if track and not track.done:
                        self._outcome(track, stage, outcome, start)
            hurry = self.escalated()
            force_s = min(b.force_s, self.escalated_force_s()) if hurry else b.force_s
            for track in tracks.values():
                if track.done:
                    continue
                if track.stage in ("clean", "suspend") and (now >= track.deadline or hurry):
                    what = "suspend" if track.stage == "suspend" else "clean shutdown"
                    why = "this box is shutting down" if hurry else f"no {what} within {b.grace_s:.0f} s"
                    self._to_force(track, now, why)
                elif track.stage == "force" and now >= track.stage_started + force_s:
                    self._reset(track, start, f"force did not finish within {force_s:.0f} s")
            batches += self._launch([t for t in tracks.values()
                                     if not t.done and t.batch is None and not (t.in_progress and t.stage == "clean")])
            if now >= next_poll:
                next_poll = now + POWER_POLL_S
                self._poll_power(tracks, start)
            self._wait(tracks, batches, min(next_poll, self._next_due(tracks, force_s)))
        for batch, _ in batches:
            self._close(batch)

    def _next_due(self, tracks, force_s):
        """The clock time of the group's next deadline (a clean shutdown or suspend given up, a
        force given up), or infinity."""
        due = [t.deadline if t.stage in ("clean", "suspend") else t.stage_started + force_s
               for t in tracks.values() if not t.done]
        return min(due, default=float("inf"))

    def _wait(self, tracks, batches, until):
        """Waits for the next outcome of the group's one open batch, or until ``until`` (the next
        deadline or power poll), at most WAIT_CAP_S (escalation is looked at between waits).
        With several open batches, or none, it sleeps one tick."""
        if all(t.done for t in tracks.values()):
            return  # the group is over: its last outcome came in this round
        clock = self.d.clock
        wait_s = min(until - clock.now(), WAIT_CAP_S)
        if wait_s <= 0:
            return
        open_batches = [batch for batch, _ in batches if batch.pending]
        if len(open_batches) == 1:
            open_batches[0].wait(wait_s)
        else:
            clock.sleep(min(TICK_S, wait_s) if open_batches else wait_s)

    def escalated_force_s(self):
        """Escalated, a group's forced shutdowns get this long before vm-reset-powerstate: the
        hosts must be sent down within the doshutdown bound."""
        return max(1.0, self.timings.doshutdown_bound_s / 8)

    @staticmethod
    def _close(batch):
        try:
            batch.close()
        except Exception:  # closing a dead channel: nothing left to do with it
            pass

    def _launch(self, tracks):
        """Starts one batch per (executor, stage) for tracks without one; returns [(batch, stage)]."""
        launched = {}
        for track in tracks:
            launched.setdefault((self.pools[track.pool].executor, track.stage), []).append(track)
        out = []
        for (executor, stage), group in launched.items():
            hv, uuids = self.d.hypervisors[executor], [t.vm.uuid for t in group]
            try:
                batch = hv.suspend_vms(uuids) if stage == "suspend" else hv.shutdown_vms(uuids, force=stage == "force")
            except Exception as err:  # retried at the next tick, until the group's deadlines
                self.log.warning("%s: cannot start the %s shutdowns (%s); retrying", executor, stage, describe(err))
                self.fault(f"starting the {stage} VM shutdowns", err, recovered=True)
                self.d.clock.sleep(0.5)
                continue
            for track in group:
                track.batch = batch
            out.append((batch, stage))
        return out

    def _to_force(self, track, now, why):
        self.log.info("%s: %s: forcing", track.vm.name, why)
        track.stage, track.stage_started, track.batch, track.detail = "force", now, None, why
        track.in_progress = False

    def _finish(self, track, start, outcome, detail="", failed=False):
        track.done, track.batch = True, None
        took = self.d.clock.now() - start
        detail = detail or (track.detail if outcome != "clean" or track.detail.startswith("suspend failed") else "")
        if track.vm.shed:
            outcome = f"shed ({outcome})"
        level = self.log.error if failed else self.log.info
        level("%s: %s after %.1f s%s", track.vm.name, outcome, took, f" ({detail})" if detail else "")
        self.report.vm(track.vm.name, outcome, took, detail, failed=failed)

    def _outcome(self, track, stage, outcome, start):
        kind = outcome.kind
        if kind == Kind.DONE:
            if stage == "suspend":
                self._finish(track, start, "suspended")
            else:
                self._finish(track, start, "clean" if track.stage == "clean" else "forced")
            return
        if kind == Kind.SUSPENDED:
            self._finish(track, start, "suspended", "it was suspended already")
        elif kind == Kind.ALREADY and outcome.state == HALTED:
            self._finish(track, start, "already halted" if track.stage == "clean" and stage == "clean" else "forced")
        elif kind == Kind.GONE:
            self._finish(track, start, "gone", "the VM no longer exists")
        elif stage != track.stage:
            return  # a late answer from a stage the VM has left
        elif stage == "suspend":
            # no suspend SR, not enough space, no suspend support in the guest...: shut it down instead,
            # within the same deadline (then forced, as any VM)
            self.log.warning("%s: vm-suspend failed (%s): shutting it down instead", track.vm.name, outcome.message)
            self._unexpected(track, "suspend", outcome)
            track.stage, track.batch, track.in_progress = "clean", None, False
            track.detail = f"suspend failed: {outcome.message}; shut down instead"
        elif stage == "clean" and kind == Kind.BUSY:
            track.in_progress = True  # the earlier call still runs in the hypervisor: wait for it, up to the deadline
            self.log.info("%s: its shutdown is already running in xapi: waiting for it", track.vm.name)
        elif stage == "clean" and kind == Kind.NO_TOOLS:
            self._to_force(track, self.d.clock.now(), f"no guest tools ({outcome.message})")
        elif stage == "clean":
            self._unexpected(track, "clean shutdown", outcome)
            self._to_force(track, self.d.clock.now(), f"clean shutdown failed: {outcome.message}")
        else:
            self._unexpected(track, "forced shutdown", outcome)
            self._reset(track, start, f"force failed: {outcome.message}")

    def _unexpected(self, track, what, outcome):
        """A refusal the hypervisor could not explain is a fault of the run (forcing or resetting
        the VM overcomes it); a known one (e.g. a shutdown timeout) is that VM's outcome only."""
        if outcome.unexpected:
            self.fault(f"{what} of {track.vm.name}", HgsError(outcome.message), recovered=True)

    def _reset(self, track, start, why):
        hv = self.d.hypervisors[self.pools[track.pool].executor]
        self.log.warning("%s: %s: resetting its power state", track.vm.name, why)
        try:
            hv.reset_powerstate(track.vm.uuid)
            self._finish(track, start, "reset", f"{why}; vm-reset-powerstate")
        except Exception as err:
            self._finish(track, start, "FAILED", f"{why}; vm-reset-powerstate failed: {describe(err)}", failed=True)

    def _poll_power(self, tracks, start):
        """One vm-list per pool: catches VMs halted by other means and lost results."""
        for pool_uuid in {t.pool for t in tracks.values() if not t.done}:
            try:
                states = self.d.hypervisors[self.pools[pool_uuid].executor].power_states()
            except Exception as err:  # read again at the next poll
                self.log.warning("cannot read the VM power states: %s", describe(err))
                self.fault("reading the VM power states", err, recovered=True)
                continue
            for track in tracks.values():
                if track.done or track.pool != pool_uuid:
                    continue
                power = states.get(track.vm.uuid)
                if power is None:
                    self._finish(track, start, "gone", "the VM no longer exists")
                elif power == HALTED:
                    self._finish(track, start, {"clean": "clean", "suspend": "halted"}.get(track.stage, "forced"))
                elif power == SUSPENDED:
                    self._finish(track, start, "suspended")

    # -- 5. hosts --------------------------------------------------------------------------------

    def host_stages(self):
        """Returns [[(pool uuid, HostInfo)], ...]: every pool's members, then the masters."""
        hosts = [(pool_uuid, info) for pool_uuid, view in self.pools.items() for info in view.hosts]
        return host_stages(hosts, lambda host: host[1].uuid == self.pools[host[0]].info.master)

    def _probe_target(self, pool_uuid, info):
        config = self.pools[pool_uuid].config.get(info.uuid)
        if config is not None:
            return config
        return SimpleNamespace(name=info.name, address=info.address, ssh_port=22, down_check="ping+ssh")

    def _send_via(self, name, host):
        """Disables ``host`` and shuts it down through the config host ``name``; returns what
        happened ('sent', 'sent, session dropped'); raises when it was not sent."""
        hv, info = self.d.hypervisors[name], host.info
        try:
            hv.disable_host(info.uuid)
        except HypervisorError as err:  # the shutdown says 'not disabled' if it mattered
            self.log.warning("%s: host-disable failed: %s", info.name, err.reason)
            host.errors.append(err)
        try:
            return hv.shutdown_host(info.uuid)
        except HypervisorError as err:
            if err.kind != Kind.NOT_DISABLED:
                raise
        self.log.warning("%s: host-shutdown says the host is not disabled: disabling it again", info.name)
        hv.disable_host(info.uuid)
        return hv.shutdown_host(info.uuid)

    def _send(self, host):
        """One attempt to send ``host`` down, through its pool's master first, then the host
        itself. Returns True when sent; a failure is recorded on the host, never raised."""
        routes = self._routes(host.pool, host.info.uuid)
        own = self.pools[host.pool].config.get(host.info.uuid)
        host.attempts += 1
        unsure = None  # a session that dropped under the call on ANOTHER host: it may never have run
        for index, name in enumerate(routes[:2]):
            try:
                sent = self._send_via(name, host)
            except Exception as err:  # this host's error is this host's alone
                host.errors.append(err)
                self.log.warning("%s: host-shutdown not sent through %s: %s", host.info.name, name, describe(err))
                continue
            if sent != "sent" and (own is None or name != own.name) and index + 1 < len(routes[:2]):
                self.log.warning("%s: host-shutdown through %s: %s, and %s is not the host going down: sent "
                                 "through the host itself too", host.info.name, name, sent, name)
                unsure = f"{sent} through {name}"
                continue
            return self._sent(host, sent if unsure is None else f"{sent} (earlier: {unsure})")
        if unsure is not None:
            return self._sent(host, unsure)
        host.next_try = self.d.clock.now() + SEND_RETRY_S
        return False

    def _sent(self, host, sent):
        host.sent = sent if host.sent is None else f"{host.sent}; sent again: {sent}"
        host.sent_at = self.d.clock.now()
        self.log.info("%s: host-disable and host-shutdown %s", host.info.name, sent)
        return True

    def shutdown_hosts(self, b):
        """Members first, the masters last; each host on its own. A host whose host-shutdown
        could not be sent is tried again until its deadline. Normally the masters are sent once
        the members are down (or their deadline passed); escalated, right after the members'
        host-shutdowns are sent."""
        clock = self.d.clock
        all_hosts = []
        for stage in self.host_stages():
            hosts = [HostTrack(pool_uuid, info, self._probe_target(pool_uuid, info), clock.now())
                     for pool_uuid, info in stage]
            all_hosts += hosts
            self.d.side_by_side(self._send, hosts)  # a stage's hosts are sent down at the same time
            if self.escalated():
                # the box is halting: the next stage is sent now (all are confirmed below). A host not
                # sent, or whose session dropped under the call, is sent again at once: a member is out
                # of reach once its master is down, and the usual resend at half the host deadline
                # comes after this box has halted (a host already going down just refuses the call)
                for _ in range(ESCALATED_SENDS - 1):
                    self.d.side_by_side(self._send, [host for host in hosts
                                                     if host.sent is None or host.sent.endswith("session dropped")])
                continue
            self._confirm_down(hosts, b)
        self._confirm_down(all_hosts, b)
        for host in all_hosts:
            self._report_host(host)

    def _confirm_down(self, hosts, b):
        """Waits until every host of ``hosts`` is confirmed down or past its deadline, sending
        again what was not sent (every SEND_RETRY_S) and, once, what still runs at half time.
        Returns early when escalated (the next stage must be sent now).

        A host still up is probed every UP_PROBE_S, so its silence is seen at once. Silence
        counts from the start of the first silent probe; the last probe is timed to end when
        TIMINGS['host_down_confirm_s'] of silence is complete, so a host is confirmed down
        right then. A silent host is probed in between only while no other host waits for its
        first silent probe (a probe of a host that is off takes its whole timeout)."""
        clock = self.d.clock
        confirm_s = self.timings.host_down_confirm_s
        up_probe_s = min(UP_PROBE_S, max(0.05, confirm_s / 10))
        escalated_at_start = self.escalated()
        while True:
            now = clock.now()
            open_hosts = [h for h in hosts if h.result is None]
            for host in open_hosts:
                if host.sent is None and now >= host.next_try and now - host.started < b.host_s:
                    self._send(host)
            now = clock.now()
            due = [h for h in open_hosts if h.next_probe <= now]
            waiting = any(h.silent_since is None for h in open_hosts)
            due = [h for h in due if not (h.silent_since is not None and h.mid_probe and waiting)]
            if due:
                started = clock.now()
                results = self._probe([h.target for h in due])
                ended = clock.now()
                hurry = self.escalated()
                for host, down in zip(due, results):
                    self._probed(host, down, started, ended, confirm_s, up_probe_s, hurry, b)
            now = clock.now()
            for host in hosts:
                if host.result is None and now - host.started >= b.host_s:
                    host.result, host.took = "up", now - host.started
            if all(h.result is not None for h in hosts):
                return
            if self.escalated() and not escalated_at_start:
                return  # the box is halting now: the next stage is sent without waiting
            wake = min([h.next_probe for h in hosts if h.result is None]
                       + [h.next_try for h in hosts if h.result is None and h.sent is None])
            clock.sleep(min(0.5, max(0.01, wake - clock.now())))

    def _probed(self, host, down, started, ended, confirm_s, up_probe_s, hurry, b):
        """Takes one probe's answer for ``host`` (silent or not) and plans its next probe."""
        if down:
            if host.silent_since is None:
                host.silent_since = started
            host.probe_s = ended - started
            if ended - host.silent_since >= confirm_s or hurry:
                host.result, host.took = "down", ended - host.started
                self.log.info("%s: down (confirmed after %.1f s)", host.info.name, host.took)
                return
            # the last probe ends just after the silence is complete; one in between, if there is room
            last = host.silent_since + confirm_s - host.probe_s + PROBE_MARGIN_S
            middle = ended + max(1.0, confirm_s / 3)
            host.mid_probe = middle < last - host.probe_s
            host.next_probe = middle if host.mid_probe else last
            return
        host.silent_since, host.mid_probe = None, False
        host.next_probe = started + up_probe_s  # every up_probe_s from start to start, however long a probe took
        if host.sent is not None and not host.resent and ended - host.started >= b.host_s / 2:
            host.resent = True
            self.log.warning("%s: still up after %.0f s: sending the shutdown once more", host.info.name,
                             ended - host.started)
            self._send(host)

    def _probe(self, targets):
        """Returns [down?] for ``targets``, probed at the same time (a host that is off takes a
        probe's whole timeout: one after another, the last would be seen late). A probe that
        fails says nothing: that host counts as up."""
        batch = getattr(self.d.prober, "are_down", None)
        if batch is not None:
            try:
                return [bool(down) for down in batch(targets)]
            except Exception as err:
                self.fault("probing the hosts", err, recovered=True)
                return [False] * len(targets)
        if len(targets) == 1:
            return [self._is_down(targets[0])]
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            return list(pool.map(self._is_down, targets))

    def _is_down(self, target):
        try:
            return bool(self.d.prober.is_down(target))
        except Exception as err:
            self.fault(f"probing {target.name}", err, recovered=True)
            return False

    def _report_host(self, host):
        name = host.info.name
        errors = "; ".join(dict.fromkeys(describe(e) for e in host.errors))
        if host.sent is None:
            self.log.error("%s: host-shutdown could NOT be sent in %d attempt(s): %s", name, host.attempts, errors)
            for err in host.errors:
                self.fault(f"host-shutdown of {name}", err)
            self.report.host(name, "NOT SENT (still up)" if host.result != "down" else "down, host-shutdown not sent",
                             host.took, errors, failed=True)
            return
        for err in host.errors:
            self.fault(f"host-shutdown of {name}", err, recovered=True)
        if host.result == "down":
            self.report.host(name, "shut down, confirmed down", host.took, host.sent)
        else:
            self.log.error("%s: still up %.0f s after host-shutdown", name, host.took or 0.0)
            self.report.host(name, "STILL UP", host.took, host.sent, failed=True)

    # -- the whole flow -------------------------------------------------------------------

    def run(self, confirm=True):
        """Runs the phases in order; returns the report. Never raises: a phase's failure is a
        fault of the run and the next phase runs; the host stage runs whatever happened before."""
        state = self.phase("reading the state file", self.load_state, default=None)
        if not isinstance(state, State):
            state = State()
        if confirm and not self.phase("confirming the outage", self.confirm, default=False):
            if self.report.failed:
                self.report.finish("stopped: the confirmation failed; nothing was touched")
            elif self.power_came_back:
                self.report.finish("stopped: power back during confirmation")
            else:
                self.report.finish("stopped: outage not confirmed")
            return self.report
        self.report.event("outage_confirmed", self.report.lines[-1] if confirm and self.report.lines
                          else f"{self.report.kind}: not waited for")
        self.phase("finding the pools", self.discover)
        if not self.pools:
            self.report.finish("failed: no host answered", failed=True)
            return self.report
        self.phase("taking the snapshot", self.take_snapshot, state)
        if confirm:
            waited = self.phase("shedding load until the main shutdown", self.shedder.run, state, default=shed.MAIN)
            if waited == shed.POWER_BACK:
                self.report.finish("power back before the main shutdown: the shed VMs were started again"
                                   if self.shedder.shed else "power back before the main shutdown: nothing was touched")
                return self.report
        self.phase("turning pool HA off", self.disable_ha, state)
        vms = shed.running_for_main(self.running_now.values())
        groups = self.phase("planning the VM groups", plan.build_groups, vms, self.d.settings.vms, default=None)
        if groups is None:
            groups = [vms] if vms else []
        b = self.phase("the battery budget", self.budget, groups, default=None)
        if b is None:
            b = plan.budget(self.timings, len(groups), len(self.host_stages()), None, 0.0)
        self.log.info("point of no return: VM shutdowns begin; a power return now only queues the restore")
        self.phase("shutting down the VMs", self.shutdown_vms, groups, b)
        self.phase("shutting down the hosts", self.shutdown_hosts, b)
        state.phase = SITE_DOWN
        self.save(state, "the snapshot")
        self.phase("reading the battery at the end", self._battery_at_end)
        if self.report.failed:
            self.report.finish("site down with failures")
        elif self.report.recovered:
            self.report.finish(f"site down, {self.report.recovered} fault(s) recovered")
        else:
            self.report.finish("site down")
        return self.report

    def load_state(self):
        """Returns the state file's State; a file that cannot be read is a fault and an empty state
        is used (the hardware comes first; its old snapshot, if any, is not merged)."""
        try:
            state = State.from_dict(self.d.state_file.load())
        except Exception as err:
            self.fault("reading the state file (going on without it: an earlier snapshot is not merged)", err)
            return State()
        if state.damaged:
            self.fault("reading the state file",
                       HgsError("damaged snapshot records left out: " + "; ".join(state.damaged)))
        if state.phase != IDLE and state.snapshot is not None:
            self.earlier_state = copy.deepcopy(state)  # what a power return before the main shutdown puts back
        return state

    def _battery_at_end(self):
        try:
            end = self.d.read_ups()
            self.report.fact(f"battery at the end: {_battery(end)} ({end.state.value})")
        except Exception as err:
            self.report.fact(f"battery at the end: unknown ({describe(err)})")
            self.fault("reading the battery at the end", err, recovered=True)

    def budget(self, groups):
        status = None
        try:
            status = self.d.read_ups()
            runtime = status.runtime_s
        except Exception as err:  # no runtime known: the configured deadlines stand
            runtime = None
            self.fault("reading the UPS runtime for the budget", err, recovered=True)
        b = plan.budget(self.timings, len(groups), len(self.host_stages()), runtime,
                        self.d.settings.ups.runtime_reserve_s)
        for note in b.notes:
            self.log.warning("%s", note)
            self.report.notes.append(note)
        self.plan_lines = plan.timeline(groups, [[i.name for _, i in s] for s in self.host_stages()], b, runtime)
        try:
            stages = [(rule, [vm.name for vm in vms]) for rule, vms in self.shedder.pending_rules()]
            self.plan_lines = plan.stage_lines(
                stages, self.timings.main_trigger, self.timings.confirm_outage_s, runtime,
                None if status is None else status.charge_pct, self.shedder.trigger_s(planned=True)) \
                + ["  the main shutdown (times from its start):"] + self.plan_lines
        except Exception as err:  # the plan's first lines are for a person: the shutdown goes on without them
            self.fault("planning the stages", err, recovered=True)
        return b


def _as_json(snapshot):
    """Returns ``snapshot`` (a Snapshot, or None) as JSON, for the log when it cannot be written."""
    return json.dumps(None if snapshot is None else snapshot.to_dict(), default=str)


def names(items, most=12):
    """Returns 'a, b, c' for a log line, shortened to ``most`` names and a count of the rest."""
    items = list(items)
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _battery(status):
    charge = "charge unknown" if status.charge_pct is None else f"{status.charge_pct:g} %"
    runtime = "runtime unknown" if status.runtime_s is None else f"{status.runtime_s} s runtime"
    return f"{charge}, {runtime}"

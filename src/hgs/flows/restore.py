"""The restore flow: power stable, wake the hosts (master first), start exactly the VMs of
the snapshot in their order groups, HA back on, verify; clear the state only when complete.

Power lost again (a UPS reading on battery, an onbattery event since the start) or
``hgs doshutdown`` (escalation) stops it from inside any wait, within a few seconds, with the
snapshot kept (VMs still to start stay in it): the outage flow takes the site from there.
``stop_reason`` is also what the SSH connections ask while a call waits (see offbattery),
so a hung xe call is cut too.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hgs.errors import HgsError, RemoteFault, RemoteInterrupted, UpsError, WakeError
from hgs.flows.base import Flow
from hgs.flows.outage import POWER_POLL_S, TICK_S, names
from hgs.flows.ports import RUNNING, SUSPENDED, Kind, host_stages
from hgs.flows.snapshot import IDLE, RESTORING, SITE_DOWN, State

RETRY_S = 1.0
POWER_CHECK_S = 1.0  # the UPS is read at most this often while the restore waits
SLICE_S = 0.5  # a long sleep is cut into slices; the power is checked between them
WAKE_POLL_S = 0.25  # while hosts boot: probe (and look at xapi) this often
SLOW_PROBE_S = 0.05  # a probe round slower than this (real time) runs its probes side by side from then on
START_DELAY_CAP_S = 600  # a VM's start-delay (read from xe) is never waited longer than this


@dataclass
class HostWake:
    """One host's way up."""

    config: object  # HostSettings: how to wake and probe it
    master: str | None  # its pool master's uuid; None for a master
    state: str = "queued"  # queued -> booting -> up -> ready, or failed
    woken_at: float | None = None
    last_wol: float | None = None
    wols: int = 0  # Wake-on-LAN packets sent
    xapi_deadline: float | None = None
    next_try: float = 0.0  # when xapi is asked again
    told: bool = False  # 'xapi is still booting' was said


class PowerLost(Exception):
    """The UPS went back on battery during the restore, or hgs doshutdown came."""


class RestoreFlow(Flow):
    def __init__(self, deps, report):
        super().__init__(deps, report)  # plan_lines: the steps this restore would take
        self.stopped_by = None  # what asked the restore to stop when it was not the power (a signal)
        self.state = State()  # the state file's, once run() read it
        self.began = deps.clock.wall()
        self._stop = None  # the reason to stop, once there is one (it never goes away)
        self._read_at = None  # clock time of the last UPS reading
        self._check_lock = threading.Lock()  # SSH watchdogs ask too, from their own threads
        self._slow_probes = False

    # -- helpers ----------------------------------------------------------------------------

    def stop_reason(self):
        """Returns why the restore must stop now, or None: hgs doshutdown (escalation), an
        onbattery event since the restore began, or the UPS reading on battery (read at most
        every POWER_CHECK_S). Cheap enough to ask at every poll of every wait."""
        with self._check_lock:
            if self._stop is None:
                self._stop = self._look()
            return self._stop

    def _stopped(self):
        """The result of a restore that stopped with its snapshot kept."""
        return f"stopped: {self.stopped_by}" if self.stopped_by else "stopped: power failed again"

    def _look(self):
        why = self.d.escalated()
        if why:
            if isinstance(why, str):  # the run says what asked it to stop (a signal)
                self.stopped_by = why
                return why
            return "hgs doshutdown: this box is halting"
        if self.d.last_event("doshutdown", self.began) is not None:
            return "hgs doshutdown: this box is halting"
        if self.d.last_event("onbattery", self.began) is not None:
            return "an onbattery event arrived"
        now = self.d.clock.now()
        if self._read_at is not None and now - self._read_at < POWER_CHECK_S:
            return None
        self._read_at = now
        try:
            status = self.d.read_ups()
        except UpsError as err:
            self.log.warning("UPS not readable during the restore: %s (going on)", err)
            return None
        return f"the UPS reports {status.state.value}" if status.on_battery else None

    def _power_ok(self):
        """Raises PowerLost when the restore must stop (see stop_reason)."""
        reason = self.stop_reason()
        if reason:
            raise PowerLost(reason)

    def _sleep(self, seconds):
        """Sleeps ``seconds`` in slices, checking the power before each; raises PowerLost."""
        end = self.d.clock.now() + seconds
        while True:
            self._power_ok()
            left = end - self.d.clock.now()
            if left <= 0:
                return
            self.d.clock.sleep(min(SLICE_S, left))

    def _cut(self, err):
        """A remote call was cut by stop_reason (RemoteInterrupted): raises PowerLost then."""
        if isinstance(err, RemoteInterrupted):
            raise PowerLost(self.stop_reason() or str(err))

    def _save(self):
        try:
            self.d.state_file.save(self.state.to_dict())
        except HgsError as err:
            self.log.error("%s (the restore goes on; the state on disk may be stale)", err)
            self.report.notes.append(f"state not saved: {err}")

    # -- 1. stable power ----------------------------------------------------------------------

    def _power_now(self):
        """Returns (the UPS reading, or None when unreadable; why the power counts as failed
        again, or None): the one "power failed again?" test of the restore's confirmation."""
        reason = self.stop_reason()
        if reason:
            return None, reason
        try:
            status = self.d.read_ups()
        except UpsError as err:
            self.log.warning("UPS not readable: %s", err)
            return None, None
        return status, ("the power failed again" if status.on_battery else None)

    def _not_started(self, why, when):
        self.log.info("%s %s: restore stopped", why, when)
        self.report.fact(f"power failed again {when}: nothing started")
        return False

    def confirm_power(self):
        window = self.timings.restore_confirm_s
        self.log.info("confirming the power is back for good: %.0f s", window)
        start = self.d.clock.now()
        while True:
            status, failed = self._power_now()
            if failed:
                return self._not_started(failed, "before the restore")
            elapsed = self.d.clock.now() - start
            if elapsed >= window:
                break
            self.d.clock.sleep(min(self.d.settings.ups.poll_interval_s, SLICE_S * 2, window - elapsed))
        floor = self.d.settings.ups.restore_min_charge_pct
        if floor > 0:
            deadline = self.d.clock.now() + self.timings.charge_wait_s
            while status is None or status.charge_pct is None or status.charge_pct < floor:
                if self.d.clock.now() >= deadline:
                    self.log.error("battery below %.0f %% after %.0f s: restoring anyway", floor,
                                   self.timings.charge_wait_s)
                    self.report.notes.append(f"battery did not reach {floor:.0f} % in time")
                    break
                try:
                    self._sleep(self.d.settings.ups.poll_interval_s * 5)
                except PowerLost as why:
                    return self._not_started(why, "while the battery recharged")
                status, failed = self._power_now()
                if failed:
                    return self._not_started(failed, "while the battery recharged")
            else:
                self.log.info("battery at %.0f %% (floor %.0f %%)", status.charge_pct, floor)
        self.report.fact(f"power stable for {window:g} s")
        return True

    # -- 2. hosts -------------------------------------------------------------------------------

    def host_stages(self, snapshot):
        """Returns [[(host uuid, HostRecord)], ...]: the masters, then the members."""
        return host_stages(snapshot.hosts.items(), lambda host: host[1].master, masters_first=True)

    def _config(self, host):
        """Returns the HostSettings of ``host`` (a HostRecord): the config entry it matched, else by name."""
        for h in self.d.settings.hosts:
            if h.name == host.config or h.name == host.name:
                return h
        return None

    def wake_hosts(self, snapshot):
        """Wakes the hosts and waits until each answers ping/SSH, then xapi; returns
        {host uuid: HostSettings} of the ones ready.

        Wake-on-LAN goes out before any probe (a magic packet to a running host is harmless).
        Masters are woken at once; members per TIMINGS['members_wake']: "after_master_ping"
        (default: their boot overlaps the master's xapi start-up), "together", or
        "after_master_xapi". A member's xapi wait starts once its master's xapi answers (xe on
        a member forwards to the master); the xapi waits of all hosts run side by side."""
        clock = self.d.clock
        mode = getattr(self.timings, "members_wake", "after_master_ping")
        start = clock.now()
        hosts = {}
        for host_uuid, host in snapshot.hosts.items():
            config = self._config(host)
            if config is None:
                self.log.warning("%s is not in the config: cannot wake it; xapi may power it on", host.name)
                continue
            pool = snapshot.pools.get(host.pool)
            master = None if host.master or pool is None else pool.master
            hosts[host_uuid] = HostWake(config, master)
        if any(h.master in hosts for h in hosts.values()):
            self.log.info("members are woken %s", {"together": "with the masters",
                                                  "after_master_ping": "once their master answers ping",
                                                  "after_master_xapi": "once their master's xapi answers"}[mode])
        probes = ThreadPoolExecutor(max_workers=max(1, min(16, len(hosts))))
        try:
            while any(h.state in ("queued", "booting", "up") for h in hosts.values()):
                self._power_ok()
                self._wake_due(hosts, mode)
                self._probe(hosts, probes, start)
                self._wake_due(hosts, mode)  # members whose master just answered: at once
                now = clock.now()
                for h in hosts.values():
                    if h.state == "booting" and now - h.woken_at >= self.timings.host_boot_timeout_s:
                        h.state = "failed"
                        self.log.error("%s: did not come up within %.0f s (%d Wake-on-LAN packets sent)",
                                       h.config.name, self.timings.host_boot_timeout_s, h.wols)
                        self.report.host(h.config.name, "DID NOT BOOT", now - start,
                                         f"{h.wols} Wake-on-LAN packets", failed=True)
                for host_uuid, h in hosts.items():
                    if h.state == "up":
                        self._try_xapi(host_uuid, h, hosts, start)
                if any(h.state in ("queued", "booting", "up") for h in hosts.values()):
                    self._sleep(WAKE_POLL_S)
        finally:
            probes.shutdown(wait=False, cancel_futures=True)  # a probe still running ends by its own deadline
        return {u: h.config for u, h in hosts.items() if h.state == "ready"}

    def _master_state(self, h, hosts):
        master = hosts.get(h.master)
        return "failed" if master is None else master.state  # an unconfigured master: do not wait for it

    def _wake_due(self, hosts, mode):
        """Sends Wake-on-LAN to the hosts whose turn came, and again to those still silent."""
        now = self.d.clock.now()
        for h in hosts.values():
            if h.state == "queued":
                if h.master is not None and mode != "together":
                    ready = ("ready", "failed") if mode == "after_master_xapi" else ("up", "ready", "failed")
                    if self._master_state(h, hosts) not in ready:
                        continue
                h.state, h.woken_at = "booting", now
            if h.state == "booting" and (h.last_wol is None
                                         or now - h.last_wol >= self.timings.wol_resend_interval_s):
                self._power_ok()
                try:
                    self.d.waker.wake(h.config)
                except WakeError as err:
                    self.log.error("%s", err)
                h.last_wol, h.wols = now, h.wols + 1

    def _probe(self, hosts, probes, start):
        """Probes every booting host (each probe has its own short deadline of about a second):
        side by side once a probe round proved slow (silent hosts make ping wait), else in turn."""
        booting = [h for h in hosts.values() if h.state == "booting"]
        began = time.monotonic()
        if len(booting) > 1 and self._slow_probes:
            answers = list(probes.map(lambda h: self.d.prober.is_up(h.config), booting))
        else:
            answers = [self.d.prober.is_up(h.config) for h in booting]
        self._slow_probes |= time.monotonic() - began > SLOW_PROBE_S
        now = self.d.clock.now()
        for h, up in zip(booting, answers):
            if up:
                h.state = "up"
                self.log.info("%s: answers after %.1f s", h.config.name, now - start)

    def _try_xapi(self, host_uuid, h, hosts, start):
        """One look at xapi on a host that answers; marks it ready (host-enable if it stayed
        disabled) or failed past its deadline. A member waits for its master's xapi first."""
        clock = self.d.clock
        config = h.config
        if h.master is not None and self._master_state(h, hosts) not in ("ready", "failed"):
            return
        now = clock.now()
        if h.xapi_deadline is None:
            h.xapi_deadline = now + self.timings.xapi_ready_timeout_s
        if now < h.next_try:
            return
        self._power_ok()
        hv = self.d.hypervisors[config.name]
        try:
            infos = hv.hosts()
        except RemoteFault as err:
            self._cut(err)
            if not h.told and getattr(err, "kind", None) == Kind.BOOTING:
                h.told = True
                self.log.info("%s: xapi is still booting (%s): waiting", config.name, err.reason)
            if clock.now() >= h.xapi_deadline:
                h.state = "failed"
                self.log.error("%s: xapi not ready within %.0f s: %s", config.name,
                               self.timings.xapi_ready_timeout_s, err)
                self.report.host(config.name, "XAPI NOT READY", clock.now() - start, str(err), failed=True)
            h.next_try = clock.now() + RETRY_S
            return
        if h.told:
            self.log.info("%s: xapi answers", config.name)
        me = next((i for i in infos if i.uuid == host_uuid), None)
        if me is not None and not me.enabled:
            try:
                hv.enable_host(host_uuid)
                self.log.info("%s: was still disabled: host-enable", config.name)
            except RemoteFault as err:
                self._cut(err)
                self.log.error("%s: host-enable failed: %s", config.name, err)
        h.state = "ready"
        self.report.host(config.name, "up", clock.now() - start)

    # -- 3. VMs --------------------------------------------------------------------------------

    def _executor(self, snapshot, pool_uuid, ready):
        """The config host that runs a pool's commands: its master when up, else any up member."""
        pool = snapshot.pools.get(pool_uuid)
        master_uuid = pool.master if pool is not None else None
        master = snapshot.hosts.get(master_uuid) if master_uuid is not None else None
        config = self._config(master) if master is not None else None
        if config is not None and master_uuid in ready:
            return config.name
        for host_uuid, host in snapshot.hosts.items():
            if host.pool == pool_uuid and host_uuid in ready:
                return ready[host_uuid].name
        return None

    def start_vms(self, snapshot, ready):
        pending = set(self.state.restore_pending or snapshot.vms)
        vms = [vm for u, vm in snapshot.vms.items() if u in pending]
        orders = sorted({vm.order for vm in vms})
        for order in orders:
            self._power_ok()
            group = sorted((vm for vm in vms if vm.order == order), key=lambda v: v.name)
            self.log.info("starting order group %s: %s", order, names(v.name for v in group))
            self._start_group(snapshot, group, ready)
            for vm in group:
                pending.discard(vm.uuid)
            self.state.restore_pending = sorted(pending)
            self._save()
            delay = self._start_delay(group)
            if delay and order != orders[-1]:
                self.log.info("start delay: %s s before the next group", delay)
                self._sleep(delay)

    def _start_delay(self, group):
        """Returns the group's start-delay (the largest of its VMs'), capped at START_DELAY_CAP_S."""
        delay = max((vm.start_delay for vm in group), default=0)
        if delay > START_DELAY_CAP_S:
            self.log.warning("start-delay %s s (from xe) is capped at %d s", delay, START_DELAY_CAP_S)
            return START_DELAY_CAP_S
        return delay

    def _start_group(self, snapshot, group, ready):
        clock = self.d.clock
        start = clock.now()
        by_executor = {}
        for vm in group:
            executor = self._executor(snapshot, vm.pool, ready)
            if executor is None:
                self.report.vm(vm.name, "NOT STARTED", None, "no host of its pool is up", failed=True)
                continue
            by_executor.setdefault(executor, []).append(vm)
        # every pool's starts are sent first, then awaited together: a pool whose VM hangs in
        # vm-start never holds up another pool's (or standalone host's) VMs
        launched = []  # (batch, {uuid: name}, resumed uuids)
        deadline = start + self.timings.vm_start_timeout_s
        try:
            for executor, vms in by_executor.items():
                started = self._launch_starts(executor, vms)
                if started is not None:
                    launched.append(started)
            while any(b.pending and not b.lost for b, _, _ in launched) and clock.now() < deadline:
                self._power_ok()
                for batch, vm_names, resumed in launched:
                    for outcome in batch.poll():
                        self._start_outcome(vm_names[outcome.uuid], outcome, clock.now() - start,
                                            outcome.uuid in resumed)
                clock.sleep(TICK_S)
        except PowerLost:
            for batch, _, _ in launched:
                batch.close()  # the starts already sent go on in xapi; the snapshot still lists them
            raise
        for batch, vm_names, resumed in launched:
            for outcome in batch.poll():
                self._start_outcome(vm_names[outcome.uuid], outcome, clock.now() - start, outcome.uuid in resumed)
            for vm_uuid in sorted(batch.pending):
                why = "the connection dropped" if batch.lost else f"not running within {self.timings.vm_start_timeout_s:.0f} s"
                self.report.vm(vm_names[vm_uuid], "NOT CONFIRMED", clock.now() - start, why)
            batch.close()

    def _launch_starts(self, executor, vms):
        """Reads the power states of ``vms`` through ``executor`` and sends vm-start (vm-resume
        for a VM hgs suspended) for those not running; returns (batch, {uuid: name}, the
        resumed uuids), or None when nothing was sent (each VM's outcome is reported)."""
        hv = self.d.hypervisors[executor]
        try:
            states = hv.power_states()
        except RemoteFault as err:
            self._cut(err)
            states = {}
            self.log.warning("cannot read the VM power states: %s", err)
        to_start = []
        for vm in vms:
            power = states.get(vm.uuid)
            if states and power is None:
                self.report.vm(vm.name, "no longer exists", None, "not in xe vm-list: reported, not started")
                self.log.warning("%s: no longer exists on the pool; not started", vm.name)
            elif power == RUNNING:
                self.report.vm(vm.name, "already running", 0.0, "xapi auto power-on or started by hand")
            else:
                to_start.append(vm)
        if not to_start:
            return None
        # a VM hgs suspended is resumed (its memory comes back), any other started
        # (power states unread: the snapshot says which VMs hgs suspended)
        suspended = {vm.uuid for vm in to_start if states.get(vm.uuid) == SUSPENDED
                     or (not states and vm.action == "suspend")}
        try:
            batch = hv.start_vms([vm.uuid for vm in to_start], resume=suspended)
        except HgsError as err:
            self._cut(err)
            for vm in to_start:
                self.report.vm(vm.name, "NOT STARTED", None, str(err), failed=True)
            return None
        return batch, {vm.uuid: vm.name for vm in to_start}, suspended

    def _start_outcome(self, name, outcome, took, resumed=False):
        if outcome.kind == Kind.DONE:
            self.log.info("%s: %s in %.1f s", name, "resumed" if resumed else "started", took)
            self.report.vm(name, "resumed" if resumed else "started", took)
        elif outcome.kind == Kind.ALREADY and outcome.state == RUNNING:
            self.report.vm(name, "already running", took)
        elif outcome.kind == Kind.GONE:
            self.log.warning("%s: no longer exists; not started", name)
            self.report.vm(name, "no longer exists", took, "reported, not started")
        else:
            self.log.error("%s: %s failed: %s", name, "vm-resume" if resumed else "vm-start", outcome.message)
            self.report.vm(name, "FAILED TO RESUME" if resumed else "FAILED TO START", took, outcome.message,
                           failed=True)

    # -- 4. HA and verify -------------------------------------------------------------------

    def enable_ha(self, snapshot, ready):
        for pool_uuid, pool in snapshot.pools.items():
            if not pool.ha_was_enabled:
                continue
            executor = self._executor(snapshot, pool_uuid, ready)
            if executor is None:
                self.log.error("pool HA was on before the outage but cannot be turned back on (no host up)")
                self.report.notes.append("HA NOT turned back on: do it by hand (xe pool-ha-enable)")
                self.report.failed = True
                continue
            srs = [u for u in pool.ha_srs if u]
            if not srs:
                self.log.warning("the heartbeat SR was not learned before the outage: pool-ha-enable without "
                                 "heartbeat-sr-uuids (xapi picks a statefile SR itself)")
            try:
                self.d.hypervisors[executor].enable_ha(srs)
                self.log.info("pool HA turned back on")
                self.report.fact("pool HA turned back on" + ("" if srs else " (statefile SR picked by xapi)"))
            except RemoteFault as err:
                self._cut(err)
                self.log.error("pool-ha-enable failed: %s", err)
                self.report.notes.append(f"HA NOT turned back on: {err}")
                self.report.failed = True

    def verify(self, snapshot, ready):
        """Waits until every snapshot VM that still exists runs; returns the missing names."""
        deadline = self.d.clock.now() + self.timings.verify_timeout_s
        while True:
            missing = []
            for pool_uuid in snapshot.pools:
                executor = self._executor(snapshot, pool_uuid, ready)
                try:
                    states = self.d.hypervisors[executor].power_states() if executor else {}
                except RemoteFault as err:
                    self._cut(err)
                    states = {}
                for vm_uuid, vm in snapshot.vms.items():
                    if vm.pool != pool_uuid:
                        continue
                    power = states.get(vm_uuid) if states else "unknown"
                    if power is not None and power != RUNNING:  # None: gone, reported when starting
                        missing.append(vm.name)
            if not missing or self.d.clock.now() >= deadline:
                return missing
            self._sleep(POWER_POLL_S)

    def timeline(self, snapshot):
        """Returns the steps this restore would take, as lines (what a dry run prints)."""
        t = self.timings
        lines = [f"  confirm the power is stable for {t.restore_confirm_s:g} s"
                 + (f", and the battery at {self.d.settings.ups.restore_min_charge_pct:g} %"
                    if self.d.settings.ups.restore_min_charge_pct else "")]
        when = {"together": "at once", "after_master_ping": "once the master answers ping",
                "after_master_xapi": "once the master's xapi answers"}[getattr(t, "members_wake", "after_master_ping")]
        for index, stage in enumerate(self.host_stages(snapshot)):
            for _, host in stage:
                config = self._config(host)
                where = f"{config.wol_broadcast}:{config.wol_port} for {config.mac}" if config else "not configured"
                lines.append(f"  {'master' if index == 0 else 'member'} {host.name}: Wake-on-LAN ({where})"
                             + ("" if index == 0 else f" {when}") + ", "
                             f"resent every {t.wol_resend_interval_s:g} s; up within {t.host_boot_timeout_s:g} s, "
                             f"xapi within {t.xapi_ready_timeout_s:g} s; host-enable if disabled")
        orders = sorted({vm.order for vm in snapshot.vms.values()})
        for order in orders:
            group = sorted((v for v in snapshot.vms.values() if v.order == order), key=lambda v: v.name)
            delay = min(max((v.start_delay for v in group), default=0), START_DELAY_CAP_S)
            lines.append(f"  start order group {order}: "
                         + ", ".join(v.name + (" (resumed if suspended)" if v.action == "suspend" else "")
                                     for v in group)
                         + (f"; then wait {delay} s (start-delay)" if delay and order != orders[-1] else ""))
        if any(p.ha_was_enabled for p in snapshot.pools.values()):
            lines.append("  turn pool HA back on")
        lines.append(f"  verify every VM runs within {t.verify_timeout_s:g} s; clear the state; mail the log")
        return lines

    # -- the whole flow -------------------------------------------------------------------

    def run(self, confirm=True):
        self.state = State.from_dict(self.d.state_file.load())
        snapshot = self.state.snapshot
        if self.state.phase == IDLE or snapshot is None:
            self.log.info("nothing was shut down by hgs: nothing to restore")
            self.report.finish("nothing to do")
            return self.report
        for what in self.state.damaged:
            self.log.error("the snapshot has a damaged record, left out: %s", what)
            self.report.notes.append(f"damaged snapshot record left out: {what}")
            self.report.failed = True
        self.report.fact(f"snapshot of {snapshot.taken or '?'}: {len(snapshot.vms)} VM(s), "
                         f"{len(snapshot.hosts)} host(s)")
        self.plan_lines = self.timeline(snapshot)
        if confirm and not self.confirm_power():
            self.report.finish(self._stopped())
            return self.report
        self.state.phase = RESTORING
        self._save()
        try:
            self._power_ok()
            ready = self.wake_hosts(snapshot)
            self._power_ok()
            self.start_vms(snapshot, ready)
            self._power_ok()
            self.enable_ha(snapshot, ready)
            missing = self.verify(snapshot, ready)
        except PowerLost as why:
            self.log.warning("restore stopped: %s; the snapshot is kept for the outage flow", why)
            self.report.fact(f"restore stopped: {why}")
            self.state.phase = SITE_DOWN
            self._save()
            self.report.finish(self._stopped(), failed=False)
            return self.report
        if missing:
            self.log.error("not running after %.0f s: %s", self.timings.verify_timeout_s, ", ".join(missing))
            self.report.notes.append("not running: " + ", ".join(missing))
            self.report.failed = True
        if self.report.failed:
            self.state.phase = SITE_DOWN
            self._save()
            self.log.error("restore incomplete: the state is kept; the next event, self-test or boot tries again")
            self.report.finish("incomplete (state kept for the next attempt)")
            return self.report
        self.state = State()
        self._save()
        self.log.info("restore complete: every VM of the snapshot runs; state cleared")
        self.report.finish("site restored")
        return self.report

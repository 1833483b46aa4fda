"""Hand-written fakes for the fast flow layer: no root, no sshd, virtual time.

``Site`` is a small world: a pool of hosts with HA, VMs of every kind, a UPS, and a manual
clock. ``FakeHypervisor`` implements the hypervisor port (``hgs.flows.ports.Hypervisor``) the way
a pool answers it (refusals as the port's kinds, a dropped session during a host shutdown counted
as sent), and ``Faults`` makes any one call fail in one of the ways a real site fails: a refusal, a lost
connection, a hang past the deadline, garbage output, a bug. Every call a flow makes to the
world (xe, the UPS, the state file) is one numbered position, so a sweep can hit each one.
"""

import io
import json
import logging
import os
import random
import textwrap
import uuid as uuidmod
from dataclasses import dataclass, field
from types import SimpleNamespace

from hgs import config as configmod
from hgs.box.state import StateError, StateFile
from hgs.errors import BadUuid, ConnectionLost, HypervisorError, RemoteError, RemoteTimeout, UpsError
from hgs.flows.outage import Deps
from hgs.flows.ports import HostInfo, Kind, Outcome, PoolInfo, VmInfo
from hgs.ups import UpsState, UpsStatus


def new_uuid(text):
    return str(uuidmod.uuid5(uuidmod.NAMESPACE_URL, text))


class ManualClock:
    """Virtual time: ``sleep`` advances it at once; ``now`` is monotonic, ``wall`` a fixed epoch on."""

    def __init__(self, wall0=1_800_000_000.0):
        self.t = 0.0
        self.wall0 = wall0

    def now(self):
        return self.t

    def wall(self):
        return self.wall0 + self.t

    def sleep(self, seconds):
        if seconds > 0:
            self.t += seconds

    advance = sleep


# -- faults --------------------------------------------------------------------------------

XE_KINDS = ("xe", "lost", "hang", "garbage", "bug")  # what a hypervisor call can do to a flow ("xe": a refusal)
KINDS_FOR = {"xe": XE_KINDS, "ups": ("ups", "bug"), "state": ("state", "bug")}


class InjectedBug(RuntimeError):
    """An exception no part of hgs expects (a bug in an adapter): the flow must survive it too."""


@dataclass
class Injected:
    position: int
    kind: str
    call: str
    where: str
    at: float
    message: str


class Faults:
    """Numbers every call the flow makes to the world; fails the ones ``plan`` names.

    ``plan`` is {position: kind}. ``calls`` lists (position, group, call, where) in order.
    """

    def __init__(self, clock, plan=None, always=None):
        self.clock = clock
        self.plan = dict(plan or {})
        self.always = dict(always or {})  # {call: kind}: every such call fails
        self.position = 0
        self.calls = []
        self.injected = []

    def next(self, group, call, where):
        """Returns the kind of fault to inject into this call, or None."""
        position = self.position
        self.position += 1
        self.calls.append((position, group, call, where))
        kind = self.plan.get(position, self.always.get(call))
        if kind is not None and kind not in KINDS_FOR[group]:
            kind = None
        return position, kind

    def note(self, position, kind, call, where, message):
        self.injected.append(Injected(position, kind, call, where, self.clock.now(), message))


def fault_message(kind, position, call, where):
    return f"injected {kind} #{position} in {call} on {where}"


# -- the site ------------------------------------------------------------------------------

@dataclass
class FakeHost:
    name: str
    uuid: str
    address: str
    power: str = "on"
    enabled: bool = True
    off_at: float | None = None  # when a host-shutdown makes it power off
    on_at: float | None = None  # when a Wake-on-LAN makes it power on (its xapi with it)
    shutdown_calls: list = field(default_factory=list)  # virtual times host-shutdown was accepted


@dataclass
class FakeVm:
    name: str
    uuid: str
    host: str  # resident host name
    order: int = 0
    tools: bool = True
    clean_s: float = 2.0  # a clean shutdown takes this long; None: the guest ignores it
    force_fails: bool = False
    power: str = "running"
    halt_at: float | None = None
    killed_by_host: bool = False  # still running when its host powered off
    watts: float = 100.0  # what it draws from the UPS while running
    suspend_s: float | None = 3.0  # a vm-suspend takes this long; None: it never finishes
    suspend_error: str | None = None  # the xe error code its vm-suspend fails with (e.g. SR_NOT_ATTACHED)
    start_s: float = 1.0  # a vm-start or vm-resume takes this long
    suspend_at: float | None = None
    run_at: float | None = None
    starts: list = field(default_factory=list)  # (virtual time, 'vm-start' | 'vm-resume')


class FakeBattery:
    """A UPS battery drained by the site's load: hosts that are on draw ``host_w`` each, running
    VMs their ``watts``. Runtime left is the energy left at the present load."""

    def __init__(self, capacity_wh=500.0, charge_pct=100.0, host_w=150.0):
        self.capacity_j = capacity_wh * 3600.0
        self.energy_j = self.capacity_j * charge_pct / 100.0
        self.host_w = host_w
        self.t = 0.0
        self.load_w = 0.0

    def advance(self, now, load_w, on_battery):
        if on_battery:
            self.energy_j = max(0.0, self.energy_j - self.load_w * (now - self.t))
        self.t, self.load_w = now, load_w

    def reading(self):
        charge = 100.0 * self.energy_j / self.capacity_j
        return round(charge, 1), int(self.energy_j / max(self.load_w, 1.0))


POOL_SCENARIO = {
    "hosts": ["master", "member1", "member2"],
    "vms": [  # name, host, order, tools, clean_s, force_fails
        ("db", "member1", 1, True, 4.0, False),
        ("web1", "member1", 0, True, 2.0, False),
        ("web2", "member2", 0, True, 3.0, False),
        ("legacy", "member2", 0, False, None, False),  # no guest tools: forced at once
        ("stubborn", "master", 0, True, None, False),  # ignores the clean shutdown
        ("jammed", "member1", 0, True, None, True),  # ignores it, and the force fails: reset
        ("storage", "master", 0, True, 3.0, False),  # VMS['stop_last']
    ],
    "ha": True,
}

TIMINGS = {"confirm_outage_s": 5, "vm_shutdown_timeout_s": 20, "vm_force_timeout_s": 10, "xe_timeout_s": 10,
           "host_shutdown_timeout_s": 30, "host_down_confirm_s": 3, "doshutdown_bound_s": 40,
           "unreachable_retry_s": 10}


class Site:
    """A pool of fake hosts and VMs, a UPS and a clock; ``hypervisors`` as Deps wants them."""

    def __init__(self, tmp_path, scenario=POOL_SCENARIO, timings=None, plan=None, ups_script=None,
                 off_after_s=2.0, stop_last=("storage",), mail_when="always", extra_config="", forced=False,
                 ups_extra="", always=None, call_s=0.0, probe_s=(0.0, 0.0), vm_extra=None, battery=None,
                 vms_config=None):
        self.tmp = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.clock = ManualClock()
        self.faults = Faults(self.clock, plan, always)
        self.off_after_s = off_after_s
        self.call_s = call_s  # virtual seconds each xe call takes (a round trip and xapi's work)
        self.warmed = []  # the hosts asked to ready their next batch, in order
        self.probe_s = probe_s  # virtual seconds a probe takes: (host answers, host silent)
        self.hosts = {}
        for index, name in enumerate(scenario["hosts"]):
            self.hosts[name] = FakeHost(name, new_uuid(f"host/{name}"), f"127.0.0.{index + 1}")
        self.master = scenario["hosts"][0]
        self.pool_uuid = new_uuid("pool")
        self.ha_enabled = scenario.get("ha", False)
        self.ha_sr = new_uuid("sr/heartbeat")
        self.ha_vdi = new_uuid("vdi/statefile")
        self.vms = {}
        for name, host, order, tools, clean_s, force_fails in scenario["vms"]:
            vm = FakeVm(name, new_uuid(f"vm/{name}"), host, order, tools, clean_s, force_fails,
                        **(vm_extra or {}).get(name, {}))
            self.vms[vm.uuid] = vm
        self.battery = battery  # a FakeBattery: the UPS readings follow the load; None: fixed readings
        self.vms_config = vms_config
        if battery is not None:
            battery.load_w = self.load_w()
        self.log_calls = []  # (t, where, call, args, result)
        self.ups_script = ups_script or [(0.0, "ONBATT")]
        self.settings = self._settings(timings, stop_last, mail_when, extra_config, ups_extra)
        self.forced = forced
        if forced:  # the settings 'hgs doshutdown' runs its flow with
            from hgs.commands.doshutdown import forced_settings

            self.settings = forced_settings(self.settings)
        self.hypervisors = {name: FakeHypervisor(self, name, self.settings.timings.xe_timeout_s)
                            for name in self.hosts}

    # -- config ---------------------------------------------------------------------------

    def _settings(self, timings, stop_last, mail_when, extra_config, ups_extra):
        values = dict(TIMINGS, **(timings or {}))
        hosts = ", ".join(f"{{'name': {h.name!r}, 'address': {h.address!r}}}" for h in self.hosts.values())
        text = textwrap.dedent(f"""\
            UPS = {{'daemon': 'apcupsd', 'address': '127.0.0.1:3551', 'poll_interval_s': 1{ups_extra}}}
            HOSTS = [{hosts}]
            VMS = {self.vms_config or {'stop_last': list(stop_last)}!r}
            TIMINGS = {values!r}
            MAIL = {{'when': {mail_when!r}}}
            PATHS = {{'state_dir': 'state', 'log_file': 'log/hgs.log', 'lock_dir': 'lock'}}
            LOGGING = {{'syslog': False}}
            """) + extra_config
        path = self.tmp / "config.py"
        path.write_text(text)
        return configmod.load(path, check_owner=False)

    # -- the world moves on -----------------------------------------------------------------

    def ups_state(self):
        now = self.clock.now()
        return next((s for t, s in reversed(self.ups_script) if now >= t), "ONLINE")

    def load_w(self):
        hosts = sum(self.battery.host_w for h in self.hosts.values() if h.power == "on")
        return hosts + sum(vm.watts for vm in self.vms.values() if vm.power == "running")

    def tick(self):
        now = self.clock.now()
        if self.battery is not None:  # the energy drawn since the last tick, at the load of then
            self.battery.advance(now, self.battery.load_w, self.ups_state() != "ONLINE")
        for vm in self.vms.values():
            if vm.power == "running" and vm.halt_at is not None and now >= vm.halt_at:
                vm.power = "halted"
            if vm.power == "running" and vm.suspend_at is not None and now >= vm.suspend_at:
                vm.power, vm.suspend_at = "suspended", None
            if vm.power in ("halted", "suspended") and vm.run_at is not None and now >= vm.run_at:
                vm.power, vm.run_at, vm.halt_at = "running", None, None
        for host in self.hosts.values():
            if host.power == "off" and host.on_at is not None and now >= host.on_at:
                host.power, host.on_at, host.off_at = "on", None, None
        for host in self.hosts.values():
            if host.power == "on" and host.off_at is not None and now >= host.off_at:
                host.power = "off"
                for vm in self.vms.values():
                    if vm.host == host.name and vm.power == "running":
                        vm.power, vm.halt_at = "halted", None
                        vm.killed_by_host = True
        if self.battery is not None:
            self.battery.load_w = self.load_w()

    def vms_by_name(self, name):
        return next(vm for vm in self.vms.values() if vm.name == name)

    def host_by_uuid(self, host_uuid):
        return next(h for h in self.hosts.values() if h.uuid == host_uuid)

    def master_host(self):
        return self.hosts[self.master]

    # -- what a test asks --------------------------------------------------------------------

    def calls(self, call=None):
        return [c for c in self.log_calls if call is None or c[2] == call]

    def changes(self):
        reads = {"pool-list", "host-list", "vm-list", "vm-power-states", "pool-param-get", "vdi-param-get"}
        return [c for c in self.log_calls if c[2] not in reads]

    def vm_states(self):
        self.tick()
        return {vm.name: vm.power for vm in self.vms.values()}

    def host_powers(self):
        self.tick()
        return {h.name: h.power for h in self.hosts.values()}

    # -- the UPS -----------------------------------------------------------------------------

    def read_ups(self):
        position, kind = self.faults.next("ups", "ups-read", "ups")
        if kind is not None:
            message = fault_message(kind, position, "ups-read", "ups")
            self.faults.note(position, kind, "ups-read", "ups", message)
            if kind == "bug":
                raise InjectedBug(message)
            raise UpsError(f"apcupsd at 127.0.0.1:3551: {message}")
        state = self.ups_state()
        mapping = {"ONLINE": UpsState.ON_LINE, "ONBATT": UpsState.ON_BATTERY, "LOWBATT": UpsState.LOW_BATTERY,
                   "COMMLOST": UpsState.COMM_LOST}
        charge, runtime = 80.0, 1800
        if self.battery is not None:
            self.tick()
            charge, runtime = self.battery.reading()
        return UpsStatus(mapping[state], charge, runtime, state, "apcupsd", "127.0.0.1:3551")

    # -- deps ---------------------------------------------------------------------------------

    def deps(self, escalated=lambda: False, events=None, log=None, waker=None):
        self.log = log or RecordingLog()
        self.state_file = FaultyStateFile(StateFile(self.tmp / "state"), self)
        self.prober = FakeProber(self, *self.probe_s)
        events = events if events is not None else []

        def last_event(kind, since):
            times = [t for t, k in events if k == kind and t >= since]
            return max(times, default=None)

        return Deps(self.settings, self.read_ups, self.hypervisors, self.prober, self.clock, self.state_file,
                    self.log.logger, escalated, waker, last_event)


class FakeWaker:
    """Wake-on-LAN to a fake host: it powers on (xapi ready) ``boot_s`` later."""

    def __init__(self, site, boot_s=30.0):
        self.site, self.boot_s = site, boot_s
        self.sent = []  # (virtual time, host name)

    def wake(self, host):
        self.sent.append((self.site.clock.now(), host.name))
        fake = self.site.hosts[host.name]
        if fake.power == "off" and fake.on_at is None:
            fake.on_at = self.site.clock.now() + self.boot_s


class FaultyStateFile:
    """The real state file in a tmp dir, with its load and save as fault positions."""

    def __init__(self, real, site):
        self.real, self.site = real, site
        self.path = real.path

    def _fault(self, call):
        position, kind = self.site.faults.next("state", call, "state file")
        if kind is None:
            return
        message = fault_message(kind, position, call, "state file")
        self.site.faults.note(position, kind, call, "state file", message)
        if kind == "bug":
            raise InjectedBug(message)
        raise StateError(f"cannot write the state file {self.path}: {message}")

    def load(self):
        self._fault("state-load")
        return self.real.load()

    def save(self, data):
        self._fault("state-save")
        return self.real.save(data)

    def write_raw(self, text):
        os.makedirs(self.real.dir, exist_ok=True)
        with open(self.path, "w") as handle:
            handle.write(text)

    def read(self):
        with open(self.path) as handle:
            return json.load(handle)


class FakeProber:
    """A host is down when the fake says it is off. A probe takes ``up_s`` of virtual time when
    the host answers and ``down_s`` when it is silent (a ping's timeout); ``are_down`` probes
    several hosts at the same time, as a real prober does in parallel."""

    def __init__(self, site, up_s=0.0, down_s=0.0):
        self.site = site
        self.up_s, self.down_s = up_s, down_s
        self.checks = []  # (t, host name, down?)

    def _down(self, target):
        down = self.site.hosts[target.name].power == "off" if target.name in self.site.hosts else True
        self.checks.append((self.site.clock.now(), target.name, down))
        return down

    def are_down(self, targets):
        self.site.tick()
        results = [self._down(t) for t in targets]
        self.site.clock.advance(max((self.down_s if d else self.up_s) for d in results))
        return results

    def is_down(self, target):
        return self.are_down([target])[0]

    def is_up(self, target):
        return not self.is_down(target)


class RecordingLog:
    """A logger whose lines are kept (for the mail text and assertions)."""

    count = 0

    def __init__(self):
        RecordingLog.count += 1
        self.logger = logging.getLogger(f"hgs-flowtest-{RecordingLog.count}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.logger.handlers[:] = [handler]

    def text(self):
        return self.stream.getvalue()


class RecordingMailer:
    def __init__(self):
        self.sent = []

    def send(self, subject, body):
        self.sent.append((subject, body))


# -- the hypervisor ------------------------------------------------------------------------

class InjectedRefusal(HypervisorError):
    """A refusal the fault plan injected: the hypervisor says something hgs has no kind for."""


def refused(vm_uuid, kind, message, state=None):
    return Outcome(vm_uuid, kind, state, message)


class FakeBatch:
    """Outcomes that arrive in virtual time; ``lost`` when the channel died."""

    def __init__(self, site, pending, lost=False, garbage=False):
        self.site = site
        self.pending = dict(pending)  # uuid -> (ready at, Outcome)
        self._lost = lost
        self.garbage = garbage
        self.closed = False

    def poll(self):
        self.site.tick()
        if self._lost or self.garbage:
            return []
        now = self.site.clock.now()
        out = [o for u, (t, o) in self.pending.items() if t is not None and t <= now]
        for o in out:
            del self.pending[o.uuid]
        return out

    def wait(self, timeout_s):
        """Advances the clock to the next outcome, or by ``timeout_s`` when none comes sooner."""
        now = self.site.clock.now()
        due = [] if self._lost or self.garbage else [t for t, _ in self.pending.values() if t is not None]
        if any(t <= now for t in due):
            return
        self.site.clock.sleep(min([timeout_s] + [t - now for t in due]))

    @property
    def lost(self):
        return self._lost and bool(self.pending)

    def close(self):
        self.closed = True


class FakeHypervisor:
    """One host's view of the fake pool, implementing the hypervisor port from hgs.flows.ports."""

    def __init__(self, site, name, xe_timeout_s):
        self.site = site
        self.name = name
        self.xe_timeout_s = xe_timeout_s

    def _call(self, call, args=(), run=lambda: None):
        """Numbers the call, injects its fault if planned, else runs it; records it either way."""
        site = self.site
        site.tick()
        position, kind = site.faults.next("xe", call, self.name)
        now = site.clock.now()
        me = site.hosts[self.name]
        if kind is not None:
            message = fault_message(kind, position, call, self.name)
            site.faults.note(position, kind, call, self.name, message)
            site.log_calls.append((now, self.name, call, args, f"fault: {kind}"))
            if kind == "xe":
                raise InjectedRefusal(f"{self.name}: {call} failed: the server failed to handle your request "
                                      f"({message})", Kind.FAILED, message)
            if kind == "lost":
                raise ConnectionLost(f"{self.name}: the connection dropped while running a command ({message})")
            if kind == "hang":
                site.clock.advance(self.xe_timeout_s)
                raise RemoteTimeout(f"{self.name}: no result within {self.xe_timeout_s:g} s ({message})")
            if kind == "garbage":
                raise BadUuid(f"not a uuid: 'garbage' ({message})")
            raise InjectedBug(message)
        if me.power != "on":
            site.log_calls.append((now, self.name, call, args, "unreachable"))
            raise RemoteError(f"{self.name}: cannot connect (No route to host)")
        master = site.master_host()
        if self.name != master.name and master.power != "on":
            site.log_calls.append((now, self.name, call, args, "master unreachable"))
            raise HypervisorError(f"{self.name}: {call} failed: the pool master cannot be contacted",
                                  Kind.FAILED, "the pool master cannot be contacted")
        site.clock.advance(site.call_s)
        try:
            result = run()
        except HypervisorError as err:
            site.log_calls.append((now, self.name, call, args, str(err.kind)))
            raise
        site.log_calls.append((now, self.name, call, args, "ok"))
        return result

    # -- reads ------------------------------------------------------------------------------

    def pool(self):
        site = self.site
        return self._call("pool-list", (), lambda: PoolInfo(site.pool_uuid, site.master_host().uuid, site.ha_enabled))

    def hosts(self):
        return self._call("host-list", (), lambda: [HostInfo(h.uuid, h.name, h.address, h.enabled)
                                                     for h in self.site.hosts.values()])

    def vms(self, running_only=True):
        def run():
            return [VmInfo(vm.uuid, vm.name, vm.power, self.site.hosts[vm.host].uuid, vm.order, 0, vm.tools)
                    for vm in self.site.vms.values() if vm.power == "running" or not running_only]

        return self._call("vm-list", (), run)

    def power_states(self):
        return self._call("vm-power-states", (), lambda: {vm.uuid: vm.power for vm in self.site.vms.values()})

    def ha_statefile_srs(self, pool_uuid):
        vdi = self._call("pool-param-get", (pool_uuid,), lambda: self.site.ha_vdi if self.site.ha_enabled else "")
        if not vdi:
            return []
        return [self._call("vdi-param-get", (vdi,), lambda: self.site.ha_sr)]

    # -- changes ------------------------------------------------------------------------------

    def disable_ha(self):
        def run():
            self.site.ha_enabled = False

        self._call("pool-ha-disable", (), run)

    def enable_ha(self, srs):
        def run():
            self.site.ha_enabled = True

        self._call("pool-ha-enable", tuple(srs), run)

    def disable_host(self, host_uuid):
        def run():
            self.site.host_by_uuid(host_uuid).enabled = False

        self._call("host-disable", (self.site.host_by_uuid(host_uuid).name,), run)

    def enable_host(self, host_uuid):
        def run():
            self.site.host_by_uuid(host_uuid).enabled = True

        self._call("host-enable", (self.site.host_by_uuid(host_uuid).name,), run)

    def shutdown_host(self, host_uuid):
        host = self.site.host_by_uuid(host_uuid)

        def run():
            if host.enabled:
                raise HypervisorError(f"{self.name}: host-shutdown failed: {host.name} is not disabled",
                                      Kind.NOT_DISABLED, "the host is not disabled")
            host.shutdown_calls.append(self.site.clock.now())
            if host.off_at is None:
                host.off_at = self.site.clock.now() + self.site.off_after_s

        try:
            self._call("host-shutdown", (host.name,), run)
        except (ConnectionLost, RemoteTimeout):
            return "sent, session dropped"  # as the port says: the host may be going down under the call
        return "sent"

    def reset_powerstate(self, vm_uuid):
        def run():
            vm = self.site.vms[vm_uuid]
            vm.power, vm.halt_at = "halted", None

        self._call("vm-reset-powerstate", (self.site.vms[vm_uuid].name,), run)

    def warm_up(self):
        self.site.warmed.append(self.name)

    def shutdown_vms(self, uuids, force=False):
        """Starts the shutdowns of ``uuids``; returns a FakeBatch. One position for the whole batch."""
        site = self.site
        uuids = list(uuids)
        call = "vm-shutdown --force" if force else "vm-shutdown"
        names = tuple(site.vms[u].name for u in uuids)

        def run():
            now = site.clock.now()
            pending = {}
            for vm_uuid in uuids:
                vm = site.vms[vm_uuid]
                if vm.power != "running":
                    pending[vm_uuid] = (now, refused(vm_uuid, Kind.ALREADY, "already halted", "halted"))
                elif force:
                    if vm.force_fails:
                        pending[vm_uuid] = (now + 1.0, refused(vm_uuid, Kind.FAILED, "the forced shutdown timed out"))
                    else:
                        vm.halt_at = min(vm.halt_at or now + 0.5, now + 0.5)
                        pending[vm_uuid] = (now + 0.5, Outcome(vm_uuid, Kind.DONE))
                elif not vm.tools:
                    pending[vm_uuid] = (now, refused(vm_uuid, Kind.NO_TOOLS, "no guest tools"))
                elif vm.clean_s is None:
                    pending[vm_uuid] = (None, None)  # the guest ignores it: the call never returns
                else:
                    vm.halt_at = now + vm.clean_s if vm.halt_at is None else vm.halt_at
                    pending[vm_uuid] = (vm.halt_at, Outcome(vm_uuid, Kind.DONE))
            return pending

        try:
            pending = self._call(call, names, run)
        except InjectedRefusal as err:
            # a refusal inside the batch: every call of it reports the failure
            now = site.clock.now()
            return FakeBatch(site, {u: (now, Outcome(u, Kind.FAILED, message=err.reason, unexpected=True))
                                    for u in uuids})
        except ConnectionLost:
            return FakeBatch(site, {u: (None, None) for u in uuids}, lost=True)
        except BadUuid:
            return FakeBatch(site, {u: (None, None) for u in uuids}, garbage=True)
        return FakeBatch(site, pending)

    def suspend_vms(self, uuids):
        return self._others([(u, "vm-suspend") for u in uuids])

    def start_vms(self, uuids, resume=()):
        resume = set(resume)
        return self._others([(u, "vm-resume" if u in resume else "vm-start") for u in uuids])

    def _others(self, calls):
        """Suspends, starts and resumes (a batch may mix the last two) as a pool answers them: each
        needs its power state, else the VM's state is the answer."""
        site = self.site
        call = " + ".join(sorted({what for _, what in calls}))
        names = tuple(site.vms[u].name for u, _ in calls)

        def run():
            now = site.clock.now()
            pending = {}
            for vm_uuid, what in calls:
                wanted = {"vm-suspend": "running", "vm-start": "halted", "vm-resume": "suspended"}[what]
                vm = site.vms[vm_uuid]
                if vm.power != wanted:
                    kind = Kind.SUSPENDED if vm.power == "suspended" else Kind.ALREADY
                    pending[vm_uuid] = (now, refused(vm_uuid, kind, f"the VM is {vm.power}, not {wanted}", vm.power))
                elif what == "vm-suspend" and vm.suspend_error:
                    pending[vm_uuid] = (now + 0.5, refused(vm_uuid, Kind.FAILED, vm.suspend_error))
                elif what == "vm-suspend" and vm.suspend_s is None:
                    pending[vm_uuid] = (None, None)  # the suspend never completes
                elif what == "vm-suspend":
                    vm.suspend_at = now + vm.suspend_s
                    pending[vm_uuid] = (vm.suspend_at, Outcome(vm_uuid, Kind.DONE))
                else:
                    vm.starts.append((now, what))
                    vm.run_at = now + vm.start_s
                    pending[vm_uuid] = (vm.run_at, Outcome(vm_uuid, Kind.DONE))
            return pending

        return FakeBatch(site, self._call(call, names, run))


# -- running a flow the way the commands do -------------------------------------------------

def accepted(s, call):
    """Returns {target: first virtual time ``call`` was accepted for it}."""
    out = {}
    for t, _, c, args, result in s.log_calls:
        if c == call and result == "ok":
            out.setdefault(args[0], t)
    return out


def run_outage(site, confirm=True, escalated=lambda: False, events=None, flow_class=None):
    """Runs the outage flow against ``site`` and mails its report as the commands do;
    returns (flow, report, mailer, exit code)."""
    from hgs.commands._flow import mail_report
    from hgs.flows.outage import OutageFlow
    from hgs.flows.report import Report

    deps = site.deps(escalated=escalated, events=events)
    report = Report("outage", "run-1")
    flow = (flow_class or OutageFlow)(deps, report)
    flow.run(confirm=confirm)
    mailer = RecordingMailer()
    ctx = SimpleNamespace(settings=site.settings, args=SimpleNamespace(command="onbattery", dry_run=False),
                          config_path="config.py", notifier=None)
    mail_report(ctx, report, mailer, SimpleNamespace(logger=deps.log, text=site.log.text, run_id="run-1"))
    return flow, report, mailer, 1 if report.failed else 0  # as report.exit_code()


def run_restore(site):
    """Runs the restore flow against the same ``site`` (after an outage run), power back;
    returns (flow, report)."""
    from hgs.flows.report import Report
    from hgs.flows.restore import RestoreFlow

    site.ups_script = site.ups_script + [(site.clock.now(), "ONLINE")]
    deps = site.deps(waker=FakeWaker(site))
    flow = RestoreFlow(deps, Report("restore", "run-2"))
    flow.run(confirm=False)
    return flow, flow.report


def rng(seed):
    return random.Random(seed)


__all__ = ["Site", "ManualClock", "Faults", "run_outage", "KINDS_FOR", "XE_KINDS", "rng"]

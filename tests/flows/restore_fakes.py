"""Hand-written fakes for the restore flow: a manual clock and a simulated pool of hosts that
boot when woken (WOL), whose hypervisor answers BOOTING for a while, and whose VMs
start when asked. Pure logic, no sockets: each restore runs in milliseconds.

A ``Site`` counts every step the flow takes (a hypervisor call, a Wake-on-LAN packet, a
sleep) and can have a fault injected at step N or at clock time T (``inject``)."""

import copy
import logging
from types import SimpleNamespace

from hgs.config import TIMING_FIELDS, HostSettings, Timings, VmPolicy
from hgs.errors import HypervisorError, RemoteError, RemoteInterrupted
from hgs.flows.outage import Deps
from hgs.flows.ports import HostInfo, Kind, Outcome
from hgs.flows.report import Report
from hgs.ups.status import UpsState, UpsStatus

POOL = "11111111-0000-0000-0000-000000000000"
SR = "22222222-0000-0000-0000-000000000000"
HOST_UUIDS = {"master": "aaaaaaaa-0000-0000-0000-000000000001", "member1": "aaaaaaaa-0000-0000-0000-000000000002",
              "member2": "aaaaaaaa-0000-0000-0000-000000000003"}
CALL_S = 0.05  # what one hypervisor call costs on the manual clock


class ManualClock:
    def __init__(self, site):
        self.t = 0.0
        self.site = site

    def now(self):
        return self.t

    def wall(self):
        return 1_700_000_000.0 + self.t

    def sleep(self, seconds):
        if seconds > 0:
            self.site.step("sleep")
            self.t += seconds

    def spend(self, seconds):
        """Time passing inside a call (not a step of its own)."""
        self.t += seconds


class Site:
    """Three hosts of one pool (master first), all off, and the VMs of the snapshot, halted."""

    def __init__(self, boot_s=None, xapi_s=None, vms=None, hang=None):
        self.clock = ManualClock(self)
        self.boot_s = boot_s or {"master": 120.0, "member1": 150.0, "member2": 100.0}
        self.xapi_s = xapi_s or {"master": 60.0, "member1": 40.0, "member2": 50.0}
        self.vms = vms or [("db", 1, 30, "master", 20.0), ("app1", 2, 0, "member1", 15.0),
                           ("app2", 2, 0, "member2", 15.0), ("web", 3, 0, "master", 10.0)]
        self.hang = hang or {}  # (host, call) -> seconds the first such call hangs (cut by interrupt)
        self.woken_at = {}  # host -> clock time of its first magic packet
        self.enabled = {name: False for name in HOST_UUIDS}
        self.power = {self._vm_uuid(i): "halted" for i in range(len(self.vms))}
        self.log = []  # (clock time, what): every step
        self.calls = []  # (clock time, host, call)
        self.wols = []  # (clock time, host)
        self.ha = []  # the SR lists pool-ha-enable was sent with
        self.sequence = []  # ("wol" | "probe", host), in the order they happened
        self.already_up = set()
        self.xapi_answered = {}  # host -> clock time its xapi first answered  # hosts running before the restore (no boot needed)
        self.steps = 0
        self.inject_step = None
        self.inject_time = None
        self.fault = None  # () -> None: what happens at the injection
        self.injected_at = None
        self.escalated = False
        self.onbattery_at = None
        self.ups_state = UpsState.ON_LINE

    # -- time and faults -------------------------------------------------------------

    @staticmethod
    def _vm_uuid(index):
        return f"bbbbbbbb-0000-0000-0000-{index:012d}"

    def inject(self, kind, step=None, at=None):
        """Injects ``kind`` ('ups', 'event', 'doshutdown') at step ``step`` or clock time ``at``."""
        self.inject_step, self.inject_time = step, at
        self.fault = {"ups": self._on_battery, "event": self._onbattery_event,
                      "doshutdown": self._doshutdown}[kind]

    def _on_battery(self):
        self.ups_state = UpsState.ON_BATTERY

    def _onbattery_event(self):
        self.onbattery_at = self.clock.wall()

    def _doshutdown(self):
        self.escalated = True

    def step(self, what):
        self.steps += 1
        self.log.append((self.clock.t, what))
        if self.injected_at is None and self.fault is not None and (
                self.steps == self.inject_step or (self.inject_time is not None and self.clock.t >= self.inject_time)):
            self.injected_at = self.clock.t
            self.fault()

    # -- the hosts -------------------------------------------------------------------

    def up(self, name):
        if name in self.already_up:
            return True
        return name in self.woken_at and self.clock.t >= self.woken_at[name] + self.boot_s[name]

    def xapi_ready(self, name):
        if name in self.already_up:
            return True
        return self.up(name) and self.clock.t >= self.woken_at[name] + self.boot_s[name] + self.xapi_s[name]

    # -- the dependencies the flow gets --------------------------------------------------

    def read_ups(self):
        return UpsStatus(self.ups_state, 100.0, 1800, "ONLINE" if self.ups_state is UpsState.ON_LINE else "ONBATT",
                         "apcupsd", "127.0.0.1:3551")

    def last_event(self, kind, since):
        if kind == "onbattery" and self.onbattery_at is not None and self.onbattery_at >= since:
            return self.onbattery_at
        return None

    def settings(self, **timings):
        values = {name: field.default for name, field in TIMING_FIELDS.items()}
        values.update(timings)
        hosts = tuple(HostSettings(name=n, address=f"127.0.0.{i + 2}", ssh_port=22, ssh_user="root",
                                   ssh_key_file="/k", ssh_key_passphrase=None, known_hosts_file="/kh",
                                   mac=f"02:00:00:00:00:0{i + 1}", wol_broadcast="127.0.0.1")
                      for i, n in enumerate(HOST_UUIDS))
        return SimpleNamespace(timings=Timings(**values), hosts=hosts, vms=VmPolicy(),
                               ups=SimpleNamespace(poll_interval_s=2.0, restore_min_charge_pct=0.0))

    def snapshot(self, ha_srs=(SR,)):
        hosts = {u: {"name": n, "config": n, "pool": POOL, "master": n == "master", "address": ""}
                 for n, u in HOST_UUIDS.items()}
        vms = {self._vm_uuid(i): {"uuid": self._vm_uuid(i), "name": name, "pool": POOL, "host": HOST_UUIDS[host],
                                  "order": order, "start_delay": delay, "tools": True}
               for i, (name, order, delay, host, _) in enumerate(self.vms)}
        pools = {POOL: {"master": HOST_UUIDS["master"], "ha_was_enabled": True, "ha_srs": list(ha_srs),
                        "executor": "master"}}
        return {"taken": "2026-12-05T08:00:00+0000", "run_id": "r1", "pools": pools, "hosts": hosts, "vms": vms}

    def deps(self, state, **timings):
        log = logging.getLogger("hgs.test.restore")
        hypervisors = {n: FakeHypervisor(self, n) for n in HOST_UUIDS}
        return Deps(self.settings(**timings), self.read_ups, hypervisors, FakeProber(self), self.clock,
                    FakeStateFile(state), log, lambda: self.escalated, FakeWaker(self), self.last_event)


class FakeStateFile:
    def __init__(self, data):
        self.data = copy.deepcopy(data)

    def load(self):
        return copy.deepcopy(self.data)

    def save(self, data):
        self.data = copy.deepcopy(data)
        return data


class FakeWaker:
    def __init__(self, site):
        self.site = site

    def wake(self, host):
        self.site.step(f"wol {host.name}")
        self.site.wols.append((self.site.clock.t, host.name))
        self.site.sequence.append(("wol", host.name))
        self.site.woken_at.setdefault(host.name, self.site.clock.t)


class FakeProber:
    def __init__(self, site):
        self.site = site
        self.probes = []  # (clock time, host)

    def is_up(self, host):
        self.probes.append((self.site.clock.t, host.name))
        self.site.sequence.append(("probe", host.name))
        return self.site.up(host.name)

    def is_down(self, host):
        return not self.is_up(host)


class FakeBatch:
    def __init__(self, site, done_at):
        self.site = site
        self.done_at = done_at  # vm uuid -> clock time its vm-start returns
        self.pending = set(done_at)
        self.lost = False

    def poll(self):
        out = []
        for vm_uuid in sorted(self.pending):
            if self.site.clock.t >= self.done_at[vm_uuid]:
                self.pending.discard(vm_uuid)
                self.site.power[vm_uuid] = "running"
                out.append(Outcome(vm_uuid, Kind.DONE))
        return out

    def wait(self, timeout_s):
        pass  # the restore polls its starts on its own clock

    def close(self):
        pass


class FakeHypervisor:
    """One fake host's view of its pool, on the hypervisor port (the calls the restore makes).
    ``interrupt`` works as on a real Connection: a hung call ends with RemoteInterrupted as soon
    as it returns a reason."""

    def __init__(self, site, name):
        self.site = site
        self.name = name
        self.interrupt = None

    def _call(self, what):
        site = self.site
        site.step(f"{self.name}: {what}")
        site.calls.append((site.clock.t, self.name, what))
        hang = site.hang.pop((self.name, what), 0.0)
        end = site.clock.t + hang
        while site.clock.t < end:
            if self.interrupt is not None and self.interrupt():
                raise RemoteInterrupted(f"{self.name}: waiting for a command was cut short")
            site.clock.spend(0.05)
        site.clock.spend(CALL_S)
        if not site.up(self.name):
            raise RemoteError(f"{self.name}: cannot connect (No route to host)")
        if not site.xapi_ready(self.name) or not site.xapi_ready("master"):
            raise HypervisorError(f"{self.name}: {what} failed: the management API is still starting",
                                  Kind.BOOTING, "still starting")

    def hosts(self):
        self._call("host-list")
        self.site.xapi_answered.setdefault(self.name, self.site.clock.t)
        return [HostInfo(u, n, "", self.site.enabled[n]) for n, u in HOST_UUIDS.items()]

    def enable_host(self, host_uuid):
        self._call("host-enable")
        self.site.enabled[next(n for n, u in HOST_UUIDS.items() if u == host_uuid)] = True

    def power_states(self):
        self._call("vm-list")
        return dict(self.site.power)

    def warm_up(self):
        pass  # the restore starts its batches cold

    def start_vms(self, uuids, resume=()):
        self._call("vm-start batch")
        starts = {name: start_s for name, _, _, _, start_s in self.site.vms}
        names = {Site._vm_uuid(i): vm[0] for i, vm in enumerate(self.site.vms)}
        return FakeBatch(self.site, {u: self.site.clock.t + starts[names[u]] for u in uuids})

    def enable_ha(self, srs):
        self._call("pool-ha-enable")
        self.site.ha.append(list(srs))


def site_down_state(snapshot):
    return {"version": 1, "phase": "site_down", "snapshot": snapshot, "updated": None}


def run_restore(site, snapshot=None, confirm=False, wire_interrupt=True, **timings):
    """Runs a RestoreFlow against ``site``; returns (flow, report, state file)."""
    from hgs.flows.restore import RestoreFlow

    state = site_down_state(snapshot or site.snapshot())
    deps = site.deps(state, **timings)
    flow = RestoreFlow(deps, Report("restore", "test"))
    if wire_interrupt:
        for hv in deps.hypervisors.values():
            hv.interrupt = getattr(flow, "stop_reason", None)  # as offbattery wires the SSH connections
    flow.run(confirm=confirm)
    return flow, flow.report, deps.state_file

"""The proof that a new backend needs no edit to a flow: a toy hypervisor written here, from
scratch, on the port alone (hgs.flows.ports), runs the outage and the restore end to end.

The toy is libvirt-like: each box is a host of its own (a "pool" of one, no HA) that knows only
its own guests, keeps them in a dict, and speaks hgs's words only: a guest without an ACPI agent
answers a clean shutdown with NO_TOOLS, a box that just powered on answers BOOTING for a while,
a box that is off does not answer at all. Nothing in it is xe, and it does not subclass the
other fakes; only the manual clock and the recording log are shared with them.
"""

import textwrap
import uuid as uuidmod

from flowfakes import ManualClock, RecordingLog
from hgs import config as configmod
from hgs.box.state import StateFile
from hgs.errors import HypervisorError, RemoteError
from hgs.flows.outage import Deps, OutageFlow
from hgs.flows.ports import (HALTED, RUNNING, Batch, HostInfo, Hypervisor, Kind, Outcome, PoolInfo, VmInfo)
from hgs.flows.report import Report
from hgs.flows.restore import RestoreFlow
from hgs.hypervisors.rehearsal import DryRunHypervisor
from hgs.net.probe import DryRunProber
from hgs.ups import UpsState, UpsStatus


def ident(text):
    return str(uuidmod.uuid5(uuidmod.NAMESPACE_DNS, f"toy/{text}"))


class Box:
    """One toy machine: on or off, its guests {name: {...}}, the virtual times things finish."""

    def __init__(self, name, address, guests, clock, off_after_s=3.0, boot_s=40.0, api_s=15.0):
        self.name, self.address, self.clock = name, address, clock
        self.uuid = ident(name)
        self.on, self.enabled = True, True
        self.off_at = self.on_at = self.api_at = None
        self.off_after_s, self.boot_s, self.api_s = off_after_s, boot_s, api_s
        self.guests = {ident(g): {"name": g, "state": RUNNING, "acpi": acpi, "order": order, "at": None, "to": None}
                       for g, acpi, order in guests}
        self.calls = []  # (virtual time, verb)

    def tick(self):
        now = self.clock.now()
        for guest in self.guests.values():
            if guest["at"] is not None and now >= guest["at"]:
                guest["state"], guest["at"], guest["to"] = guest["to"], None, None
        if self.on and self.off_at is not None and now >= self.off_at:
            self.on, self.off_at = False, None
            for guest in self.guests.values():
                guest["state"], guest["at"] = HALTED, None
        if not self.on and self.on_at is not None and now >= self.on_at:
            self.on, self.on_at, self.api_at = True, None, now + self.api_s


class ToyBatch:
    """Guests changing state; each outcome arrives when its guest got there."""

    def __init__(self, box, outcomes):
        self.box = box
        self.waiting = dict(outcomes)  # uuid -> (time, Outcome)
        self.pending = set(outcomes)

    def poll(self):
        self.box.tick()
        now = self.box.clock.now()
        out = [o for u, (t, o) in sorted(self.waiting.items()) if t <= now]
        for outcome in out:
            del self.waiting[outcome.uuid]
            self.pending.discard(outcome.uuid)
        return out

    def wait(self, timeout_s):
        self.box.clock.sleep(timeout_s)  # the simplest a backend can do: look again later

    @property
    def lost(self):
        return False

    def close(self):
        pass


class ToyHypervisor:
    """The port, implemented for one Box."""

    def __init__(self, box):
        self.box = box

    @property
    def name(self):
        return self.box.name

    def _reach(self, verb):
        box = self.box
        box.tick()
        box.calls.append((box.clock.now(), verb))
        if not box.on:
            raise RemoteError(f"{box.name}: no answer (the box is off)")
        if box.api_at is not None and box.clock.now() < box.api_at:
            raise HypervisorError(f"{box.name}: {verb}: the management daemon is starting", Kind.BOOTING,
                                  "daemon starting")
        box.clock.advance(0.1)

    # -- reads
    def pool(self):
        self._reach("pool")
        return PoolInfo(self.box.uuid, self.box.uuid, False)

    def hosts(self):
        self._reach("hosts")
        return [HostInfo(self.box.uuid, self.box.name, self.box.address, self.box.enabled)]

    def vms(self, running_only=True):
        self._reach("vms")
        return [VmInfo(u, g["name"], g["state"], self.box.uuid, g["order"], 0, True)
                for u, g in self.box.guests.items() if g["state"] == RUNNING or not running_only]

    def power_states(self):
        self._reach("power_states")
        return {u: g["state"] for u, g in self.box.guests.items()}

    def ha_statefile_srs(self, pool_uuid):
        self._reach("ha_statefile_srs")
        return []

    # -- changes
    def disable_ha(self):
        raise HypervisorError(f"{self.box.name}: there is no HA here", Kind.FAILED)

    def enable_ha(self, srs):
        raise HypervisorError(f"{self.box.name}: there is no HA here", Kind.FAILED)

    def disable_host(self, host_uuid):
        self._reach("disable_host")
        self.box.enabled = False

    def enable_host(self, host_uuid):
        self._reach("enable_host")
        self.box.enabled = True

    def shutdown_host(self, host_uuid):
        self._reach("shutdown_host")
        self.box.off_at = self.box.clock.now() + self.box.off_after_s
        return "sent"

    def reset_powerstate(self, vm_uuid):
        self._reach("reset_powerstate")
        self.box.guests[vm_uuid].update(state=HALTED, at=None, to=None)

    def _change(self, verb, uuids, wanted, takes_s, refuse=lambda guest: None):
        self._reach(verb)
        now, outcomes = self.box.clock.now(), {}
        for vm_uuid in uuids:
            guest = self.box.guests.get(vm_uuid)
            if guest is None:
                outcomes[vm_uuid] = (now, Outcome(vm_uuid, Kind.GONE, message="no such guest"))
            elif guest["state"] == wanted:
                outcomes[vm_uuid] = (now, Outcome(vm_uuid, Kind.ALREADY, wanted, f"already {wanted}"))
            elif refuse(guest) is not None:
                outcomes[vm_uuid] = (now, refuse(guest))
            else:
                guest.update(at=now + takes_s, to=wanted)
                outcomes[vm_uuid] = (now + takes_s, Outcome(vm_uuid, Kind.DONE))
        return ToyBatch(self.box, outcomes)

    def shutdown_vms(self, uuids, force=False):
        def no_agent(guest):  # a clean shutdown needs the guest's ACPI agent
            if not force and not guest["acpi"]:
                return Outcome(next(u for u, g in self.box.guests.items() if g is guest), Kind.NO_TOOLS,
                               message="no ACPI agent in the guest")
            return None

        return self._change("shutdown_vms --force" if force else "shutdown_vms", uuids, HALTED,
                            0.5 if force else 2.0, no_agent)

    def suspend_vms(self, uuids):
        return self._change("suspend_vms", uuids, "suspended", 2.0)

    def start_vms(self, uuids, resume=()):
        return self._change("start_vms", uuids, RUNNING, 5.0)


class ToyProber:
    def __init__(self, boxes):
        self.boxes = boxes

    def is_down(self, target):
        box = self.boxes[target.name]
        box.tick()
        return not box.on

    def is_up(self, target):
        return not self.is_down(target)


class ToyWaker:
    def __init__(self, boxes):
        self.boxes, self.sent = boxes, []

    def wake(self, host):
        box = self.boxes[host.name]
        self.sent.append(host.name)
        if not box.on and box.on_at is None:
            box.on_at = box.clock.now() + box.boot_s


class ToySite:
    def __init__(self, tmp_path):
        self.clock = ManualClock()
        self.boxes = {
            "nas": Box("nas", "127.0.0.1", [("files", True, 1), ("backup", False, 0)], self.clock),
            "lab": Box("lab", "127.0.0.2", [("ci", True, 0), ("build", True, 0), ("docs", False, 1)], self.clock),
        }
        self.ups = UpsState.ON_BATTERY
        tmp_path.mkdir(parents=True, exist_ok=True)
        hosts = ", ".join(f"{{'name': {b.name!r}, 'address': {b.address!r}}}" for b in self.boxes.values())
        (tmp_path / "config.py").write_text(textwrap.dedent(f"""\
            UPS = {{'daemon': 'apcupsd', 'address': '127.0.0.1:3551', 'poll_interval_s': 1}}
            HOSTS = [{hosts}]
            TIMINGS = {{'confirm_outage_s': 5, 'vm_shutdown_timeout_s': 20, 'vm_force_timeout_s': 10,
                        'host_shutdown_timeout_s': 30, 'host_down_confirm_s': 3, 'unreachable_retry_s': 10}}
            PATHS = {{'state_dir': 'state', 'log_file': 'log/hgs.log', 'lock_dir': 'lock'}}
            LOGGING = {{'syslog': False}}
            """))
        self.settings = configmod.load(tmp_path / "config.py", check_owner=False)
        self.state_file = StateFile(tmp_path / "state")
        self.waker = ToyWaker(self.boxes)

    def read_ups(self):
        return UpsStatus(self.ups, 60.0, 1200, self.ups.value, "apcupsd", "127.0.0.1:3551")

    def deps(self, rehearse=False):
        self.log = RecordingLog()
        hypervisors = {name: ToyHypervisor(box) for name, box in self.boxes.items()}
        if rehearse:
            hypervisors = {name: DryRunHypervisor(hv, self.log.logger, {}) for name, hv in hypervisors.items()}
        prober = DryRunProber(set(), ToyProber(self.boxes)) if rehearse else ToyProber(self.boxes)
        return Deps(self.settings, self.read_ups, hypervisors, prober, self.clock, self.state_file,
                    self.log.logger, waker=self.waker)

    def guests(self):
        for box in self.boxes.values():
            box.tick()
        return {g["name"]: g["state"] for box in self.boxes.values() for g in box.guests.values()}


def test_the_toy_implements_the_port():
    box = Box("x", "127.0.0.1", [("g", True, 0)], ManualClock())
    assert isinstance(ToyHypervisor(box), Hypervisor)
    assert isinstance(ToyHypervisor(box).shutdown_vms([ident("g")]), Batch)
    assert not isinstance(object(), Hypervisor)


def test_outage_then_restore_on_a_second_backend_with_no_edit_to_a_flow(tmp_path):
    site = ToySite(tmp_path)
    report = OutageFlow(site.deps(), Report("outage", "toy-1")).run(confirm=True)
    assert report.result == "site down", report.summary()
    assert not report.failed and not report.faults
    assert set(site.guests().values()) == {HALTED}
    assert {b.name: b.on for b in site.boxes.values()} == {"nas": False, "lab": False}
    outcomes = {item.name: (item.outcome, item.detail) for item in report.vms}
    assert outcomes["files"][0] == "clean" and outcomes["ci"][0] == "clean"
    # the toy's NO_TOOLS answer (its own words) made the flow force the guest at once
    assert outcomes["backup"] == ("forced", "no guest tools (no ACPI agent in the guest)")
    assert outcomes["docs"][0] == "forced"
    for box in site.boxes.values():  # every guest down before its box was told to go
        calls = [verb for _, verb in box.calls]
        assert calls.index("shutdown_host") > max(i for i, v in enumerate(calls) if v.startswith("shutdown_vms"))
    state = site.state_file.load()
    assert state["phase"] == "site_down" and len(state["snapshot"]["vms"]) == 5

    site.ups = UpsState.ON_LINE
    restore = RestoreFlow(site.deps(), Report("restore", "toy-2"))
    rreport = restore.run(confirm=False)
    assert rreport.result == "site restored", rreport.summary()
    assert set(site.guests().values()) == {RUNNING}
    assert set(site.waker.sent) == {"lab", "nas"}
    assert all(box.enabled for box in site.boxes.values())  # the boxes came back disabled: enabled again
    assert "lab: xapi is still booting (daemon starting): waiting" in site.log.text()  # the toy's BOOTING kind
    lab_calls = [verb for _, verb in site.boxes["lab"].calls]
    assert lab_calls.index("enable_host") < lab_calls.index("start_vms")
    # two order groups: each box got one start per group (order 0, then order 1)
    assert [verb for _, verb in site.boxes["nas"].calls].count("start_vms") == 2
    starts = {item.name: item for item in rreport.vms}
    assert set(starts) == {"files", "backup", "ci", "build", "docs"}
    assert all(item.outcome == "started" for item in starts.values())
    assert site.state_file.load()["phase"] == "idle"


def test_the_rehearsal_twin_wraps_the_second_backend_and_changes_nothing(tmp_path):
    site = ToySite(tmp_path)
    report = OutageFlow(site.deps(rehearse=True), Report("outage", "toy-dry")).run(confirm=False)
    assert not report.failed, report.summary()
    assert set(site.guests().values()) == {RUNNING}  # nothing was touched
    assert all(box.on and box.enabled for box in site.boxes.values())
    changes = [verb for box in site.boxes.values() for _, verb in box.calls
               if verb not in ("pool", "hosts", "vms", "power_states", "ha_statefile_srs")]
    assert changes == []
    text = site.log.text()
    assert "dry run: would shut down VM" in text and "dry run: would shut down host" in text

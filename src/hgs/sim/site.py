"""The simulated XenServer site: a pool of hosts and VMs held in memory, persisted to a JSON file.

One process holds the site (``SiteStore``): the simulator server (hgs.sim.server) that every
simulated `xe` client and the test harness talk to, or a test calling the simulator in
process. Every change is a transaction under one lock; the state is written back to its
file, atomically, when changed (at most every ``persist_interval_s``) and on ``flush()``.
Time is simulated: ``time_scale`` simulated seconds pass per real second, so a 3-minute VM
shutdown can take 3 real seconds. Host power follows the clock: after ``host-shutdown`` a
host goes off after its shutdown time; a Wake-on-LAN packet boots it (OS after ``boot_s``,
then xapi says HOST_STILL_BOOTING for ``xapi_start_s``). VM tasks end at their due time,
kept in a heap, so a transaction costs the same with 5 VMs or 5000.

Scenarios are TOML files (or the same structure as a dict), for example::

    time_scale = 60
    [pool]
    name = "demo"
    ha_enabled = true
    [[hosts]]
    name = "xen1"
    master = true
    mac = "02:00:00:00:00:01"
    [[vms]]
    name = "db1"
    host = "xen1"
    shutdown_s = 40
    tools = true          # false: no PV tools, a clean shutdown fails with VM_LACKS_FEATURE
    quirk = ""            # "ignores_shutdown", "hangs", "force_fails"
"""

import contextlib
import heapq
import itertools
import json
import os
import threading
import time

QUIRKS = ("", "ignores_shutdown", "hangs", "force_fails")
HOST_QUIRKS = ("", "stays_disabled", "ignores_shutdown")
HOST_KEYS = {"name", "address", "master", "mac", "boot_s", "xapi_start_s", "shutdown_s", "power", "enabled",
             "quirk", "ssh_port", "wol_port"}
VM_KEYS = {"name", "host", "power_state", "shutdown_s", "start_s", "force_s", "tools", "quirk", "order",
           "start_delay", "shutdown_delay", "auto_poweron", "uuid"}
HOST_DEFAULTS = {"address": "127.0.0.1", "master": False, "mac": None, "boot_s": 120.0, "xapi_start_s": 60.0,
                 "shutdown_s": 30.0, "power": "on", "enabled": True, "quirk": "", "ssh_port": 22, "wol_port": 9}
VM_DEFAULTS = {"power_state": "running", "shutdown_s": 30.0, "start_s": 20.0, "force_s": 2.0, "tools": True,
               "quirk": "", "order": 0, "start_delay": 0, "shutdown_delay": 0, "auto_poweron": False}
ACK_TIMEOUT_S = 60.0  # xapi gives up on a guest that ignores the request after about a minute
SHUTDOWN_TIMEOUT_S = 1200.0


class ScenarioError(ValueError):
    """The scenario file is not a valid site description; the message names the entry."""


def new_uuid(seed=None):
    import uuid as uuid_module  # here, not at the top: every simulated xe call imports this module

    return str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, seed)) if seed else str(uuid_module.uuid4())


def load_scenario(path):
    """Given a TOML scenario file, returns its dict; raises ScenarioError."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ScenarioError(f"{path}: {err}") from None


def build_state(scenario, epoch=None):
    """Given a scenario dict, returns the site state dict (uuids, defaults, clock)."""
    unknown = set(scenario) - {"time_scale", "pool", "hosts", "vms"}
    if unknown:
        raise ScenarioError(f"unknown scenario keys: {', '.join(sorted(unknown))}")
    pool_in = scenario.get("pool", {})
    name = pool_in.get("name", "pool")
    state = {
        "epoch": time.time() if epoch is None else epoch,
        "time_scale": float(scenario.get("time_scale", 1.0)),
        "pool": {"uuid": new_uuid(f"pool/{name}"), "name": name, "ha_enabled": bool(pool_in.get("ha_enabled", False)),
                 "auto_poweron": bool(pool_in.get("auto_poweron", False)), "master": None,
                 "ha_sr": new_uuid(f"sr/{name}/heartbeat"), "ha_statefile": new_uuid(f"vdi/{name}/statefile")},
        "hosts": {},
        "vms": {},
    }
    if not scenario.get("hosts"):
        raise ScenarioError("a scenario needs at least one host")
    for entry in scenario["hosts"]:
        extra = set(entry) - HOST_KEYS
        if extra or "name" not in entry:
            raise ScenarioError(f"host {entry.get('name', '?')}: unknown keys {sorted(extra)} or no name")
        host = dict(HOST_DEFAULTS, **entry)
        if host["quirk"] not in HOST_QUIRKS:
            raise ScenarioError(f"host {host['name']}: quirk must be one of {HOST_QUIRKS}")
        host.update(uuid=new_uuid(f"host/{name}/{host['name']}"), shutdown_at=None, boot_at=None)
        state["hosts"][host["uuid"]] = host
        if host["master"]:
            state["pool"]["master"] = host["uuid"]
    if state["pool"]["master"] is None:
        first = next(iter(state["hosts"].values()))
        first["master"] = True
        state["pool"]["master"] = first["uuid"]
    by_name = {h["name"]: h["uuid"] for h in state["hosts"].values()}
    for host in state["hosts"].values():  # every host runs a control domain, listed by vm-list
        dom0 = {"uuid": new_uuid(f"dom0/{host['uuid']}"), "name": f"Control domain on host: {host['name']}",
                "resident_on": host["uuid"], "power_state": "running" if host["power"] == "on" else "halted",
                "control_domain": True, "dom0_of": host["uuid"], "busy_until": None}
        state["vms"][dom0["uuid"]] = dict(VM_DEFAULTS, **dom0)
    for entry in scenario.get("vms", []):
        extra = set(entry) - VM_KEYS
        if extra or "name" not in entry:
            raise ScenarioError(f"vm {entry.get('name', '?')}: unknown keys {sorted(extra)} or no name")
        vm = dict(VM_DEFAULTS, **entry)
        if any(q not in QUIRKS for q in vm["quirk"].split(",")):
            raise ScenarioError(f"vm {vm['name']}: quirk must be one or more (comma-separated) of {QUIRKS[1:]}")
        host_name = vm.pop("host", None) or next(iter(state["hosts"].values()))["name"]
        if host_name not in by_name:
            raise ScenarioError(f"vm {vm['name']}: no host called {host_name!r}")
        vm.setdefault("uuid", new_uuid(f"vm/{name}/{vm['name']}"))
        vm.update(resident_on=by_name[host_name] if vm["power_state"] == "running" else None,
                  affinity=by_name[host_name], control_domain=False, busy_until=None)
        state["vms"][vm["uuid"]] = vm
    return state


class SiteStore:
    """The site state of ``path``, held in memory by this process and persisted to ``path``.

    ``transaction()`` yields the state brought up to now under the site lock. A VM whose
    power state a transaction changed wakes the events ``watch`` registered for it, so a
    blocked `xe vm-shutdown` learns at once that a force or a power cut ended its VM.
    """

    def __init__(self, path, state, persist_interval_s=0.0):
        self.path = str(path)
        self.calls_path = self.path + ".calls"
        self.persist_interval_s = persist_interval_s
        self.state = state
        self._lock = threading.Lock()
        self._calls_lock = threading.Lock()
        self._calls_fd = None
        self._due = []  # heap of (simulated time, sequence, vm uuid): when a VM's task may end
        self._sequence = itertools.count()
        self._watchers = {}  # vm uuid -> set of threading.Event
        self._dirty = False
        self._touched = None
        self._written_at = 0.0
        self.due_changed = threading.Event()  # set when an earlier due time was added (a ticker waits on it)
        self._rebuild_due()

    @classmethod
    def create(cls, path, scenario, epoch=None, persist_interval_s=0.0):
        """Writes a new site from a scenario dict (or TOML path); returns the store holding it."""
        if isinstance(scenario, (str, os.PathLike)):
            scenario = load_scenario(scenario)
        store = cls(path, build_state(scenario, epoch), persist_interval_s)
        store.flush()
        open(store.calls_path, "w").close()
        return store

    @classmethod
    def load(cls, path, persist_interval_s=0.0):
        """Returns a store holding the site last written to ``path``; raises OSError, ValueError."""
        with open(path) as handle:
            return cls(path, json.load(handle), persist_interval_s)

    # -- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, changes=True):
        """Yields the state under the site lock, brought up to now; persists and notifies after.
        ``changes=False``: a read (the state is written only if bringing it up to now changed it)."""
        with self._lock:
            touched = self._touched = self._advance()
            try:
                yield self.state
            finally:
                self._touched = None
                if changes or touched:
                    self._dirty = True
                    self._notify(touched)
                    self._maybe_write()

    def touch(self, vm_uuid):
        """Within a transaction: the power state of ``vm_uuid`` changed (its watchers wake)."""
        if self._touched is not None:
            self._touched.add(vm_uuid)

    def replace(self, state):
        """Replaces the whole state (a remote transaction's result); every watcher wakes."""
        with self._lock:
            self.state = state
            self._rebuild_due()
            self._dirty = True
            self._notify(set(self._watchers))
            self._maybe_write()

    def due(self, sim_time, vm_uuid):
        """Within a transaction: the task of ``vm_uuid`` may end at ``sim_time`` (simulated seconds)."""
        earliest = not self._due or sim_time < self._due[0][0]
        heapq.heappush(self._due, (sim_time, next(self._sequence), vm_uuid))
        if earliest:
            self.due_changed.set()

    def next_due(self):
        """Returns the simulated time of the next VM task end or host power change, or None."""
        with self._lock:
            times = [self._due[0][0]] if self._due else []
            for host in self.state["hosts"].values():
                if host["shutdown_at"] is not None:
                    times.append(host["shutdown_at"])
                if host["boot_at"] is not None:
                    times += [host["boot_at"] + host["boot_s"], host["boot_at"] + host["boot_s"] + host["xapi_start_s"]]
            later = [t for t in times if t > sim_now(self.state)]
            return min(later) if later else (min(times) if times else None)

    def _rebuild_due(self):
        self._due = [(vm["busy_until"], next(self._sequence), u) for u, vm in self.state["vms"].items()
                     if vm.get("busy") and vm.get("busy_until") is not None]
        heapq.heapify(self._due)
        self.due_changed.set()

    def _advance(self):
        """Brings the site up to now; returns the uuids of the VMs whose power state changed."""
        state, now, touched = self.state, sim_now(self.state), set()
        while self._due and self._due[0][0] <= now:
            _, _, vm_uuid = heapq.heappop(self._due)
            vm = state["vms"].get(vm_uuid)
            if vm is not None and _finish_task(vm, now):
                touched.add(vm_uuid)
        _advance_hosts(state, now, touched)
        return touched

    # -- watching VMs ----------------------------------------------------------------------

    @contextlib.contextmanager
    def watch(self, vm_uuid, event):
        """Sets ``event`` whenever the power state of ``vm_uuid`` changes, inside the block."""
        with self._lock:
            self._watchers.setdefault(vm_uuid, set()).add(event)
        try:
            yield
        finally:
            with self._lock:
                events = self._watchers.get(vm_uuid)
                events.discard(event)
                if not events:
                    del self._watchers[vm_uuid]

    def power_state(self, vm_uuid):
        vm = self.state["vms"].get(vm_uuid)
        return vm["power_state"] if vm else None

    def _notify(self, touched):
        for vm_uuid in touched:
            for event in self._watchers.get(vm_uuid, ()):
                event.set()

    # -- persistence -------------------------------------------------------------------------

    def _maybe_write(self):
        if time.monotonic() - self._written_at >= self.persist_interval_s:
            self._write()

    def _write(self):
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            handle.write(json.dumps(self.state))  # dumps: the C encoder (json.dump iterates in Python)
        os.replace(tmp, self.path)
        self._dirty, self._written_at = False, time.monotonic()

    def flush(self):
        """Writes the state to its file now if it changed since the last write."""
        with self._lock:
            if self._dirty or not os.path.exists(self.path):
                self._write()

    def read(self):
        """Returns a copy of the state as of now (advancing it, so host power is current)."""
        with self.transaction(changes=False) as state:
            return json.loads(json.dumps(state))

    def read_hosts(self):
        """Returns a copy of the state without its VMs (cheap with thousands of VMs)."""
        with self.transaction(changes=False) as state:
            return json.loads(json.dumps({k: v for k, v in state.items() if k != "vms"}))

    # -- the call log ------------------------------------------------------------------------

    def record_call(self, host_name, argv):
        line = (json.dumps({"t": time.time(), "host": host_name, "argv": list(argv)}) + "\n").encode("utf-8")
        with self._calls_lock:
            if self._calls_fd is None:
                self._calls_fd = os.open(self.calls_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._calls_fd, line)

    def calls(self):
        """Returns every xe call made so far: [{'t', 'host', 'argv'}]."""
        return read_calls(self.calls_path)

    # -- helpers for tests, the demo and the power controller ---------------------------------

    def wake(self, mac):
        """A Wake-on-LAN packet for ``mac`` arrived: boots that host if it is off. Returns its name."""
        with self.transaction() as state:
            for host in state["hosts"].values():
                if host["mac"] and host["mac"].lower() == mac.lower():
                    if host["power"] == "off" and host["boot_at"] is None:
                        host["boot_at"] = sim_now(state)
                        self.due_changed.set()
                    return host["name"]
        return None

    def power_off(self, host_name):
        """Cuts a host's power at once (as a dead PSU or a test would)."""
        with self.transaction() as state:
            host = host_by_name(state, host_name)
            self._touched |= _power_off(state, host)

    def set_vm(self, vm_name, **changes):
        with self.transaction() as state:
            vm = next(v for v in state["vms"].values() if v["name"] == vm_name)
            vm.update(changes)
            self.touch(vm["uuid"])
        self.replace(self.state)  # a task time may have changed: rebuild the due times

    def set_fault(self, command, hang_s):
        """Makes every `xe COMMAND` hang ``hang_s`` real seconds before it runs (0 clears it)."""
        with self.transaction() as state:
            state.setdefault("faults", {})[command] = hang_s

    def set_pool(self, **changes):
        with self.transaction() as state:
            state["pool"].update(changes)

    def close(self):
        """Writes the state and closes the call log."""
        self.flush()
        with self._calls_lock:
            if self._calls_fd is not None:
                os.close(self._calls_fd)
                self._calls_fd = None


def read_calls(calls_path):
    """Returns the xe calls logged in ``calls_path``: [{'t', 'host', 'argv'}]."""
    try:
        with open(calls_path) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def has_quirk(vm, quirk):
    return quirk in vm.get("quirk", "").split(",")


def sim_now(state):
    return (time.time() - state["epoch"]) * state["time_scale"]


def real_seconds(state, sim_seconds):
    return max(0.0, sim_seconds) / state["time_scale"]


def host_by_name(state, name):
    for host in state["hosts"].values():
        if host["name"] == name:
            return host
    raise KeyError(name)


def host_phase(state, host, now=None):
    """Returns 'off', 'booting' (no network yet), 'starting' (SSH up, xapi still booting) or 'up'."""
    now = sim_now(state) if now is None else now
    if host["power"] == "off":
        if host["boot_at"] is None:
            return "off"
        if now < host["boot_at"] + host["boot_s"]:
            return "booting"
        return "starting"
    return "up"


def _power_off(state, host):
    """Cuts ``host``'s power; returns the uuids of the VMs that went down with it."""
    host.update(power="off", shutdown_at=None, boot_at=None)
    touched = set()
    for vm in state["vms"].values():
        if vm["control_domain"]:
            if vm["dom0_of"] == host["uuid"]:
                vm["power_state"] = "halted"
                touched.add(vm["uuid"])
        elif vm["resident_on"] == host["uuid"]:
            vm.update(power_state="halted", resident_on=None, busy=None, busy_until=None, busy_fails=False)
            touched.add(vm["uuid"])
    return touched


def _finish_task(vm, now):
    """Ends the VM's task if it is due (in xapi, not in the xe client: a client that goes away
    does not cancel its task); returns True when its power state changed."""
    if not (vm.get("busy") and vm["busy_until"] is not None and now >= vm["busy_until"]):
        return False
    changed = False
    if vm["busy"] in ("clean_shutdown", "hard_shutdown") and not vm.get("busy_fails"):
        if vm["power_state"] == "running":
            vm.update(power_state="halted", resident_on=None)
            changed = True
    elif vm["busy"] == "start" and vm["power_state"] == "halted":
        vm.update(power_state="running", resident_on=vm.get("busy_host"))
        changed = True
    vm.update(busy=None, busy_until=None, busy_fails=False)
    return changed


def _advance_hosts(state, now, touched):
    """Host shutdowns and boots that are due finish; the changed VMs are added to ``touched``."""
    for host in state["hosts"].values():
        if host["power"] == "on" and host["shutdown_at"] is not None and now >= host["shutdown_at"]:
            touched |= _power_off(state, host)
        elif host["power"] == "off" and host["boot_at"] is not None:
            if now >= host["boot_at"] + host["boot_s"] + host["xapi_start_s"]:
                host.update(power="on", boot_at=None, shutdown_at=None,
                            enabled=host["quirk"] != "stays_disabled")
                for vm in state["vms"].values():
                    if vm["control_domain"] and vm["dom0_of"] == host["uuid"]:
                        vm["power_state"] = "running"
                        touched.add(vm["uuid"])
                if state["pool"]["auto_poweron"]:
                    for vm in state["vms"].values():
                        if (vm["auto_poweron"] and not vm["control_domain"] and vm["power_state"] == "halted"
                                and vm.get("affinity") == host["uuid"]):
                            vm.update(power_state="running", resident_on=host["uuid"])
                            touched.add(vm["uuid"])


def advance(state):
    """Brings the site up to the simulated now (every VM looked at); returns the changed VMs' uuids."""
    now, touched = sim_now(state), set()
    for vm in state["vms"].values():
        if _finish_task(vm, now):
            touched.add(vm["uuid"])
    _advance_hosts(state, now, touched)
    return touched

"""The simulated XenServer site: a pool of hosts and VMs whose state lives in one JSON file.

Several `xe` processes (one per SSH channel) change the site at once, so every change is a
transaction under an exclusive file lock, written back atomically. Time is simulated:
``time_scale`` simulated seconds pass per real second, so a 3-minute VM shutdown can take
3 real seconds. Host power follows the clock: after ``host-shutdown`` a host goes off after
its shutdown time; a Wake-on-LAN packet boots it (OS after ``boot_s``, then xapi says
HOST_STILL_BOOTING for ``xapi_start_s``).

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
import fcntl
import json
import os
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
    """The site state in ``path`` (JSON), shared by every process of the simulation."""

    def __init__(self, path):
        self.path = str(path)
        self.lock_path = self.path + ".lock"
        self.calls_path = self.path + ".calls"
        self.markers = self.path + ".vm"  # one small file per VM holding its power state

    @classmethod
    def create(cls, path, scenario, epoch=None):
        """Writes a new site from a scenario dict (or TOML path); returns the store."""
        if isinstance(scenario, (str, os.PathLike)):
            scenario = load_scenario(scenario)
        store = cls(path)
        store._write(build_state(scenario, epoch))
        open(store.calls_path, "w").close()
        return store

    def _write(self, state):
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            json.dump(state, handle)
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def transaction(self):
        """Yields the state under an exclusive lock, brought up to now; writes it back."""
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.path) as handle:
                    state = json.load(handle)
                before = {u: v["power_state"] for u, v in state["vms"].items()}
                advance(state)
                yield state
                self._write(state)
                self._mark({u: v["power_state"] for u, v in state["vms"].items() if before.get(u) != v["power_state"]})
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _mark(self, changed):
        """Writes the power state of each changed VM to its marker (cheap to poll, no lock)."""
        if not changed:
            return
        os.makedirs(self.markers, exist_ok=True)
        for vm_uuid, power in changed.items():
            tmp = os.path.join(self.markers, f".{vm_uuid}.{os.getpid()}")
            with open(tmp, "w") as handle:
                handle.write(power)
            os.replace(tmp, os.path.join(self.markers, vm_uuid))

    def power_mark(self, vm_uuid):
        """Returns the VM's power state as last changed, from its marker (None if never changed)."""
        try:
            with open(os.path.join(self.markers, vm_uuid)) as handle:
                return handle.read()
        except OSError:
            return None

    def read(self):
        """Returns a copy of the state as of now (advancing it, so host power is current)."""
        with self.transaction() as state:
            return json.loads(json.dumps(state))

    def record_call(self, host_name, argv):
        line = json.dumps({"t": time.time(), "host": host_name, "argv": list(argv)}) + "\n"
        fd = os.open(self.calls_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def calls(self):
        """Returns every xe call made so far: [{'t', 'host', 'argv'}]."""
        try:
            with open(self.calls_path) as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except FileNotFoundError:
            return []

    # -- helpers for tests, the demo and the power controller ---------------------------------

    def wake(self, mac):
        """A Wake-on-LAN packet for ``mac`` arrived: boots that host if it is off. Returns its name."""
        with self.transaction() as state:
            for host in state["hosts"].values():
                if host["mac"] and host["mac"].lower() == mac.lower():
                    if host["power"] == "off" and host["boot_at"] is None:
                        host["boot_at"] = sim_now(state)
                    return host["name"]
        return None

    def power_off(self, host_name):
        """Cuts a host's power at once (as a dead PSU or a test would)."""
        with self.transaction() as state:
            host = host_by_name(state, host_name)
            _power_off(state, host)

    def set_vm(self, vm_name, **changes):
        with self.transaction() as state:
            vm = next(v for v in state["vms"].values() if v["name"] == vm_name)
            vm.update(changes)

    def set_fault(self, command, hang_s):
        """Makes every `xe COMMAND` hang ``hang_s`` real seconds before it runs (0 clears it)."""
        with self.transaction() as state:
            state.setdefault("faults", {})[command] = hang_s

    def set_pool(self, **changes):
        with self.transaction() as state:
            state["pool"].update(changes)


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
    host.update(power="off", shutdown_at=None, boot_at=None)
    for vm in state["vms"].values():
        if vm["control_domain"]:
            if vm["dom0_of"] == host["uuid"]:
                vm["power_state"] = "halted"
        elif vm["resident_on"] == host["uuid"]:
            vm.update(power_state="halted", resident_on=None, busy=None, busy_until=None, busy_fails=False)


def advance(state):
    """Brings the site up to the simulated now: VM operations complete (in xapi, not in the xe
    client: a client that goes away does not cancel its task), host shutdowns and boots finish."""
    now = sim_now(state)
    for vm in state["vms"].values():
        if vm.get("busy") and vm["busy_until"] is not None and now >= vm["busy_until"]:
            if vm["busy"] in ("clean_shutdown", "hard_shutdown") and not vm.get("busy_fails"):
                if vm["power_state"] == "running":
                    vm.update(power_state="halted", resident_on=None)
            elif vm["busy"] == "start" and vm["power_state"] == "halted":
                vm.update(power_state="running", resident_on=vm.get("busy_host"))
            vm.update(busy=None, busy_until=None, busy_fails=False)
    for host in state["hosts"].values():
        if host["power"] == "on" and host["shutdown_at"] is not None and now >= host["shutdown_at"]:
            _power_off(state, host)
        elif host["power"] == "off" and host["boot_at"] is not None:
            if now >= host["boot_at"] + host["boot_s"] + host["xapi_start_s"]:
                host.update(power="on", boot_at=None, shutdown_at=None,
                            enabled=host["quirk"] != "stays_disabled")
                for vm in state["vms"].values():
                    if vm["control_domain"] and vm["dom0_of"] == host["uuid"]:
                        vm["power_state"] = "running"
                if state["pool"]["auto_poweron"]:
                    for vm in state["vms"].values():
                        if (vm["auto_poweron"] and not vm["control_domain"] and vm["power_state"] == "halted"
                                and vm.get("affinity") == host["uuid"]):
                            vm.update(power_state="running", resident_on=host["uuid"])

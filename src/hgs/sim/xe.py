"""A simulated `xe` CLI over the simulated site, for what hgs uses.

Output follows the real xe: records as ``key ( RO): value`` lines (the first key padded on
the right, the others on the left, to 4 + the longest key), a blank line after each record;
``--minimal`` prints the first field of each record comma-joined with ``,`` and ``\\``
escaped. Errors print xapi's description text, then one ``param: value`` line per
parameter, on stderr, and exit 1. ``vm-shutdown`` and ``vm-start`` block for the VM's
simulated time. Every call is recorded in the site's call log.

``Xe`` runs in the process that holds the site: the simulator server (hgs.sim.server), which
the small `xe` client on each simulated host's PATH calls, or a test.
"""

import contextlib
import threading
import time
from functools import partial, partialmethod

from hgs.sim import site as sitemod

CHANGING = {"vm-shutdown", "vm-start", "vm-suspend", "vm-resume", "vm-reset-powerstate", "host-disable", "host-enable", "host-shutdown",
            "pool-ha-disable", "pool-ha-enable"}

# xapi's error descriptions (datamodel ~doc strings) and parameter names.
ERRORS = {
    "VM_BAD_POWER_STATE": ("You attempted an operation on a VM that was not in an appropriate power state at the "
                           "time; for example, you attempted to start a VM that was already running.  The parameters "
                           "returned are the VM's handle, and the expected and actual VM state at the time of the call.",
                           ("vm", "expected", "actual")),
    "VM_LACKS_FEATURE": ("You attempted an operation on a VM which lacks the feature.", ("vm",)),
    "VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT": ("VM didn't acknowledge the need to shutdown.", ("vm",)),
    "VM_SHUTDOWN_TIMEOUT": ("VM failed to shutdown before the timeout expired", ("vm", "timeout")),
    "HOST_NOT_DISABLED": ("This operation cannot be performed because the host is not disabled. Please disable the "
                          "host and then try again.", ()),
    "HOST_STILL_BOOTING": ("The host toolstack is still initialising. Please wait.", ()),
    "CANNOT_CONTACT_HOST": ("Cannot forward messages because the host cannot be contacted.  The host may be switched "
                            "off or there may be network connectivity problems.", ("host",)),
    "HOST_OFFLINE": ("You attempted an operation which involves a host which could not be contacted.", ("host",)),
    "HOST_DISABLED": ("The specified host is disabled.", ("host",)),
    "NO_HOSTS_AVAILABLE": ("There were no hosts available to complete the specified operation.", ()),
    "UUID_INVALID": ("The uuid you supplied was invalid.", ("type", "uuid")),
    "OTHER_OPERATION_IN_PROGRESS": ("Another operation involving the object is currently in progress", ("class", "object")),
    "INTERNAL_ERROR": ("The server failed to handle your request, due to an internal error.  The given message may "
                       "give details useful for debugging the problem.", ("message",)),
    "OPERATION_NOT_ALLOWED": ("You attempted an operation that was not allowed.", ("reason",)),
    # vm-suspend's failures. xen-api ocaml/xapi/xapi_vm_helpers.ml choose_suspend_sr: no VM, pool or
    # host suspend SR -> VM_NO_SUSPEND_SR; ocaml/xapi/xapi_vm_lifecycle.ml check_op_for_feature: a guest
    # without the suspend feature -> VM_LACKS_FEATURE_SUSPEND; a full SR: the storage manager's
    # SR_BACKEND_FAILURE_44 (insufficient space). Descriptions from ocaml/idl/datamodel_errors.ml.
    "VM_NO_SUSPEND_SR": ("This VM does not have a suspend SR specified.", ("vm",)),
    "VM_LACKS_FEATURE_SUSPEND": ("You attempted an operation which needs the VM cooperative suspend feature on a "
                                 "VM which lacks it.", ("vm",)),
    "SR_BACKEND_FAILURE_44": ("There is insufficient space", ("opterr",)),
}


class XeFailure(Exception):
    """An xapi error: its code and parameter values."""

    def __init__(self, code, *params):
        super().__init__(code)
        self.code, self.params = code, params

    def text(self):
        description, names = ERRORS[self.code]
        lines = [description] + [f"{name}: {value}" for name, value in zip(names, self.params)]
        return "\n".join(lines) + "\n"


class XeUsage(Exception):
    """A CLI-side error (no such command, bad selector): printed as is."""


def _vm_ref(vm):
    return f"{vm['uuid']} ({vm['name']})"


def _host_ref(host):
    return f"{host['uuid']} ({host['name']})"


def _bool(value):
    return "true" if value else "false"


def _host_of(state, host_uuid):
    return state["hosts"].get(host_uuid) if host_uuid else None


def _named(description=""):
    """The fields every xe object has: uuid, name-label and name-description."""
    return {"uuid": ("RO", lambda s, r: r["uuid"]), "name-label": ("RW", lambda s, r: r["name"]),
            "name-description": ("RW", lambda s, r: description)}


VM_FIELDS = {
    **_named(),
    "power-state": ("RO", lambda s, v: v["power_state"]),
    "resident-on": ("RO", lambda s, v: v["resident_on"] or "<not in database>"),
    "affinity": ("RW", lambda s, v: v.get("affinity") or "<not in database>"),
    "is-control-domain": ("RO", lambda s, v: _bool(v["control_domain"])),
    "order": ("RW", lambda s, v: str(v["order"])),
    # a duration like every other in the scenario: simulated seconds, reported as real ones
    "start-delay": ("RW", lambda s, v: str(max(1, round(v["start_delay"] / s["time_scale"])) if v["start_delay"] else 0)),
    "shutdown-delay": ("RW", lambda s, v: str(v["shutdown_delay"])),
    "PV-drivers-detected": ("RO", lambda s, v: _bool(v["tools"] or v["control_domain"])),
    "other-config": ("MRW", lambda s, v: "auto_poweron: true" if v["auto_poweron"] else ""),
}
VM_DEFAULT = ("uuid", "name-label", "power-state")

HOST_FIELDS = {
    **_named("Default install"),
    "address": ("RO", lambda s, h: h["address"]),
    "enabled": ("RO", lambda s, h: _bool(h["enabled"])),
    "host-metrics-live": ("RO", lambda s, h: _bool(sitemod.host_phase(s, h) == "up")),
}
HOST_DEFAULT = ("uuid", "name-label", "name-description")

POOL_FIELDS = {
    **_named(),
    "master": ("RO", lambda s, p: p["master"]),
    "ha-enabled": ("RO", lambda s, p: _bool(p["ha_enabled"])),
    # xapi empties ha-statefiles when HA is disabled: read it before pool-ha-disable.
    "ha-statefiles": ("RO", lambda s, p: p["ha_statefile"] if p["ha_enabled"] else ""),
}
POOL_DEFAULT = ("uuid", "name-label", "name-description", "master", "default-SR")
# the objects the list and param-get commands read: state key (None: the pool), fields, default columns, label
_OBJECTS = {"vm": ("vms", VM_FIELDS, VM_DEFAULT, "VM"), "host": ("hosts", HOST_FIELDS, HOST_DEFAULT, "host"),
            "pool": (None, POOL_FIELDS, POOL_DEFAULT, "pool")}


def format_records(records):
    """Given [[(key, value), ...], ...], returns xe's multi-line record text."""
    out = []
    for record in records:
        width = 4 + max((len(k) for k, _ in record), default=0)
        lines = []
        for index, (key, value) in enumerate(record):
            key = key.ljust(width) if index == 0 else key.rjust(width)
            lines.append(f"{key}: {value}")
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


def format_minimal(values):
    return ",".join(v.replace("\\", "\\\\").replace(",", "\\,") for v in values) + "\n"


class Call:
    """One xe invocation: the command, its key=value parameters and flags."""

    def __init__(self, argv):
        if not argv:
            raise XeUsage("Usage: xe <cmd> [-s server] [-p port] ([-u username] [-pw password] or [-pwf <password "
                          "file>]) <other arguments>")
        self.command = argv[0]
        self.params, self.minimal = {}, False
        for arg in argv[1:]:
            if arg == "--minimal":
                self.minimal = True
            elif arg.startswith("--"):
                self.params[arg[2:]] = "true"
            elif "=" in arg:
                key, _, value = arg.partition("=")
                self.params[key] = value
            else:
                raise XeUsage(f"Syntax error: unexpected argument {arg!r}")

    def flag(self, name):
        return self.params.get(name, "false").lower() == "true"


def _select(state, objects, fields, filters, kind):
    """Returns the objects whose fields match every filter exactly."""
    chosen = []
    for obj in objects:
        ok = True
        for key, wanted in filters.items():
            if key.startswith("other-config:"):
                actual = "true" if (key == "other-config:auto_poweron" and obj.get("auto_poweron")) else None
            elif key in fields:
                actual = fields[key][1](state, obj)
            else:
                raise XeUsage(f"Unknown field '{key}' for class {kind}")
            if actual != wanted:
                ok = False
                break
        if ok:
            chosen.append(obj)
    return chosen


def _list(state, call, objects, fields, default, kind):
    params = call.params.pop("params", None)
    filters = dict(call.params)
    chosen = _select(state, objects, fields, filters, kind)
    names = list(fields) if params == "all" else (params.split(",") if params else list(default))
    if call.minimal:
        return format_minimal([fields["uuid"][1](state, o) for o in chosen])
    keys = [(f"{name} ({fields[name][0]:>3})", fields[name][1]) for name in names if name in fields]
    if not keys:
        return format_records([[] for _ in chosen])
    # every record has the same keys: pad them once (as format_records does for each record)
    width = 4 + max(len(key) for key, _ in keys)
    prefixes = [key.ljust(width) + ": " if index == 0 else key.rjust(width) + ": " for index, (key, _) in enumerate(keys)]
    getters = [getter for _, getter in keys]
    pairs = list(zip(prefixes, getters))
    return "".join("".join(prefix + getter(state, obj) + "\n" for prefix, getter in pairs) + "\n" for obj in chosen)


def _param_get(state, call, objects, fields, kind):
    wanted = call.params.get("uuid")
    name = call.params.get("param-name")
    if not wanted or not name:
        raise XeUsage("Required parameter not found: uuid, param-name")
    for obj in objects:
        if obj["uuid"] == wanted:
            if name not in fields:
                raise XeUsage(f"Unknown field '{name}'")
            return fields[name][1](state, obj) + "\n"
    raise XeFailure("UUID_INVALID", kind, wanted)


def _vm_selection(state, call):
    """Returns the uuids of the VMs a vm-op selects (uuid=, vm=, or field filters)."""
    params = {k: v for k, v in call.params.items() if k not in ("force", "multiple", "on", "params")}
    if list(params) == ["uuid"]:  # the usual call: one VM by uuid, looked up directly
        vm = state["vms"].get(params["uuid"])
        if vm is None or vm["control_domain"]:
            raise XeUsage("No matching VMs found")
        return [vm["uuid"]]
    guests = [v for v in state["vms"].values() if not v["control_domain"]]
    if "vm" in params:
        key = params.pop("vm")
        guests = [v for v in guests if v["uuid"] == key or v["name"] == key]
    chosen = _select(state, guests, VM_FIELDS, params, "VM")
    if not chosen:
        raise XeUsage("No matching VMs found")
    if len(chosen) > 1 and not call.flag("multiple"):
        raise XeUsage("Multiple matches VMs found. --multiple required to complete the operation")
    return [v["uuid"] for v in chosen]


def _host_selection(state, call):
    key = call.params.get("uuid") or call.params.get("host")
    if not key:
        raise XeUsage("Required parameter not found: uuid")
    for host in state["hosts"].values():
        if key in (host["uuid"], host["name"]):
            return host
    raise XeFailure("UUID_INVALID", "host", key)


class Xe:
    """Runs xe commands as if typed on ``host_name`` against ``store`` (a SiteStore);
    ``cancel()`` (the client went away) ends a blocking wait at once."""

    def __init__(self, store, host_name):
        self.store = store
        self.host_name = host_name
        self.gone = False
        self.wakeup = threading.Event()  # set by cancel() and by a watched VM's power change

    def cancel(self):
        self.gone = True
        self.wakeup.set()

    def run(self, argv):
        """Returns (exit status, stdout text, stderr text)."""
        self.store.record_call(self.host_name, argv)
        try:
            call = Call(argv)
            handler = getattr(self, "cmd_" + call.command.replace("-", "_"), None)
            if handler is None:
                raise XeUsage(f"Unknown command: {call.command}\nFor usage run: 'xe help'")
            self.call = call
            self._checked = False
            return 0, handler(call) or "", ""
        except XeFailure as failure:
            return 1, "", failure.text()
        except XeUsage as usage:
            return 1, "", f"{usage}\n"
        except _Cancelled:
            return 255, "", "cancelled\n"

    @contextlib.contextmanager
    def _tx(self):
        """A site transaction; the first one of a call also checks the host's toolstack (an
        injected hang is played outside the lock, then a fresh transaction follows)."""
        hang_s = 0
        with self.store.transaction(changes=self.call.command in CHANGING) as state:
            if not self._checked:
                self._check_toolstack(state)
                self._checked = True
                hang_s = state.get("faults", {}).get(self.call.command, 0)
            if not hang_s:
                yield state
                return
        self._sleep(hang_s)
        with self.store.transaction(changes=self.call.command in CHANGING) as state:
            yield state

    def _check_toolstack(self, state):
        here = sitemod.host_by_name(state, self.host_name)
        phase = sitemod.host_phase(state, here)
        if phase in ("off", "booting"):
            raise XeUsage("Error: Connection refused (calling connect )")
        if phase == "starting":
            raise XeFailure("HOST_STILL_BOOTING")
        master = state["hosts"][state["pool"]["master"]]
        if master is not here and sitemod.host_phase(state, master) != "up":
            raise XeFailure("CANNOT_CONTACT_HOST", master["uuid"])

    # -- lists and reads ---------------------------------------------------------------

    def _records(self, call, kind, get_params):
        objects, fields, default, label = _OBJECTS[kind]
        with self._tx() as state:
            records = [state["pool"]] if objects is None else list(state[objects].values())
            if get_params:
                return _param_get(state, call, records, fields, label)
            return _list(state, call, records, fields, default, label)

    cmd_vm_list = partialmethod(_records, kind="vm", get_params=False)
    cmd_vm_param_get = partialmethod(_records, kind="vm", get_params=True)
    cmd_host_list = partialmethod(_records, kind="host", get_params=False)
    cmd_host_param_get = partialmethod(_records, kind="host", get_params=True)
    cmd_pool_list = partialmethod(_records, kind="pool", get_params=False)
    cmd_pool_param_get = partialmethod(_records, kind="pool", get_params=True)

    def cmd_vdi_param_get(self, call):
        with self._tx() as state:
            vdi = {"uuid": state["pool"]["ha_statefile"], "sr": state["pool"]["ha_sr"]}
            fields = {"uuid": ("RO", lambda s, v: v["uuid"]), "sr-uuid": ("RO", lambda s, v: v["sr"])}
            return _param_get(state, call, [vdi], fields, "VDI")

    # -- changes ----------------------------------------------------------------------

    def cmd_pool_ha_disable(self, call):
        with self._tx() as state:
            state["pool"]["ha_enabled"] = False

    def cmd_pool_ha_enable(self, call):
        # without heartbeat-sr-uuids xapi picks an SR that can hold the statefile (xapi_ha.ml, enable): ha_sr here
        with self._tx() as state:
            state["pool"]["ha_enabled"] = True

    def cmd_host_disable(self, call):
        with self._tx() as state:
            _host_selection(state, call)["enabled"] = False

    def cmd_host_enable(self, call):
        with self._tx() as state:
            host = _host_selection(state, call)
            if sitemod.host_phase(state, host) != "up":
                raise XeFailure("HOST_OFFLINE", _host_ref(host))
            host["enabled"] = True

    def cmd_host_shutdown(self, call):
        with self._tx() as state:
            host = _host_selection(state, call)
            if sitemod.host_phase(state, host) != "up":
                raise XeFailure("HOST_OFFLINE", _host_ref(host))
            if host["enabled"]:
                raise XeFailure("HOST_NOT_DISABLED")
            if host["quirk"] == "ignores_shutdown" or host["shutdown_at"] is not None:
                return
            host["shutdown_at"] = sitemod.sim_now(state) + host["shutdown_s"]
            self.store.due_changed.set()
            # xapi evacuates the host: running guests move to another live, enabled host if any.
            others = [h for h in state["hosts"].values()
                      if h is not host and h["enabled"] and h["shutdown_at"] is None
                      and sitemod.host_phase(state, h) == "up"]
            if others:
                for vm in state["vms"].values():
                    if not vm["control_domain"] and vm["resident_on"] == host["uuid"]:
                        vm["resident_on"] = others[0]["uuid"]

    def cmd_vm_reset_powerstate(self, call):
        if not call.flag("force"):
            raise XeUsage("This operation is extremely dangerous and may cause data loss. This operation must be "
                          "forced (use --force).")
        with self._tx() as state:
            for vm_uuid in _vm_selection(state, call):
                vm = state["vms"][vm_uuid]
                vm.update(power_state="halted", resident_on=None, busy_until=None, busy=None, busy_fails=False)
                self.store.touch(vm_uuid)

    def cmd_vm_shutdown(self, call):
        force = call.flag("force")
        self._each_selected(call, lambda state, u: partial(self._end_shutdown, u,
                                                           *self._begin_shutdown(state, u, force)))

    def cmd_vm_start(self, call):
        on = call.params.get("on")
        self._each_selected(call, lambda state, u: partial(self._wait, u, self._begin_start(state, u, on), "running"))

    # -- suspend and resume (xen-api ocaml/xapi/xapi_vm.ml suspend/resume; the power states each
    # needs from ocaml/xapi/xapi_vm_lifecycle.ml: suspend a running VM, resume a suspended one,
    # else VM_BAD_POWER_STATE). Scenario knobs, set with SiteStore.set_vm / set_pool: a VM's
    # "suspend_s" (default 5 s), "suspend_fails" (an error code above); the pool's "suspend_sr"
    # ("" : none) and "suspend_sr_full" (True: no room for the memory image).

    def cmd_vm_suspend(self, call):
        self._each_selected(call, lambda state, u: partial(self._end_suspend, u, self._begin_suspend(state, u)))

    def cmd_vm_resume(self, call):
        on = call.params.get("on")
        self._each_selected(call, lambda state, u: partial(self._end_resume, u, self._begin_resume(state, u, on)))

    @staticmethod
    def _free_vm(state, vm_uuid, expected):
        """Returns (the VM, now) when it is in the ``expected`` power state with no operation
        running on it; raises xapi's error otherwise."""
        vm = state["vms"][vm_uuid]
        now = sitemod.sim_now(state)
        if vm["power_state"] != expected:
            raise XeFailure("VM_BAD_POWER_STATE", _vm_ref(vm), expected, vm["power_state"])
        if vm.get("busy") and (vm["busy_until"] or 0) > now:
            raise XeFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm["uuid"])
        return vm, now

    def _begin_suspend(self, state, vm_uuid):
        vm, now = self._free_vm(state, vm_uuid, "running")
        if not vm["tools"]:
            raise XeFailure("VM_LACKS_FEATURE_SUSPEND", _vm_ref(vm))
        if state["pool"].get("suspend_sr", "default") == "":
            raise XeFailure("VM_NO_SUSPEND_SR", _vm_ref(vm))
        if vm.get("suspend_fails"):
            raise XeFailure(vm["suspend_fails"], _vm_ref(vm))
        until = now + float(vm.get("suspend_s", 5.0))
        vm.update(busy="suspend", busy_until=until, busy_fails=False)
        return sitemod.real_seconds(state, until - now)

    def _after(self, wait_s, vm_uuid, finish):
        """Waits ``wait_s`` outside the lock (the operation runs), then ``finish(state, vm)`` in a transaction."""
        self._sleep(wait_s)
        with self._tx() as state:
            finish(state, state["vms"][vm_uuid])

    def _end_suspend(self, vm_uuid, wait_s):
        def finish(state, vm):
            if state["pool"].get("suspend_sr_full"):  # the memory image did not fit: the VM runs on
                vm.update(busy=None, busy_until=None)
                raise XeFailure("SR_BACKEND_FAILURE_44", "")
            if vm["power_state"] != "running":  # forced, reset or powered off meanwhile
                raise XeFailure("VM_BAD_POWER_STATE", _vm_ref(vm), "running", vm["power_state"])
            vm.update(power_state="suspended", resident_on=None, busy=None, busy_until=None, busy_fails=False)
        self._after(wait_s, vm_uuid, finish)

    def _begin_resume(self, state, vm_uuid, on):
        vm = state["vms"][vm_uuid]
        if vm["power_state"] != "suspended":
            raise XeFailure("VM_BAD_POWER_STATE", _vm_ref(vm), "suspended", vm["power_state"])
        target = self._start_host(state, vm, on)
        now = sitemod.sim_now(state)
        until = now + vm["start_s"]
        vm.update(busy="resume", busy_until=until, busy_host=target)
        return sitemod.real_seconds(state, until - now)

    def _end_resume(self, vm_uuid, wait_s):
        def finish(state, vm):
            if vm["power_state"] == "suspended":
                vm.update(power_state="running", resident_on=vm.get("busy_host"), busy=None, busy_until=None)
        self._after(wait_s, vm_uuid, finish)

    def _each_selected(self, call, begin):
        """For each VM the call selects, one after another (--multiple: each awaited): runs
        ``begin(state, uuid)`` in a transaction (the selection shares the first one's), then
        the waiting step it returns, outside the lock."""
        chosen = None
        while chosen is None or chosen:
            with self._tx() as state:
                if chosen is None:
                    chosen = _vm_selection(state, call)
                vm_uuid = chosen.pop(0)
                finish = begin(state, vm_uuid)
            finish()

    def _begin_shutdown(self, state, vm_uuid, force):
        """Starts the shutdown task in the site state; returns (real seconds to wait, failure or None)."""
        vm = state["vms"][vm_uuid]
        now = sitemod.sim_now(state)
        if vm["power_state"] != "running":
            raise XeFailure("VM_BAD_POWER_STATE", _vm_ref(vm), "running", vm["power_state"])
        outcome = None
        if force:
            if sitemod.has_quirk(vm, "force_fails"):
                raise XeFailure("INTERNAL_ERROR", "xenopsd internal error: domain shutdown failed")
            until, op = now + vm["force_s"], "hard_shutdown"
        else:
            if not vm["tools"]:
                raise XeFailure("VM_LACKS_FEATURE", _vm_ref(vm))
            if vm.get("busy") and (vm["busy_until"] or 0) > now:
                raise XeFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm["uuid"])
            if sitemod.has_quirk(vm, "ignores_shutdown"):
                until, outcome = now + sitemod.ACK_TIMEOUT_S, ("VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", _vm_ref(vm))
            elif sitemod.has_quirk(vm, "hangs"):
                until, outcome = (now + sitemod.SHUTDOWN_TIMEOUT_S,
                                  ("VM_SHUTDOWN_TIMEOUT", _vm_ref(vm), f"{sitemod.SHUTDOWN_TIMEOUT_S:.0f}"))
            else:
                until = now + vm["shutdown_s"]
            op = "clean_shutdown"
        # the task runs in "xapi" (the site state): it completes even if this client goes away
        vm.update(busy=op, busy_until=until, busy_fails=outcome is not None)
        self.store.due(until, vm_uuid)
        return sitemod.real_seconds(state, until - now), outcome

    def _end_shutdown(self, vm_uuid, wait_s, outcome):
        self._wait(vm_uuid, wait_s, "halted")
        with self._tx() as state:
            if state["vms"][vm_uuid]["power_state"] == "halted":  # done, or forced, reset or powered off meanwhile
                return
        if outcome:
            raise XeFailure(*outcome)

    def _begin_start(self, state, vm_uuid, on):
        vm, now = self._free_vm(state, vm_uuid, "halted")
        target = self._start_host(state, vm, on)
        until = now + vm["start_s"]
        vm.update(busy="start", busy_until=until, busy_host=target, busy_fails=False)
        self.store.due(until, vm_uuid)
        return sitemod.real_seconds(state, until - now)

    @staticmethod
    def _start_host(state, vm, on):
        live = [h for h in state["hosts"].values() if sitemod.host_phase(state, h) == "up" and h["shutdown_at"] is None]
        if on:
            host = next((h for h in state["hosts"].values() if on in (h["uuid"], h["name"])), None)
            if host is None:
                raise XeFailure("UUID_INVALID", "host", on)
            if host not in live:
                raise XeFailure("HOST_OFFLINE", _host_ref(host))
            if not host["enabled"]:
                raise XeFailure("HOST_DISABLED", _host_ref(host))
            return host["uuid"]
        enabled = [h for h in live if h["enabled"]]
        if not enabled:
            raise XeFailure("NO_HOSTS_AVAILABLE")
        preferred = next((h for h in enabled if h["uuid"] == vm.get("affinity")), enabled[0])
        return preferred["uuid"]

    def _sleep(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            if self.gone:
                raise _Cancelled()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.wakeup.wait(left)
            self.wakeup.clear()

    def _wait(self, vm_uuid, wait_s, wanted):
        """Sleeps ``wait_s`` real seconds, returning early once the VM's power state becomes
        ``wanted`` by other means (a force, a reset, a power cut): the store wakes this call
        when the VM changes, so thousands of waiting calls cost nothing while they wait."""
        deadline = time.monotonic() + wait_s
        with self.store.watch(vm_uuid, self.wakeup):
            while True:
                if self.gone:
                    raise _Cancelled()
                left = deadline - time.monotonic()
                if left <= 0 or self.store.power_state(vm_uuid) == wanted:
                    return
                self.wakeup.wait(left)
                self.wakeup.clear()


class _Cancelled(Exception):
    """The caller went away (channel closed): stop waiting."""

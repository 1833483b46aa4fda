"""The dry-run twin of any hypervisor of the port (``hgs.flows.ports.Hypervisor``).

``DryRunHypervisor`` is the ONE dry-run seam for the hypervisor: it reads through the real
backend and, for every call that would change something, logs what it would do and reports
success. It remembers the VM power states it pretended to change (``overlay``, shared by the
twins of one run) so later reads in the rehearsal agree with it, and a host that does not
answer now (it is off) is reported as one the real run would wait for. It knows the port's
verbs only, never a backend's commands: a new backend gets its rehearsal for free.
"""

from hgs.errors import RemoteError
from hgs.flows.ports import HALTED, RUNNING, SUSPENDED, Kind, Outcome


class DoneBatch:
    """A batch that already succeeded (what a dry run reports)."""

    def __init__(self, uuids):
        self._outcomes = [Outcome(u, Kind.DONE) for u in uuids]
        self.pending = set()
        self.lost = False

    def poll(self):
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def wait(self, timeout_s):
        """Its outcomes are there already."""

    def close(self):
        pass


class _HostOff(dict):
    """Power states read from a host that is off: every VM not pretended otherwise is halted."""

    def get(self, key, default=None):
        return super().get(key, HALTED)

    def __bool__(self):
        return True


class DryRunHypervisor:
    """Reads through ``real``; every change is logged as 'dry run: would ...' and succeeds."""

    def __init__(self, real, log, overlay=None):
        self.real = real
        self.log = log
        self.overlay = {} if overlay is None else overlay
        self.absent = None  # why the host did not answer, once it did not: not asked again

    def __getattr__(self, name):  # other reads and attributes go to the real hypervisor
        return getattr(self.real, name)

    def _would(self, what, change, *args, **kwargs):
        """Logs what the real run would do: the backend's own words when it can describe the
        change (the optional ``describe`` of the port), else the port's."""
        describe = getattr(self.real, "describe", None)
        lines = describe(change, *args, **kwargs) if describe is not None else None
        for line in lines or [f"{what} (through {self.real.name})"]:
            self.log.info("dry run: would %s", line)

    def _absent(self, err):
        self.absent = err
        self.log.info("dry run: %s does not answer now (%s); the real run would wait for it", self.real.name, err)

    # -- reads that must survive a host that is off -------------------------------------------

    def hosts(self):
        if self.absent is not None:
            return []
        try:
            return self.real.hosts()
        except RemoteError as err:
            self._absent(err)
            return []

    def power_states(self):
        try:
            if self.absent is not None:
                raise self.absent
            states = self.real.power_states()
        except RemoteError as err:
            if self.absent is None:
                self._absent(err)
            states = _HostOff()  # a host that does not answer is off: its VMs are halted
        states.update(self.overlay)
        return states

    # -- changes: said, not done -----------------------------------------------------------------

    def disable_ha(self):
        self._would("turn pool HA off", "disable_ha")

    def enable_ha(self, srs):
        self._would("turn pool HA on" + (f" (heartbeat SR {', '.join(srs)})" if srs else ""), "enable_ha", srs)

    def disable_host(self, host_uuid):
        self._would(f"disable host {host_uuid}", "disable_host", host_uuid)

    def enable_host(self, host_uuid):
        self._would(f"enable host {host_uuid}", "enable_host", host_uuid)

    def shutdown_host(self, host_uuid):
        self._would(f"shut down host {host_uuid}", "shutdown_host", host_uuid)
        return "sent"

    def reset_powerstate(self, vm_uuid):
        self._would(f"reset the power state of VM {vm_uuid}", "reset_powerstate", vm_uuid)
        self.overlay[vm_uuid] = HALTED

    def shutdown_vms(self, uuids, force=False):
        uuids = list(uuids)
        self._would(f"{'force the shutdown of' if force else 'shut down'} VM(s) {', '.join(uuids)}",
                    "shutdown_vms", uuids, force=force)
        self.overlay.update(dict.fromkeys(uuids, HALTED))
        return DoneBatch(uuids)

    def suspend_vms(self, uuids):
        uuids = list(uuids)
        self._would(f"suspend VM(s) {', '.join(uuids)}", "suspend_vms", uuids)
        self.overlay.update(dict.fromkeys(uuids, SUSPENDED))
        return DoneBatch(uuids)

    def start_vms(self, uuids, resume=()):
        uuids, resume = list(uuids), set(resume)
        self._would(f"start VM(s) {', '.join(uuids)}" + (f" (resuming {', '.join(sorted(resume))})" if resume else ""),
                    "start_vms", uuids, resume=resume)
        self.overlay.update(dict.fromkeys(uuids, RUNNING))
        return DoneBatch(uuids)

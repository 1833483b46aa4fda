"""The hypervisor as the flows see it: xe over SSH on one host, and its dry-run twin.

``Hypervisor`` runs the commands of ``hgs.hypervisors.xen.xe`` on a ``remote.Connection`` with hgs's own
deadline on each call. ``DryRunHypervisor`` is the ONE dry-run seam: it reads for real and,
for every call that would change something, logs what it would do and reports success.
The flows never ask whether they are rehearsing.
"""

from dataclasses import dataclass

from hgs.hypervisors.xen import xe
from hgs.errors import HgsError, XeCallError, XeMissing
from hgs.net.ssh import ConnectionLost, RemoteError, RemoteTimeout, command_line


@dataclass(frozen=True)
class VmInfo:
    uuid: str
    name: str
    power_state: str
    resident_on: str | None
    order: int
    start_delay: int
    tools: bool


@dataclass(frozen=True)
class HostInfo:
    uuid: str
    name: str
    address: str
    enabled: bool


@dataclass(frozen=True)
class PoolInfo:
    uuid: str
    master: str
    ha_enabled: bool


@dataclass(frozen=True)
class Outcome:
    """How one xe call of a batch ended: ``status`` 0 is success, else ``error`` says why."""

    uuid: str
    status: int
    error: xe.XeError | None


def _int(text, default=0):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


class Batch:
    """Parallel xe calls in one channel; ``poll()`` returns the Outcomes that arrived since."""

    def __init__(self, stream, uuids):
        self.stream = stream
        self.pending = set(uuids)

    def poll(self):
        outcomes = []
        for line in self.stream.lines():
            parsed = xe.parse_result_line(line)
            if parsed and parsed[0] in self.pending:
                vm_uuid, status, err = parsed
                self.pending.discard(vm_uuid)
                outcomes.append(Outcome(vm_uuid, status, xe.classify(err) if status else None))
        return outcomes

    @property
    def lost(self):
        """True when the channel died before every call reported (the connection dropped)."""
        return bool(self.pending) and self.stream.lost

    def close(self):
        self.stream.close()


class Hypervisor:
    """xe on one host (HostSettings) over its Connection; every call has ``xe_timeout_s``."""

    def __init__(self, host, connection, xe_timeout_s, log):
        self.host = host
        self.connection = connection
        self.xe_timeout_s = xe_timeout_s
        self.log = log
        self.calls = 0

    @property
    def name(self):
        return self.host.name

    def _run(self, argv, timeout_s=None):
        self.calls += 1
        self.log.debug("%s: xe %s", self.host.name, " ".join(argv))
        result = self.connection.run(command_line((self.host.xe_path,) + tuple(argv)), timeout_s or self.xe_timeout_s)
        if result.status in (126, 127):
            raise XeMissing(f"{self.host.name}: {self.host.xe_path} cannot be run on the host (exit {result.status}: "
                            f"{result.stderr.strip()[:120]}); is this a XenServer/XCP-ng host? "
                            "Set HOSTS[...]['xe_path'] if xe lives elsewhere")
        if not result.ok:
            raise XeCallError(self.host.name, argv, xe.classify(result.stderr or result.stdout))
        return result.stdout

    # -- reads ---------------------------------------------------------------------------

    def pool(self):
        records = xe.parse_records(self._run(xe.pool_list()))
        if not records:
            raise HgsError(f"{self.host.name}: xe pool-list returned no pool")
        record = records[0]
        return PoolInfo(xe.check_uuid(record.get("uuid")), xe.check_uuid(record.get("master")),
                        record.get("ha-enabled") == "true")

    def hosts(self):
        return [HostInfo(xe.check_uuid(r.get("uuid")), r.get("name-label", ""), r.get("address", ""),
                         r.get("enabled") == "true")
                for r in xe.parse_records(self._run(xe.host_list()))]

    def vms(self, running_only=True):
        """Returns the guests (VmInfo), running ones only by default.

        Every record is checked against a --minimal uuid list of the same selection. A listing
        in which a VM name forges records (see ``xe.forged``) is logged as an error, and the VMs
        concerned are read again field by field (vm-param-get: one value, no other VM's text).
        """
        known = set(xe.parse_minimal(self._run(xe.vm_uuids(running_only))))
        records = xe.parse_records(self._run(xe.vm_list_running() if running_only else xe.vm_list_all()))
        reread, rename = xe.forged(records, known)
        strays = sum(1 for r in records if r.get("uuid", "") not in known)
        if reread:
            self.log.error("%s: FORGED xe records: a VM name contains records claiming other VMs (%d uuid(s) listed "
                           "twice, %d record(s) outside the listing); reading %s again field by field", self.host.name,
                           len(reread), strays, ", ".join(sorted(reread | rename)))
        elif rename:  # a VM started since the --minimal list, or a name forging a VM outside the selection
            self.log.warning("%s: %d xe record(s) for VMs outside the listing, after the record of %s: that name is "
                             "read again by itself", self.host.name, strays, ", ".join(sorted(rename)))
        found = {}
        for record in records:
            vm_uuid = record.get("uuid", "")
            if vm_uuid not in known or vm_uuid in found or not xe.UUID.match(vm_uuid):
                continue  # outside the selection (forged, or changed since the --minimal list)
            try:
                if vm_uuid in reread:
                    record = {key: self._param(vm_uuid, key) for key in xe.VM_PARAMS.split(",") if key != "uuid"}
                    if running_only and record["power-state"] != "running":
                        continue
                elif vm_uuid in rename:
                    record = dict(record, **{"name-label": self._param(vm_uuid, "name-label")})
            except XeCallError as err:  # e.g. the VM was deleted since the listing
                self.log.warning("%s: VM %s could not be read again (%s): left out", self.host.name, vm_uuid,
                                 err.error.summary)
                continue
            resident = record.get("resident-on", "")
            found[vm_uuid] = VmInfo(vm_uuid, record.get("name-label", ""), record.get("power-state", ""),
                                    resident if xe.UUID.match(resident) else None, _int(record.get("order")),
                                    _int(record.get("start-delay")), record.get("PV-drivers-detected") == "true")
        return list(found.values())

    def _param(self, vm_uuid, key):
        return xe.param_value(self._run(xe.vm_param_get(vm_uuid, key)))

    def vm_networks(self):
        """Returns {vm uuid: [address]} of the running guests whose tools report addresses."""
        from hgs.net.addresses import parse_networks

        out = {}
        for record in xe.parse_records(self._run(xe.vm_networks())):
            found = parse_networks(record.get("networks", ""))
            if xe.UUID.match(record.get("uuid", "")) and found:
                out.setdefault(record["uuid"], found)
        return out

    def power_states(self):
        """Returns {vm uuid: power state} for every guest: ONE xe call, whatever the VM count."""
        return {r["uuid"]: r.get("power-state", "") for r in xe.parse_records(self._run(xe.vm_power_states()))
                if xe.UUID.match(r.get("uuid", ""))}

    def ha_statefile_srs(self, pool_uuid):
        """Returns the heartbeat SR uuids HA uses now (needed to turn it back on)."""
        vdis = [v for v in xe.parse_minimal(self._run(xe.pool_ha_statefiles(pool_uuid)).strip().replace(";", ","))
                if xe.UUID.match(v.strip())]
        return sorted({xe.check_uuid(self._run(xe.vdi_sr(v.strip())).strip()) for v in vdis})

    # -- changes -------------------------------------------------------------------------

    def ha_disable(self):
        self._run(xe.pool_ha_disable())

    def ha_enable(self, sr_uuids):
        self._run(xe.pool_ha_enable(sr_uuids))

    def host_disable(self, host_uuid):
        self._run(xe.host_disable(host_uuid))

    def host_enable(self, host_uuid):
        self._run(xe.host_enable(host_uuid))

    def host_shutdown(self, host_uuid):
        """Sends host-shutdown; returns 'sent', or 'sent, session dropped' when the host went
        away under the call (it is shutting down)."""
        try:
            self._run(xe.host_shutdown(host_uuid))
            return "sent"
        except (ConnectionLost, RemoteTimeout):
            return "sent, session dropped"

    def reset_powerstate(self, vm_uuid):
        self._run(xe.vm_reset_powerstate(vm_uuid))

    def launch(self, commands):
        """Starts [(uuid, argv)] in parallel in one channel; returns a Batch."""
        self.calls += len(commands)
        for vm_uuid, argv in commands:
            self.log.debug("%s: xe %s (batch)", self.host.name, " ".join(argv))
        # the script goes on stdin: a thousand calls do not fit in one SSH exec request
        stream = self.connection.start("sh -s", stdin=xe.batch_script(self.host.xe_path, commands),
                                       timeout_s=self.xe_timeout_s)
        return Batch(stream, [u for u, _ in commands])


class _DoneBatch:
    """A batch that already succeeded (what a dry run reports)."""

    def __init__(self, uuids):
        self._outcomes = [Outcome(u, 0, None) for u in uuids]
        self.pending = set()
        self.lost = False

    def poll(self):
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def close(self):
        pass


class _HostOff(dict):
    """Power states read from a host that is off: every VM not pretended otherwise is halted."""

    def get(self, key, default=None):
        return super().get(key, "halted")

    def __bool__(self):
        return True


class DryRunHypervisor:
    """Reads through ``real``; every change is logged as 'dry run: would ...' and succeeds.

    It remembers the VM power states it pretended to change (``overlay``, shared by the
    twins of one run) so later reads in the rehearsal agree with it, and a host that does not
    answer now (it is off) is reported as one the real run would wait for.
    """

    def __init__(self, real, log, overlay=None):
        self.real = real
        self.log = log
        self.overlay = {} if overlay is None else overlay
        self.absent = None  # why the host did not answer, once it did not: not asked again

    def __getattr__(self, name):  # other reads and attributes go to the real hypervisor
        return getattr(self.real, name)

    def _would(self, argv):
        self.log.info("dry run: would run on %s: xe %s", self.real.host.name, " ".join(argv))

    def _absent(self, err):
        self.absent = err
        self.log.info("dry run: %s does not answer now (%s); the real run would wait for it", self.real.host.name, err)

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

    def ha_disable(self):
        self._would(xe.pool_ha_disable())

    def ha_enable(self, sr_uuids):
        self._would(xe.pool_ha_enable(sr_uuids))

    def host_disable(self, host_uuid):
        self._would(xe.host_disable(host_uuid))

    def host_enable(self, host_uuid):
        self._would(xe.host_enable(host_uuid))

    def host_shutdown(self, host_uuid):
        self._would(xe.host_shutdown(host_uuid))
        return "sent"

    def reset_powerstate(self, vm_uuid):
        self._would(xe.vm_reset_powerstate(vm_uuid))
        self.overlay[vm_uuid] = "halted"

    def launch(self, commands):
        for vm_uuid, argv in commands:
            self._would(argv)
            self.overlay[vm_uuid] = {"vm-start": "running", "vm-resume": "running",
                                     "vm-suspend": "suspended"}.get(argv[0], "halted")
        return _DoneBatch([u for u, _ in commands])

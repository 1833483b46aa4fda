"""The xe backend of the hypervisor port (``hgs.flows.ports.Hypervisor``): xe over SSH on one host.

``Hypervisor`` runs the commands of ``hgs.hypervisors.xen.xe`` on a ``remote.Connection`` with
hgs's own deadline on each call, and answers in hgs's words: the port's data classes, Outcomes
and HypervisorError kinds (mapped from xapi's codes in ``hgs.hypervisors.xen.kinds``). The
dry-run twin that wraps it is ``hgs.hypervisors.rehearsal.DryRunHypervisor``.
"""

from hgs.box import threads
from hgs.errors import HgsError, XeCallError, XeMissing
from hgs.flows.ports import HostInfo, Outcome, PoolInfo, VmInfo  # noqa: F401 (the port's data, re-exported)
from hgs.hypervisors.xen import kinds, xe
from hgs.net.ssh import SHELL, ConnectionLost, RemoteTimeout, Stream, command_line, wait_any


def _int(text, default=0):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


WARM_SHELLS = 3  # after the confirmation: the fresh power-state read, pool-ha-disable, the first batch


BATCH_VMS = 100  # a batch of more VMs than this is split over several shells, side by side
BATCH_SHELLS = 4  # at most (sshd's MaxSessions is 10 by default: the polls and sends need theirs)


class Batch:
    """Parallel xe calls in one or a few channels (the port's Batch): ``parts`` pairs each
    channel's Stream with the uuids it runs; ``poll()`` returns the Outcomes that arrived since."""

    def __init__(self, parts):
        self.parts = [(stream, set(uuids)) for stream, uuids in parts]
        self.pending = set().union(*(uuids for _, uuids in self.parts))

    @property
    def stream(self):
        """The first channel's Stream."""
        return self.parts[0][0]

    def poll(self):
        outcomes = []
        for stream, uuids in self.parts:
            for line in stream.lines():
                parsed = xe.parse_result_line(line)
                if parsed and parsed[0] in uuids and parsed[0] in self.pending:
                    vm_uuid, status, err = parsed
                    self.pending.discard(vm_uuid)
                    outcomes.append(kinds.outcome(vm_uuid, status, xe.classify(err) if status else None))
        return outcomes

    def wait(self, timeout_s):
        """Returns as soon as output arrives on a channel, or after ``timeout_s``."""
        wait_any([stream for stream, _ in self.parts], timeout_s)

    @property
    def lost(self):
        """True when a channel died before every call it runs reported (the connection dropped)."""
        return any(stream.lost and uuids & self.pending for stream, uuids in self.parts)

    def close(self):
        for stream, _ in self.parts:
            stream.close()


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
            error = xe.classify(result.stderr or result.stdout)
            raise XeCallError(self.host.name, argv, error, kinds.kind_of(error)[0])
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
                                 err.reason)
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

    def disable_ha(self):
        self._run(xe.pool_ha_disable())

    def enable_ha(self, srs):
        """Entries of ``srs`` that are not SR uuids (a damaged snapshot) are left out; without
        any, xapi picks the statefile SR itself."""
        self._run(xe.pool_ha_enable([u for u in srs if isinstance(u, str) and xe.UUID.match(u)]))

    def disable_host(self, host_uuid):
        self._run(xe.host_disable(host_uuid))

    def enable_host(self, host_uuid):
        self._run(xe.host_enable(host_uuid))

    def shutdown_host(self, host_uuid):
        """Sends host-shutdown; returns 'sent', or 'sent, session dropped' when the host went
        away under the call (it is shutting down)."""
        try:
            self._run(xe.host_shutdown(host_uuid))
            return "sent"
        except (ConnectionLost, RemoteTimeout):
            return "sent, session dropped"

    def reset_powerstate(self, vm_uuid):
        self._run(xe.vm_reset_powerstate(vm_uuid))

    def shutdown_vms(self, uuids, force=False):
        return self._launch([(u, xe.vm_shutdown(u, force=force)) for u in uuids])

    def suspend_vms(self, uuids):
        return self._launch([(u, xe.vm_suspend(u)) for u in uuids])

    def start_vms(self, uuids, resume=()):
        resume = set(resume)
        return self._launch([(u, xe.vm_resume(u) if u in resume else xe.vm_start(u)) for u in uuids])

    def warm_up(self):
        """Readies shells on the host for the next calls (see Connection.warm): the fresh
        power-state read, the HA change and the first VM batch after the confirmation then
        start without a channel open, an exec request and a shell start on their path."""
        self.connection.warm(WARM_SHELLS)

    def _launch(self, commands):
        """Starts [(uuid, argv)] in parallel: one shell, or for a large batch a few side by side
        (one shell forks every call in turn: hundreds are late by the time the last starts);
        returns a Batch. A shell that cannot be started stops the others and raises."""
        self.calls += len(commands)
        for vm_uuid, argv in commands:
            self.log.debug("%s: xe %s (batch)", self.host.name, " ".join(argv))
        shells = max(1, min(BATCH_SHELLS, -(-len(commands) // BATCH_VMS)))
        size = max(1, -(-len(commands) // shells))
        chunks = [commands[i:i + size] for i in range(0, len(commands), size)] or [[]]

        def start(chunk):
            # the script goes on stdin: a thousand calls do not fit in one SSH exec request
            return self.connection.start(SHELL, stdin=xe.batch_script(self.host.xe_path, chunk),
                                         timeout_s=self.xe_timeout_s)

        if len(chunks) == 1:
            return Batch([(start(chunks[0]), [u for u, _ in chunks[0]])])
        started = threads.within(lambda index: start(chunks[index]), range(len(chunks)), self.xe_timeout_s + 5)
        streams = [started.get(index) for index in range(len(chunks))]  # None: still starting
        if not all(isinstance(stream, Stream) for stream in streams):
            for stream in streams:
                if isinstance(stream, Stream):
                    stream.close()
            raise next((s for s in streams if isinstance(s, Exception)),
                       RemoteTimeout(f"{self.host.name}: the batch's shells did not start in time"))
        return Batch([(stream, [u for u, _ in chunk]) for stream, chunk in zip(streams, chunks)])


    def describe(self, change, *args, **kwargs):
        """Returns what the change ``change`` (a port verb, with its arguments) would run here,
        one line per xe call: the dry-run twin logs them, so a rehearsal shows the exact commands."""
        argvs = {
            "disable_ha": lambda: [xe.pool_ha_disable()],
            "enable_ha": lambda srs: [xe.pool_ha_enable([u for u in srs if isinstance(u, str) and xe.UUID.match(u)])],
            "disable_host": lambda host_uuid: [xe.host_disable(host_uuid)],
            "enable_host": lambda host_uuid: [xe.host_enable(host_uuid)],
            "shutdown_host": lambda host_uuid: [xe.host_shutdown(host_uuid)],
            "reset_powerstate": lambda vm_uuid: [xe.vm_reset_powerstate(vm_uuid)],
            "shutdown_vms": lambda uuids, force=False: [xe.vm_shutdown(u, force=force) for u in uuids],
            "suspend_vms": lambda uuids: [xe.vm_suspend(u) for u in uuids],
            "start_vms": lambda uuids, resume=(): [xe.vm_resume(u) if u in set(resume) else xe.vm_start(u)
                                                   for u in uuids],
        }[change](*args, **kwargs)
        return [f"run on {self.host.name}: xe {' '.join(argv)}" for argv in argvs]


def open_hypervisor(host, log, connect_timeout_s, call_timeout_s):
    """The port's HypervisorFactory for xe: returns (Hypervisor, close) for a config host."""
    from hgs.net.ssh import Connection

    connection = Connection(host, connect_timeout_s, log)
    return Hypervisor(host, connection, call_timeout_s, log), connection.close


def __getattr__(name):  # the dry-run twin lived here; it is generic now
    if name == "DryRunHypervisor":
        from hgs.hypervisors.rehearsal import DryRunHypervisor

        return DryRunHypervisor
    raise AttributeError(name)

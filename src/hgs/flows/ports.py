"""The hypervisor as the flows see it, in hgs's words: the port every backend implements.

The flows (outage, restore, shed, inspect) speak to a pool only through ``Hypervisor``: one
configured host's view of its pool. They never build a backend's commands nor read its error
codes: a backend answers with the data classes below, reports how each VM call of a batch
ended as an ``Outcome`` of one of hgs's ``Kind``s, and raises ``hgs.errors.HypervisorError``
(whose ``kind`` is one of the same) when a call is refused. Anything a host does beyond that
(no answer, a dropped connection, garbage) is some other ``hgs.errors.RemoteFault``.

Power states are hgs's words too: "running", "halted", "suspended" (a backend maps its own,
and may report others, e.g. "paused", which the flows treat as neither).

To add a backend: implement ``Hypervisor`` (and ``Batch``), map its refusals to ``Kind`` in its
own folder, and build it in ``hgs.wiring``. The dry-run twin (``hgs.hypervisors.rehearsal``)
wraps any backend; no flow changes.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Protocol, runtime_checkable

RUNNING, HALTED, SUSPENDED = "running", "halted", "suspended"


class Kind(str, Enum):
    """How a hypervisor call ended (an Outcome's or a HypervisorError's ``kind``)."""

    DONE = "done"  # it did what was asked
    ALREADY = "already"  # the VM already was in a state that makes the call moot; ``state`` says which
    SUSPENDED = "suspended"  # the VM was found suspended
    GONE = "gone"  # the VM (or object) no longer exists
    NO_TOOLS = "no_tools"  # a clean shutdown cannot work (no guest tools): force it at once
    BUSY = "busy"  # another operation on the object is in progress
    BOOTING = "booting"  # the host's management API is still starting: ask again later
    NOT_DISABLED = "not_disabled"  # host shutdown refused: the host must be disabled first
    MISSING = "missing"  # the hypervisor's tools cannot be run on that host at all
    FAILED = "failed"  # anything else; the message says what


@dataclass(frozen=True)
class VmInfo:
    uuid: str
    name: str
    power_state: str
    resident_on: str | None  # the uuid of the host it runs on, if any
    order: int  # start order group (lower first)
    start_delay: int  # seconds to wait after starting it before the next group
    tools: bool  # guest tools present: a clean shutdown can work


@dataclass(frozen=True)
class HostInfo:
    uuid: str
    name: str
    address: str
    enabled: bool


@dataclass(frozen=True)
class PoolInfo:
    uuid: str
    master: str  # the uuid of the host that runs the pool's commands
    ha_enabled: bool


@dataclass(frozen=True)
class Outcome:
    """How one VM call of a batch ended.

    ``state`` is the power state found when the kind is ALREADY or SUSPENDED; ``message`` is
    the backend's own short words for anything but DONE; ``unexpected`` when the backend could
    not tell what the refusal means (news to hgs: a fault of the run, not the VM's outcome only).
    """

    uuid: str
    kind: Kind
    state: str | None = None
    message: str = ""
    unexpected: bool = False

    @property
    def ok(self):
        return self.kind == Kind.DONE


@runtime_checkable
class Batch(Protocol):
    """VM calls running side by side; ``poll()`` returns the Outcomes that arrived since the
    last poll (never blocks long). ``pending`` holds the uuids not yet answered; ``lost`` is
    True when the channel died before every call answered."""

    pending: set

    def poll(self) -> list[Outcome]: ...

    def wait(self, timeout_s: float) -> None: ...  # returns when an outcome may have arrived, or after timeout_s

    @property
    def lost(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class Hypervisor(Protocol):
    """One configured host's view of its pool. Reads raise a RemoteFault when they cannot
    answer; changes raise HypervisorError (with its kind) when refused."""

    @property
    def name(self) -> str: ...  # the config host it talks to

    # -- reads --------------------------------------------------------------------------
    def pool(self) -> PoolInfo: ...

    def hosts(self) -> list[HostInfo]: ...

    def vms(self, running_only: bool = True) -> list[VmInfo]: ...

    def power_states(self) -> dict[str, str]: ...  # every VM of the pool: {uuid: power state}, one call

    def ha_statefile_srs(self, pool_uuid: str) -> list[str]: ...  # what HA needs to be turned on again

    # -- changes ------------------------------------------------------------------------
    def disable_ha(self) -> None: ...

    def enable_ha(self, srs: list[str]) -> None: ...  # no SRs: the hypervisor picks one

    def disable_host(self, host_uuid: str) -> None: ...

    def enable_host(self, host_uuid: str) -> None: ...

    def shutdown_host(self, host_uuid: str) -> str: ...  # 'sent', or 'sent, session dropped'

    def reset_powerstate(self, vm_uuid: str) -> None: ...  # mark a VM halted that will not stop

    def warm_up(self) -> None: ...  # ready the next batch (e.g. its channel) ahead of time; changes nothing

    def shutdown_vms(self, uuids: Iterable[str], force: bool = False) -> Batch: ...

    def suspend_vms(self, uuids: Iterable[str]) -> Batch: ...

    def start_vms(self, uuids: Iterable[str], resume: Iterable[str] = ()) -> Batch: ...  # resume: of those, the suspended

    # optional: ``describe(change, *args, **kwargs) -> [str]``: what a change (one of CHANGES, with
    # its arguments) would run, in the backend's own words, for the dry-run twin's log


READS = ("name", "pool", "hosts", "vms", "power_states", "ha_statefile_srs")
PREPARES = ("warm_up",)  # readies a later call; neither reads the site nor changes it
OPTIONAL = ("describe",)
CHANGES = ("disable_ha", "enable_ha", "disable_host", "enable_host", "shutdown_host", "reset_powerstate",
           "shutdown_vms", "suspend_vms", "start_vms")


class HypervisorFactory(Protocol):
    """Opens the hypervisor of one config host (HostSettings) for a look: returns
    (Hypervisor, close) where ``close()`` ends its connection."""

    def __call__(self, host, log, connect_timeout_s: float, call_timeout_s: float) -> tuple: ...


# -- the rest of the world, as the flows use it (hgs.flows.outage.Deps) ---------------------------

class Clock(Protocol):
    def now(self) -> float: ...  # monotonic seconds

    def wall(self) -> float: ...  # epoch seconds

    def sleep(self, seconds: float) -> None: ...


class Prober(Protocol):
    """Whether a host (HostSettings, or anything with name, address, ssh_port, down_check)
    answers; a prober may also offer ``are_down(hosts) -> [bool]`` probing them side by side."""

    def is_up(self, host) -> bool: ...

    def is_down(self, host) -> bool: ...


class Waker(Protocol):
    def wake(self, host) -> None: ...  # Wake-on-LAN for a config host; raises WakeError


class StateStore(Protocol):
    def load(self) -> dict: ...

    def save(self, data: dict) -> dict: ...


# -- what every flow shares about hosts --------------------------------------------------------

def match_config(host_infos, settings_hosts):
    """Returns {host uuid: HostSettings}: by name first, else by an address only one config host has."""
    found = {}
    for info in host_infos:
        config = config_for(info, settings_hosts)
        if config is not None:
            found[info.uuid] = config
    return found


def config_for(info, settings_hosts):
    """Returns the config host (HostSettings) of the HostInfo ``info``, or None."""
    by_name = [h for h in settings_hosts if h.name == info.name]
    if by_name:
        return by_name[0]
    by_address = [h for h in settings_hosts if h.address == info.address]
    return by_address[0] if len(by_address) == 1 else None


def info_for(config, host_infos):
    """Returns the HostInfo of the config host ``config`` among ``host_infos``: by name first,
    else the one host with its address; None when neither finds exactly one."""
    by_name = [i for i in host_infos if i.name == config.name]
    if by_name:
        return by_name[0]
    by_address = [i for i in host_infos if i.address == config.address]
    return by_address[0] if len(by_address) == 1 else None


def host_stages(hosts, is_master, masters_first=False):
    """Given hosts and ``is_master(host)``, returns the non-empty stages in order: the members
    then the masters (shutting down), or the masters then the members (``masters_first``: waking)."""
    masters = [h for h in hosts if is_master(h)]
    members = [h for h in hosts if not is_master(h)]
    return [stage for stage in ((masters, members) if masters_first else (members, masters)) if stage]

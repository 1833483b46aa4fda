"""Looking at the site without changing it: every host asked in parallel, within a budget.

Used by `hgs status` (fast: a few seconds at most) and `hgs selftest`. Each host's answer
says what it is (master, enabled, HA, VMs, guests without tools) or exactly what failed
(host key, SSH, xe, or no answer within the budget).
"""

from hgs.box import threads
from hgs.errors import HgsError, HostKeyError, HypervisorError, RemoteError
from hgs.flows.ports import HALTED, RUNNING, Kind, info_for


def _default_factory():
    from hgs.wiring import open_hypervisor

    return open_hypervisor


def inspect_host(host, log, connect_timeout_s, xe_timeout_s, open_hypervisor=None):
    """Returns a dict describing one host (HostSettings), or the failure and its kind.
    ``open_hypervisor`` is the port's HypervisorFactory (the wiring's by default)."""
    out = {"name": host.name, "address": f"{host.address}:{host.ssh_port}", "reachable": False, "error": None,
           "error_kind": None}
    hv, close = (open_hypervisor or _default_factory())(host, log, connect_timeout_s, xe_timeout_s)
    try:
        pool = hv.pool()
        out["reachable"] = True
        infos = hv.hosts()
        vms = hv.vms(running_only=False)
        me = info_for(host, infos)
        here = [v for v in vms if v.power_state == RUNNING and me is not None and v.resident_on == me.uuid]
        out.update(
            pool=pool.uuid, master=(me.uuid == pool.master) if me else None, enabled=me.enabled if me else None,
            ha_enabled=pool.ha_enabled, pool_hosts=len(infos),
            vms_running=len(here),
            vms_halted=sum(v.power_state == HALTED for v in vms),
            no_tools=sorted(v.name for v in here if not v.tools),
            running=[{"uuid": v.uuid, "name": v.name, "order": v.order, "tools": v.tools}
                     for v in vms if v.power_state == RUNNING],
            vms=[{"uuid": v.uuid, "name": v.name, "power_state": v.power_state, "tools": v.tools, "order": v.order}
                 for v in sorted(vms, key=lambda v: v.name) if me is not None and v.resident_on == me.uuid],
            halted=sorted(v.name for v in vms if v.power_state == HALTED),
        )
    except HostKeyError as err:
        out.update(error=str(err), error_kind="host key")
    except HypervisorError as err:
        out.update(error=str(err), error_kind="xe missing" if err.kind == Kind.MISSING else "xe")
    except RemoteError as err:
        out.update(error=str(err), error_kind="ssh")
    except HgsError as err:
        out.update(error=str(err), error_kind="other")
    finally:
        close()
    return out


def inspect_site(hosts, log, connect_timeout_s, xe_timeout_s, budget_s, open_hypervisor=None):
    """Returns [host dict] in config order; a host not done within ``budget_s`` says so."""
    results = threads.within(lambda host: inspect_host(host, log, connect_timeout_s, xe_timeout_s, open_hypervisor),
                             hosts, budget_s)
    out = []
    for host in hosts:
        found = results.get(host)
        out.append(found if isinstance(found, dict) else {
            "name": host.name, "address": f"{host.address}:{host.ssh_port}", "reachable": False,
            "error": f"{host.name}: no answer within {budget_s:g} s (timed out)", "error_kind": "timeout"})
    return out

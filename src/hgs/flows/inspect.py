"""Looking at the site without changing it: every host asked in parallel, within a budget.

Used by `hgs status` (fast: a few seconds at most) and `hgs selftest`. Each host's answer
says what it is (master, enabled, HA, VMs, guests without tools) or exactly what failed
(host key, SSH, xe, or no answer within the budget).
"""

import threading
import time

from hgs.errors import HgsError
from hgs.hypervisors.xen.backend import Hypervisor, XeCallError, XeMissing
from hgs.net.ssh import Connection, HostKeyError, RemoteError


def inspect_host(host, log, connect_timeout_s, xe_timeout_s):
    """Returns a dict describing one host (HostSettings), or the failure and its kind."""
    out = {"name": host.name, "address": f"{host.address}:{host.ssh_port}", "reachable": False, "error": None,
           "error_kind": None}
    connection = Connection(host, connect_timeout_s, log)
    hv = Hypervisor(host, connection, xe_timeout_s, log)
    try:
        pool = hv.pool()
        out["reachable"] = True
        infos = hv.hosts()
        vms = hv.vms(running_only=False)
        me = next((i for i in infos if i.name == host.name), None)  # by name-label first,
        if me is None:  # else by address, when exactly one host has it
            same = [i for i in infos if i.address == host.address]
            me = same[0] if len(same) == 1 else None
        here = [v for v in vms if v.power_state == "running" and me is not None and v.resident_on == me.uuid]
        out.update(
            pool=pool.uuid, master=(me.uuid == pool.master) if me else None, enabled=me.enabled if me else None,
            ha_enabled=pool.ha_enabled, pool_hosts=len(infos),
            vms_running=len(here),
            vms_halted=sum(v.power_state == "halted" for v in vms),
            no_tools=sorted(v.name for v in here if not v.tools),
            running=[{"uuid": v.uuid, "name": v.name, "order": v.order, "tools": v.tools}
                     for v in vms if v.power_state == "running"],
            vms=[{"uuid": v.uuid, "name": v.name, "power_state": v.power_state, "tools": v.tools, "order": v.order}
                 for v in sorted(vms, key=lambda v: v.name) if me is not None and v.resident_on == me.uuid],
            halted=sorted(v.name for v in vms if v.power_state == "halted"),
        )
    except HostKeyError as err:
        out.update(error=str(err), error_kind="host key")
    except XeMissing as err:
        out.update(error=str(err), error_kind="xe missing")
    except XeCallError as err:
        out.update(error=str(err), error_kind="xe")
    except RemoteError as err:
        out.update(error=str(err), error_kind="ssh")
    except HgsError as err:
        out.update(error=str(err), error_kind="other")
    finally:
        connection.close()
    return out


def inspect_site(hosts, log, connect_timeout_s, xe_timeout_s, budget_s):
    """Returns [host dict] in config order; a host not done within ``budget_s`` says so."""
    results = {}

    def work(host):
        results[host.name] = inspect_host(host, log, connect_timeout_s, xe_timeout_s)

    threads = [threading.Thread(target=work, args=(h,), daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    out = []
    for host in hosts:
        out.append(results.get(host.name) or {
            "name": host.name, "address": f"{host.address}:{host.ssh_port}", "reachable": False,
            "error": f"{host.name}: no answer within {budget_s:g} s (timed out)", "error_kind": "timeout"})
    return out

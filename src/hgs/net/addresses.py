"""Host addresses resolved while the site is healthy, kept for when its name service is not.

A site's DNS server is often one of its own VMs (a Pi-hole, a domain controller). The outage
shuts it down and must still confirm that hosts configured by name are down; the restore must
reach them before any VM runs. So every configured host name is resolved at each flow's start
and at selftest, and the answers are kept in the state folder (addresses.json, written
atomically). Later, a lookup that fails falls back to the last known address, and says so in
the log: a failed lookup never makes a host "down".
"""

import ipaddress
import json
import os
import socket
import threading
import time

from hgs.box import threads
from hgs.box.files import write_atomic
from hgs.errors import HgsError, LookupFailed

FILE_NAME = "addresses.json"
RETRY_S = 30.0  # after a failed lookup, the kept address is used this long before asking again
LOOKUP_WAIT_S = 5.0  # the longest a flow's start waits for the name service


def is_literal(address):
    """Returns True for an IP address (no lookup needed)."""
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False


def system_resolve(name):
    """Returns the addresses of ``name`` from the system's resolver (in its order); raises LookupFailed."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise LookupFailed(f"{name} does not resolve ({getattr(err, 'strerror', None) or err})") from None
    found = list(dict.fromkeys(info[4][0] for info in infos))
    if not found:
        raise LookupFailed(f"{name} does not resolve (no address)")
    return found


class AddressBook:
    """The kept addresses of host names, in ``state_dir``/addresses.json.

    ``refresh(names)`` resolves now and keeps the answers (written when they changed, unless
    ``save`` is False: a dry run writes nothing); ``address(name)`` returns what to connect to.
    """

    def __init__(self, state_dir, log=None, resolver=system_resolve, save=True, clock=time.monotonic):
        self.path = os.path.join(str(state_dir), FILE_NAME)
        self.log = log
        self.resolver = resolver
        self.save = save
        self.clock = clock
        self.known = self._read()
        self.failed = {}  # name -> (monotonic time of the last failed lookup, why)
        self.told = set()
        self.retrying = set()

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        known = {}
        for name, entry in (data.items() if isinstance(data, dict) else ()):
            found = entry.get("addresses") if isinstance(entry, dict) else None
            if isinstance(found, list) and found and all(isinstance(a, str) and is_literal(a) for a in found):
                known[name] = {"addresses": found, "since": str(entry.get("since", "?"))}
        return known

    def _write(self):
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            write_atomic(self.path, json.dumps(self.known, indent=2, sort_keys=True))
        except OSError as err:
            self._say("warning", "cannot keep the host addresses in %s: %s", self.path, err.strerror or err)

    def _say(self, level, *args):
        if self.log is not None:
            getattr(self.log, level)(*args)

    def _lookup_all(self, names):
        """Returns {name: [address] or LookupFailed}, asking for every name at once and waiting at
        most LOOKUP_WAIT_S: a dead DNS server must not cost the battery one timeout per host."""
        done = threads.within(self.resolver, names, LOOKUP_WAIT_S)  # one still running is not waited for
        answers = {}
        for n in names:
            found = done.get(n, LookupFailed(f"{n} does not resolve (no answer within {LOOKUP_WAIT_S:g} s)"))
            if isinstance(found, Exception) and not isinstance(found, LookupFailed):
                found = LookupFailed(f"{n} does not resolve ({found})")
            answers[n] = found
        return answers

    def refresh(self, names):
        """Resolves every name now and keeps the answers; returns {name: why} of those that failed
        (each logged, with the address that will be used instead, if one is kept)."""
        failures, changed = {}, False
        for name, found in self._lookup_all([n for n in dict.fromkeys(names) if not is_literal(n)]).items():
            if isinstance(found, LookupFailed):
                failures[name] = str(found)
                self.failed[name] = (self.clock(), str(found))
                kept = self.known.get(name)
                self._say("warning", "%s; %s", found, f"its last known address {kept['addresses'][0]} (kept since "
                          f"{kept['since']}) will be used" if kept else "no address of it is kept: run 'hgs selftest' "
                          "while the name service works")
                continue
            self.failed.pop(name, None)
            if self.known.get(name, {}).get("addresses") != found:
                self.known[name] = {"addresses": found, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                changed = True
        if changed and self.save:
            self._write()
        return failures

    def _retry(self, name):
        """Asks for ``name`` again in the background; once it resolves, address() uses the answer."""
        def ask():
            try:
                self.resolver(name)
                self.failed.pop(name, None)
            except LookupFailed as err:
                self.failed[name] = (self.clock(), str(err))
            finally:
                self.retrying.discard(name)

        self.retrying.add(name)
        threading.Thread(target=ask, daemon=True).start()

    def address(self, name):
        """Returns the address to connect to for ``name``: the name's own answer when it resolves,
        else its last known address (logged once per run); raises LookupFailed when none is kept.
        While a name fails and an address is kept, it is asked again every RETRY_S in the
        background, so a probe loop never waits for a dead name server."""
        if is_literal(name):
            return name
        failed = self.failed.get(name)
        kept = self.known.get(name)
        if failed is None or (kept is None and self.clock() - failed[0] >= RETRY_S):
            try:
                found = self.resolver(name)
                self.failed.pop(name, None)
                return found[0]
            except LookupFailed as err:
                failed = self.failed[name] = (self.clock(), str(err))
        elif self.clock() - failed[0] >= RETRY_S and name not in self.retrying:
            self._retry(name)
        if kept is None:
            raise LookupFailed(f"{failed[1]} and no address of it is kept (run 'hgs selftest' while the name "
                               "service works)")
        if name not in self.told:
            self.told.add(name)
            self._say("warning", "%s: using its last known address %s (kept since %s)", failed[1],
                      kept["addresses"][0], kept["since"])
        return kept["addresses"][0]


def nameservers(resolv_conf="/etc/resolv.conf"):
    """Returns the name server addresses listed in resolv.conf (empty when it cannot be read)."""
    try:
        with open(resolv_conf, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and is_literal(parts[1].split("%")[0]):
            found.append(parts[1].split("%")[0])
    return found


def in_hosts_file(name, hosts_file="/etc/hosts"):
    """Returns True when ``name`` is listed in the hosts file (resolved without any DNS server)."""
    try:
        with open(hosts_file, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    wanted = name.rstrip(".").lower()
    return any(wanted in (n.lower() for n in line.split("#", 1)[0].split()[1:]) for line in lines)


def parse_networks(value):
    """Given a VM's xe 'networks' map ('0/ip: 10.0.0.5; 0/ipv6/0: fe80::1'), returns its addresses."""
    found = []
    for item in value.split(";"):
        _, sep, address = item.partition(":")
        address = address.strip()
        if sep and is_literal(address):
            found.append(str(ipaddress.ip_address(address)))
    return found


def dns_warnings(host_names, host_addresses, vm_addresses, servers, listed_in_hosts):
    """Given the configured host names, the host addresses hgs knows, {VM name: [address]} of the
    pool (when xe shows them), the name servers and a test for the hosts file, returns the
    warnings about names that resolve through a server the outage may shut down."""
    by_name = [n for n in host_names if not is_literal(n) and not listed_in_hosts(n)]
    if not by_name or not servers:
        return []
    hosts = {str(ipaddress.ip_address(a)) for a in host_addresses if is_literal(a)}
    warnings = []
    for server in servers:
        server = str(ipaddress.ip_address(server))
        vms = sorted(name for name, found in vm_addresses.items() if server in found)
        if vms:
            warnings.append(f"the host names {', '.join(by_name)} resolve through the DNS server {server} "
                            f"(/etc/resolv.conf), which is the VM {', '.join(vms)} of the pool: the outage shuts it "
                            "down. hgs then uses the addresses it kept at its last run; list the hosts in /etc/hosts "
                            "or configure them by IP address to depend on nothing")
        elif server not in hosts:
            warnings.append(f"the host names {', '.join(by_name)} resolve through the DNS server {server} "
                            "(/etc/resolv.conf), which is not one of the hosts: if it is a VM of the pool (its address "
                            "is not visible to xe), the names stop resolving once the outage shuts it down. hgs "
                            "then uses the addresses it kept; list the hosts in /etc/hosts or configure them by IP "
                            "address to depend on nothing")
    return warnings


def selftest_warnings(settings, log, inspected, resolv_conf="/etc/resolv.conf", hosts_file="/etc/hosts"):
    """Resolves and keeps every configured host name (selftest runs while the site is healthy);
    returns the warnings: names that do not resolve, and names that resolve through a DNS server
    the outage may shut down (a VM of the pool, when xe shows the guests' addresses).
    ``inspected`` is inspect_site's answer (the running VMs of each host that answered)."""
    names = [h.address for h in settings.hosts]
    book = AddressBook(settings.paths.state_dir, log)
    warnings = [f"{why}: an outage or restore that starts now falls back to the address kept at the last run"
                for why in book.refresh(names).values()]
    servers = nameservers(resolv_conf)
    if not servers or all(is_literal(n) or in_hosts_file(n, hosts_file) for n in names):
        return warnings
    vm_names = {vm["uuid"]: vm["name"] for r in inspected for vm in (r.get("running") or ())}
    vm_addresses = {}
    for host, result in zip(settings.hosts, inspected):
        if result.get("reachable") and not result.get("error"):
            vm_addresses = _guest_addresses(host, settings, log)
            break
    host_addresses = [a for n in names for a in ([n] if is_literal(n) else book.known.get(n, {}).get("addresses", []))]
    guests = {vm_names.get(u, u): found for u, found in vm_addresses.items()}
    return warnings + dns_warnings(names, host_addresses, guests, servers, lambda n: in_hosts_file(n, hosts_file))


def _guest_addresses(host, settings, log):
    from hgs.hypervisors.xen.backend import Hypervisor
    from hgs.net.ssh import Connection

    connection = Connection(host, settings.timings.ssh_connect_timeout_s, log)
    try:
        return Hypervisor(host, connection, settings.timings.xe_timeout_s, log).vm_networks()
    except HgsError:  # not seen: the warning says what hgs cannot tell
        return {}
    finally:
        connection.close()

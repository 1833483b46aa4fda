"""Host names and a name service that is one of the site's own VMs.

Names are resolved at each flow's start and at selftest and kept in the state folder; a lookup
that fails later falls back to the kept address and says so; a failed lookup is never "down".
The end-to-end test runs hgs in its own mount namespace with an /etc/hosts the test controls.
"""

import json
import logging
import stat
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from hgs.hypervisors.xen.backend import Hypervisor
from hgs.net import addresses
from hgs.net.addresses import AddressBook, LookupFailed
from hgs.net.probe import Prober
from hgs.net.ssh import Result
from harness import HGS, wait_for, write

fault = pytest.mark.fault


class Names:
    """A resolver over a table that the test can switch off (the DNS VM shut down)."""

    def __init__(self, table):
        self.table, self.working, self.asked = dict(table), True, 0

    def __call__(self, name):
        self.asked += 1
        if not self.working or name not in self.table:
            raise LookupFailed(f"{name} does not resolve (Temporary failure in name resolution)")
        return [self.table[name]]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def memory_log():
    records = []
    log = logging.getLogger(f"test-addresses-{id(records)}")
    log.handlers[:] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    log.addHandler(handler)
    log.propagate = False
    return log, records


def test_names_resolved_while_healthy_are_kept_atomically_and_privately(tmp_path):
    names = Names({"xen1.lan": "10.0.0.11", "xen2.lan": "10.0.0.12"})
    book = AddressBook(tmp_path / "state", resolver=names)
    assert book.refresh(["xen1.lan", "xen2.lan", "10.0.0.13"]) == {}
    path = tmp_path / "state" / "addresses.json"
    kept = json.loads(path.read_text())
    assert {n: e["addresses"] for n, e in kept.items()} == {"xen1.lan": ["10.0.0.11"], "xen2.lan": ["10.0.0.12"]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["addresses.json"]  # no temporary file left
    names.table["xen1.lan"] = "10.0.0.21"  # renumbered: the next healthy lookup is kept
    AddressBook(tmp_path / "state", resolver=names).refresh(["xen1.lan"])
    assert json.loads(path.read_text())["xen1.lan"]["addresses"] == ["10.0.0.21"]


def test_a_dry_run_keeps_nothing(tmp_path):
    AddressBook(tmp_path, resolver=Names({"xen1.lan": "10.0.0.11"}), save=False).refresh(["xen1.lan"])
    assert not (tmp_path / "addresses.json").exists()


def test_a_failed_lookup_falls_back_to_the_kept_address_says_so_once_and_asks_again_later(tmp_path):
    names = Names({"xen1.lan": "10.0.0.11"})
    AddressBook(tmp_path, resolver=names).refresh(["xen1.lan"])
    names.working = False
    log, said = memory_log()
    clock = Clock()
    book = AddressBook(tmp_path, log, resolver=names, clock=clock)  # a later run: only the file is known
    assert book.refresh(["xen1.lan"]) == {"xen1.lan": "xen1.lan does not resolve (Temporary failure in name resolution)"}
    assert book.address("xen1.lan") == "10.0.0.11"
    assert book.address("xen1.lan") == "10.0.0.11"
    assert any("last known address 10.0.0.11" in line for line in said)
    assert sum("using its last known address 10.0.0.11" in line for line in said) == 1
    asked = names.asked
    clock.t = addresses.RETRY_S - 1
    book.address("xen1.lan")
    assert names.asked == asked  # a dead name service is not asked in every probe loop
    clock.t = addresses.RETRY_S + 1
    names.working = True
    names.table["xen1.lan"] = "10.0.0.31"
    assert book.address("xen1.lan") == "10.0.0.11"  # asked again in the background: no wait in a probe loop
    wait_for(lambda: "xen1.lan" not in book.failed, 5, "the background lookup")
    assert book.address("xen1.lan") == "10.0.0.31"
    assert json.loads((tmp_path / "addresses.json").read_text())["xen1.lan"]["addresses"] == ["10.0.0.11"]


def test_a_name_service_that_does_not_answer_holds_a_flow_start_for_a_bounded_time(tmp_path, monkeypatch):
    monkeypatch.setattr(addresses, "LOOKUP_WAIT_S", 0.3)
    hang = threading.Event()

    def silent(name):
        hang.wait(10)
        raise LookupFailed(f"{name} does not resolve (timed out)")

    book = AddressBook(tmp_path, resolver=silent)
    started = time.monotonic()
    try:
        failures = book.refresh([f"xen{i}.lan" for i in range(8)])
    finally:
        hang.set()
    assert time.monotonic() - started < 2  # not eight timeouts in a row
    assert sorted(failures) == [f"xen{i}.lan" for i in range(8)]
    assert "no answer within 0.3 s" in failures["xen0.lan"]


def test_no_kept_address_and_no_answer_is_a_clear_error(tmp_path):
    book = AddressBook(tmp_path, resolver=Names({}))
    with pytest.raises(LookupFailed) as caught:
        book.address("xen9.lan")
    assert "no address of it is kept" in str(caught.value) and "hgs selftest" in str(caught.value)


def banner_server(hostile_server):
    def ssh(conn, stop):
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        stop.wait(2)

    return hostile_server(ssh)


@fault('a host name that stops resolving while the host runs',
       "probed at its kept address; a failed lookup is never 'down'")
def test_a_host_whose_name_no_longer_resolves_is_never_down(tmp_path, hostile_server):
    port = banner_server(hostile_server)
    host = SimpleNamespace(name="xen1", address="xen1.lan", ssh_port=port, down_check="ssh")
    names = Names({"xen1.lan": "127.0.0.1"})
    AddressBook(tmp_path, resolver=names).refresh(["xen1.lan"])
    names.working = False
    # the kept address is probed: the running host is up, not "confirmed down"
    prober = Prober(0.5, addresses=AddressBook(tmp_path, resolver=names))
    assert prober.is_up(host) and not prober.is_down(host)
    # nothing kept: neither up nor down (an outage waits for it and reports it still up)
    prober = Prober(0.5, addresses=AddressBook(tmp_path / "empty", resolver=names))
    assert not prober.is_up(host) and not prober.is_down(host)


def test_guest_addresses_from_xe_and_the_dns_warning(tmp_path):
    uuid_a, uuid_b = "00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000b2"
    listing = (f"uuid ( RO)    : {uuid_a}\n    networks (MRO): 0/ip: 192.168.1.53; 0/ipv4/0: 192.168.1.53; "
               f"0/ipv6/0: fe80::1\n\n\nuuid ( RO)    : {uuid_b}\n    networks (MRO): <not in database>\n\n\n")

    class Xe:
        def run(self, command, timeout_s):
            assert "params=uuid,networks" in command
            return Result(0, listing, "")

    hv = Hypervisor(SimpleNamespace(name="xen1", xe_path="xe"), Xe(), 10, logging.getLogger("t"))
    guests = hv.vm_networks()
    assert guests == {uuid_a: ["192.168.1.53", "192.168.1.53", "fe80::1"]}
    resolv = write(tmp_path / "resolv.conf", "# local\nsearch lan\nnameserver 192.168.1.53\n")
    hosts = write(tmp_path / "hosts", "127.0.0.1 localhost\n192.168.1.11 xen1.lan xen1\n")
    servers = addresses.nameservers(resolv)
    assert servers == ["192.168.1.53"]
    listed = lambda name: addresses.in_hosts_file(name, hosts)  # noqa: E731
    warned = addresses.dns_warnings(["xen2.lan"], ["192.168.1.12"], {"pihole": guests[uuid_a]}, servers, listed)
    assert len(warned) == 1 and "is the VM pihole of the pool" in warned[0] and "xen2.lan" in warned[0]
    # not visible to xe: still a warning, weaker
    warned = addresses.dns_warnings(["xen2.lan"], ["192.168.1.12"], {}, servers, listed)
    assert len(warned) == 1 and "not one of the hosts" in warned[0]
    # names in /etc/hosts, addresses, or a DNS server that is a host: nothing to say
    assert addresses.dns_warnings(["xen1.lan", "10.0.0.5"], [], {"pihole": guests[uuid_a]}, servers, listed) == []
    assert addresses.dns_warnings(["xen2.lan"], ["192.168.1.53"], {}, servers, listed) == []


# -- end to end: a pool configured by names, whose name service dies with its VMs ------------

SCENARIO = {
    "time_scale": 60,
    "hosts": [{"name": "master", "master": True, "mac": "02:00:00:00:0d:01", "shutdown_s": 10, "boot_s": 30,
               "xapi_start_s": 30},
              {"name": "member", "mac": "02:00:00:00:0d:02", "shutdown_s": 10, "boot_s": 30, "xapi_start_s": 30}],
    "vms": [{"name": "dns", "host": "master", "shutdown_s": 10}, {"name": "app", "host": "member", "shutdown_s": 10}],
}
HEALTHY = "127.0.0.1 localhost\n127.0.0.1 master.hgs.test\n127.0.0.1 member.hgs.test\n"
DEAD = "127.0.0.1 localhost\n"  # the names are gone (the DNS VM is down)
IN_NAMESPACE = 'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 99; shift 2; done; shift; exec "$@"'


def by_names(lab):
    """Rewrites the lab's config and known_hosts so that hgs knows the hosts by name only."""
    text = lab.config.read_text()
    lines = lab.site.known_hosts.read_text().splitlines()
    for name, door in lab.site.doors.items():
        text = text.replace(f"'name': '{name}', 'address': '127.0.0.1'", f"'name': '{name}', 'address': '{name}.hgs.test'")
        pinned = next(line for line in lines if line.startswith(f"[127.0.0.1]:{door.port} "))
        lines.append(pinned.replace("[127.0.0.1]", f"[{name}.hgs.test]"))
    lines = [line for line in lines if not line.startswith("[127.0.0.1]")]  # by name only
    assert text.count(".hgs.test'") == 2
    lab.config.write_text(text)
    lab.site.known_hosts.write_text("\n".join(lines) + "\n")


def hgs_in_namespace(lab, hosts_file, nsswitch, *args, resolv_conf=None):
    """Runs hgs in its own mount namespace, where /etc/hosts is ``hosts_file`` and only files
    resolve (unless ``nsswitch`` says otherwise, with ``resolv_conf`` naming the DNS server)."""
    binds = [str(hosts_file), "/etc/hosts", str(nsswitch), "/etc/nsswitch.conf"]
    binds += [str(resolv_conf), "/etc/resolv.conf"] if resolv_conf else []
    argv = ["unshare", "-m", "sh", "-c", IN_NAMESPACE, "sh", *binds, "--", HGS, "--config", str(lab.config), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


@fault('hosts configured by name; name resolution dies with the VMs (the DNS server is a VM of the pool)',
       "outage ends 'site down', restore ends restored, through the addresses kept at each start")
def test_outage_and_restore_by_names_while_name_resolution_dies_with_the_vms(site_lab, tmp_path):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.fail("unshare -m does not work here: the test needs mount namespaces (run as root)")
    lab = site_lab(SCENARIO, extra="MAIL = {'when': 'never'}\n")
    by_names(lab)
    hosts_file = write(tmp_path / "hosts", HEALTHY)
    nsswitch = write(tmp_path / "nsswitch.conf", "hosts: files\n")  # no DNS query leaves this box

    def names_die_with_the_vms():
        wait_for(lambda: set(lab.site.vm_states().values()) == {"halted"}, 60, "the VMs to be down", 0.05)
        with open(hosts_file, "w") as handle:  # in place: the bind mount follows this very file
            handle.write(DEAD)

    killer = threading.Thread(target=names_die_with_the_vms, daemon=True)
    killer.start()
    result = hgs_in_namespace(lab, hosts_file, nsswitch, "onbattery", "--foreground")
    killer.join(5)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "outage site down" in result.stdout or "site down" in result.stdout
    assert lab.state_file()["phase"] == "site_down"
    assert {h["power"] for h in lab.site.store.read()["hosts"].values()} == {"off"}
    assert hosts_file.read_text() == DEAD
    outage_log = lab.log_text()

    lab.ups.set_state("online")
    result = hgs_in_namespace(lab, hosts_file, nsswitch, "offbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.site.vm_states() == {"dns": "running", "app": "running"}
    assert lab.state_file()["phase"] == "idle"
    # how: the addresses kept at the outage's start, used once the names stopped resolving
    kept = json.loads((lab.site.workdir / "state" / "addresses.json").read_text())
    assert {n: e["addresses"] for n, e in kept.items()} == {"master.hgs.test": ["127.0.0.1"],
                                                              "member.hgs.test": ["127.0.0.1"]}
    assert "using its last known address 127.0.0.1" in outage_log
    restore_log = lab.log_text().split("offbattery: the power is back")[-1]
    assert "master.hgs.test does not resolve" in restore_log and "last known address 127.0.0.1" in restore_log


def test_selftest_keeps_the_addresses_of_the_hosts(site_lab, tmp_path):
    lab = site_lab({"hosts": [{"name": "master", "master": True, "mac": "02:00:00:00:0d:03"}],
                    "vms": [{"name": "one"}]}, extra="MAIL = {'when': 'never'}\n")
    by_names_one = lab.config.read_text().replace("'name': 'master', 'address': '127.0.0.1'",
                                                  "'name': 'master', 'address': 'master.hgs.test'")
    lab.config.write_text(by_names_one)
    door = lab.site.doors["master"]
    pinned = lab.site.known_hosts.read_text().replace(f"[127.0.0.1]:{door.port}", f"[master.hgs.test]:{door.port}")
    lab.site.known_hosts.write_text(pinned)
    hosts_file = write(tmp_path / "hosts", HEALTHY)
    nsswitch = write(tmp_path / "nsswitch.conf", "hosts: files\n")
    result = hgs_in_namespace(lab, hosts_file, nsswitch, "selftest", "-v", "--mail", "never")
    assert "ok    host master:" in result.stdout, result.stdout + result.stderr
    kept = json.loads((lab.site.workdir / "state" / "addresses.json").read_text())
    assert kept["master.hgs.test"]["addresses"] == ["127.0.0.1"]


class DnsStub:
    """A name server on a loopback address answering A queries from a table (nothing else: AAAA
    gets an empty answer, an unknown name NXDOMAIN). ``asked`` lists the names asked."""

    def __init__(self, address, table):
        import socket

        self.table, self.asked = table, []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            answer = self.answer(query)
            if answer:
                self.sock.sendto(answer, peer)

    def answer(self, query):
        import socket
        import struct

        if len(query) < 17:
            return None
        labels, at = [], 12
        while at < len(query) and query[at]:
            labels.append(query[at + 1:at + 1 + query[at]].decode("ascii", "replace"))
            at += 1 + query[at]
        qtype = struct.unpack("!H", query[at + 1:at + 3])[0]
        question = query[12:at + 5]
        name = ".".join(labels).lower()
        self.asked.append(name)
        found = self.table.get(name)
        flags = 0x8180 if found else 0x8183
        records = b""
        if found and qtype == 1:
            records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + socket.inet_aton(found)
        return query[:2] + struct.pack("!HHHHH", flags, 1, 1 if records else 0, 0, 0) + question + records

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@fault('host names that resolve through a DNS server (the Pi-hole VM case)',
       "selftest warns, naming the names and the server, and keeps the addresses")
def test_selftest_warns_when_the_host_names_depend_on_a_dns_server(site_lab, tmp_path):
    lab = site_lab({"hosts": [{"name": "master", "master": True, "mac": "02:00:00:00:0d:04"}],
                    "vms": [{"name": "pihole"}]}, extra="MAIL = {'when': 'never'}\n")
    lab.config.write_text(lab.config.read_text().replace("'name': 'master', 'address': '127.0.0.1'",
                                                         "'name': 'master', 'address': 'master.hgs.test'"))
    door = lab.site.doors["master"]
    lab.site.known_hosts.write_text(lab.site.known_hosts.read_text().replace(f"[127.0.0.1]:{door.port}",
                                                                             f"[master.hgs.test]:{door.port}"))
    dns = DnsStub("127.0.0.2", {"master.hgs.test": "127.0.0.1"})
    try:
        result = hgs_in_namespace(lab, write(tmp_path / "hosts", "127.0.0.1 localhost\n"),
                                  write(tmp_path / "nsswitch.conf", "hosts: files dns\n"), "selftest", "-v", "--mail", "never",
                                  resolv_conf=write(tmp_path / "resolv.conf", "nameserver 127.0.0.2\n"
                                                                              "options timeout:1 attempts:1\n"))
    finally:
        dns.close()
    assert "master.hgs.test" in dns.asked
    assert "ok    host master:" in result.stdout, result.stdout + result.stderr
    assert ("warn  host names: the host names master.hgs.test resolve through the DNS server 127.0.0.2 "
            "(/etc/resolv.conf), which is not one of the hosts") in result.stdout, result.stdout
    kept = json.loads((lab.site.workdir / "state" / "addresses.json").read_text())
    assert kept["master.hgs.test"]["addresses"] == ["127.0.0.1"]

"""A whole simulated site on loopback, ready for hgs: the thing tests, benchmarks and the
demo stand up.

``SimSite`` creates the site from a scenario and starts its simulator server (one process
holding the site in memory; every host's `xe` is a small client of it), gives every host a front door (the
in-process SSH server, or a real OpenSSH sshd when ``front_door="openssh"``), an SSH key
for hgs and a pinned known_hosts file, a Wake-on-LAN listener, and a power watcher that
closes a host's door when it powers off and reopens it when it has booted. ``config_text``
writes a matching hgs configuration.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hgs.sim import site as sitemod
from hgs.sim import stop_process
from hgs.sim.power import PowerWatcher, WolListener
from hgs.sim.server import SiteClient, SiteServerProcess
from hgs.sim.xeclient import write_xe_wrapper

SSHD = "/usr/sbin/sshd"


class _InProcessDoor:
    address = "127.0.0.1"
    down_check = "ssh"  # ping on loopback always answers

    def __init__(self, folder, bin_dir, client_public, port=0):
        import paramiko

        from hgs.sim.sshd import SimSshServer

        key = paramiko.ECDSAKey.generate()
        self.server = SimSshServer(key, [client_public], bin_dir, port=port)
        self.port = self.server.port
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {key.get_name()} {key.get_base64()}"

    @property
    def connections(self):
        return self.server.connections

    def up(self):
        self.server.open()

    def down(self):
        self.server.close()

    def stop(self):
        self.server.close()


class _OpenSshDoor:
    """A real sshd for one host, stopped and started by its PID as the host's power changes."""

    address = "127.0.0.1"
    down_check = "ssh"
    netns = None

    def __init__(self, folder, bin_dir, client_public_line, port, address="127.0.0.1"):
        self.folder = Path(folder)
        self.port = port
        self.address = address
        host_key = self.folder / "hostkey"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        (self.folder / "authorized_keys").write_text(client_public_line + "\n")
        self.config = self.folder / "sshd_config"
        self.config.write_text(textwrap.dedent(f"""\
            Port {port}
            ListenAddress {address}
            HostKey {host_key}
            PidFile {self.folder}/sshd.pid
            AuthorizedKeysFile {self.folder}/authorized_keys
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            LogLevel INFO
            ClientAliveInterval 5
            ClientAliveCountMax 2
            SetEnv PATH={bin_dir}:/usr/bin:/bin:/usr/sbin:/sbin SHLVL=1
            """))
        name = address if port == 22 else f"[{address}]:{port}"
        self.known_hosts_line = f"{name} " + " ".join((host_key.with_suffix(".pub")).read_text().split()[:2])
        self.proc = None
        self.starts = 0
        self.spent_cpu_s = 0.0  # CPU of sshd runs that ended (their sessions and the commands run)
        os.makedirs("/run/sshd", exist_ok=True)
        self.up()

    def up(self):
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.folder / "sshd.log", "ab")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(prefix + [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.starts += 1
        _wait_port(self.port, 5, self.address)

    def allow_sessions(self, count):
        """Restarts this host's sshd allowing ``count`` sessions per connection (MaxSessions:
        a hardened host's setting; OpenSSH's default is 10)."""
        kept = [line for line in self.config.read_text().splitlines() if not line.startswith("MaxSessions ")]
        self.config.write_text("\n".join(kept + [f"MaxSessions {count}"]) + "\n")
        self.down()
        self.up()

    @property
    def cpu_seconds(self):
        """CPU seconds used by this host's sshd, its sessions and every command they ran, so far."""
        running = self.proc is not None and self.proc.poll() is None
        return self.spent_cpu_s + (tree_cpu_seconds(self.proc.pid) if running else 0.0)

    def down(self):
        if self.proc is not None and self.proc.poll() is None:
            self.spent_cpu_s += tree_cpu_seconds(self.proc.pid)
            # The whole process group: the listener and every session it forked (a power cut).
            # A session's shell in a session of its own ends with its connection (ClientAlive*);
            # it is never killed mid-start (a login shell killed in its rc files can leave their locks).
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)

    @property
    def connections(self):
        """SSH logins accepted so far (from sshd's log)."""
        log = self.folder / "sshd.log"
        return log.read_text(errors="replace").count("Accepted publickey") if log.exists() else 0

    def stop(self):
        self.down()


def _process_table():
    """Returns ({pid: parent pid}, {pid: CPU ticks of it and its reaped children}) from /proc."""
    parents, times = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(f) for f in fields[11:15])
    return parents, times


def _tree(pid, parents):
    children = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def tree_cpu_seconds(pid):
    """Returns the CPU seconds of ``pid`` and its live descendants, with the children each has
    reaped (from /proc; 0 for a process that is gone)."""
    parents, times = _process_table()
    return sum(times.get(p, 0) for p in _tree(pid, parents)) / os.sysconf("SC_CLK_TCK")


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


class _NamespaceDoor(_OpenSshDoor):
    """A host in its own network namespace (needs root and iproute2): real ping, real sshd,
    real Wake-on-LAN. Its address 10.254.N.2 exists only while it is powered; a second
    address (10.254.N.3, its NIC's standby) keeps the link receiving broadcasts, where a
    listener process in the namespace waits for the magic packet."""

    down_check = "ping+ssh"
    RANGE = "10.254.0.0/16"

    def __init__(self, folder, bin_dir, client_public_line, index, site_path, wol_drop_first=0):
        tag = f"{os.getpid() % 100000}{index}"
        self.netns = f"hgs{tag}"
        self.veth_host, self.veth_ns = f"hgh{tag}", f"hgn{tag}"
        net = f"10.254.{index + 1}"
        self.host_side, self.address, self.standby = f"{net}.1", f"{net}.2", f"{net}.3"
        self.wol_broadcast, self.wol_port = f"{net}.255", 9
        self.proc, self.listener = None, None
        try:
            self._create(folder, bin_dir, client_public_line, site_path, wol_drop_first)
        except BaseException:
            self.stop()  # leave no namespace, veth or process behind
            raise

    def _create(self, folder, bin_dir, client_public_line, site_path, wol_drop_first):
        _ip("route", "replace", "blackhole", self.RANGE)  # a downed link must never leak to the default route
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
        _ip("link", "set", self.veth_ns, "netns", self.netns)
        _ip("addr", "add", f"{self.host_side}/24", "brd", "+", "dev", self.veth_host)
        _ip("link", "set", self.veth_host, "up")
        _ip("-n", self.netns, "addr", "add", f"{self.standby}/24", "brd", "+", "dev", self.veth_ns)
        _ip("-n", self.netns, "link", "set", self.veth_ns, "up")
        _ip("-n", self.netns, "link", "set", "lo", "up")
        self.powered = False
        self.wol_log = Path(folder) / "wol.log"
        Path(folder).mkdir(parents=True, exist_ok=True)
        log = open(Path(folder) / "wol-listener.out", "ab")
        self.listener = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-m", "hgs.sim.power", "--site", str(site_path),
             "--listen", f"0.0.0.0:{self.wol_port}", "--log", str(self.wol_log), "--drop-first", str(wol_drop_first)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        super().__init__(folder, bin_dir, client_public_line, 22, address=self.address)

    def up(self):
        if not self.powered:
            _ip("-n", self.netns, "addr", "add", f"{self.address}/24", "dev", self.veth_ns)
            self.powered = True
        super().up()

    def down(self):
        super().down()
        if self.powered:
            _ip("-n", self.netns, "addr", "del", f"{self.address}/24", "dev", self.veth_ns)
            self.powered = False

    def wol_packets(self):
        """Returns [(kind, mac)] of the packets the listener in the namespace got."""
        if not self.wol_log.exists():
            return []
        return [tuple(line.split()[1:3]) for line in self.wol_log.read_text().splitlines()]

    def stop(self):
        if self.proc is not None:
            self.down()
        stop_process(self.listener)
        subprocess.run(["ip", "link", "del", self.veth_host], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


def _wait_port(port, timeout_s, address="127.0.0.1"):
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {address}:{port} after {timeout_s} s")


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SimSite:
    """A simulated site in ``workdir`` from ``scenario`` (a dict or a TOML path)."""

    def __init__(self, workdir, scenario, front_door="inprocess", wol_drop_first=0, compiled_xe=True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        site_path = self.workdir / "site.json"
        sitemod.SiteStore.create(site_path, scenario).close()
        self.server = SiteServerProcess(site_path)
        self.store = SiteClient(site_path)
        self.front_door = front_door
        self.compiled_xe = compiled_xe
        self.doors = {}
        try:
            self._start(wol_drop_first)
        except BaseException:
            self.server.stop()
            raise

    def _start(self, wol_drop_first):
        state = self.store.read_hosts()
        self.hosts = {h["name"]: h for h in state["hosts"].values()}
        self.key_file = self.workdir / "id_hgs"
        public = self._client_key()
        self.known_hosts = self.workdir / "known_hosts"
        self.doors = {}
        self.bin_dirs = {}
        try:
            self._open_doors(public, wol_drop_first)
        except BaseException:
            for door in self.doors.values():  # leave no sshd, listener or namespace behind
                door.stop()
            raise
        self.known_hosts.write_text("".join(d.known_hosts_line + "\n" for d in self.doors.values()))
        self.known_hosts.chmod(0o600)
        self.wol = WolListener(self.store, "127.0.0.1", 0, drop_first=wol_drop_first)
        self.power_log = []
        self.watcher = PowerWatcher(self.store, self._power_changed)

    def _open_doors(self, public, wol_drop_first):
        front_door = self.front_door
        for name in self.hosts:
            folder = self.workdir / "hosts" / name
            bin_dir = folder / "bin"
            bin_dir.mkdir(parents=True, exist_ok=True)
            write_xe_wrapper(str(bin_dir), str(self.store.path), name, compiled=self.compiled_xe)
            self.bin_dirs[name] = bin_dir
            if front_door == "netns":
                self.doors[name] = _NamespaceDoor(folder, bin_dir, public, len(self.doors), self.store.path,
                                                  wol_drop_first)
            elif front_door == "openssh":
                self.doors[name] = _OpenSshDoor(folder, bin_dir, public, _free_port())
            else:
                self.doors[name] = _InProcessDoor(folder, bin_dir, public)

    def _client_key(self):
        """Makes hgs's SSH key; returns the public key (a paramiko key, or an OpenSSH line)."""
        if self.front_door in ("openssh", "netns"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key_file)], check=True)
            return self.key_file.with_suffix(".pub").read_text().strip()
        import paramiko

        key = paramiko.ECDSAKey.generate()
        key.write_private_key_file(str(self.key_file))
        os.chmod(self.key_file, 0o600)
        return key

    def _power_changed(self, host_name, reachable):
        door = self.doors.get(host_name) if hasattr(self, "doors") else None
        self.power_log.append((time.time(), host_name, reachable))
        if door is None:
            return
        if reachable:
            door.up()
        else:
            door.down()

    def hosts_block(self):
        """Returns the HOSTS list (Python source) for an hgs config pointing at this site."""
        entries = []
        for name, host in self.hosts.items():
            door = self.doors[name]
            broadcast = getattr(door, "wol_broadcast", "127.0.0.1")
            wol_port = getattr(door, "wol_port", self.wol.port)
            entries.append(
                f"    {{'name': {name!r}, 'address': {door.address!r}, 'ssh_port': {door.port}, "
                f"'ssh_key_file': {str(self.key_file)!r}, 'known_hosts_file': {str(self.known_hosts)!r}, "
                f"'mac': {host['mac']!r}, 'wol_broadcast': {broadcast!r}, 'wol_port': {wol_port}, "
                f"'down_check': {door.down_check!r}, 'xe_path': {str(self.bin_dirs[name] / 'xe')!r}}},")
        return "[\n" + "\n".join(entries) + "\n]"

    def config_text(self, ups, timings=None, extra=""):
        """Returns an hgs config module for this site; ``ups`` is the UPS dict's Python source."""
        paths = {"state_dir": str(self.workdir / "state"), "log_file": str(self.workdir / "hgs.log"),
                 "lock_dir": str(self.workdir / "lock")}
        return "\n".join([f"UPS = {ups}", f"HOSTS = {self.hosts_block()}", f"TIMINGS = {timings or {}!r}",
                          f"PATHS = {paths!r}", "LOGGING = {'syslog': False}", ""]) + extra

    def vm_states(self):
        """Returns {vm name: power state} of the guests (control domains left out)."""
        state = self.store.read()
        return {v["name"]: v["power_state"] for v in state["vms"].values() if not v["control_domain"]}

    def stop(self):
        self.watcher.stop()
        self.wol.stop()
        for door in self.doors.values():
            door.stop()
        if any(isinstance(d, _NamespaceDoor) for d in self.doors.values()):
            subprocess.run(["ip", "route", "del", "blackhole", _NamespaceDoor.RANGE], capture_output=True)
        self.server.stop()

"""Is a host up? Ping (iputils, exit status only) and an SSH banner, each with a deadline.

A host counts as down when every check its config names ("ping+ssh", "ping", "ssh")
finds it silent. An SSH port that accepts but never sends a banner is not "up". A host name
that does not resolve says nothing about the host: it is neither up nor down, and with an
AddressBook the host's last known address is probed instead (hgs.net.addresses).
"""

import shutil
import socket
import subprocess

from hgs.net.addresses import LookupFailed, is_literal, system_resolve


def ping(address, timeout_s=1.0):
    """Returns True when one echo reply came back within ``timeout_s``."""
    binary = shutil.which("ping") or "/bin/ping"
    try:
        result = subprocess.run([binary, "-c", "1", "-W", f"{max(0.2, timeout_s):g}", address],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout_s + 2)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def ssh_banner(address, port, timeout_s=2.0):
    """Returns True when an SSH server answers with its banner within ``timeout_s``."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


class Prober:
    """Answers ``is_up(host)`` / ``is_down(host)`` by the checks the host's ``down_check`` names;
    ``addresses`` (an AddressBook) gives the address to probe, falling back to the kept one."""

    def __init__(self, timeout_s=1.0, addresses=None):
        self.timeout_s = timeout_s
        self.addresses = addresses

    def answers(self, host):
        """Returns True (answers), False (silent) or None (its name does not resolve: unknown)."""
        try:
            if self.addresses is not None:
                address = self.addresses.address(host.address)
            else:
                address = host.address if is_literal(host.address) else system_resolve(host.address)[0]
        except LookupFailed:
            return None
        checks = host.down_check.split("+")
        if "ping" in checks and ping(address, self.timeout_s):
            return True
        if "ssh" in checks and ssh_banner(address, host.ssh_port, self.timeout_s):
            return True
        return False

    def is_up(self, host):
        return self.answers(host) is True

    def is_down(self, host):
        return self.answers(host) is False


class DryRunProber:
    """A dry run probes for real, and treats a wait as done: a host it pretended to wake
    (``woken``, shared with the dry-run waker) is up, and a shut-down host is down."""

    def __init__(self, woken, real=None):
        self.woken = woken
        self.real = real or Prober()

    def is_up(self, host):
        return host.name in self.woken or self.real.is_up(host)

    def is_down(self, host):
        return True

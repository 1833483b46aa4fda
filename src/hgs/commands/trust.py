"""hgs trust HOST: fetch the host's SSH key, show its SHA256 fingerprint, and pin it in hgs's
known_hosts after confirmation. A changed key is refused unless --replace is given."""

import os
import sys


def add_arguments(parser):
    parser.add_argument("host", help="the name of a host in the config (HOSTS[...]['name'])")
    parser.add_argument("--yes", action="store_true", help="pin without asking (for scripts)")
    parser.add_argument("--replace", action="store_true", help="replace a pinned key that changed (after a reinstall)")


def fingerprint(key):
    import base64
    import hashlib

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_name(host):
    return host.address if host.ssh_port == 22 else f"[{host.address}]:{host.ssh_port}"


def fetch_key(host, timeout_s):
    """Returns the host's SSH server key (no authentication, nothing else asked)."""
    import socket

    import paramiko

    from hgs.net.ssh import RemoteError

    try:
        sock = socket.create_connection((host.address, host.ssh_port), timeout=timeout_s)
    except OSError as err:
        raise RemoteError(f"{host.name}: cannot connect to {host.address}:{host.ssh_port} ({err.strerror or err})") from None
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout_s
        transport.start_client(timeout=timeout_s)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as err:
        raise RemoteError(f"{host.name}: no SSH key exchange with {host.address}:{host.ssh_port} ({err})") from None
    finally:
        transport.close()


def pin(path, name, key, replace):
    """Writes ``name key`` into the known_hosts file atomically (0600), dropping old lines for name."""
    import tempfile

    lines = []
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                hosts = line.split(" ", 1)[0].split(",") if line.strip() and not line.startswith("#") else []
                if name in hosts and replace:
                    continue
                lines.append(line if line.endswith("\n") else line + "\n")
    lines.append(f"{name} {key.get_name()} {key.get_base64()}\n")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=folder)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(lines)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def run(ctx):
    import paramiko

    from hgs.box import permissions
    from hgs.errors import HgsError

    settings = ctx.settings
    try:
        host = settings.host(ctx.args.host)
    except KeyError:
        names = ", ".join(h.name for h in settings.hosts)
        raise HgsError(f"no host called {ctx.args.host!r} in {settings.source} (hosts: {names})") from None
    key = fetch_key(host, settings.timings.ssh_connect_timeout_s)
    name = known_hosts_name(host)
    ctx.out(f"{host.name} ({name}) offers a {key.get_name()} key, fingerprint {fingerprint(key)}")
    pinned = None
    if os.path.exists(host.known_hosts_file):
        known = paramiko.HostKeys()
        try:  # read through the descriptor that passed the checks: the file checked is the file read
            fd = permissions.open_checked(host.known_hosts_file, "hgs's known_hosts")
            try:
                known.load(permissions.fd_path(fd))
            finally:
                os.close(fd)
        except (OSError, paramiko.SSHException) as err:
            raise HgsError(f"cannot read {host.known_hosts_file}: {err}") from None
        pinned = (known.lookup(name) or {}).get(key.get_name())
        if pinned is None and known.lookup(name):
            pinned = next(iter(known.lookup(name).values()))
    if pinned is not None and pinned == key:
        ctx.out(f"already pinned in {host.known_hosts_file}: nothing to do")
        return 0
    if pinned is not None and not ctx.args.replace:
        ctx.out(f"REFUSED: {host.name}'s key CHANGED.\n  pinned: {pinned.get_name()} {fingerprint(pinned)}\n"
                f"  now:    {key.get_name()} {fingerprint(key)}\n"
                "If the host was reinstalled and you checked the new fingerprint on its console, run again with "
                "--replace. Otherwise something is in between: do not connect.")
        return 1
    if not ctx.args.yes:
        if not sys.stdin.isatty():
            ctx.out("not pinned: confirm on a terminal, or pass --yes after checking the fingerprint on the host's "
                    "console (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)")
            return 1
        answer = input(f"Compare it with the host's console. Pin it in {host.known_hosts_file}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            ctx.out("not pinned")
            return 1
    pin(host.known_hosts_file, name, key, replace=pinned is not None)
    ctx.out(f"pinned {host.name}'s {key.get_name()} key in {host.known_hosts_file}")
    return 0

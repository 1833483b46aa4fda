"""hgs init: write a starter config from the packaged example and make hgs's SSH key.

Given the UPS daemon and address, the hosts and the mail recipients (as options, or asked
in a terminal), writes the config (0600, its folder 0700 when created), generates an
ed25519 key next to it, prints the public key and the next steps. Run twice, it changes
nothing: an existing config is kept unless --force, an existing key is always kept.
"""

import ipaddress
import os
import re
import socket
import sys
import tempfile
from dataclasses import dataclass

from hgs.box.files import write_atomic
from hgs.errors import HgsError, InitError

EXAMPLE = "config.example.py"
DEFAULT_ADDRESS = {"apcupsd": "127.0.0.1:3551", "nut": "ups@127.0.0.1:3493"}
MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def add_arguments(parser):
    parser.add_argument("--ups-daemon", choices=("apcupsd", "nut"), help="the UPS daemon hgs asks (default: apcupsd)")
    parser.add_argument("--ups-address", metavar="ADDRESS",
                        help="apcupsd: HOST[:PORT] of its NIS (default 127.0.0.1:3551); nut: UPS@HOST[:PORT] "
                             "(default ups@127.0.0.1:3493)")
    parser.add_argument("--host", metavar="NAME=ADDRESS[:PORT][,MAC]", action="append", default=[],
                        help="a XenServer / XCP-ng host (repeat for each host of the pool), e.g. "
                             "xen1=192.168.1.10,aa:bb:cc:dd:ee:01")
    parser.add_argument("--mail-to", metavar="ADDRESS", action="append", default=[],
                        help="who gets the run mails (repeatable; default: root)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite an existing config (the SSH key is never overwritten)")


@dataclass
class HostSpec:
    name: str
    address: str
    port: int
    mac: str | None


def parse_host(text):
    """Given 'NAME=ADDRESS[:PORT][,MAC]', returns a HostSpec; raises InitError saying what is wrong."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not rest.strip():
        raise InitError(f"--host {text!r}: expected NAME=ADDRESS[:PORT][,MAC], e.g. xen1=192.168.1.10,aa:bb:cc:dd:ee:01")
    if not NAME_RE.match(name):
        raise InitError(f"--host {text!r}: the name {name!r} may hold letters, digits, '.', '_' and '-' only")
    address, _, mac = rest.strip().partition(",")
    mac = mac.strip() or None
    if mac is not None and not MAC_RE.match(mac):
        raise InitError(f"--host {text!r}: expected a MAC address like aa:bb:cc:dd:ee:ff, got {mac!r}")
    port = 22
    if address.startswith("["):  # [v6]:port
        host, _, tail = address[1:].partition("]")
        address, port_text = host, tail.lstrip(":") or "22"
    elif address.count(":") == 1:
        address, port_text = address.split(":")
    else:
        port_text = "22"
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise InitError(f"--host {text!r}: expected a port between 1 and 65535, got {port_text!r}") from None
    if not address or any(c.isspace() or c in "'\"\\" for c in address):
        raise InitError(f"--host {text!r}: expected an IP address or host name, got {address!r}")
    return HostSpec(name, address, port, mac.lower().replace("-", ":") if mac else None)


def wol_broadcast(address):
    """Returns the /24 broadcast address of an IPv4 address (a guess the user checks), else the example's."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return "255.255.255.255"
    return str(ipaddress.IPv4Network(f"{ip}/24", strict=False).broadcast_address)


def example_text():
    """Returns the packaged config.example.py."""
    from importlib import resources

    return resources.files("hgs.data").joinpath(EXAMPLE).read_text(encoding="utf-8")


def _set(text, key, value, where):
    """Replaces the value of the first uncommented '"key": value,' line of ``text``, keeping its
    comment in its column; raises InitError when there is none."""
    pattern = re.compile(rf'^(\s*)"{re.escape(key)}":\s*(.*?),(\s+#.*)?$', re.M)
    match = pattern.search(text)
    if match is None:
        raise InitError(f"the packaged {EXAMPLE} has no {where}[{key!r}] line to fill in (a bug in hgs)")
    line = f'{match.group(1)}"{key}": {value},'
    comment = (match.group(3) or "").strip()
    if comment:
        column = len(match.group(0)) - len(comment)
        line = line.ljust(column - 1) + " " + comment
    return text[:match.start()] + line + text[match.end():]


def _py(value):
    """Returns Python source for a str, int, None or list of str, in the example's style (double quotes)."""
    import json

    if isinstance(value, list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _block(text, name):
    """Returns (start, end) of the top-level ``NAME = [ ... ]`` or ``{ ... }`` assignment."""
    match = re.search(rf"^{name} = [\[{{]\n", text, re.M)
    end = re.search(r"^[\]}]\n", text[match.end():], re.M) if match else None
    if match is None or end is None:
        raise InitError(f"the packaged {EXAMPLE} has no {name} block to fill in (a bug in hgs)")
    return match.start(), match.end() + end.end()


def render(daemon, ups_address, hosts, mail_to, folder):
    """Given the answers, returns the config text: the packaged example with them filled in."""
    text = example_text()
    start, end = _block(text, "UPS")
    ups = _set(text[start:end], "daemon", _py(daemon), "UPS")
    ups = _set(ups, "address", _py(ups_address), "UPS")
    text = text[:start] + ups + text[end:]
    start, end = _block(text, "HOSTS")
    block = text[start:end]
    entry_match = re.search(r"^    \{\n.*?^    \},\n", block, re.M | re.S)
    if entry_match is None:
        raise InitError(f"the packaged {EXAMPLE} has no HOSTS entry to fill in (a bug in hgs)")
    entries = []
    for host in hosts:
        entry = entry_match.group(0)
        for key, value in (("name", host.name), ("address", host.address), ("ssh_port", host.port),
                           ("ssh_key_file", os.path.join(folder, "id_ed25519")),
                           ("known_hosts_file", os.path.join(folder, "known_hosts")), ("mac", host.mac),
                           ("wol_broadcast", wol_broadcast(host.address))):
            entry = _set(entry, key, _py(value), "HOSTS[...]")
        entries.append(entry)
    block = block[:entry_match.start()] + "".join(entries) + block[entry_match.end():]
    text = text[:start] + block + text[end:]
    start, end = _block(text, "MAIL")
    text = text[:start] + _set(text[start:end], "to", _py(list(mail_to)), "MAIL") + text[end:]
    return "# Written by 'hgs init' from the config.example.py shipped with hgs.\n#\n" + text


def _ask(prompt, default=None, check=None):
    while True:
        suffix = f" [{default}]" if default else ""
        try:
            answer = input(f"{prompt}{suffix}: ").strip()
        except EOFError:
            raise InitError("no answer (end of input): give the settings as options, see hgs init --help") from None
        answer = answer or default or ""
        if not answer:
            continue
        try:
            return check(answer) if check else answer
        except InitError as err:
            print(f"  {err}", file=sys.stderr)


def gather(args, interactive):
    """Returns (daemon, ups address, [HostSpec], [mail to]) from the options, asking for what is missing."""
    daemon = args.ups_daemon
    if daemon is None:
        daemon = _ask("UPS daemon (apcupsd or nut)", "apcupsd", _choice) if interactive else "apcupsd"
    address = args.ups_address
    if address is None:
        address = _ask(f"{daemon} address", DEFAULT_ADDRESS[daemon]) if interactive else DEFAULT_ADDRESS[daemon]
    if daemon == "nut" and "@" not in address:
        raise InitError(f"--ups-address {address!r}: NUT needs UPS@HOST[:PORT], e.g. ups@127.0.0.1:3493")
    if daemon == "apcupsd" and "@" in address:
        raise InitError(f"--ups-address {address!r}: apcupsd takes HOST[:PORT] (no 'ups@'), e.g. 127.0.0.1:3551")
    hosts = [parse_host(text) for text in args.host]
    if not hosts and interactive:
        print("The XenServer / XCP-ng hosts: NAME=ADDRESS[:PORT][,MAC], one per line; an empty line ends.",
              file=sys.stderr)
        while True:
            try:
                line = input(f"host {len(hosts) + 1}: ").strip()
            except EOFError:
                break
            if not line:
                if hosts:
                    break
                continue
            try:
                host = parse_host(line)
            except InitError as err:
                print(f"  {err}", file=sys.stderr)
                continue
            if any(h.name == host.name for h in hosts):
                print(f"  there is already a host called {host.name!r}", file=sys.stderr)
                continue
            hosts.append(host)
    if not hosts:
        raise InitError("no host given: pass --host NAME=ADDRESS[:PORT][,MAC] once per host "
                        "(or run hgs init in a terminal to be asked)")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise InitError(f"two hosts have the same name: {', '.join(names)}")
    mail_to = args.mail_to
    if not mail_to:
        mail_to = [_ask("mail the run logs to", "root")] if interactive else ["root"]
    return daemon, address, hosts, mail_to


def _choice(answer):
    if answer not in ("apcupsd", "nut"):
        raise InitError("answer apcupsd or nut")
    return answer


def write_private(path, data, mode):
    """Writes ``data`` (bytes) to ``path`` atomically with ``mode``."""
    write_atomic(path, data, mode)


def make_key(path):
    """Generates an ed25519 key pair at ``path`` (OpenSSH format, 0600) and ``path``.pub; returns the public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} hgs@{socket.gethostname() or 'localhost'}\n"
    write_private(path, private, 0o600)
    write_private(path + ".pub", line.encode(), 0o644)
    return line.strip()


def public_line(path):
    """Returns the public key of the private key at ``path`` (from .pub, else derived); raises InitError."""
    try:
        with open(path + ".pub") as handle:
            return handle.read().strip()
    except OSError:
        pass
    import paramiko

    try:
        key = paramiko.PKey.from_path(path)
    except Exception as err:  # paramiko raises several kinds; the user needs the path and the reason
        raise InitError(f"{path} exists but is not a key hgs can read ({err}); move it aside and run hgs init again") from None
    return f"{key.get_name()} {key.get_base64()} hgs@{socket.gethostname() or 'localhost'}"


def run(ctx):
    args = ctx.args
    path = os.path.abspath(ctx.config_path)
    folder = os.path.dirname(path)
    interactive = sys.stdin.isatty() and (not args.host or not args.ups_daemon)
    config_exists = os.path.exists(path)
    answers = None
    if not config_exists or args.force:
        answers = gather(args, interactive)  # bad answers stop here, before anything is written
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700)
            os.chmod(folder, 0o700)
            ctx.out(f"hgs init: made the folder {folder} (mode 0700)")
        if answers is None:
            ctx.out(f"hgs init: {path} exists: kept as it is (--force writes a new one from the example)")
        else:
            daemon, address, hosts, mail_to = answers
            text = render(daemon, address, hosts, mail_to, folder)
            _validate(text, folder)
            if config_exists:  # --force: the config it replaces is kept beside it
                from hgs.setup.install import backup_copy

                ctx.out(f"hgs init: kept the config it replaces as {backup_copy(path)}")
            write_private(path, text.encode(), 0o600)
            ctx.out(f"hgs init: {'replaced' if config_exists else 'wrote'} {path} from the example shipped with hgs "
                    f"(UPS: {daemon} at {address}; hosts: {', '.join(h.name for h in hosts)})")
        key_path = os.path.join(folder, "id_ed25519")
        if os.path.exists(key_path):
            public = public_line(key_path)
            ctx.out(f"hgs init: the SSH key {key_path} exists: kept (hgs never overwrites it)")
        else:
            public = make_key(key_path)
            ctx.out(f"hgs init: made hgs's SSH key {key_path} (ed25519, mode 0600)")
    except OSError as err:
        raise InitError(f"cannot write in {folder}: {err.strerror or err} (run hgs init as root, or pick another "
                        "--config)") from None
    _next_steps(ctx, path, public)
    return 0


def _validate(text, folder):
    """Loads the rendered config as hgs would; raises InitError listing the problems."""
    from hgs import config as config_module
    from hgs.errors import ConfigError

    fd, tmp = tempfile.mkstemp(prefix=".hgs-init-check.", suffix=".py", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        config_module.load(tmp, check_owner=False)
    except ConfigError as err:
        raise InitError(f"the answers do not make a valid config: {str(err).replace(tmp, 'the answers')}") from None
    finally:
        os.unlink(tmp)


def _next_steps(ctx, path, public):
    from hgs import config as config_module

    opt = "" if path == config_module.DEFAULT_CONFIG_PATH else f" --config {path}"
    try:
        settings = config_module.load(path, check_owner=False)
        hosts = settings.hosts
        daemon = settings.ups.daemon
    except HgsError as err:
        ctx.out(f"hgs init: {path} does not load yet: {err}")
        hosts, daemon = (), "apcupsd"
    ctx.out("")
    ctx.out("hgs's public SSH key:")
    ctx.out("")
    ctx.out(f"    {public}")
    ctx.out("")
    ctx.out("Next steps:")
    ctx.out("  1. On each host, add the public key above to /root/.ssh/authorized_keys, e.g.:")
    for host in hosts:
        port = "" if host.ssh_port == 22 else f" -p {host.ssh_port}"
        ctx.out(f"       ssh{port} {host.ssh_user}@{host.address} 'cat >> ~/.ssh/authorized_keys' < "
                f"{os.path.join(os.path.dirname(path), 'id_ed25519.pub')}      # {host.name}")
    ctx.out(f"  2. Read {path} (timings, VMs, mail, Wake-on-LAN broadcast) and check it:")
    ctx.out(f"       $ hgs{opt} check-config")
    ctx.out("  3. Pin each host's SSH key, after comparing its fingerprint with the host's console\n"
            "     (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub there):")
    for host in hosts:
        ctx.out(f"       $ hgs{opt} trust {host.name}")
    ctx.out("  4. Check the whole chain until it says 'all well' (-v: every check; from cron it is silent when well):")
    ctx.out(f"       $ hgs{opt} selftest -v")
    ctx.out("  5. Hook hgs into the UPS daemon, and add the daily self-test and the boot-time resume:")
    ctx.out(f"       $ hgs{opt} install {daemon}")
    ctx.out(f"       $ hgs{opt} install cron")

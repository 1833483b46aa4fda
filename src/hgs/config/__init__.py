"""Loading /etc/hgs/config.py into typed, frozen settings.

The configuration is a Python module (see config.example.py). ``load()`` runs it, checks
every name and value, and returns ``Settings``; a file with mistakes is refused as a whole
with a ``ConfigError`` listing every problem, each as "At 'PATH': what was expected".
"""

import dataclasses
import os
import stat
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

from hgs.box import permissions
from hgs.config import fields as checks
from hgs.config.fields import Invalid
from hgs.errors import ConfigError
from hgs.ups import READERS

DEFAULT_CONFIG_PATH = "/etc/hgs/config.py"
REQUIRED = object()
NIS_PORT = READERS["apcupsd"].default_port
UPSD_PORT = READERS["nut"].default_port


@dataclass(frozen=True)
class UpsSettings:
    daemon: str  # a key of hgs.ups.READERS: "apcupsd" or "nut"
    host: str
    port: int
    ups_name: str | None  # NUT only
    user: str | None
    password: str | None = dataclasses.field(repr=False)
    timeout_s: float = 5.0
    poll_interval_s: float = 2.0
    runtime_reserve_s: float = 120.0
    restore_min_charge_pct: float = 0.0
    lost_contact: str = "not_an_outage"

    @property
    def address(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = f"{self.ups_name}@" if self.ups_name else ""
        return f"{prefix}{host}:{self.port}"


@dataclass(frozen=True)
class HostSettings:
    name: str
    address: str
    ssh_port: int
    ssh_user: str
    ssh_key_file: str
    ssh_key_passphrase: str | None = dataclasses.field(repr=False)
    known_hosts_file: str = ""
    mac: str | None = None
    wol_broadcast: str = "255.255.255.255"
    wol_port: int = 9
    down_check: str = "ping+ssh"
    xe_path: str = "/opt/xensource/bin/xe"


ACTIONS = ("shutdown", "shed", "suspend")


@dataclass(frozen=True)
class ShedRule:
    """VMs shed together: ``names`` (names or uuids, a group's expanded) go down ``at``
    ("confirmed", or ("charge_pct", N) / ("runtime_s", N): once the UPS reads at most N)."""

    names: tuple
    at: object = "confirmed"

    def describe(self):
        if self.at == "confirmed":
            return "as soon as the outage is confirmed"
        kind, value = self.at
        return f"at {value:g} % charge" if kind == "charge_pct" else f"at {value:g} s of runtime left"


@dataclass(frozen=True)
class VmPolicy:
    leave_alone: tuple = ()
    stop_last: tuple = ()
    groups: tuple = ()
    shed: tuple = ()  # ShedRule
    suspend: tuple = ()  # names or uuids suspended (xe vm-suspend) instead of shut down

    def action(self, vm):
        """Given a VM dict ({'uuid', 'name'}), returns its action: 'shed', 'suspend' or 'shutdown'."""
        keys = {vm.get("uuid"), vm.get("name")}
        if any(keys & set(rule.names) for rule in self.shed):
            return "shed"
        return "suspend" if keys & set(self.suspend) else "shutdown"

    def shed_rule(self, vm):
        """Returns the ShedRule naming ``vm`` (the first one), or None."""
        keys = {vm.get("uuid"), vm.get("name")}
        return next((rule for rule in self.shed if keys & set(rule.names)), None)


@dataclass(frozen=True)
class Timings:
    confirm_outage_s: float
    vm_shutdown_timeout_s: float
    vm_force_timeout_s: float
    xe_timeout_s: float
    ssh_connect_timeout_s: float
    host_shutdown_timeout_s: float
    host_down_confirm_s: float
    doshutdown_bound_s: float
    restore_confirm_s: float
    host_boot_timeout_s: float
    wol_resend_interval_s: float
    xapi_ready_timeout_s: float
    vm_start_timeout_s: float
    verify_timeout_s: float
    charge_wait_s: float
    unreachable_retry_s: float
    members_wake: str = "after_master_ping"
    main_trigger: str = "window"  # "window": after confirm_outage_s; "runtime": when runtime left is the worst case


@dataclass(frozen=True)
class MailSettings:
    to: tuple
    from_addr: str
    sendmail_path: str
    subject_tag: str
    when: str  # "always", "failure" or "never"
    timeout_s: float


NOTIFY_EVENTS = ("power_lost", "outage_confirmed", "site_down", "power_back", "site_restored", "failure")


@dataclass(frozen=True)
class NotifySettings:
    command: tuple | None = None  # argv of the program run on each event (no shell)
    timeout_s: float = 10.0
    events: tuple = NOTIFY_EVENTS
    mail_events: tuple = ()  # events also mailed at once (a short notice)


@dataclass(frozen=True)
class MetricsSettings:
    textfile: str | None = None  # node_exporter textfile collector file, written after each run


@dataclass(frozen=True)
class Paths:
    state_dir: str
    log_file: str
    lock_dir: str


@dataclass(frozen=True)
class LoggingSettings:
    syslog: bool
    syslog_address: str


@dataclass(frozen=True)
class Settings:
    source: str
    ups: UpsSettings
    hosts: tuple
    vms: VmPolicy
    timings: Timings
    mail: MailSettings
    paths: Paths
    logging: LoggingSettings
    notify: NotifySettings = NotifySettings()
    metrics: MetricsSettings = MetricsSettings()

    def host(self, name):
        """Returns the host called ``name``; raises KeyError."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)


@dataclass(frozen=True)
class Field:
    check: object
    default: object = REQUIRED
    secret: bool = False
    path: bool = False  # a file or folder path: relative ones are taken from the config's folder


_seconds = checks.number(0.0)

UPS_FIELDS = {
    "daemon": Field(lambda value: checks.choice(*READERS)(value)),  # the registry as it is when checked
    "address": Field(checks.text),
    "user": Field(checks.optional(checks.text), None),
    "password": Field(checks.optional(checks.text), None, secret=True),
    "timeout_s": Field(_seconds, 5.0),
    "poll_interval_s": Field(_seconds, 2.0),
    "runtime_reserve_s": Field(checks.number(0.0, allow_equal=True), 120.0),
    "restore_min_charge_pct": Field(checks.percent, 0.0),
    "lost_contact": Field(checks.choice("not_an_outage", "outage"), "not_an_outage"),
}

HOST_FIELDS = {
    "name": Field(checks.text),
    "address": Field(checks.address),
    "ssh_port": Field(checks.port, 22),
    "ssh_user": Field(checks.text, "root"),
    "ssh_key_file": Field(checks.text, "/etc/hgs/id_ed25519", path=True),
    "ssh_key_passphrase": Field(checks.optional(checks.text), None, secret=True),
    "known_hosts_file": Field(checks.text, "/etc/hgs/known_hosts", path=True),
    "mac": Field(checks.optional(checks.mac), None),
    "wol_broadcast": Field(checks.address, "255.255.255.255"),
    "wol_port": Field(checks.port, 9),
    "down_check": Field(checks.choice("ping+ssh", "ping", "ssh"), "ping+ssh"),
    "xe_path": Field(checks.text, "/opt/xensource/bin/xe"),
}

def _vm_selection(value, keys=("vms", "groups")):
    """A list of VM names/uuids, or a dict {'vms': [...], 'groups': [index into VMS['groups']]}."""
    if isinstance(value, (list, tuple)):
        value = {"vms": value}
    if not isinstance(value, dict):
        raise Invalid(f"expected a list of VM names or a dict {{'vms': [...], 'groups': [0, ...]}}, "
                      f"got {checks._shown(value)}")
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise Invalid(f"unknown key {unknown[0]!r}{checks.did_you_mean(str(unknown[0]), keys)}; known: {', '.join(keys)}")
    names = checks.list_of(checks.text)(value.get("vms", ()))
    groups = value.get("groups", ())
    if isinstance(groups, (list, tuple)) and all(isinstance(g, int) and not isinstance(g, bool) and g >= 0
                                                 for g in groups):
        groups = tuple(groups)
    else:
        raise Invalid(f"expected 'groups' as a list of positions in VMS['groups'] (0 is the first), "
                      f"got {checks._shown(groups)}")
    if not names and not groups:
        raise Invalid("names no VM: give 'vms' (names or uuids) or 'groups'")
    return {"vms": names, "groups": groups}


def _shed_at(value):
    if value == "confirmed":
        return "confirmed"
    if isinstance(value, dict) and len(value) == 1:
        (kind, number), = value.items()
        if kind == "charge_pct":
            return ("charge_pct", checks.percent(number))
        if kind == "runtime_s":
            return ("runtime_s", checks.number(0.0)(number))
    raise Invalid(f"expected 'confirmed', {{'charge_pct': N}} or {{'runtime_s': N}}, got {checks._shown(value)}")


def _shed(value):
    """One shed rule or a list of them: {'vms': [...], 'groups': [...], 'at': ...}."""
    rules = [value] if isinstance(value, dict) else value
    if not isinstance(rules, (list, tuple)):
        raise Invalid(f"expected a dict {{'vms': [...], 'at': 'confirmed'}} or a list of them, got {checks._shown(value)}")
    out = []
    for index, rule in enumerate(rules):
        where = f"rule {index}: " if len(rules) > 1 or not isinstance(value, dict) else ""
        if not isinstance(rule, dict):
            raise Invalid(f"{where}expected a dict {{'vms': [...], 'at': 'confirmed'}}, got {checks._shown(rule)}")
        try:
            selection = _vm_selection({k: v for k, v in rule.items() if k != "at"})
            at = _shed_at(rule.get("at", "confirmed"))
        except Invalid as err:
            raise Invalid(f"{where}{err}") from None
        out.append(dict(selection, at=at))
    return tuple(out)


VM_FIELDS = {
    "leave_alone": Field(checks.list_of(checks.text), ()),
    "stop_last": Field(checks.list_of(checks.text), ()),
    "groups": Field(checks.list_of(checks.list_of(checks.text, allow_empty=False)), ()),
    "shed": Field(_shed, ()),
    "suspend": Field(lambda v: (_vm_selection(v),) if v else (), ()),
}

TIMING_FIELDS = {
    "confirm_outage_s": Field(checks.number(0.0, allow_equal=True), 30.0),
    "vm_shutdown_timeout_s": Field(_seconds, 180.0),
    "vm_force_timeout_s": Field(_seconds, 60.0),
    "xe_timeout_s": Field(_seconds, 30.0),
    "ssh_connect_timeout_s": Field(_seconds, 10.0),
    "host_shutdown_timeout_s": Field(_seconds, 300.0),
    "host_down_confirm_s": Field(_seconds, 10.0),
    "doshutdown_bound_s": Field(_seconds, 40.0),
    "restore_confirm_s": Field(checks.number(0.0, allow_equal=True), 120.0),
    "host_boot_timeout_s": Field(_seconds, 600.0),
    "wol_resend_interval_s": Field(_seconds, 30.0),
    "xapi_ready_timeout_s": Field(_seconds, 300.0),
    "vm_start_timeout_s": Field(_seconds, 180.0),
    "verify_timeout_s": Field(_seconds, 300.0),
    "charge_wait_s": Field(_seconds, 3600.0),
    "unreachable_retry_s": Field(checks.number(0.0, allow_equal=True), 120.0),
    "members_wake": Field(checks.choice("after_master_ping", "together", "after_master_xapi"), "after_master_ping"),
    "main_trigger": Field(checks.choice("window", "runtime"), "window"),
}

MAIL_FIELDS = {
    "to": Field(checks.list_of(checks.mail_address), ("root",)),
    "from": Field(checks.mail_address, "root"),
    "sendmail_path": Field(checks.text, "/usr/sbin/sendmail", path=True),
    "subject_tag": Field(checks.text, "[hgs]"),
    "when": Field(checks.choice("always", "failure", "never"), "always"),
    "timeout_s": Field(_seconds, 30.0),
}

def _command(value):
    """A program and its arguments: a list of strings, or one string split like a shell would (no shell runs)."""
    import shlex

    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as err:
            raise Invalid(f"expected a command line, got {checks._shown(value)} ({err})") from None
    else:
        argv = list(checks.list_of(checks.text, allow_empty=False)(value))
    if not argv:
        raise Invalid("expected a program to run (a path, or a list: program then its arguments), got an empty one")
    return tuple(argv)


NOTIFY_FIELDS = {
    "command": Field(checks.optional(_command), None),
    "timeout_s": Field(_seconds, 10.0),
    "events": Field(checks.list_of(checks.choice(*NOTIFY_EVENTS)), NOTIFY_EVENTS),
    "mail_events": Field(checks.list_of(checks.choice(*NOTIFY_EVENTS)), ()),
}

METRICS_FIELDS = {
    "textfile": Field(checks.optional(checks.text), None, path=True),
}

PATH_FIELDS = {
    "state_dir": Field(checks.text, "/var/lib/hgs", path=True),
    "log_file": Field(checks.text, "/var/log/hgs/hgs.log", path=True),
    "lock_dir": Field(checks.text, "/run/hgs", path=True),
}

LOGGING_FIELDS = {
    "syslog": Field(checks.boolean, True),
    "syslog_address": Field(checks.text, "/dev/log", path=True),
}

SECTIONS = {
    "UPS": (UPS_FIELDS, True),
    "HOSTS": (HOST_FIELDS, True),
    "VMS": (VM_FIELDS, False),
    "TIMINGS": (TIMING_FIELDS, False),
    "MAIL": (MAIL_FIELDS, False),
    "PATHS": (PATH_FIELDS, False),
    "LOGGING": (LOGGING_FIELDS, False),
    "NOTIFY": (NOTIFY_FIELDS, False),
    "METRICS": (METRICS_FIELDS, False),
}


class _Problems(list):
    def at(self, where, message):
        self.append(f"At {where!r}: {message}")


def load(path=DEFAULT_CONFIG_PATH, check_owner=None):
    """Given the path of a config module, returns ``Settings``.

    Raises ConfigError listing every problem. ``check_owner`` defaults to "running as root".
    """
    path = Path(path)
    namespace = _run_module(path, check_owner)
    return _settings_from(namespace, path)


def _run_module(path, check_owner):
    if check_owner is None:
        check_owner = os.geteuid() == 0
    # opened once: the checks are made on the open file and the source is read from it, so the
    # file checked is the file run (a check by path then a read by path could be swapped between)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        hint = " (copy config.example.py there and edit it)" if str(path) == DEFAULT_CONFIG_PATH else ""
        raise ConfigError(path, [f"the file does not exist{hint}"]) from None
    except OSError as err:
        raise ConfigError(path, [f"the file cannot be read: {err.strerror}"]) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(path, ["not a regular file"])
        if check_owner:
            problems = []
            if info.st_uid != 0:
                problems.append(f"the file must be owned by root (it is owned by uid {info.st_uid}): chown root {path}")
            if info.st_mode & 0o022:
                problems.append(f"the file must not be writable by group or others (mode "
                                f"{stat.S_IMODE(info.st_mode):04o}): chmod go-w {path}")
            problems += permissions.folder_problems(os.path.realpath(path), {0})
            if problems:
                raise ConfigError(path, problems)
        try:
            source = handle.read()
        except OSError as err:
            raise ConfigError(path, [f"the file cannot be read: {err.strerror}"]) from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as err:
        raise ConfigError(path, [f"line {err.lineno}: Python syntax error: {err.msg}"]) from None
    except ValueError as err:  # e.g. a NUL byte
        raise ConfigError(path, [f"not a Python file: {err}"]) from None
    namespace = {"__file__": str(path), "__name__": "hgs_config"}
    try:
        exec(code, namespace)  # noqa: S102 - the config is a root-owned Python module by design
    except Exception as err:  # any mistake in the user's module is a config problem
        line = next((f.lineno for f in reversed(traceback.extract_tb(err.__traceback__)) if f.filename == str(path)), None)
        where = f"line {line}: " if line else ""
        text = _without_secrets(str(err), namespace)
        raise ConfigError(path, [f"{where}running the file raised {type(err).__name__}: {text}"]) from None
    return namespace


def _without_secrets(text, namespace):
    """Returns ``text`` with every secret value the module had set by then replaced by '********'
    (e.g. int(UPS['password']) raises a ValueError that quotes the password)."""
    values = []
    for section, (fields, _) in SECTIONS.items():
        raw = namespace.get(section)
        entries = raw if isinstance(raw, (list, tuple)) else [raw]
        for entry in entries:
            if isinstance(entry, dict):
                values += [entry.get(k) for k, f in fields.items() if f.secret and k in entry]
    for value in values:
        try:
            forms = {str(value), repr(value)} if value is not None else set()
        except Exception:  # an object whose str() fails cannot have been quoted either
            continue
        for form in sorted(forms, key=len, reverse=True):
            if form:
                text = text.replace(form, "********")
    return text


def _settings_from(namespace, path):
    problems = _Problems()
    values = {}
    for name, value in namespace.items():
        if name.startswith("_") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue
        if name not in SECTIONS:
            known = list(SECTIONS)
            problems.at(name, f"unknown setting{checks.did_you_mean(name, known)}; known settings: {', '.join(known)} "
                        "(prefix helper variables with '_')")
            continue
        values[name] = value
    for name, (_fields, required) in SECTIONS.items():
        if required and name not in values:
            problems.at(name, "missing: this setting is required (see config.example.py)")
    base = path.parent.resolve()
    ups = _ups(values.get("UPS"), problems, base) if "UPS" in values else None
    hosts = _hosts(values.get("HOSTS"), problems, base) if "HOSTS" in values else ()
    sections = {}
    for name in ("VMS", "TIMINGS", "MAIL", "PATHS", "LOGGING", "NOTIFY", "METRICS"):
        sections[name] = _section(values.get(name, {}), name, SECTIONS[name][0], problems, base)
    vms = _vm_policy(sections["VMS"], problems)
    if problems:
        raise ConfigError(path, problems)
    mail = dict(sections["MAIL"])
    mail["from_addr"] = mail.pop("from")
    return Settings(
        source=str(path),
        ups=ups,
        hosts=hosts,
        vms=vms,
        timings=Timings(**sections["TIMINGS"]),
        mail=MailSettings(**mail),
        paths=Paths(**sections["PATHS"]),
        logging=LoggingSettings(**sections["LOGGING"]),
        notify=NotifySettings(**sections["NOTIFY"]),
        metrics=MetricsSettings(**sections["METRICS"]),
    )


def _section(raw, where, fields, problems, base):
    """Checks one dict section against ``fields``; returns the converted values (defaults filled)."""
    out = {key: (None if f.default is REQUIRED else f.default) for key, f in fields.items()}
    if not isinstance(raw, dict):
        problems.at(where, f"expected a dict of settings ({{'key': value, ...}}), got {type(raw).__name__}")
        return out
    for key, value in raw.items():
        field = fields.get(key)
        if field is None:
            problems.at(f"{where}.{key}", f"unknown setting{checks.did_you_mean(str(key), fields)}; "
                        f"known: {', '.join(fields)}")
            continue
        try:
            value = field.check(value)
        except Invalid as err:  # a secret's message never quotes the value, whatever its check says
            problems.at(f"{where}.{key}", checks.secret_problem(value) if field.secret else str(err))
            continue
        if field.path and isinstance(value, str):
            value = str(base / value) if not os.path.isabs(value) else value
        out[key] = value
    for key, field in fields.items():
        if field.default is REQUIRED and key not in raw:
            problems.at(f"{where}.{key}", "missing: this setting is required")
    return out


def _vm_policy(values, problems):
    """Returns the VmPolicy: shed and suspend selections with their groups expanded to names;
    a VM given two actions, or a shed/suspended VM also left alone, is a problem."""
    groups = values["groups"] or ()

    def names(selection, where):
        found = list(selection["vms"])
        for index in selection["groups"]:
            if index >= len(groups):
                problems.at(where, f"group {index} does not exist: VMS['groups'] has {len(groups)} group(s) "
                            "(0 is the first)")
                continue
            found += groups[index]
        return tuple(dict.fromkeys(found))

    shed = tuple(ShedRule(names(rule, "VMS.shed"), rule["at"]) for rule in values["shed"] or ())
    suspend = tuple(n for selection in values["suspend"] or () for n in names(selection, "VMS.suspend"))
    shed_names = {n for rule in shed for n in rule.names}
    for name in sorted(shed_names & set(suspend)):
        problems.at("VMS.suspend", f"{name!r} is also in VMS['shed']: give each VM one action "
                    "(shed, suspend, or the default shutdown)")
    for name in sorted((shed_names | set(suspend)) & set(values["leave_alone"] or ())):
        problems.at("VMS.leave_alone", f"{name!r} is left alone and also shed or suspended: hgs never touches "
                    "a VM left alone; remove it from one of them")
    return VmPolicy(leave_alone=values["leave_alone"] or (), stop_last=values["stop_last"] or (),
                    groups=groups, shed=shed, suspend=suspend)


def _ups(raw, problems, base):
    values = _section(raw, "UPS", UPS_FIELDS, problems, base)
    name, address = values["daemon"], values["address"]
    if name is None or address is None:
        return None
    daemon = READERS[name]
    ups_name = None
    try:
        if daemon.named:
            if "@" not in address:
                raise Invalid(f"expected {daemon.address_form()} for {daemon.label}, got {address!r}")
            ups_name, _, rest = address.partition("@")
            if not ups_name or any(c.isspace() or c == '"' for c in ups_name):
                raise Invalid(f"expected a UPS name without spaces before '@', got {address!r}")
            host, port = checks.host_port(rest, daemon.default_port)
        else:
            if "@" in address:
                raise Invalid(f"expected {daemon.address_form()} for {daemon.label} (no 'ups@'), got {address!r}")
            host, port = checks.host_port(address, daemon.default_port)
    except Invalid as err:
        problems.at("UPS.address", str(err))
        return None
    if not daemon.login and (values["user"] or values["password"]):
        with_login = " or ".join(repr(n) for n, d in READERS.items() if d.login)
        problems.at("UPS.user", f"a user and password are only used with daemon {with_login}; remove them for {name}")
    if (values["user"] is None) != (values["password"] is None):
        problems.at("UPS.password", "give both 'user' and 'password', or neither")
    return UpsSettings(
        daemon=name, host=host, port=port, ups_name=ups_name,
        **{k: v for k, v in values.items() if k not in ("daemon", "address")},
    )


def _hosts(raw, problems, base):
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        problems.at("HOSTS", "expected a list with at least one host ({'name': ..., 'address': ...})")
        return ()
    hosts, names = [], set()
    for index, entry in enumerate(raw):
        where = f"HOSTS[{index}]"
        values = _section(entry, where, HOST_FIELDS, problems, base)
        if values["name"] is None or values["address"] is None:
            continue
        if values["name"] in names:
            problems.at(f"{where}.name", f"two hosts are called {values['name']!r}; names must be unique")
        names.add(values["name"])
        hosts.append(HostSettings(**values))
    return tuple(hosts)


def secret_fields():
    """Returns the names of the settings that are secrets (masked when shown)."""
    return {key for fields, _ in SECTIONS.values() for key, f in fields.items() if f.secret}


def describe(settings):
    """Given Settings, returns a list of 'section.key = value' lines with secrets masked."""
    masked = secret_fields()
    lines = [f"config: {settings.source}"]

    def emit(prefix, obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name in masked and value is not None:
                value = "********"
            lines.append(f"{prefix}.{f.name} = {value!r}")

    emit("UPS", settings.ups)
    for index, host in enumerate(settings.hosts):
        emit(f"HOSTS[{index}]", host)
    for name, obj in (("VMS", settings.vms), ("TIMINGS", settings.timings), ("MAIL", settings.mail),
                      ("PATHS", settings.paths), ("LOGGING", settings.logging), ("NOTIFY", settings.notify),
                      ("METRICS", settings.metrics)):
        emit(name, obj)
    return lines

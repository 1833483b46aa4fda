"""Putting hgs's hooks in place for apcupsd, NUT and cron, and taking them out again.

Every step is idempotent: installing twice changes nothing the second time. A file hgs
replaces or edits is first copied to ``NAME.hgs-backup.N`` (the next free number: a backup is
never overwritten), with its owner, group and mode. Every file hgs edits keeps its owner, group
and mode (Debian's NUT files are root:nut 0640: upssched, running as nut, must still read
them). ``uninstall`` takes hgs's lines out again (or puts a replaced script back) and gives
each file the owner, group and mode it had before hgs. Files are written atomically.

NUT (``nut``): upsmon.conf gets NOTIFYCMD upssched, EXEC added to the NOTIFYFLAG words of
ONBATT/ONLINE/LOWBATT/FSD (the user's WALL, SYSLOG... kept) and a SHUTDOWNCMD that runs
``hgs doshutdown`` before the user's own; upssched.conf gets, at its top (upssched refuses an
AT before CMDSCRIPT), hgs's CMDSCRIPT and AT lines naming the configured UPS. The user's own
AT lines stay, and their commands reach the user's previous CMDSCRIPT through hgs's script.
When upsmon runs as another user than root, a sudoers drop-in lets that user run exactly the
hooks' hgs command lines (checked with ``visudo -cf`` before it goes in place).
"""

import glob
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile

from hgs.errors import InstallError
from hgs.setup import hooks

BACKUP = ".hgs-backup"
BEGIN = "# --- hgs begin (written by 'hgs install nut'; 'hgs install nut --uninstall' removes it) ---"
END = "# --- hgs end ---"
COMMENTED = "# (hgs) "
CRON_MARK = "# hgs: written by 'hgs install cron'"
RECORD = "hooks.json"
NUT_FLAGS = ("ONBATT", "ONLINE", "LOWBATT", "FSD")
NUT_DEFAULT_FLAGS = "SYSLOG+WALL"  # upsmon's own default for every event


# -- files: atomic writes that keep owner, group and mode; numbered backups --------------------

def _write(path, text, mode, like=None):
    """Writes ``text`` atomically; the file gets the owner, group and mode of ``like`` (a stat
    result) when given, else ``mode`` and our own user."""
    folder = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hgs.", dir=folder)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                if like is not None:
                    os.fchown(handle.fileno(), like.st_uid, like.st_gid)
                os.fchmod(handle.fileno(), stat.S_IMODE(like.st_mode) if like is not None else mode)
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as err:
        raise InstallError(f"cannot write {path}: {err.strerror or err}") from None


def _read(path):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InstallError(f"cannot read {path}: {err.strerror or err}") from None


def _stat(path):
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def backups(path):
    """Returns the backups of ``path``, oldest first (an unnumbered one, from hgs before backups
    were numbered, counts as number 0)."""
    found = [(0, path + BACKUP)] if os.path.exists(path + BACKUP) else []
    for candidate in glob.glob(glob.escape(path + BACKUP) + ".*"):
        suffix = candidate[len(path + BACKUP) + 1:]
        if suffix.isdigit():
            found.append((int(suffix), candidate))
    return [name for _, name in sorted(found)]


def _backup(path, actions):
    """Copies ``path`` to the next free NAME.hgs-backup.N with its owner, group and mode."""
    number = 1 + max([int(name.rsplit(".", 1)[1]) for name in backups(path) if not name.endswith(BACKUP)] or [0])
    target = f"{path}{BACKUP}.{number}"
    try:
        shutil.copy2(path, target)
        info = os.stat(path)
        os.chown(target, info.st_uid, info.st_gid)
    except OSError as err:
        raise InstallError(f"cannot back up {path} to {target}: {err.strerror or err}") from None
    actions.append(f"backed up {path} to {target}")
    return target


def backup_copy(path):
    """Copies ``path`` to its next numbered backup; returns the backup's path. Raises InstallError."""
    return _backup(path, [])


def _put(path, text, mode, actions):
    """Writes hgs's file ``text`` at ``path`` unless it is there already; backs up a foreign
    file first (a new numbered backup each time a foreign file is replaced)."""
    current = _read(path)
    if current == text:
        actions.append(f"unchanged {path}")
        return
    if current is not None and hooks.MARKER not in current:
        _backup(path, actions)
    _write(path, text, mode)
    actions.append(f"wrote {path}")


def _take_out(path, actions):
    """Removes hgs's file at ``path`` and puts the latest backup back, if there is one."""
    current = _read(path)
    if current is not None and hooks.MARKER in current:
        os.unlink(path)
        actions.append(f"removed {path}")
    previous = backups(path)
    if previous and not os.path.exists(path):
        os.replace(previous[-1], path)
        actions.append(f"restored {path} from {previous[-1]}")


# -- apcupsd ----------------------------------------------------------------------------------

def apcupsd(scriptdir, hgs_path, config_path, uninstall=False):
    """Installs (or removes) the event scripts in apcupsd's SCRIPTDIR; returns the actions."""
    if not os.path.isdir(scriptdir):
        raise InstallError(f"{scriptdir} is not a folder: is apcupsd installed? (give its SCRIPTDIR with --scriptdir)")
    actions = []
    for event in hooks.APCUPSD_EVENTS:
        path = os.path.join(scriptdir, event)
        if uninstall:
            _take_out(path, actions)
        else:
            _put(path, hooks.render(event, hgs_path, config_path), 0o755, actions)
    return actions


# -- NUT --------------------------------------------------------------------------------------

def _words(line):
    """Given a config line, returns its words as NUT's parser reads them ([] for a comment)."""
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def _outside_block(text):
    """Returns the lines of ``text`` outside hgs's block, hgs's commenting-out undone: the file
    as the user had it."""
    lines, inside = [], False
    for line in (text or "").splitlines():
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif not inside:
            lines.append(line[len(COMMENTED):] if line.startswith(COMMENTED) else line)
    return lines


def parse_directives(lines):
    """Returns [(KEYWORD, words)] of the directive lines."""
    found = []
    for line in lines:
        words = _words(line)
        if words:
            found.append((words[0].upper(), words))
    return found


def last_directive(directives, keyword):
    """Returns the words of the last ``keyword`` line, or None."""
    values = [words for key, words in directives if key == keyword]
    return values[-1] if values else None


def _same_host(a, b):
    local = {"localhost", "127.0.0.1", "::1", "[::1]"}
    return a == b or (a in local and b in local)


def _split_ups(system):
    """'ups@host:port' -> (ups, host, port or None)."""
    ups, _, rest = system.partition("@")
    host, port = rest or "localhost", None
    match = re.match(r"^\[(.*)\](?::(\d+))?$", host) or re.match(r"^([^:]*)(?::(\d+))?$", host)
    if match:
        host, port = match.group(1), match.group(2)
    return ups, host, int(port) if port else None


def monitor_name(upsmon_directives, ups_name, host, port):
    """Given upsmon.conf's directives and the UPS hgs reads, returns the name upsmon gives it
    (its MONITOR line's system, which upssched's AT lines must name exactly), or None."""
    for key, words in upsmon_directives:
        if key == "MONITOR" and len(words) > 1:
            m_ups, m_host, m_port = _split_ups(words[1])
            if m_ups == ups_name and _same_host(m_host, host) and (m_port or 3493) == port:
                return words[1], (words[5].lower() if len(words) > 5 else "primary")
    return None


def _quote(value):
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nut_plan(nut_dir, hgs_path, config_path, ups, upssched="/sbin/upssched", shutdown=None, run_dir="/run/nut",
             user=None):
    """Reads the user's upsmon.conf and upssched.conf and returns what hgs puts in them:
    {'upsmon.conf': lines, 'upssched.conf': lines, 'user': ..., 'previous': ..., 'at_name': ...}.

    ``ups`` is (ups name, host, port) as hgs reads it; the AT lines name it as upsmon's MONITOR
    line does (None only to uninstall). Raises InstallError when upsmon.conf monitors no such UPS.
    """
    upsmon = parse_directives(_outside_block(_read(os.path.join(nut_dir, "upsmon.conf"))))
    sched = parse_directives(_outside_block(_read(os.path.join(nut_dir, "upssched.conf"))))
    at_name = "*"
    if ups is not None:
        ups_name, host, port = ups
        found = monitor_name(upsmon, ups_name, host, port)
        if found is None and any(key == "MONITOR" for key, _ in upsmon):
            raise InstallError(f"{os.path.join(nut_dir, 'upsmon.conf')} has no MONITOR line for {ups_name}@{host}:{port}, "
                               "the UPS hgs reads (UPS['address']): fix one or the other")
        at_name = found[0] if found else (f"{ups_name}@{host}" + (f":{port}" if port != 3493 else ""))
    if user is None:
        run_as = last_directive(upsmon, "RUN_AS_USER")
        user = run_as[1] if run_as and len(run_as) > 1 else "nut"  # upsmon's compiled-in default on Debian
    own_script = os.path.join(nut_dir, "hgs-upssched-cmd")
    cmdscript = last_directive(sched, "CMDSCRIPT")
    previous = cmdscript[1] if cmdscript and len(cmdscript) > 1 else None
    if previous and os.path.abspath(shlex.split(previous)[0]) == own_script:
        previous = None
    if shutdown is None:
        theirs = last_directive(upsmon, "SHUTDOWNCMD")
        shutdown = theirs[1] if theirs and len(theirs) > 1 else "/sbin/shutdown -h +0"
        marker = f"{hgs_path} --config {config_path} doshutdown; "
        shutdown = shutdown[len(marker):] if shutdown.startswith(marker) else shutdown
    notifycmd = last_directive(upsmon, "NOTIFYCMD")
    other_notify = notifycmd[1] if notifycmd and len(notifycmd) > 1 and os.path.basename(
        shlex.split(notifycmd[1] or "x")[0]) not in ("upssched", os.path.basename(upssched)) else None
    flags = {}
    for key, words in upsmon:
        if key == "NOTIFYFLAG" and len(words) > 2 and words[1].upper() in NUT_FLAGS:
            flags[words[1].upper()] = [w for w in words[2].split("+") if w.upper() not in ("IGNORE", "EXEC")]
    notify_lines = [f"NOTIFYFLAG {event} " + "+".join(flags.get(event, NUT_DEFAULT_FLAGS.split("+")) + ["EXEC"])
                    for event in NUT_FLAGS]
    pipefn = last_directive(sched, "PIPEFN")
    lockfn = last_directive(sched, "LOCKFN")
    return {
        "upsmon.conf": [f"NOTIFYCMD {upssched}", *notify_lines,
                        "SHUTDOWNCMD " + _quote(f"{hgs_path} --config {config_path} doshutdown; {shutdown}")],
        "upssched.conf": [f"CMDSCRIPT {own_script}",
                          "PIPEFN " + (pipefn[1] if pipefn and len(pipefn) > 1 else f"{run_dir}/upssched.pipe"),
                          "LOCKFN " + (lockfn[1] if lockfn and len(lockfn) > 1 else f"{run_dir}/upssched.lock"),
                          *[f"AT {event} {at_name} EXECUTE {command}" for event, command in hooks.NUT_EVENTS.items()]],
        "user": user, "previous": previous, "at_name": at_name, "cmdscript": own_script, "other_notify": other_notify,
    }


# directives hgs's block replaces: commented out (kept, to be restored) when the block goes in.
# The user's AT lines are never touched: their events still reach their own script.
_REPLACED = {
    "upsmon.conf": re.compile(r"^\s*(NOTIFYCMD|SHUTDOWNCMD|NOTIFYFLAG\s+(ONBATT|ONLINE|LOWBATT|FSD))\b", re.I),
    "upssched.conf": re.compile(r"^\s*(CMDSCRIPT|PIPEFN|LOCKFN)\b", re.I),
}
_TOP = {"upsmon.conf": False, "upssched.conf": True}  # upssched refuses an AT before CMDSCRIPT


def _with_block(text, name, lines):
    """Returns ``text`` with hgs's block (``lines``) in it, the lines it replaces commented out;
    with no ``lines``, the text as the user had it."""
    kept = [COMMENTED + line if lines and _REPLACED[name].match(line) else line
            for line in _outside_block(text)]
    if not lines:
        body = "\n".join(kept)
        return body + "\n" if body and (text or "").endswith("\n") else body
    block = [BEGIN, *lines, END]
    return "\n".join(block + kept if _TOP[name] else kept + block) + "\n"


def _visudo_check(path, text):
    visudo = shutil.which("visudo") or "/usr/sbin/visudo"
    if not os.path.exists(visudo):
        raise InstallError("sudo is not installed (no visudo): upsmon runs its hooks as an unprivileged user, and "
                           "they reach hgs through sudo: apt install sudo, then rerun this")
    result = subprocess.run([visudo, "-cf", path], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise InstallError(f"visudo refused the sudoers rule hgs wrote: {(result.stdout + result.stderr).strip()}")


def _put_sudoers(path, text, actions):
    """Checks the rule with visudo before it goes in place, as root:root 0440. The temporary
    file's name has a dot, so sudo's includedir ignores it meanwhile."""
    current = _read(path)
    if current == text:
        actions.append(f"unchanged {path}")
        return
    if current is not None and hooks.MARKER not in current:
        raise InstallError(f"{path} exists and is not hgs's: hgs does not overwrite a sudoers file it did not "
                           "write; move it aside or give another file with --sudoers-file")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise InstallError(f"{folder} is not a folder: is sudo installed? (apt install sudo)")
    fd, tmp = tempfile.mkstemp(prefix=".hgs.", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o440)
        _visudo_check(tmp, text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    actions.append(f"wrote {path} (sudo rule: the hooks may run exactly hgs's event commands as root)")


def nut(nut_dir, hgs_path, config_path, ups, write=False, uninstall=False, sudoers_file="/etc/sudoers.d/hgs",
        **options):
    """Writes the upssched command script and, when upsmon runs as another user than root, the
    sudoers rule; with ``write``, wires upsmon.conf and upssched.conf too. Returns (actions, plan)."""
    if not os.path.isdir(nut_dir):
        raise InstallError(f"{nut_dir} is not a folder: is NUT installed? (give its folder with --nut-dir)")
    plan = nut_plan(nut_dir, hgs_path, config_path, ups, **options)
    actions = []
    if uninstall:
        for name in ("upsmon.conf", "upssched.conf"):
            path = os.path.join(nut_dir, name)
            current = _read(path)
            if current is None or BEGIN not in current:
                continue
            earlier = backups(path)
            like = os.stat(earlier[-1]) if earlier else os.stat(path)  # as it was before hgs
            _write(path, _with_block(current, name, []), 0o640, like=like)
            actions.append(f"removed hgs's lines from {path}")
        upssched = os.path.join(nut_dir, "upssched.conf")
        if re.search(r"^\s*CMDSCRIPT\s+\"?" + re.escape(plan["cmdscript"]), _read(upssched) or "", re.M):
            # wired by hand: upssched still runs it; without it the user's own timers would reach nothing
            actions.append(f"kept {plan['cmdscript']}: {upssched} still names it as CMDSCRIPT (lines added by "
                           "hand); take hgs's lines out of upssched.conf and upsmon.conf, then rerun --uninstall")
            return actions, plan
        _take_out(plan["cmdscript"], actions)
        current = _read(sudoers_file)
        if current is not None and hooks.MARKER in current:
            os.unlink(sudoers_file)
            actions.append(f"removed {sudoers_file}")
        return actions, plan
    _put(plan["cmdscript"], hooks.render("upssched-cmd", hgs_path, config_path, previous=plan["previous"]), 0o755,
         actions)
    if plan["user"] != "root":
        _put_sudoers(sudoers_file, hooks.sudoers_rule(plan["user"], hgs_path, config_path), actions)
    elif hooks.MARKER in (_read(sudoers_file) or ""):  # upsmon now runs as root: no rule needed any more
        os.unlink(sudoers_file)
        actions.append(f"removed {sudoers_file} (upsmon runs its hooks as root)")
    if write:
        for name in ("upsmon.conf", "upssched.conf"):
            path = os.path.join(nut_dir, name)
            current = _read(path)
            wanted = _with_block(current, name, plan[name])
            if current == wanted:
                actions.append(f"unchanged {path}")
                continue
            if current is not None:
                _backup(path, actions)
            # a file hgs creates takes its owner, group and mode from upsmon.conf (Debian: root:nut 0640)
            _write(path, wanted, 0o640, like=_stat(path) or _stat(os.path.join(nut_dir, "upsmon.conf")))
            actions.append(f"wired {path} (owner, group and mode kept)")
    if plan["other_notify"]:
        done = "is commented out" if write else "is to be commented out (the lines above replace it)"
        actions.append(f"note: your NOTIFYCMD {plan['other_notify']} {done} (upsmon runs one NOTIFYCMD, now "
                       "upssched): have upssched run it, with an AT line and your CMDSCRIPT")
    return actions, plan


# -- cron -------------------------------------------------------------------------------------

def cron(cron_file, hgs_path, config_path, uninstall=False):
    """Writes the cron.d file: the daily self-test and the boot-time resume."""
    actions = []
    if uninstall:
        _take_out(cron_file, actions)
        return actions
    text = "\n".join([
        CRON_MARK + f" ({hooks.MARKER})",
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "# Every day: check the whole chain (it changes nothing, but starts the restore when hgs left",
        "# the site down and the mains are back); a failure is mailed by hgs, so its output is dropped.",
        f"17 6 * * * root {hgs_path} --config {config_path} selftest --mail failure >/dev/null",
        "# After this box boots: if hgs left the site down and the mains are back, restore it",
        "# (with nothing shut down by hgs this does nothing, silently).",
        f"@reboot root sleep 60 && {hgs_path} --config {config_path} offbattery",
        "",
    ])
    _put(cron_file, text, 0o644, actions)
    return actions


# -- the record selftest reads ------------------------------------------------------------------

def record(state_dir, target, entry):
    """Notes in ``<state_dir>/hooks.json`` what ``install TARGET`` put in place (None: removed),
    so that selftest can check the wiring."""
    path = os.path.join(str(state_dir), RECORD)
    data = read_record(state_dir)
    if entry is None:
        data.pop(target, None)
    else:
        data[target] = entry
    try:
        os.makedirs(str(state_dir), mode=0o700, exist_ok=True)
    except OSError as err:
        raise InstallError(f"cannot create {state_dir}: {err.strerror or err}") from None
    _write(path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)


def read_record(state_dir):
    """Returns what ``record`` noted ({} when nothing, or the file is unreadable)."""
    try:
        with open(os.path.join(str(state_dir), RECORD)) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}

"""Putting hgs's hooks in place for apcupsd, NUT and cron, and taking them out again.

Every step is idempotent: installing twice changes nothing the second time. A file hgs
replaces that is not its own is kept as ``NAME.hgs-backup`` (once: the first original wins),
and ``uninstall`` puts it back. Files are written atomically.
"""

import os
import re
import shutil
import tempfile

from hgs import hooks
from hgs.errors import HgsError

BACKUP = ".hgs-backup"
BEGIN = "# --- hgs begin (written by 'hgs install nut'; 'hgs install nut --uninstall' removes it) ---"
END = "# --- hgs end ---"
CRON_MARK = "# hgs: written by 'hgs install cron'"


class InstallError(HgsError):
    """A hook could not be put in place (the message names the file and why)."""


def _write(path, text, mode):
    folder = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hgs.", dir=folder)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
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


def _put(path, text, mode, actions):
    """Writes ``text`` at ``path`` unless it is there already; backs up a foreign file once."""
    current = _read(path)
    if current == text:
        actions.append(f"unchanged {path}")
        return
    if current is not None and hooks.MARKER not in current and not os.path.exists(path + BACKUP):
        shutil.copy2(path, path + BACKUP)
        actions.append(f"backed up {path} to {path + BACKUP}")
    _write(path, text, mode)
    actions.append(f"wrote {path}")


def _take_out(path, actions):
    """Removes hgs's file at ``path`` and restores the backup, if there is one."""
    current = _read(path)
    if current is not None and hooks.MARKER in current:
        os.unlink(path)
        actions.append(f"removed {path}")
    if os.path.exists(path + BACKUP):
        os.replace(path + BACKUP, path)
        actions.append(f"restored {path} from {path + BACKUP}")


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


def nut_blocks(cmdscript, hgs_path, config_path, upssched="/sbin/upssched", shutdown="/sbin/shutdown -h +0",
               run_dir="/run/nut"):
    """Returns {'upsmon.conf': lines, 'upssched.conf': lines} that wire NUT to hgs."""
    return {
        "upsmon.conf": [
            f"NOTIFYCMD {upssched}",
            "NOTIFYFLAG ONBATT SYSLOG+EXEC",
            "NOTIFYFLAG ONLINE SYSLOG+EXEC",
            "NOTIFYFLAG LOWBATT SYSLOG+EXEC",
            "NOTIFYFLAG FSD SYSLOG+EXEC",
            f'SHUTDOWNCMD "{hgs_path} --config {config_path} doshutdown; {shutdown}"',
        ],
        "upssched.conf": [
            f"CMDSCRIPT {cmdscript}",
            f"PIPEFN {run_dir}/upssched.pipe",
            f"LOCKFN {run_dir}/upssched.lock",
            "AT ONBATT * EXECUTE onbatt",
            "AT ONLINE * EXECUTE online",
            "AT LOWBATT * EXECUTE lowbatt",
            "AT FSD * EXECUTE fsd",
        ],
    }


# directives hgs's block replaces: commented out (kept, to be restored) when the block goes in
_REPLACED = {
    "upsmon.conf": re.compile(r"^\s*(NOTIFYCMD|SHUTDOWNCMD|NOTIFYFLAG\s+(ONBATT|ONLINE|LOWBATT|FSD))\b"),
    "upssched.conf": re.compile(r"^\s*(CMDSCRIPT|PIPEFN|LOCKFN|AT\s+(ONBATT|ONLINE|LOWBATT|FSD)\b)"),
}


def _with_block(text, name, lines):
    kept = []
    inside = False
    for line in (text or "").splitlines():
        if line.strip() == BEGIN:
            inside = True
            continue
        if line.strip() == END:
            inside = False
            continue
        if inside:
            continue
        if _REPLACED[name].match(line):
            line = "# (hgs) " + line
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept + ["", BEGIN] + lines + [END]) + "\n"


def nut(nut_dir, hgs_path, config_path, write=False, uninstall=False, **options):
    """Writes the upssched command script; with ``write``, wires upsmon.conf and upssched.conf
    too (each backed up once). Returns (actions, blocks)."""
    if not os.path.isdir(nut_dir):
        raise InstallError(f"{nut_dir} is not a folder: is NUT installed? (give its folder with --nut-dir)")
    cmdscript = os.path.join(nut_dir, "hgs-upssched-cmd")
    blocks = nut_blocks(cmdscript, hgs_path, config_path, **options)
    actions = []
    if uninstall:
        _take_out(cmdscript, actions)
        for name in blocks:
            path = os.path.join(nut_dir, name)
            if os.path.exists(path + BACKUP):
                os.replace(path + BACKUP, path)
                actions.append(f"restored {path} from {path + BACKUP}")
            elif BEGIN in (_read(path) or ""):
                _write(path, _with_block(_read(path), name, [])
                       .replace(f"\n{BEGIN}\n{END}\n", "\n").replace("# (hgs) ", ""), 0o640)
                actions.append(f"removed hgs's lines from {path}")
        return actions, blocks
    _put(cmdscript, hooks.render("upssched-cmd", hgs_path, config_path), 0o755, actions)
    if write:
        for name, lines in blocks.items():
            path = os.path.join(nut_dir, name)
            current = _read(path)
            wanted = _with_block(current, name, lines)
            if current == wanted:
                actions.append(f"unchanged {path}")
                continue
            if current is not None and not os.path.exists(path + BACKUP):
                shutil.copy2(path, path + BACKUP)
                actions.append(f"backed up {path} to {path + BACKUP}")
            mode = os.stat(path).st_mode & 0o777 if current is not None else 0o640
            _write(path, wanted, mode)
            actions.append(f"wired {path}")
    return actions, blocks


def cron(cron_file, hgs_path, config_path, uninstall=False):
    """Writes the cron.d file: the daily self-test and the boot-time resume."""
    actions = []
    if uninstall:
        current = _read(cron_file)
        if current is not None and CRON_MARK in current:
            os.unlink(cron_file)
            actions.append(f"removed {cron_file}")
        if os.path.exists(cron_file + BACKUP):
            os.replace(cron_file + BACKUP, cron_file)
            actions.append(f"restored {cron_file} from {cron_file + BACKUP}")
        return actions
    text = "\n".join([
        CRON_MARK + f" ({hooks.MARKER})",
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "# Every day: check the whole chain without changing anything; mail on failure.",
        f"17 6 * * * root {hgs_path} --config {config_path} selftest --mail failure",
        "# After this box boots: if hgs left the site down and the mains are back, restore it",
        "# (with nothing shut down by hgs this does nothing).",
        f"@reboot root sleep 60 && {hgs_path} --config {config_path} offbattery",
        "",
    ])
    _put(cron_file, text, 0o644, actions)
    return actions

"""The event scripts hgs installs: apcupsd's apccontrol events and NUT's upssched command.

Each is a thin shim that hands the event to hgs and returns (onbattery/offbattery start a
detached flow; doshutdown is bounded). ``render`` fills in the hgs program and config paths;
apccontrol.d/ in the source tree holds them rendered for the default paths.

Whoever runs them: apcupsd runs its scripts as root, and hgs is called directly. Debian's
upsmon runs its NOTIFYCMD (upssched, and so the upssched command script) as the unprivileged
user ``nut``; the script then calls hgs through ``sudo -n``, which a sudoers rule written by
``hgs install nut`` (``sudoers_rule``) allows for exactly the command lines in
``NUT_COMMANDS``, nothing else. Only the event name crosses that boundary; the config, the
keys and the state stay readable by root alone. A script that cannot reach hgs says so in
syslog and on stderr, and exits non-zero.
"""

import re
import shlex

MARKER = "hgs-event-script"
DEFAULT_HGS = "/usr/local/bin/hgs"
DEFAULT_CONFIG = "/etc/hgs/config.py"
APCUPSD_EVENTS = ("onbattery", "offbattery", "doshutdown")

# upssched command name (an "AT ... EXECUTE name" line) -> the hgs command line it runs.
# LOWBATT and FSD force the site down only when hgs's own reading of the UPS says so: upsmon
# notifies LOWBATT on the LB flag whatever the line state (and at boot with a drained battery).
NUT_COMMANDS = {
    "hgs-onbattery": ("onbattery",),
    "hgs-offbattery": ("offbattery",),
    "hgs-lowbatt": ("doshutdown", "--only-if-critical"),
    "hgs-fsd": ("doshutdown", "--only-if-critical"),
}
# the upsmon event each command answers, for the AT lines
NUT_EVENTS = {"ONBATT": "hgs-onbattery", "ONLINE": "hgs-offbattery", "LOWBATT": "hgs-lowbatt", "FSD": "hgs-fsd"}

_PRELUDE = """\
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
HGS="@HGS@"
CONFIG="@CONFIG@"
# hgs ARGS...: runs hgs as root: directly when this runs as root, else through sudo, which the
# rule 'hgs install nut' wrote allows for exactly these command lines. Prints hgs's errors.
hgs() {
    if [ "$(id -u)" -eq 0 ]; then
        "$HGS" --config "$CONFIG" "$@" </dev/null 2>&1 >/dev/null
    else
        sudo -n "$HGS" --config "$CONFIG" "$@" </dev/null 2>&1 >/dev/null
    fi
}
# loud MESSAGE: to syslog (daemon.err) and stderr, so a hook that cannot reach hgs is seen
loud() {
    logger ${HGS_SYSLOG_SOCKET:+-u "$HGS_SYSLOG_SOCKET"} -p daemon.err -t hgs "$1" 2>/dev/null
    echo "hgs: $1" >&2
}
# run WHAT ARGS...: runs hgs; on failure says so loudly with hgs's last words; returns its code
run() {
    what="$1"
    shift
    err=$(hgs "$@")
    rc=$?
    if [ "$rc" -ne 0 ]; then
        loud "$what: hgs failed (exit $rc) as user $(id -un), running 'hgs $*': $(printf '%s' "$err" | tail -n 3 | tr '\\n' ' ' | sed 's/ *$//'); see the hgs log"
    fi
    return "$rc"
}
"""

_APCUPSD = """\
#!/bin/sh
# hgs event script for apcupsd (installed by `hgs install apcupsd`; marker: hgs-event-script)
# apccontrol runs it (as root) as: @EVENT@ UPSNAME CONNECTED POWERED
# @WHAT@
@PRELUDE@
run "apcupsd @EVENT@" @EVENT@
rc=$?
[ "$rc" -eq 99 ] && rc=1
exit "$rc"
"""

_WHAT = {
    "onbattery": "The power failed: hgs records the event and starts its outage flow detached (it confirms the\n"
                 "# outage itself), so this returns at once. Exit 0: apccontrol's default action (a wall\n"
                 "# message) still runs; a failure is non-zero and in syslog, and never 99.",
    "offbattery": "The power is back: hgs records the event and starts its restore flow detached (it waits for\n"
                  "# a running outage flow and confirms the power is stable itself), so this returns at once.",
    "doshutdown": "This box is about to halt: hgs forces every VM and host down and returns within its\n"
                  "# bound (TIMINGS[\"doshutdown_bound_s\"]). Never exit 99 here: the box must still halt.",
}

_UPSSCHED = """\
#!/bin/sh
# hgs command script for NUT's upssched (installed by `hgs install nut`; marker: hgs-event-script)
# upssched runs it synchronously, as upsmon's RUN_AS_USER (Debian: nut), with one argument: the
# name in an "AT ... EXECUTE name" line. hgs-onbattery/hgs-offbattery start hgs's flows detached
# and return at once; hgs-lowbatt/hgs-fsd force everything down now (bounded) if hgs's own
# reading of the UPS says on battery or FSD, and are logged and ignored on line. Any other name
# goes to the command script that was there before hgs (@PREVIOUS_TEXT@).
@PRELUDE@
case "$1" in
@CASES@
    *) @OTHER@ ;;
esac
"""


def _check_path(value):
    if any(c in value for c in '"$`\\\n'):
        raise ValueError(f"a path with quotes, '$', backquotes or newlines cannot go into a hook: {value!r}")


def render(name, hgs_path=DEFAULT_HGS, config_path=DEFAULT_CONFIG, previous=None):
    """Returns the script ``name`` (an apcupsd event, or 'upssched-cmd') with the hgs program and
    config paths filled in; ``previous`` is the upssched command line that was there before hgs
    (it gets every other command). Raises ValueError for a path a shell script cannot hold.

    The scripts log to syslog with logger(1); HGS_SYSLOG_SOCKET, when set, names another
    socket (tests use it; apccontrol and upssched never set it).
    """
    for value in (hgs_path, config_path):
        _check_path(value)
    if name == "upssched-cmd":
        cases = "\n".join(f"    {command}) run \"upssched $1\" {' '.join(argv)} ;;" for command, argv in NUT_COMMANDS.items())
        if previous:
            if "\n" in previous:
                raise ValueError(f"a CMDSCRIPT with a newline cannot go into a hook: {previous!r}")
            words = " ".join(shlex.quote(word) for word in shlex.split(previous))
            other, previous_text = f'exec {words} "$@"', f"here: {previous}"
        else:
            other = "loud \"upssched: command '$1' is not hgs's and there is no other CMDSCRIPT to give it to\"; exit 0"
            previous_text = "none here"
        text = (_UPSSCHED.replace("@CASES@", cases).replace("@OTHER@", other)
                .replace("@PREVIOUS_TEXT@", previous_text))
    elif name in APCUPSD_EVENTS:
        text = _APCUPSD.replace("@WHAT@", _WHAT[name]).replace("@EVENT@", name)
    else:
        raise KeyError(name)
    return text.replace("@PRELUDE@", _PRELUDE.rstrip("\n")).replace("@HGS@", hgs_path).replace("@CONFIG@", config_path)


TEMPLATES = APCUPSD_EVENTS + ("upssched-cmd",)

_SUDOERS_SAFE = re.compile(r"^[A-Za-z0-9_./@+-]+$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]*\$?$")


def sudo_argv(hgs_path, config_path, command_argv):
    """Returns the exact command line a hook runs through sudo (and the rule allows)."""
    return [hgs_path, "--config", config_path, *command_argv]


def sudoers_rule(user, hgs_path, config_path):
    """Returns the sudoers drop-in letting ``user`` run exactly the hooks' hgs command lines as
    root; raises ValueError for a user name or path that a sudoers rule cannot hold as is."""
    if not _USER.match(user or ""):
        raise ValueError(f"not a user name sudoers can hold: {user!r}")
    for value in (hgs_path, config_path):
        if not _SUDOERS_SAFE.match(value):
            raise ValueError(f"a path with spaces or characters other than letters, digits and _./@+- cannot go into "
                             f"a sudoers rule: {value!r}")
    lines = sorted({" ".join(sudo_argv(hgs_path, config_path, argv)) for argv in NUT_COMMANDS.values()})
    return "\n".join([
        f"# {MARKER}: written by 'hgs install nut'; 'hgs install nut --uninstall' removes it.",
        f"# NUT's upsmon runs its NOTIFYCMD (upssched, and so hgs's command script) as '{user}': this lets",
        "# that user start exactly these hgs command lines as root, nothing else. Only the event crosses;",
        "# the config and keys stay readable by root alone.",
        f"{user} ALL=(root) NOPASSWD: " + ", \\\n    ".join(lines),
        "",
    ])

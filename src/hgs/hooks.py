"""The event scripts hgs installs: apcupsd's apccontrol events and NUT's upssched command.

Each is a thin shim that hands the event to hgs and returns (onbattery/offbattery start a
detached flow; doshutdown is bounded). ``render`` fills in the hgs program and config paths;
apccontrol.d/ in the source tree holds them rendered for the default paths.
"""

MARKER = "hgs-event-script"
DEFAULT_HGS = "/usr/local/bin/hgs"
DEFAULT_CONFIG = "/etc/hgs/config.py"
APCUPSD_EVENTS = ("onbattery", "offbattery", "doshutdown")

TEMPLATES = {
    'onbattery': """\
#!/bin/sh
# hgs event script for apcupsd (installed by `hgs install apcupsd`; marker: hgs-event-script)
# apccontrol runs it as: onbattery UPSNAME CONNECTED POWERED
# The power failed: hgs records the event and starts its outage flow detached (it confirms the
# outage itself), so this returns at once. Exit 0: apccontrol's default action (a wall
# message) still runs; a failure is non-zero and in syslog, and never 99.
HGS="@HGS@"
"$HGS" --config "@CONFIG@" onbattery </dev/null >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ] && logger ${HGS_SYSLOG_SOCKET:+-u "$HGS_SYSLOG_SOCKET"} -t hgs "apcupsd onbattery: hgs failed (exit $rc); see the hgs log" 2>/dev/null
[ "$rc" -eq 99 ] && rc=1
exit "$rc"
""",
    'offbattery': """\
#!/bin/sh
# hgs event script for apcupsd (installed by `hgs install apcupsd`; marker: hgs-event-script)
# apccontrol runs it as: offbattery UPSNAME CONNECTED POWERED
# The power is back: hgs records the event and starts its restore flow detached (it waits for
# a running outage flow and confirms the power is stable itself), so this returns at once.
HGS="@HGS@"
"$HGS" --config "@CONFIG@" offbattery </dev/null >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ] && logger ${HGS_SYSLOG_SOCKET:+-u "$HGS_SYSLOG_SOCKET"} -t hgs "apcupsd offbattery: hgs failed (exit $rc); see the hgs log" 2>/dev/null
[ "$rc" -eq 99 ] && rc=1
exit "$rc"
""",
    'doshutdown': """\
#!/bin/sh
# hgs event script for apcupsd (installed by `hgs install apcupsd`; marker: hgs-event-script)
# apccontrol runs it as: doshutdown UPSNAME CONNECTED POWERED, then halts this box.
# This box is about to halt: hgs forces every VM and host down and returns within its
# bound (TIMINGS["doshutdown_bound_s"]). Never exit 99 here: the box must still halt.
HGS="@HGS@"
"$HGS" --config "@CONFIG@" doshutdown </dev/null >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ] && logger ${HGS_SYSLOG_SOCKET:+-u "$HGS_SYSLOG_SOCKET"} -t hgs "apcupsd doshutdown: hgs exit $rc; see the hgs log" 2>/dev/null
[ "$rc" -eq 99 ] && rc=1
exit "$rc"
""",
    'upssched-cmd': """\
#!/bin/sh
# hgs command script for NUT's upssched (installed by `hgs install nut`; marker: hgs-event-script)
# upssched runs it synchronously with one argument, the name in an "AT ... EXECUTE name" line.
# onbattery/offbattery start hgs's flows detached and return at once; lowbatt and fsd force
# everything down now (bounded), before upsmon's SHUTDOWNCMD halts this box.
HGS="@HGS@"
case "$1" in
    onbatt)  event=onbattery ;;
    online)  event=offbattery ;;
    lowbatt|fsd) event=doshutdown ;;
    *) logger ${HGS_SYSLOG_SOCKET:+-u "$HGS_SYSLOG_SOCKET"} -t hgs "upssched: unknown command '$1'" 2>/dev/null; exit 0 ;;
esac
"$HGS" --config "@CONFIG@" "$event" </dev/null >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ] && logger ${HGS_SYSLOG_SOCKET:+-u "$HGS_SYSLOG_SOCKET"} -t hgs "upssched $1: hgs $event failed (exit $rc); see the hgs log" 2>/dev/null
exit "$rc"
""",
}



def render(name, hgs_path=DEFAULT_HGS, config_path=DEFAULT_CONFIG):
    """Returns the script ``name`` with the hgs program and config paths filled in.

    The scripts log to syslog with logger(1); HGS_SYSLOG_SOCKET, when set, names another
    socket (tests use it; apccontrol and upssched never set it).
    """
    for value in (hgs_path, config_path):
        if any(c in value for c in '"$`\\\n'):
            raise ValueError(f"a path with quotes, '$', backquotes or newlines cannot go into a hook: {value!r}")
    return TEMPLATES[name].replace("@HGS@", hgs_path).replace("@CONFIG@", config_path)

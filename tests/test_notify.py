"""NOTIFY['command']: a program run on each event, beside the flow, with a deadline."""

import io
import json
import logging
import os
import sys
import time

from hgs.config import NotifySettings
from hgs.net.notify import Notifier
from harness import wait_for, write

SCENARIO = {"time_scale": 60, "pool": {"name": "pool", "ha_enabled": False},
            "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:0f:01", "shutdown_s": 5, "boot_s": 10,
                       "xapi_start_s": 5},
                      {"name": "xen2", "mac": "02:00:00:00:0f:02", "shutdown_s": 5, "boot_s": 10, "xapi_start_s": 5}],
            "vms": [{"name": "db", "host": "xen1", "order": 1, "shutdown_s": 10, "start_s": 10},
                    {"name": "web", "host": "xen2", "shutdown_s": 10, "start_s": 10},
                    {"name": "nt4", "host": "xen2", "tools": False, "start_s": 10}]}

RECORDER = """#!{python}
# appends what hgs gave it, one JSON object a line
import json, os, sys
keys = ("EVENT", "SUMMARY", "RUN_ID", "SEVERITY", "HOST", "TIME", "CONFIG")
with open({out!r}, "a") as handle:
    handle.write(json.dumps(dict({{k.lower(): os.environ.get("HGS_" + k) for k in keys}}, args=sys.argv[1:])) + "\\n")
"""

# power_lost fails at once; every other event hangs (and its child with it) until killed
BAD = """#!/bin/sh
echo "$HGS_EVENT $$ $(date +%s.%N)" >> {out}
case "$HGS_EVENT" in
  power_lost) echo "no route to ntfy" >&2; exit 3;;
esac
sleep 300 &
echo "child $!" >> {out}
wait
"""


def _lab(site_lab, tmp_path, script, timeout_s, timings=None):
    out = tmp_path / "notices"
    program = write(tmp_path / "notify.sh", script.format(out=str(out), python=sys.executable), 0o755)
    extra = (f"NOTIFY = {{'command': [{str(program)!r}], 'timeout_s': {timeout_s}}}\n"
             "MAIL = {'when': 'never'}\n")
    lab = site_lab(SCENARIO, ups_state="onbatt", extra=extra, timings=timings)
    return lab, out


def _notices(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_notify_command_gets_each_event_of_an_outage_and_restore_in_order(site_lab, tmp_path):
    lab, out = _lab(site_lab, tmp_path, RECORDER, 5)
    down = lab.hgs("onbattery", "--foreground")
    assert down.returncode == 0, down.stdout + down.stderr
    lab.ups.set_state("online")
    up = lab.hgs("offbattery", "--foreground")
    assert up.returncode == 0, up.stdout + up.stderr
    notices = _notices(out)
    assert [n["event"] for n in notices] == ["power_lost", "outage_confirmed", "site_down", "power_back",
                                             "site_restored"]
    outage_id = notices[0]["run_id"]
    assert outage_id and all(n["run_id"] == outage_id for n in notices[:3])
    assert notices[3]["run_id"] == notices[4]["run_id"] != outage_id
    assert notices[0]["summary"].startswith("power lost: the UPS runs on battery; hgs confirms the outage")
    assert notices[1]["summary"].startswith("outage confirmed after")
    assert notices[2]["summary"].startswith("site down: 3 VM(s) shut down (1 forced), 2 host(s) confirmed down")
    assert notices[3]["summary"].startswith("power back: once it is stable")
    assert notices[4]["summary"].startswith("site restored: 3 VM(s) running again")
    assert [n["severity"] for n in notices] == ["warning", "warning", "warning", "info", "info"]
    assert all(n["host"] == os.uname().nodename and n["config"] == str(lab.config) and n["args"] == []
               for n in notices)
    assert all(n["time"][:4].isdigit() and "T" in n["time"] for n in notices)


def test_a_failed_outage_sends_failure(site_lab, tmp_path):
    lab, out = _lab(site_lab, tmp_path, RECORDER, 5, timings={"unreachable_retry_s": 0})
    for door in lab.site.doors.values():
        door.down()
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 1
    notices = _notices(out)
    assert [n["event"] for n in notices] == ["power_lost", "outage_confirmed", "failure"]
    assert notices[2]["severity"] == "critical"
    assert notices[2]["summary"].startswith("outage FAILED: failed: no host answered: discovery: xen1 did not answer")


def test_a_failing_or_hanging_command_does_not_hold_the_flow_up(site_lab, tmp_path):
    timeout_s = 8
    lab, out = _lab(site_lab, tmp_path, BAD, timeout_s)
    started = time.monotonic()
    result = lab.hgs("onbattery", "--foreground")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(next((lab.site.workdir / "state" / "runs").glob("*.json")).read_text())
    flow_s = run["ended"] - run["started"]
    # outage_confirmed is sent inside the flow: had the flow waited for it, it would have lasted the deadline
    assert flow_s < timeout_s, flow_s
    # the process ends once the last notice hit its deadline, not later
    assert took < flow_s + timeout_s + 4, (took, flow_s)
    lines = out.read_text().splitlines()
    assert [line.split()[0] for line in lines if not line.startswith("child")] == ["power_lost", "outage_confirmed",
                                                                                  "site_down"]
    log = lab.log_text()
    assert "notify: " in log and "for power_lost exited with status 3" in log and "no route to ntfy" in log
    assert log.count(f"did not end within {timeout_s:g} s: killed") == 2
    for pid in [int(line.split()[1]) for line in lines]:  # each program and the child it started are gone
        wait_for(lambda: not _running(pid), 3, f"process {pid} to end")


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_emit_returns_at_once_and_close_stops_at_the_deadline(tmp_path):
    stream = io.StringIO()
    log = logging.getLogger("test-notify")
    log.addHandler(logging.StreamHandler(stream))
    log.setLevel(logging.INFO)
    script = write(tmp_path / "hang.sh", "#!/bin/sh\nexec sleep 60\n", 0o755)
    notifier = Notifier(NotifySettings(command=(str(script),), timeout_s=1.0), log, "r1")
    started = time.monotonic()
    notifier.emit("power_lost", "power lost")
    notifier.emit("site_down", "site\ndown")
    assert time.monotonic() - started < 0.2
    notifier.close()
    assert time.monotonic() - started < 1.0 + 1.0 + 1.5  # the second starts 1 s late at most
    assert stream.getvalue().count("did not end within 1 s: killed") == 2
    missing = Notifier(NotifySettings(command=("/nonexistent/notify",)), log, "r2")
    missing.emit("failure", "x")
    missing.close()
    assert "cannot run /nonexistent/notify for failure" in stream.getvalue()
    quiet = Notifier(NotifySettings(command=(str(script),), events=("failure",)), log, "r3")
    quiet.emit("power_lost", "not wanted")
    assert quiet.threads == []


def test_power_lost_is_mailed_at_once_through_postfix(site_lab, tmp_path, postfix):
    marker = f"hgs-notify-{os.getpid()}-{time.monotonic_ns()}"
    extra = (f"NOTIFY = {{'mail_events': ['power_lost']}}\n"
             f"MAIL = {{'when': 'never', 'to': ['root'], 'subject_tag': '[{marker}]'}}\n")
    lab = site_lab(SCENARIO, ups_state="online", extra=extra)  # the power is back before the confirmation ends
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0 and "power back during confirmation" in result.stdout
    message = postfix.wait_for_text(marker)
    import email

    subject = " ".join(email.message_from_string(message.split("\n", 1)[1])["Subject"].split())
    assert subject.startswith(f"[{marker}] power lost: the UPS runs on battery; hgs confirms the outage"), subject
    assert "event power_lost at " in message
    assert "notify: power_lost: power lost" in lab.log_text()


def test_a_dry_run_only_says_which_notices_it_would_send(site_lab, tmp_path):
    lab, out = _lab(site_lab, tmp_path, RECORDER, 5)
    result = lab.hgs("onbattery", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run: would notify power_lost: power lost" in result.stderr
    assert "dry run: would notify outage_confirmed" in result.stderr
    assert "dry run: would notify site_down" in result.stderr
    assert not out.exists()


def test_notify_settings_are_checked(make_config):
    from harness import run_hgs

    config = make_config(extra="NOTIFY = {'command': '', 'timout_s': 3, 'events': ['power_lost', 'site_dwn']}\n")
    result = run_hgs("--config", str(config), "check-config")
    assert result.returncode == 2
    assert "At 'NOTIFY.command': expected a program to run" in result.stderr
    assert "At 'NOTIFY.timout_s': unknown setting (did you mean 'timeout_s'?)" in result.stderr
    assert "At 'NOTIFY.events': entry 1: expected one of" in result.stderr and "'site_down'" in result.stderr
    good = make_config(extra="NOTIFY = {'command': '/usr/local/bin/notify --to ops', 'mail_events': ['power_lost']}\n"
                             "METRICS = {'textfile': 'metrics/hgs.prom'}\n", name="good.py")
    shown = run_hgs("--config", str(good), "check-config")
    assert shown.returncode == 0, shown.stderr
    assert "NOTIFY.command = ('/usr/local/bin/notify', '--to', 'ops')" in shown.stdout
    assert f"METRICS.textfile = {str(good.parent / 'metrics' / 'hgs.prom')!r}" in shown.stdout

"""selftest checks the wiring (hooks there, executable, calling this hgs with this config; for
NUT, upsmon's user may run them through sudo; a secondary's HOSTSYNC), and stays silent for cron
when all is well."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import HGS, run_hgs, write

SCENARIO = {"time_scale": 60, "pool": {"name": "pool", "ha_enabled": False},
            "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:0e:01"}],
            "vms": [{"name": "db", "host": "xen1"}, {"name": "nt4", "host": "xen1", "tools": False}]}
NUT_CONFIG = "'daemon': 'nut', 'address': 'myups@127.0.0.1:3493'"


def test_cron_a_healthy_selftest_and_the_boot_time_resume_print_nothing(site_lab, tmp_path):
    lab = site_lab(SCENARIO, ups_state="online", extra="MAIL = {'when': 'failure', 'sendmail_path': '/bin/true'}\n")
    scripts = tmp_path / "apcupsd"
    scripts.mkdir()
    assert lab.hgs("install", "apcupsd", "--scriptdir", str(scripts)).returncode == 0
    # as the cron lines run them (cron mails any output)
    selftest = lab.hgs("selftest", "--mail", "failure")
    assert (selftest.returncode, selftest.stdout, selftest.stderr) == (0, "", "")
    resume = lab.hgs("offbattery")
    assert (resume.returncode, resume.stdout, resume.stderr) == (0, "", "")
    # a person asks for it: every check, the warnings too
    verbose = lab.hgs("selftest", "-v", "--mail", "never")
    assert "ok    apcupsd hooks: " in verbose.stdout and "warn  host xen1: guests without tools" in verbose.stdout
    assert "selftest: all well" in verbose.stdout
    # a failure is printed (and so mailed by cron)
    (scripts / "offbattery").chmod(0o644)
    failed = lab.hgs("selftest", "--mail", "never")
    assert failed.returncode == 1 and "FAIL  apcupsd hooks: " in failed.stdout
    assert f"{scripts}/offbattery is not executable by everyone" in failed.stdout
    assert "selftest: FAILED" in failed.stdout


def _selftest_lines(config, *extra):
    result = run_hgs("selftest", "-v", "--mail", "never", "--config", str(config), *extra)
    return result, {line.split(":")[0].strip(): line for line in result.stdout.splitlines() if ":" in line}


def test_selftest_finds_hooks_calling_another_hgs_or_config(make_config, tmp_path):
    config = make_config()
    scripts = tmp_path / "apcupsd"
    scripts.mkdir()
    assert run_hgs("install", "apcupsd", "--scriptdir", str(scripts), "--config", str(config),
                   "--hgs", "/opt/old/bin/hgs").returncode == 0
    result, lines = _selftest_lines(config)
    assert result.returncode == 1
    assert f"{scripts}/onbattery calls /opt/old/bin/hgs, not this hgs" in lines["FAIL  apcupsd hooks"]
    text = (scripts / "doshutdown").read_text().replace(str(config), "/etc/hgs/other.py")
    (scripts / "doshutdown").write_text(text)
    assert f"uses the config /etc/hgs/other.py, not {config}" in _selftest_lines(config)[1]["FAIL  apcupsd hooks"]
    fresh = make_config(name="fresh.py", extra="PATHS = {'state_dir': 'fresh-state', 'lock_dir': 'fresh-lock'}\n")
    result, lines = _selftest_lines(fresh)
    assert "none recorded for this config" in lines["warn  apcupsd hooks"]


@pytest.fixture
def sudoers_file():
    path = Path(f"/etc/sudoers.d/hgs-selftest-{os.getpid()}")
    yield path
    path.unlink(missing_ok=True)


def _nut_dir(tmp_path, monitor="primary", hostsync=None):
    nut_dir = tmp_path / "nut"
    nut_dir.mkdir(exist_ok=True)
    write(nut_dir / "upsmon.conf", f"MONITOR myups@127.0.0.1 1 mon pw {monitor}\n"
          + (f"HOSTSYNC {hostsync}\n" if hostsync else ""), 0o640)
    write(nut_dir / "upssched.conf", "CMDSCRIPT /usr/local/bin/theirs\nAT COMMBAD * EXECUTE commbad\n", 0o640)
    return nut_dir


def test_selftest_checks_that_upsmons_user_may_run_the_nut_hooks(make_config, tmp_path, sudoers_file):
    from test_hooks_e2e import ensure_nut_user

    ensure_nut_user()
    config = make_config(ups=NUT_CONFIG)
    nut_dir = _nut_dir(tmp_path)
    installed = run_hgs("install", "nut", "--write", "--nut-dir", str(nut_dir), "--config", str(config),
                        "--sudoers-file", str(sudoers_file))
    assert installed.returncode == 0, installed.stderr
    result, lines = _selftest_lines(config)
    assert "nut may run them through sudo" in lines["ok    nut hooks"], result.stdout
    sudoers_file.unlink()  # the rule is gone: the hooks, run as nut, cannot reach hgs
    result, lines = _selftest_lines(config)
    assert result.returncode == 1
    assert f"nut (upsmon's user) may not run '{HGS} --config {config} onbattery' through sudo" in lines["FAIL  nut hooks"]
    # and the hook itself, run as nut, says so loudly and fails
    with tempfile.TemporaryDirectory(prefix="hgs-hook-") as folder:  # where nut can reach it, as /etc/nut
        os.chmod(folder, 0o755)
        hook_copy = shutil.copy2(nut_dir / "hgs-upssched-cmd", folder)
        syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # stands in for /dev/log
        syslog.bind(os.path.join(folder, "log.sock"))
        os.chmod(os.path.join(folder, "log.sock"), 0o666)
        syslog.settimeout(5)
        try:
            hook = subprocess.run(["setpriv", "--reuid", "nut", "--regid", "nut", "--init-groups", hook_copy,
                                   "hgs-onbattery"], capture_output=True, text=True, cwd="/", timeout=20,
                                  env=dict(os.environ, HGS_SYSLOG_SOCKET=os.path.join(folder, "log.sock")))
            logged = syslog.recv(4096).decode(errors="replace")
        finally:
            syslog.close()
    assert hook.returncode != 0
    assert "upssched hgs-onbattery: hgs failed (exit 1) as user nut" in hook.stderr
    assert logged.startswith("<27>")  # daemon.err
    assert "upssched hgs-onbattery: hgs failed (exit 1) as user nut" in logged and "password is required" in logged
    # upssched.conf no longer calling hgs's script is found too
    (nut_dir / "upssched.conf").write_text("CMDSCRIPT /usr/local/bin/theirs\n")
    assert "does not run" in _selftest_lines(config)[1]["FAIL  nut hooks"]
    text = (nut_dir / "upsmon.conf").read_text().replace("NOTIFYFLAG LOWBATT SYSLOG+WALL+EXEC", "NOTIFYFLAG LOWBATT SYSLOG")
    (nut_dir / "upsmon.conf").write_text(text)
    assert "upsmon.conf has no EXEC flag for LOWBATT" in _selftest_lines(config)[1]["FAIL  nut hooks"]


def test_selftest_checks_a_nut_secondarys_hostsync_against_the_doshutdown_bound(make_config, tmp_path):
    config = make_config(ups=NUT_CONFIG)
    nut_dir = _nut_dir(tmp_path, monitor="secondary")
    result, lines = _selftest_lines(config, "--nut-dir", str(nut_dir))
    assert "the primary waits HOSTSYNC (15 s in" in lines["FAIL  NUT secondary"]
    assert "less than TIMINGS['doshutdown_bound_s'] (40 s)" in lines["FAIL  NUT secondary"]
    _nut_dir(tmp_path, monitor="secondary", hostsync=60)
    assert "HOSTSYNC 60 s covers doshutdown_bound_s 40 s" in _selftest_lines(config, "--nut-dir", str(nut_dir))[1][
        "ok    NUT secondary"]
    _nut_dir(tmp_path, monitor="primary")
    assert "ok    NUT secondary" not in _selftest_lines(config, "--nut-dir", str(nut_dir))[0].stdout

"""hgs install apcupsd|nut|cron: in place, idempotent, numbered backups, owner/group/mode kept,
--uninstall restores; the NUT wiring (events mapped to meaning, the user's own CMDSCRIPT and AT
lines kept working, the sudo rule for upsmon's user)."""

import os
import stat
import subprocess

from hgs.setup import hooks
from hgs.setup import install
from harness import REPO, run_hgs, write

NUT_CONFIG = "'daemon': 'nut', 'address': 'myups@127.0.0.1:3493'"


def _owner_mode(path):
    info = os.stat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def test_apccontrol_d_holds_the_shims_rendered_for_the_default_paths():
    for name in hooks.TEMPLATES:
        assert (REPO / "apccontrol.d" / name).read_text() == hooks.render(name), name
        assert os.access(REPO / "apccontrol.d" / name, os.X_OK)
    code = [line for line in hooks.render("doshutdown").splitlines() if not line.lstrip().startswith("#")]
    assert not any("exit 99" in line for line in code)


def test_install_apcupsd_backs_up_is_idempotent_and_uninstall_restores(make_config, tmp_path):
    config = make_config()
    scriptdir = tmp_path / "apcupsd"
    scriptdir.mkdir()
    write(scriptdir / "onbattery", "#!/bin/sh\necho the admin's own script\n", 0o750)
    os.chown(scriptdir / "onbattery", 0, 4)  # root:adm, as an admin might have it
    result = run_hgs("install", "apcupsd", "--scriptdir", str(scriptdir), "--config", str(config), "--hgs", "/opt/hgs/bin/hgs")
    assert result.returncode == 0, result.stderr
    assert f"backed up {scriptdir}/onbattery to {scriptdir}/onbattery.hgs-backup.1" in result.stdout
    for event in ("onbattery", "offbattery", "doshutdown"):
        text = (scriptdir / event).read_text()
        assert hooks.MARKER in text and 'HGS="/opt/hgs/bin/hgs"' in text and f'CONFIG="{config}"' in text
        assert stat.S_IMODE(os.stat(scriptdir / event).st_mode) == 0o755
    again = run_hgs("install", "apcupsd", "--scriptdir", str(scriptdir), "--config", str(config), "--hgs", "/opt/hgs/bin/hgs")
    assert again.returncode == 0 and "wrote" not in again.stdout and again.stdout.count("unchanged") == 3
    assert (scriptdir / "onbattery.hgs-backup.1").read_text() == "#!/bin/sh\necho the admin's own script\n"
    # the admin puts a script of theirs back; a new install backs it up under a new number
    write(scriptdir / "onbattery", "#!/bin/sh\necho version 2\n", 0o750)
    third = run_hgs("install", "apcupsd", "--scriptdir", str(scriptdir), "--config", str(config), "--hgs", "/opt/hgs/bin/hgs")
    assert f"to {scriptdir}/onbattery.hgs-backup.2" in third.stdout
    assert (scriptdir / "onbattery.hgs-backup.1").read_text() == "#!/bin/sh\necho the admin's own script\n"
    gone = run_hgs("install", "apcupsd", "--uninstall", "--scriptdir", str(scriptdir), "--config", str(config))
    assert gone.returncode == 0
    assert (scriptdir / "onbattery").read_text() == "#!/bin/sh\necho version 2\n"
    assert _owner_mode(scriptdir / "onbattery")[2] == 0o750
    assert sorted(os.listdir(scriptdir)) == ["onbattery", "onbattery.hgs-backup.1"]


def test_install_refuses_a_broken_config_and_a_missing_folder(make_config, tmp_path):
    broken = make_config(extra="TIMINGS = {'xe_timeout_s': -1}\n")
    result = run_hgs("install", "apcupsd", "--scriptdir", str(tmp_path), "--config", str(broken))
    assert result.returncode == 2 and "TIMINGS.xe_timeout_s" in result.stderr
    result = run_hgs("install", "apcupsd", "--scriptdir", str(tmp_path / "nope"), "--config", str(make_config()))
    assert result.returncode == 1 and "is apcupsd installed?" in result.stderr


USER_UPSMON = """\
# the admin's own upsmon.conf
MONITOR myups@localhost 1 mon pw primary
NOTIFYCMD /sbin/upssched
NOTIFYFLAG ONBATT SYSLOG+WALL
NOTIFYFLAG COMMBAD SYSLOG+WALL+EXEC
SHUTDOWNCMD "/sbin/shutdown -h +0"
HOSTSYNC 15
"""
USER_UPSSCHED = """\
# the admin's own upssched.conf: AT lines of theirs, and their CMDSCRIPT
CMDSCRIPT /usr/local/bin/my-upssched-cmd
PIPEFN /run/nut/upssched.pipe
LOCKFN /run/nut/upssched.lock
AT ONBATT * START-TIMER mywarn 30
AT ONLINE * CANCEL-TIMER mywarn
AT COMMBAD * EXECUTE mycommbad
"""


def _nut_dir(tmp_path, upssched=USER_UPSSCHED):
    nut_dir = tmp_path / "nut"
    nut_dir.mkdir()
    for name, text in (("upsmon.conf", USER_UPSMON), ("upssched.conf", upssched)):
        write(nut_dir / name, text, 0o640)
        os.chown(nut_dir / name, 0, 4)  # root:adm stands in for Debian's root:nut
    return nut_dir


def _install_nut(config, nut_dir, tmp_path, *extra):
    return run_hgs("install", "nut", "--nut-dir", str(nut_dir), "--config", str(config), "--hgs", "/usr/local/bin/hgs",
                   "--sudoers-file", str(tmp_path / "sudoers-hgs"), *extra)


def test_install_nut_prints_lines_naming_the_configured_ups_and_keeping_the_users_flags(make_config, tmp_path):
    config = make_config(ups=NUT_CONFIG)
    nut_dir = _nut_dir(tmp_path)
    printed = _install_nut(config, nut_dir, tmp_path)
    assert printed.returncode == 0, printed.stderr
    # upsmon's name for the UPS (its MONITOR line), not '*': other UPSes upsmon watches are not hgs's
    for event, command in (("ONBATT", "hgs-onbattery"), ("ONLINE", "hgs-offbattery"), ("LOWBATT", "hgs-lowbatt"),
                           ("FSD", "hgs-fsd")):
        assert f"    AT {event} myups@localhost EXECUTE {command}\n" in printed.stdout
    assert " * EXECUTE" not in printed.stdout
    assert "    NOTIFYFLAG ONBATT SYSLOG+WALL+EXEC\n" in printed.stdout  # their WALL kept
    assert "    NOTIFYFLAG LOWBATT SYSLOG+WALL+EXEC\n" in printed.stdout  # upsmon's default kept
    assert f'    SHUTDOWNCMD "/usr/local/bin/hgs --config {config} doshutdown; /sbin/shutdown -h +0"' in printed.stdout
    assert (nut_dir / "upsmon.conf").read_text() == USER_UPSMON  # not touched without --write
    script = (nut_dir / "hgs-upssched-cmd").read_text()
    assert hooks.MARKER in script and "exec /usr/local/bin/my-upssched-cmd \"$@\"" in script
    assert "hgs-lowbatt) run \"upssched $1\" doshutdown --only-if-critical" in script
    # wired by hand as printed: an uninstall keeps the script upssched.conf still names
    wired = (nut_dir / "upssched.conf").read_text() + f"CMDSCRIPT {nut_dir / 'hgs-upssched-cmd'}\n"
    (nut_dir / "upssched.conf").write_text(wired)
    removed = _install_nut(config, nut_dir, tmp_path, "--uninstall")
    assert removed.returncode == 0 and "still names it as CMDSCRIPT" in removed.stdout, removed.stdout
    assert (nut_dir / "hgs-upssched-cmd").exists()


def test_install_nut_write_keeps_owner_group_mode_the_users_at_lines_and_uninstall_restores(make_config, tmp_path):
    config = make_config(ups=NUT_CONFIG)
    nut_dir = _nut_dir(tmp_path)
    before = {name: _owner_mode(nut_dir / name) for name in ("upsmon.conf", "upssched.conf")}
    for _ in range(2):  # idempotent
        wrote = _install_nut(config, nut_dir, tmp_path, "--write")
        assert wrote.returncode == 0, wrote.stderr
    assert wrote.stdout.count("unchanged") == 4  # the script, the sudo rule and both files
    for name in before:
        assert _owner_mode(nut_dir / name) == before[name], name  # root:adm 0640 kept
        assert install.backups(str(nut_dir / name)) == [f"{nut_dir / name}.hgs-backup.1"]
        assert _owner_mode(f"{nut_dir / name}.hgs-backup.1") == before[name]
    upsmon = (nut_dir / "upsmon.conf").read_text()
    assert upsmon.count("# --- hgs begin") == 1
    assert "# (hgs) NOTIFYFLAG ONBATT SYSLOG+WALL\n" in upsmon and "\nNOTIFYFLAG ONBATT SYSLOG+WALL+EXEC\n" in upsmon
    assert "\nNOTIFYFLAG COMMBAD SYSLOG+WALL+EXEC\n" in upsmon  # not hgs's: untouched
    assert "# (hgs) NOTIFYCMD /sbin/upssched\n" in upsmon and "\nNOTIFYCMD /sbin/upssched\n" in upsmon
    upssched = (nut_dir / "upssched.conf").read_text().splitlines()
    directives = [line.split()[0] for line in upssched if line and not line.startswith("#")]
    assert directives[0] == "CMDSCRIPT" and upssched[upssched.index(f"CMDSCRIPT {nut_dir}/hgs-upssched-cmd") - 1].startswith("# --- hgs begin")
    assert "AT COMMBAD * EXECUTE mycommbad" in upssched and "AT ONBATT * START-TIMER mywarn 30" in upssched
    assert "# (hgs) CMDSCRIPT /usr/local/bin/my-upssched-cmd" in upssched
    assert "PIPEFN /run/nut/upssched.pipe" in upssched  # theirs, moved above the AT lines
    assert "note: your NOTIFYCMD" not in wrote.stdout  # theirs was upssched already
    # a changed file gets a new backup; the first is never overwritten
    with open(nut_dir / "upsmon.conf", "a") as handle:
        handle.write("DEADTIME 25\n")
    assert _install_nut(config, nut_dir, tmp_path, "--write").returncode == 0
    assert len(install.backups(str(nut_dir / "upsmon.conf"))) == 2
    assert (nut_dir / "upsmon.conf.hgs-backup.1").read_text() == USER_UPSMON
    os.chmod(nut_dir / "upsmon.conf", 0o600)  # whatever happened meanwhile, uninstall puts back what was there
    gone = _install_nut(config, nut_dir, tmp_path, "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert (nut_dir / "upsmon.conf").read_text() == USER_UPSMON + "DEADTIME 25\n"
    assert (nut_dir / "upssched.conf").read_text() == USER_UPSSCHED
    for name in before:
        assert _owner_mode(nut_dir / name) == before[name], name
    assert not (nut_dir / "hgs-upssched-cmd").exists() and not (tmp_path / "sudoers-hgs").exists()


def test_install_nut_writes_a_sudo_rule_for_exactly_the_hooks_command_lines(make_config, tmp_path):
    config = make_config(ups=NUT_CONFIG)
    nut_dir = _nut_dir(tmp_path)
    result = _install_nut(config, nut_dir, tmp_path, "--write")
    assert result.returncode == 0, result.stderr
    rule = tmp_path / "sudoers-hgs"
    assert _owner_mode(rule) == (0, 0, 0o440)
    assert subprocess.run(["visudo", "-cf", str(rule)], capture_output=True).returncode == 0
    allowed = [line for line in rule.read_text().replace("\\\n", "").splitlines() if not line.startswith("#")]
    assert allowed == [f"nut ALL=(root) NOPASSWD: /usr/local/bin/hgs --config {config} doshutdown --only-if-critical,"
                       f"     /usr/local/bin/hgs --config {config} offbattery,     /usr/local/bin/hgs --config {config} "
                       "onbattery"]
    # upssched.conf did not exist: it is created like upsmon.conf, so that upssched (as nut) reads it
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    write(fresh / "upsmon.conf", USER_UPSMON, 0o640)
    os.chown(fresh / "upsmon.conf", 0, 4)
    assert _install_nut(config, fresh, tmp_path, "--write").returncode == 0
    assert _owner_mode(fresh / "upssched.conf") == (0, 4, 0o640)
    # upsmon told to run as root: no rule is needed, none is written
    rule.unlink()
    root_dir = tmp_path / "asroot"
    root_dir.mkdir()
    write(root_dir / "upsmon.conf", "RUN_AS_USER root\nMONITOR myups@127.0.0.1 1 mon pw primary\n", 0o640)
    result = _install_nut(config, root_dir, tmp_path, "--write")
    assert result.returncode == 0 and not rule.exists()


def test_install_nut_refuses_what_cannot_work(make_config, tmp_path):
    config = make_config(ups=NUT_CONFIG)
    nut_dir = _nut_dir(tmp_path)
    (nut_dir / "upsmon.conf").write_text("MONITOR otherups@localhost 1 mon pw primary\n")
    result = _install_nut(config, nut_dir, tmp_path)
    assert result.returncode == 1 and "no MONITOR line for myups@127.0.0.1:3493" in result.stderr
    (nut_dir / "upsmon.conf").write_text(USER_UPSMON.replace("/sbin/upssched", "/usr/local/bin/notify-me"))
    result = _install_nut(config, nut_dir, tmp_path, "--write")
    assert "note: your NOTIFYCMD /usr/local/bin/notify-me is commented out" in result.stdout
    apc = make_config(name="apc.py")
    result = _install_nut(apc, nut_dir, tmp_path)
    assert result.returncode == 1 and "hgs install apcupsd" in result.stderr
    (nut_dir / "upsmon.conf").write_text(USER_UPSMON)
    spaced = tmp_path / "my config.py"
    spaced.write_text(config.read_text())
    spaced.chmod(0o600)
    result = _install_nut(spaced, nut_dir, tmp_path)
    assert result.returncode == 1 and "cannot go into a sudoers rule" in result.stderr
    theirs = write(tmp_path / "sudoers-hgs", "nut ALL=(root) NOPASSWD: /bin/true\n", 0o440)
    result = _install_nut(config, nut_dir, tmp_path)
    assert result.returncode == 1 and "is not hgs's" in result.stderr, result.stdout + result.stderr
    assert theirs.read_text() == "nut ALL=(root) NOPASSWD: /bin/true\n"  # someone else's rule is left alone
    result = run_hgs("install", "apcupsd", "--scriptdir", str(tmp_path), "--config", str(config))
    assert result.returncode == 1 and "hgs install nut" in result.stderr, result.stderr


def test_the_nut_command_script_maps_hgs_commands_and_passes_the_users_to_their_script(tmp_path):
    """Run as root, the script calls hgs directly; any other command goes to the previous script."""
    calls = tmp_path / "calls"
    fake_hgs = write(tmp_path / "hgs", f'#!/bin/sh\necho "hgs $*" >> {calls}\n', 0o755)
    theirs = write(tmp_path / "theirs", f'#!/bin/sh\necho "theirs $*" >> {calls}\n', 0o755)
    script = write(tmp_path / "cmd", hooks.render("upssched-cmd", str(fake_hgs), "/etc/hgs/config.py",
                                                  previous=str(theirs)), 0o755)
    for command in ("hgs-onbattery", "hgs-offbattery", "hgs-lowbatt", "hgs-fsd", "mycommbad", "onbatt"):
        assert subprocess.run([str(script), command]).returncode == 0
    assert calls.read_text().splitlines() == [
        "hgs --config /etc/hgs/config.py onbattery", "hgs --config /etc/hgs/config.py offbattery",
        "hgs --config /etc/hgs/config.py doshutdown --only-if-critical",
        "hgs --config /etc/hgs/config.py doshutdown --only-if-critical", "theirs mycommbad", "theirs onbatt"]


def test_a_hook_that_cannot_reach_hgs_fails_loudly(tmp_path):
    script = write(tmp_path / "onbattery", hooks.render("onbattery", str(tmp_path / "no-such-hgs"), "/etc/hgs/c.py"),
                   0o755)
    result = subprocess.run([str(script), "ups", "1", "0"], capture_output=True, text=True)
    assert result.returncode != 0 and result.returncode != 99
    assert "apcupsd onbattery: hgs failed (exit 127) as user root, running 'hgs onbattery'" in result.stderr


def test_install_cron_writes_the_boot_time_resume(make_config, tmp_path):
    config = make_config()
    cron_file = tmp_path / "cron.d-hgs"
    result = run_hgs("install", "cron", "--cron-file", str(cron_file), "--config", str(config), "--hgs", "/usr/local/bin/hgs")
    assert result.returncode == 0
    assert f"@reboot root sleep 60 && /usr/local/bin/hgs --config {config} offbattery" in cron_file.read_text()
    assert run_hgs("install", "cron", "--uninstall", "--cron-file", str(cron_file), "--config", str(config)).returncode == 0
    assert not cron_file.exists()


def test_a_hook_path_with_shell_characters_is_refused(make_config, tmp_path):
    (tmp_path / "d").mkdir()
    result = run_hgs("install", "apcupsd", "--scriptdir", str(tmp_path / "d"), "--config", str(make_config()),
                     "--hgs", '/x"; rm -rf /')
    assert result.returncode == 1 and "cannot go into a hook" in result.stderr


def test_uninstall_puts_back_a_backup_from_before_backups_were_numbered(make_config, tmp_path):
    config = make_config()
    scriptdir = tmp_path / "apcupsd"
    scriptdir.mkdir()
    write(scriptdir / "onbattery", hooks.render("onbattery", "/usr/local/bin/hgs", str(config)), 0o755)
    write(scriptdir / "onbattery.hgs-backup", "#!/bin/sh\necho the admin's own\n", 0o700)
    assert run_hgs("install", "apcupsd", "--scriptdir", str(scriptdir), "--config", str(config)).returncode == 0
    assert not (scriptdir / "onbattery.hgs-backup.1").exists()  # hgs's own script: nothing to back up
    assert run_hgs("install", "apcupsd", "--uninstall", "--scriptdir", str(scriptdir), "--config", str(config)).returncode == 0
    assert (scriptdir / "onbattery").read_text() == "#!/bin/sh\necho the admin's own\n"
    assert _owner_mode(scriptdir / "onbattery")[2] == 0o700

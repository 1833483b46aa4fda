"""hgs install apcupsd|nut|cron: in place, idempotent, backups kept, --uninstall restores."""

import os
import stat

from hgs import hooks
from lab import REPO, run_hgs, write


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
    result = run_hgs("install", "apcupsd", "--scriptdir", str(scriptdir), "--config", str(config), "--hgs", "/opt/hgs/bin/hgs")
    assert result.returncode == 0, result.stderr
    assert f"backed up {scriptdir}/onbattery to {scriptdir}/onbattery.hgs-backup" in result.stdout
    for event in ("onbattery", "offbattery", "doshutdown"):
        text = (scriptdir / event).read_text()
        assert hooks.MARKER in text and 'HGS="/opt/hgs/bin/hgs"' in text and f'--config "{config}"' in text
        assert stat.S_IMODE(os.stat(scriptdir / event).st_mode) == 0o755
    again = run_hgs("install", "apcupsd", "--scriptdir", str(scriptdir), "--config", str(config), "--hgs", "/opt/hgs/bin/hgs")
    assert again.returncode == 0 and "wrote" not in again.stdout and again.stdout.count("unchanged") == 3
    assert (scriptdir / "onbattery.hgs-backup").read_text() == "#!/bin/sh\necho the admin's own script\n"
    gone = run_hgs("install", "apcupsd", "--uninstall", "--scriptdir", str(scriptdir), "--config", str(config))
    assert gone.returncode == 0
    assert (scriptdir / "onbattery").read_text() == "#!/bin/sh\necho the admin's own script\n"
    assert stat.S_IMODE(os.stat(scriptdir / "onbattery").st_mode) == 0o750
    assert sorted(os.listdir(scriptdir)) == ["onbattery"]


def test_install_refuses_a_broken_config_and_a_missing_folder(make_config, tmp_path):
    broken = make_config(extra="TIMINGS = {'xe_timeout_s': -1}\n")
    result = run_hgs("install", "apcupsd", "--scriptdir", str(tmp_path), "--config", str(broken))
    assert result.returncode == 2 and "TIMINGS.xe_timeout_s" in result.stderr
    result = run_hgs("install", "apcupsd", "--scriptdir", str(tmp_path / "nope"), "--config", str(make_config()))
    assert result.returncode == 1 and "is apcupsd installed?" in result.stderr


def test_install_nut_prints_lines_or_writes_them_with_a_backup(make_config, tmp_path):
    config = make_config()
    nut_dir = tmp_path / "nut"
    nut_dir.mkdir()
    original = "MONITOR ups@localhost 1 mon pw primary\nNOTIFYCMD /usr/local/bin/old-notify\nSHUTDOWNCMD \"/sbin/shutdown -h +0\"\n"
    write(nut_dir / "upsmon.conf", original, 0o640)
    printed = run_hgs("install", "nut", "--nut-dir", str(nut_dir), "--config", str(config), "--hgs", "/usr/local/bin/hgs")
    assert printed.returncode == 0, printed.stderr
    assert "    AT LOWBATT * EXECUTE lowbatt" in printed.stdout
    assert f'    SHUTDOWNCMD "/usr/local/bin/hgs --config {config} doshutdown; /sbin/shutdown -h +0"' in printed.stdout
    assert (nut_dir / "upsmon.conf").read_text() == original  # not touched without --write
    assert hooks.MARKER in (nut_dir / "hgs-upssched-cmd").read_text()
    for _ in range(2):  # idempotent
        wrote = run_hgs("install", "nut", "--write", "--nut-dir", str(nut_dir), "--config", str(config))
        assert wrote.returncode == 0, wrote.stderr
    upsmon = (nut_dir / "upsmon.conf").read_text()
    assert upsmon.count("# --- hgs begin") == 1
    assert "# (hgs) NOTIFYCMD /usr/local/bin/old-notify" in upsmon and "\nNOTIFYCMD /sbin/upssched\n" in upsmon
    assert "MONITOR ups@localhost 1 mon pw primary" in upsmon
    assert "CMDSCRIPT " + str(nut_dir / "hgs-upssched-cmd") in (nut_dir / "upssched.conf").read_text()
    gone = run_hgs("install", "nut", "--uninstall", "--nut-dir", str(nut_dir), "--config", str(config))
    assert gone.returncode == 0
    assert (nut_dir / "upsmon.conf").read_text() == original
    assert not (nut_dir / "hgs-upssched-cmd").exists()


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

"""The command line: help, version, exit codes, logging."""

import os
import re
import stat

from hgs import __version__
from hgs.box.log import RunLog
from harness import run_hgs


def test_help_explains_every_command():
    result = run_hgs("--help")
    assert result.returncode == 0
    for command in ("init", "onbattery", "offbattery", "doshutdown", "selftest", "status", "trust", "install", "demo",
                    "check-config", "testmail"):
        assert re.search(rf"{command}\s+\S", result.stdout), command
    assert "Exit codes: 0 ok, 1 failed, 2 usage or configuration error" in result.stdout


def test_help_texts_say_what_the_commands_do():
    doshutdown = " ".join(run_hgs("doshutdown", "--help").stdout.split())
    assert "detached" not in doshutdown and "always runs in this process" in doshutdown
    assert "--config" not in run_hgs("demo", "--help").stdout
    for argv in (["demo", "--config", "/etc/hgs/config.py"], ["--config", "/etc/hgs/config.py", "demo"]):
        result = run_hgs(*argv)
        assert result.returncode == 2 and "--config" in result.stderr, argv
    status = run_hgs("status", "--help").stdout
    assert "--prometheus" in status and "--json" in status
    assert "--host NAME=ADDRESS[:PORT][,MAC]" in run_hgs("init", "--help").stdout


def test_version():
    result = run_hgs("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hgs {__version__}"


def test_no_command_and_unknown_command_are_usage_errors():
    assert run_hgs().returncode == 2
    result = run_hgs("shutdown-everything")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_options_work_before_and_after_the_command(make_config):
    config = str(make_config())
    assert run_hgs("--config", config, "check-config", "-q").returncode == 0
    assert run_hgs("check-config", "-q", "--config", config).returncode == 0


def test_status_of_a_dead_ups_daemon_fails_with_exit_1_and_a_clear_message(make_config):
    from harness import free_port

    config = make_config(ups=f"'daemon': 'apcupsd', 'address': '127.0.0.1:{free_port()}', 'timeout_s': 1")
    result = run_hgs("status", "--ups-only", "--config", str(config))
    assert result.returncode == 1
    assert "cannot connect" in result.stdout and "Traceback" not in result.stderr


def test_run_log_has_the_run_id_on_every_line_and_a_private_file(tmp_path):
    import io

    log_file = tmp_path / "logs" / "hgs.log"
    run_log = RunLog("20261121-000000-abcd", log_file=str(log_file), stderr=io.StringIO())
    run_log.logger.info("first line")
    run_log.logger.warning("second line")
    text = run_log.text()
    run_log.close()
    assert text.count("20261121-000000-abcd") == 2
    assert log_file.read_text() == text
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log_file.parent).st_mode) == 0o700


def test_an_unwritable_log_file_does_not_stop_the_run(tmp_path):
    import io

    blocker = tmp_path / "file"
    blocker.write_text("")
    err = io.StringIO()
    run_log = RunLog("r1", log_file=str(blocker / "sub" / "hgs.log"), stderr=err)
    run_log.logger.info("still logged")
    assert "still logged" in run_log.text()
    assert "cannot write the log file" in err.getvalue()
    run_log.close()

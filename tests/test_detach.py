"""How a hook's flow is started: isolated from the folder it was called from, and out of the
UPS daemon's reach (its own systemd unit when systemd runs the box, its own session otherwise)."""

import os
import signal
import subprocess
import sys
from types import SimpleNamespace

from hgs.commands import _flow
from harness import HGS, wait_for, write

PLANTED = """\
import pathlib
pathlib.Path({marker!r}).write_text("the planted hgs package was imported")
"""


def test_a_hgs_package_planted_in_the_working_folder_is_never_imported(make_config, tmp_path):
    """`sudo hgs offbattery` run from a folder another user can write to: the detached flow must
    not import that folder's hgs/ (as `python -m hgs` would, the current folder first on sys.path)."""
    config = make_config(extra="MAIL = {'when': 'never'}\n")
    hostile = tmp_path / "hostile"
    (hostile / "hgs").mkdir(parents=True)
    marker = tmp_path / "imported"
    write(hostile / "hgs" / "__init__.py", PLANTED.format(marker=str(marker)))
    write(hostile / "hgs" / "__main__.py", PLANTED.format(marker=str(marker)))
    result = subprocess.run([HGS, "--config", str(config), "offbattery"], cwd=hostile, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    log = tmp_path / "log" / "hgs.log"
    finished = lambda: log.exists() and "restore flow finished: nothing to do" in log.read_text()  # noqa: E731
    wait_for(lambda: marker.exists() or finished(), 30, "the detached restore")
    assert not marker.exists(), "the planted package ran as root"
    assert finished()  # the detached restore ran, from the real hgs (nothing to restore)


def test_the_flow_command_line_is_an_isolated_interpreter(tmp_path):
    argv = _flow.flow_argv("cfg.py", "onbattery", "20261205-081901-e739")
    assert argv[:4] == [sys.executable, "-I", "-m", "hgs"]
    assert argv[4:] == ["--config", os.path.abspath("cfg.py"), "onbattery", "--foreground", "--run-id",
                        "20261205-081901-e739"]


def _ctx(config):
    return SimpleNamespace(config_path=str(config))


def test_under_systemd_the_flow_is_a_transient_unit_of_its_own(make_config, tmp_path):
    """systemd cannot run here: a stand-in systemd-run records its command line and runs the
    command after '--' the way a transient service would (its own session, cwd /)."""
    config = make_config(extra="MAIL = {'when': 'never'}\n")
    systemd_dir = tmp_path / "run-systemd-system"
    systemd_dir.mkdir()
    recorded = tmp_path / "systemd-run.argv"
    fake = write(tmp_path / "systemd-run", f"""#!/bin/sh
printf '%s\\n' "$@" > {recorded}
while [ "$1" != "--" ]; do shift; done
shift
cd / && setsid "$@" </dev/null >/dev/null 2>&1 &
""", 0o755)
    how, run_id = _flow.detach(_ctx(config), "offbattery", systemd_dir=str(systemd_dir), systemd_run=str(fake))
    assert how == f"unit hgs-offbattery-{run_id}.service"
    argv = recorded.read_text().splitlines()
    split = argv.index("--")
    options = argv[:split]
    assert f"--unit=hgs-offbattery-{run_id}" in options and "--collect" in options
    assert "--working-directory=/" in options
    assert argv[split + 1:] == _flow.flow_argv(str(config), "offbattery", run_id)
    log = tmp_path / "log" / "hgs.log"
    # the flow ran, under the run id the unit is named after
    wait_for(lambda: log.exists() and f"{run_id} INFO    restore flow finished: nothing to do" in log.read_text(), 30,
             "the unit's flow in the log")


def test_without_systemd_or_when_systemd_run_fails_the_flow_runs_in_its_own_session(make_config, tmp_path):
    config = make_config(extra="MAIL = {'when': 'never'}\n")
    how, run_id = _flow.detach(_ctx(config), "offbattery", systemd_dir=str(tmp_path / "no-systemd"))
    assert how.startswith("pid ") and "systemd-run" not in how
    log = tmp_path / "log" / "hgs.log"
    # the next flow starts once this one ended: two restores at once merge (the second logs no end)
    wait_for(lambda: log.exists() and f"{run_id} INFO    restore flow finished: nothing to do" in log.read_text(),
             30, f"the flow of run {run_id}")
    systemd_dir = tmp_path / "run-systemd-system"
    systemd_dir.mkdir()
    broken = write(tmp_path / "systemd-run", "#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n", 0o755)
    how2, run_id2 = _flow.detach(_ctx(config), "offbattery", systemd_dir=str(systemd_dir), systemd_run=str(broken))
    assert how2.startswith("pid ") and "systemd-run failed (exit 1: Failed to connect to bus)" in how2
    wait_for(lambda: f"{run_id2} INFO    restore flow finished: nothing to do" in log.read_text(),
             30, f"the flow of run {run_id2}")


def test_a_restart_of_the_daemon_does_not_stop_the_detached_flow(site_lab):
    """Without systemd, stopping a daemon signals its process group: the flow a hook started
    from that daemon is in a session of its own and goes on."""
    scenario = {"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:00:01", "shutdown_s": 5}],
                "vms": [{"name": "one", "shutdown_s": 20}]}
    lab = site_lab(scenario, extra="MAIL = {'when': 'never'}\n")
    daemon = subprocess.Popen(["/bin/sh", "-c", f"{HGS} --config {lab.config} onbattery; sleep 60"],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: lab.calls("vm-shutdown"), 30, "the outage flow to start shutting down")
        os.killpg(daemon.pid, signal.SIGTERM)  # "systemctl restart apcupsd" / the init script's stop
        daemon.wait(5)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(5)
    wait_for(lambda: "outage flow finished: site down" in lab.log_text(), 60, "the flow to finish anyway")
    assert lab.site.vm_states() == {"one": "halted"}

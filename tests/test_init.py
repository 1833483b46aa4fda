"""`hgs init`: from nothing to a self-test that says all well, by following what it prints."""

import os
import shlex
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from harness import HGS, REPO, run_hgs

SCENARIO = {"time_scale": 60, "pool": {"name": "pool", "ha_enabled": True},
            "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:0e:01"},
                      {"name": "xen2", "mac": "02:00:00:00:0e:02"}],
            "vms": [{"name": "db", "host": "xen1"}, {"name": "web", "host": "xen2"},
                    {"name": "off", "power_state": "halted"}]}


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _init(config, *options):
    return run_hgs("init", "--config", str(config), *options, input="")


def test_init_then_the_printed_steps_end_with_selftest_all_well(site_lab, tmp_path):
    lab = site_lab(SCENARIO, ups_state="online")
    site = lab.site
    config = tmp_path / "etc" / "hgs" / "config.py"
    options = ["--ups-daemon", "apcupsd", "--ups-address", f"127.0.0.1:{lab.nis.port}", "--mail-to", "root"]
    for name in ("xen1", "xen2"):
        options += ["--host", f"{name}=127.0.0.1:{site.doors[name].port},{site.hosts[name]['mac']}"]
    result = _init(config, *options)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = config.parent
    key = folder / "id_ed25519"
    assert _mode(folder) == 0o700 and _mode(config) == 0o600 and _mode(key) == 0o600
    public = (folder / "id_ed25519.pub").read_text().strip()
    assert public.startswith("ssh-ed25519 ") and f"    {public}\n" in result.stdout
    subprocess.run(["ssh-keygen", "-y", "-f", str(key)], check=True, capture_output=True)  # OpenSSH reads it

    # what a user edits for this particular site: the simulated xe's path, this test's folders
    sim = {name: {"xe_path": str(site.bin_dirs[name] / "xe"), "down_check": "ssh", "wol_broadcast": "127.0.0.1",
                  "wol_port": site.wol.port} for name in site.hosts}
    paths = {"state_dir": str(tmp_path / "state"), "log_file": str(tmp_path / "hgs.log"),
             "lock_dir": str(tmp_path / "lock")}
    with open(config, "a") as handle:
        handle.write(f"\n_SIM = {sim!r}\nfor _host in HOSTS:\n    _host.update(_SIM[_host['name']])\n"
                     f"PATHS = {paths!r}\nLOGGING = {{'syslog': False}}\nMAIL['sendmail_path'] = '/bin/true'\n")
    before = run_hgs("--config", str(config), "selftest", "--mail", "never")
    assert before.returncode == 1 and "not pinned" in before.stdout

    # step 1: the public key into each host's authorized_keys (the simulated hosts' sshd reads these files)
    assert "authorized_keys" in result.stdout
    for door in site.doors.values():
        (door.folder / "authorized_keys").write_text(public + "\n")
    # the other steps: every printed command, in order (hooks are not installed on this test machine)
    commands = [shlex.split(line.split("$ ", 1)[1]) for line in result.stdout.splitlines() if "$ hgs " in line]
    assert [c[3:] for c in commands] == [["check-config"], ["trust", "xen1"], ["trust", "xen2"], ["selftest", "-v"],
                                         ["install", "apcupsd"], ["install", "cron"]]
    assert all(c[:3] == ["hgs", "--config", str(config)] for c in commands)
    outputs = []
    for command in commands:
        if command[3] == "install":
            continue
        extra = {"trust": ["--yes"], "selftest": ["--mail", "never"]}.get(command[3], [])
        step = run_hgs(*command[1:], *extra)
        assert step.returncode == 0, (command, step.stdout, step.stderr)
        outputs.append(step.stdout)
    assert outputs[-1].rstrip().endswith("selftest: all well")
    assert "ok    host xen1: SSH with the pinned key, xe answers; pool master" in outputs[-1]
    assert "ok    host xen2: SSH with the pinned key, xe answers; pool member" in outputs[-1]


def test_init_is_idempotent_and_overwrites_only_with_force(tmp_path):
    config = tmp_path / "hgs" / "config.py"
    first = _init(config, "--host", "xen1=192.168.1.10,AA-BB-CC-DD-EE-01")
    assert first.returncode == 0, first.stderr
    text, key = config.read_text(), (tmp_path / "hgs" / "id_ed25519").read_bytes()
    assert '"mac": "aa:bb:cc:dd:ee:01"' in text and '"wol_broadcast": "192.168.1.255"' in text
    again = _init(config, "--host", "other=10.0.0.1")
    assert again.returncode == 0 and "exists: kept as it is" in again.stdout and "--force" in again.stdout
    assert config.read_text() == text and (tmp_path / "hgs" / "id_ed25519").read_bytes() == key
    forced = _init(config, "--force", "--ups-daemon", "nut", "--ups-address", "myups@127.0.0.1:3493",
                   "--host", "xen9=10.0.0.9")
    assert forced.returncode == 0, forced.stderr
    assert '"name": "xen9"' in config.read_text() and '"daemon": "nut"' in config.read_text()
    kept, = config.parent.glob("config.py.hgs-backup.*")  # the config --force replaced is kept beside it
    assert kept.read_text() == text and f"kept the config it replaces as {kept}" in forced.stdout
    assert (tmp_path / "hgs" / "id_ed25519").read_bytes() == key  # the key is never replaced
    assert "install nut" in forced.stdout
    checked = run_hgs("--config", str(config), "check-config")
    assert checked.returncode == 0, checked.stderr


def test_init_refuses_bad_input_clearly(tmp_path):
    config = tmp_path / "hgs" / "config.py"
    for options, phrase in ((["--host", "xen1"], "expected NAME=ADDRESS"),
                            (["--host", "xen1=10.0.0.1,aa:bb"], "expected a MAC address"),
                            (["--host", "xen1=10.0.0.1:99999"], "expected a port"),
                            (["--host", "a=10.0.0.1", "--host", "a=10.0.0.2"], "same name"),
                            (["--ups-daemon", "nut", "--ups-address", "127.0.0.1", "--host", "a=1.2.3.4"], "UPS@HOST"),
                            ([], "no host given")):
        result = _init(config, *options)
        assert result.returncode == 2, (options, result.stdout, result.stderr)
        assert phrase in result.stderr and "Traceback" not in result.stderr, (options, result.stderr)
        assert not config.parent.exists()  # nothing written, not even the folder


def test_the_wheel_ships_the_example_config_and_init_runs_from_it(tmp_path):
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)], check=True,
                   capture_output=True, timeout=300)
    wheel = next(out.glob("hgs-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("hgs/data/config.example.py").decode()
    assert shipped == (REPO / "config.example.py").read_text()
    # installed from the wheel alone (no source tree): paramiko and wakeonlan come from the test venv
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = next(p for p in sys.path if p.endswith("site-packages") and (Path(p) / "paramiko").is_dir())
    (site / "test-deps.pth").write_text(deps + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import hgs; print(hgs.__file__)"], check=True,
                           capture_output=True, text=True).stdout
    assert where.startswith(str(site)), where
    config = tmp_path / "etc" / "config.py"
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "hgs", "init", "--config", str(config),
                             "--host", "xen1=192.168.1.10,aa:bb:cc:dd:ee:01"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert config.read_text().endswith(shipped.split("# --- Which VMs", 1)[1])  # the rest of the example, as shipped


def test_init_asks_in_a_terminal(tmp_path):
    import pty

    config = tmp_path / "hgs" / "config.py"
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([HGS,
                                 "init", "--config", str(config)], stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        os.write(master, b"nut\n\nxen1\nxen1=10.0.0.1,aa:bb:cc:dd:ee:01\nxen1=10.0.0.2\n\nops@example.com\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, out + err
    assert "UPS daemon (apcupsd or nut) [apcupsd]:" in out and "nut address [ups@127.0.0.1:3493]:" in out
    assert "expected NAME=ADDRESS" in err and "already a host called 'xen1'" in err  # refused, asked again
    text = config.read_text()
    assert '"daemon": "nut"' in text and '"address": "ups@127.0.0.1:3493"' in text
    assert '"name": "xen1"' in text and '"to": ["ops@example.com"]' in text

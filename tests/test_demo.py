"""`hgs demo` from a fresh install: the README's first command, as a newcomer runs it."""

import re
import subprocess
import sys

from harness import REPO


def test_demo_from_a_fresh_install_ends_with_the_site_as_it_started(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    result = subprocess.run([str(venv / "bin" / "hgs"), "demo"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    before = re.search(r"^running before: (.*)$", result.stdout, re.M).group(1)
    after = re.search(r"^running after:  (.*)$", result.stdout, re.M).group(1)
    assert before == after == "cache, db, legacy-nt4, storage, stubborn, web1, web2"
    assert "the site ended as it started" in result.stdout
    # the live timeline shows every VM and host on its way down and back
    for line in ("site  vm   stubborn: halted", "site  host xen2: powered off", "site  host xen1: booting",
                 "xapi is still booting (HOST_STILL_BOOTING)", "site  pool HA: on"):
        assert line in result.stdout, line
    assert "Subject: [hgs] outage site down" in result.stdout and "Subject: [hgs] restore site restored" in result.stdout
    took = float(re.search(r"demo took ([\d.]+) s", result.stdout).group(1))
    assert took < 60

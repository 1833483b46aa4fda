"""`hgs demo --scenario shed`: load shedding and the runtime trigger, as a newcomer sees them."""

import re
import subprocess

from harness import HGS


def test_the_shed_demo_sheds_waits_for_the_runtime_trigger_and_ends_as_it_started_within_60_s():
    result = subprocess.run([HGS, "demo", "--scenario", "shed"], capture_output=True, text=True, timeout=180)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    shed_at = float(re.search(r"^\s*([\d.]+)s  hgs   INFO    shedding 2 VM\(s\)", out, re.M).group(1))
    main_at = float(re.search(r"^\s*([\d.]+)s  hgs   INFO    the main shutdown starts: runtime left", out, re.M).group(1))
    assert main_at - shed_at > 10  # the rest ran on while the battery lasted
    assert re.search(r"site  vm   build: halted", out) and "site  host xen1: powered off" in out
    before = re.search(r"^running before: (.*)$", out, re.M).group(1)
    after = re.search(r"^running after:  (.*)$", out, re.M).group(1)
    assert before == after and "build" in after and "ci" in after
    assert "shed 2 VM(s) as soon as the outage is confirmed: build, ci" in out  # in the mail
    assert float(re.search(r"demo took ([\d.]+) s", out).group(1)) < 60

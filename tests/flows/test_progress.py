"""The progress file `hgs status` reads: kept current, without rewriting it for every VM."""

import time

from hgs.box import progress
from hgs.flows.report import Report


def test_thousands_of_outcomes_rewrite_the_file_a_few_times_and_the_last_one_is_never_lost(tmp_path, monkeypatch):
    writes = []
    real = progress.write
    monkeypatch.setattr(progress, "write", lambda d, r: writes.append(len(r.vms)) or real(d, r))
    report = Report("outage", "run-1")
    report.on_change = progress.Writer(str(tmp_path), every_s=0.2)
    for index in range(3000):
        report.vm(f"vm{index}", "clean", 1.0)
    assert len(writes) < 20, len(writes)
    time.sleep(0.5)  # no change after the last outcome: it still reaches the file within the interval
    assert progress.read(str(tmp_path))["vms"][-1]["name"] == "vm2999"
    report.host("xen1", "confirmed down", 2.0)
    report.finish("site down")  # the end is written at once
    done = progress.read(str(tmp_path))
    assert done["result"] == "site down" and done["hosts"][0]["name"] == "xen1"

"""Security: no shell=True, no AutoAddPolicy, no secret in logs or mails, private files."""

import os
import re
import stat
from pathlib import Path

import pytest

from harness import REPO

fault = pytest.mark.fault
SOURCES = sorted((REPO / "src" / "hgs").rglob("*.py"))


def test_no_shell_true_and_no_auto_add_policy_anywhere_in_the_product():
    for path in SOURCES:
        text = path.read_text()
        assert not re.search(r"shell\s*=\s*True", text), path
        assert "AutoAddPolicy" not in text and "WarningPolicy" not in text, path
        assert "os.system(" not in text and "os.popen(" not in text, path


@fault("an SSH key passphrase in the config (the NUT password: test_config)", "never in the log, the mail or check-config's output")
def test_secrets_never_reach_logs_or_mails(site_lab, tmp_path):
    capture = tmp_path / "mail"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f"#!/bin/sh\ncat > {capture}\n")
    sendmail.chmod(0o755)
    scenario = {"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:0f:01", "shutdown_s": 5}],
                "vms": [{"name": "one"}]}
    lab = site_lab(scenario, extra=f"MAIL = {{'sendmail_path': '{sendmail}'}}\n")
    text = lab.config.read_text().replace("'daemon': 'apcupsd'", "'daemon': 'apcupsd'")
    # the NUT password cannot be used with apcupsd; the key passphrase is accepted for any host
    text = text.replace("'down_check'", "'ssh_key_passphrase': 'pass-phrase-SECRET-2', 'down_check'")
    lab.config.write_text(text)
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    shown = lab.hgs("check-config").stdout
    for where in (lab.log_text(), capture.read_text(), result.stdout + result.stderr, shown):
        assert "pass-phrase-SECRET-2" not in where
    assert "ssh_key_passphrase = '********'" in shown


@fault("the files hgs writes", "state, log, lock, run records 0600; their folders 0700")
def test_files_are_private(site_lab):
    scenario = {"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:0f:02", "shutdown_s": 5}],
                "vms": [{"name": "one"}]}
    lab = site_lab(scenario, extra="MAIL = {'when': 'never'}\n")
    assert lab.hgs("onbattery", "--foreground").returncode == 0
    work = lab.site.workdir
    for path in (work / "state" / "state.json", work / "hgs.log", work / "lock" / "site.lock"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    for folder in (work / "state", work / "lock", work / "state" / "runs"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
    for record in (work / "state" / "runs").iterdir():
        assert stat.S_IMODE(os.stat(record).st_mode) == 0o600


def test_every_changing_xe_command_is_known_to_the_dry_run_seam():
    """Every xe command hgs can send that changes something is one the dry-run twin intercepts."""
    from hgs.flows.ports import CHANGES, OPTIONAL, PREPARES, READS
    from hgs.hypervisors.rehearsal import DryRunHypervisor
    from hgs.hypervisors.xen.backend import Hypervisor

    public = {n for n in vars(Hypervisor) if not n.startswith("_")}
    assert public - set(READS) - set(PREPARES) - set(OPTIONAL) - {"vm_networks"} == set(CHANGES)  # vm_networks: xe's own read
    assert set(CHANGES) <= set(vars(DryRunHypervisor))
    assert Path(REPO / "src" / "hgs" / "flows").exists()
    for path in (REPO / "src" / "hgs" / "flows").glob("*.py"):
        assert "dry_run" not in path.read_text(), f"{path.name} asks whether it is a dry run"
        for module in ("paramiko", "socket", "subprocess"):
            assert f"import {module}" not in path.read_text(), f"{path.name} imports {module}"

"""The xe backend answers in hgs's words: xapi's errors (as the simulated xe prints them) map to
the port's kinds in one table, for batch outcomes and for single calls alike. Pure logic."""

import base64
import logging
from types import SimpleNamespace

import pytest

from hgs.errors import HypervisorError, XeMissing
from hgs.flows.ports import Kind
from hgs.hypervisors.xen import kinds, xe
from hgs.hypervisors.xen.backend import Batch, Hypervisor
from hgs.sim.xe import XeFailure

VM = "0b1c2d3e-0000-4000-8000-000000000001"
HOST = "0b1c2d3e-0000-4000-8000-0000000000aa"


@pytest.mark.parametrize("failure, kind, state", [
    (XeFailure("VM_BAD_POWER_STATE", VM, "running", "halted"), Kind.ALREADY, "halted"),
    (XeFailure("VM_BAD_POWER_STATE", VM, "halted", "running"), Kind.ALREADY, "running"),
    (XeFailure("VM_BAD_POWER_STATE", VM, "running", "suspended"), Kind.SUSPENDED, "suspended"),
    (XeFailure("VM_BAD_POWER_STATE", VM, "running", "paused"), Kind.FAILED, "paused"),
    (XeFailure("VM_LACKS_FEATURE", VM), Kind.NO_TOOLS, None),
    (XeFailure("UUID_INVALID", "VM", VM), Kind.GONE, None),
    (XeFailure("OTHER_OPERATION_IN_PROGRESS", "VM", VM), Kind.BUSY, None),
    (XeFailure("HOST_STILL_BOOTING"), Kind.BOOTING, None),
    (XeFailure("HOST_NOT_DISABLED"), Kind.NOT_DISABLED, None),
    (XeFailure("VM_SHUTDOWN_TIMEOUT", VM, "1200"), Kind.FAILED, None),
])
def test_xapi_errors_become_the_ports_kinds(failure, kind, state):
    assert kinds.kind_of(xe.classify(failure.text())) == (kind, state)


def result_line(vm_uuid, status, stderr=""):
    encoded = " " + base64.b64encode(stderr.encode()).decode() if stderr else ""
    return f"{xe.RESULT_TAG} {vm_uuid} {status}{encoded}"


def test_a_batch_reports_outcomes_in_hgs_words():
    other = VM[:-1] + "2"
    unknown = VM[:-1] + "3"
    lines = [result_line(VM, 0), result_line(other, 1, XeFailure("VM_LACKS_FEATURE", other).text()),
             result_line(unknown, 1, "Something xapi has never said before\n")]
    stream = SimpleNamespace(lines=lambda: lines, lost=False, close=lambda: None)
    outcomes = {o.uuid: o for o in Batch([(stream, [VM, other, unknown])]).poll()}
    assert outcomes[VM].ok and outcomes[VM].kind == Kind.DONE
    assert outcomes[other].kind == Kind.NO_TOOLS and outcomes[other].message == "VM_LACKS_FEATURE"
    assert not outcomes[other].unexpected  # a refusal hgs knows: the VM's outcome only
    assert outcomes[unknown].kind == Kind.FAILED and outcomes[unknown].unexpected
    assert outcomes[unknown].message == "Something xapi has never said before"


def hypervisor(status, stderr):
    connection = SimpleNamespace(run=lambda command, timeout: SimpleNamespace(
        status=status, ok=status == 0, stdout="", stderr=stderr))
    return Hypervisor(SimpleNamespace(name="xen1", xe_path="xe"), connection, 10, logging.getLogger("t"))


def test_a_refused_call_raises_a_hypervisor_error_with_its_kind():
    with pytest.raises(HypervisorError) as caught:
        hypervisor(1, XeFailure("HOST_NOT_DISABLED").text()).shutdown_host(HOST)
    assert caught.value.kind == Kind.NOT_DISABLED and caught.value.reason == "HOST_NOT_DISABLED"
    assert "xen1: xe host-shutdown failed: HOST_NOT_DISABLED" == str(caught.value)


def test_xe_that_cannot_run_is_the_missing_kind():
    with pytest.raises(XeMissing) as caught:
        hypervisor(127, "sh: xe: not found").disable_ha()
    assert caught.value.kind == Kind.MISSING


def test_the_rehearsal_twin_logs_the_exact_xe_commands_and_runs_none(caplog):
    from hgs.hypervisors.rehearsal import DryRunHypervisor

    ran = []
    connection = SimpleNamespace(run=lambda command, timeout: ran.append(command), start=lambda *a, **k: ran.append(a))
    real = Hypervisor(SimpleNamespace(name="xen1", xe_path="xe"), connection, 10, logging.getLogger("t"))
    twin = DryRunHypervisor(real, logging.getLogger("t.dry"))
    with caplog.at_level(logging.INFO, logger="t.dry"):
        batch = twin.shutdown_vms([VM], force=True)
        twin.start_vms([VM], resume=[VM])
        assert twin.shutdown_host(HOST) == "sent"
    assert ran == []
    assert [o.kind for o in batch.poll()] == [Kind.DONE]
    assert f"dry run: would run on xen1: xe vm-shutdown uuid={VM} --force" in caplog.text
    assert f"dry run: would run on xen1: xe vm-resume uuid={VM}" in caplog.text
    assert f"dry run: would run on xen1: xe host-shutdown uuid={HOST}" in caplog.text
    assert twin.overlay == {VM: "running"}


def test_the_xe_backend_and_its_twin_satisfy_the_port():
    from hgs.flows import ports
    from hgs.hypervisors.rehearsal import DryRunHypervisor

    real = hypervisor(0, "")
    assert isinstance(real, ports.Hypervisor)
    assert isinstance(DryRunHypervisor(real, logging.getLogger("t")), ports.Hypervisor)

"""The simulated xe's vm-suspend and vm-resume: xapi's power-state rules and errors, and hgs's
classification of each error text (hgs.hypervisors.xen.xe.classify)."""

import pytest

from hgs.hypervisors.xen import xe as hxe
from hgs.sim.site import SiteStore
from hgs.sim.xe import Xe

SCENARIO = {
    "time_scale": 60,
    "pool": {"name": "lab"},
    "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:00:01"}],
    "vms": [{"name": "db", "host": "xen1", "start_s": 30}, {"name": "notools", "host": "xen1", "tools": False},
            {"name": "off", "power_state": "halted"}],
}


@pytest.fixture
def store(tmp_path):
    return SiteStore.create(tmp_path / "site.json", SCENARIO)


def xe(store, *argv):
    return Xe(store, "xen1").run(list(argv))


def uuid_of(store, name):
    return xe(store, "vm-list", f"name-label={name}", "--minimal")[1].strip()


def power(store, name):
    return xe(store, "vm-param-get", f"uuid={uuid_of(store, name)}", "param-name=power-state")[1].strip()


def test_suspend_then_resume(store):
    code, out, err = xe(store, "vm-suspend", f"uuid={uuid_of(store, 'db')}")
    assert (code, err) == (0, "")
    assert power(store, "db") == "suspended"
    records = hxe.parse_records(xe(store, "vm-list", "name-label=db", "params=power-state,resident-on")[1])
    assert records[0]["resident-on"] == "<not in database>"
    code, out, err = xe(store, "vm-resume", f"uuid={uuid_of(store, 'db')}")
    assert (code, err) == (0, "")
    assert power(store, "db") == "running"


@pytest.mark.parametrize("command, vm, actual", [("vm-suspend", "off", "halted"), ("vm-resume", "db", "running")])
def test_the_wrong_power_state_is_vm_bad_power_state(store, command, vm, actual):
    code, out, err = xe(store, command, f"uuid={uuid_of(store, vm)}")
    error = hxe.classify(err)
    assert code == 1 and error.code == "VM_BAD_POWER_STATE" and error.params["actual"] == actual


def test_no_suspend_sr(store):
    store.set_pool(suspend_sr="")
    code, out, err = xe(store, "vm-suspend", f"uuid={uuid_of(store, 'db')}")
    assert code == 1 and hxe.classify(err).code == "VM_NO_SUSPEND_SR"
    assert power(store, "db") == "running"


def test_a_guest_without_the_suspend_feature(store):
    code, out, err = xe(store, "vm-suspend", f"uuid={uuid_of(store, 'notools')}")
    assert code == 1 and hxe.classify(err).code == "VM_LACKS_FEATURE_SUSPEND"


def test_a_full_suspend_sr_fails_after_trying_and_the_vm_runs_on(store):
    store.set_pool(suspend_sr_full=True)
    code, out, err = xe(store, "vm-suspend", f"uuid={uuid_of(store, 'db')}")
    assert code == 1 and hxe.classify(err).code == "SR_BACKEND_FAILURE_44"
    assert power(store, "db") == "running"

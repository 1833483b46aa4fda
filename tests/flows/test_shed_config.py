"""VMS['shed'], VMS['suspend'] and TIMINGS['main_trigger']: what a config may say, and the
errors a mistake gets (each naming the setting and the expected form)."""

import textwrap

import pytest

from hgs import config
from hgs.config import ShedRule
from hgs.errors import ConfigError

BASE = """\
UPS = {'daemon': 'apcupsd', 'address': '127.0.0.1'}
HOSTS = [{'name': 'xen1', 'address': '127.0.0.1'}]
PATHS = {'state_dir': 'state', 'log_file': 'hgs.log', 'lock_dir': 'lock'}
LOGGING = {'syslog': False}
"""


def load(tmp_path, text):
    path = tmp_path / "config.py"
    path.write_text(BASE + textwrap.dedent(text))
    return config.load(path, check_owner=False)


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_by_default_every_vm_is_shut_down_after_the_window(tmp_path):
    settings = load(tmp_path, "")
    assert settings.vms.shed == () and settings.vms.suspend == ()
    assert settings.vms.action({"uuid": "u", "name": "db"}) == "shutdown"
    assert settings.timings.main_trigger == "window"


def test_shed_rules_by_name_and_by_group_and_suspend(tmp_path):
    settings = load(tmp_path, """\
        VMS = {'groups': [['build1', 'build2'], ['dc']],
               'shed': [{'vms': ['test'], 'at': 'confirmed'}, {'groups': [0], 'at': {'charge_pct': 60}},
                        {'vms': ['lab'], 'at': {'runtime_s': 900}}],
               'suspend': {'groups': [1], 'vms': ['ad']}}
        TIMINGS = {'main_trigger': 'runtime'}
        """)
    vms = settings.vms
    assert vms.shed == (ShedRule(("test",), "confirmed"), ShedRule(("build1", "build2"), ("charge_pct", 60.0)),
                        ShedRule(("lab",), ("runtime_s", 900.0)))
    assert vms.suspend == ("ad", "dc")
    assert [vms.action({"uuid": "x", "name": n}) for n in ("test", "build2", "dc", "web")] == \
        ["shed", "shed", "suspend", "shutdown"]
    assert vms.shed_rule({"name": "build1"}).describe() == "at 60 % charge"
    assert settings.timings.main_trigger == "runtime"


@pytest.mark.parametrize("text, expected", [
    ("VMS = {'shed': {'vms': ['a'], 'at': 'soon'}}",
     "At 'VMS.shed': expected 'confirmed', {'charge_pct': N} or {'runtime_s': N}, got 'soon'"),
    ("VMS = {'shed': {'vms': ['a'], 'at': {'charge_pct': 140}}}",
     "At 'VMS.shed': expected a percentage from 0 to 100, got 140"),
    ("VMS = {'shed': [{'vms': ['a']}, {'vm': ['b']}]}",
     "At 'VMS.shed': rule 1: unknown key 'vm' (did you mean 'vms'?)"),
    ("VMS = {'shed': {'at': 'confirmed'}}", "At 'VMS.shed': names no VM"),
    ("VMS = {'shed': {'groups': [2]}, 'groups': [['a']]}",
     "At 'VMS.shed': group 2 does not exist: VMS['groups'] has 1 group(s)"),
    ("VMS = {'suspend': 'dc'}", "At 'VMS.suspend': expected a list of VM names or a dict"),
    ("VMS = {'suspend': ['dc'], 'shed': {'vms': ['dc']}}", "At 'VMS.suspend': 'dc' is also in VMS['shed']"),
    ("VMS = {'suspend': ['dc'], 'leave_alone': ['dc']}", "At 'VMS.leave_alone': 'dc' is left alone and also"),
    ("TIMINGS = {'main_trigger': 'charge'}", "At 'TIMINGS.main_trigger': expected one of"),
])
def test_mistakes_are_named_with_the_expected_form(tmp_path, text, expected):
    assert expected in problems(tmp_path, text)


def test_the_shipped_example_documents_the_new_settings():
    from pathlib import Path

    example = (Path(__file__).parents[2] / "config.example.py").read_text()
    assert '"shed": []' in example and '"suspend": []' in example and '"main_trigger": "window"' in example

"""Secret settings (the NUT password, SSH key passphrases) never appear in any error or listing."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgs import config
from hgs.errors import ConfigError
from harness import run_hgs, write

fault = pytest.mark.fault

MARK = "Zq7-SECRET"
SECRETS = sorted((section, key) for section, (fields, _) in config.SECTIONS.items()
                 for key, field in fields.items() if field.secret)
HOST = "'name': 'xen1', 'address': '127.0.0.1'"


def test_the_secret_fields_are_the_ones_a_person_would_expect():
    assert SECRETS == [("HOSTS", "ssh_key_passphrase"), ("UPS", "password")]


def config_text(section, key, literal):
    ups = "'daemon': 'nut', 'address': 'u@127.0.0.1', 'user': 'mon'"
    host = HOST
    if section == "UPS":
        ups += f", {key!r}: {literal}"
    else:
        host += f", {key!r}: {literal}"
        ups += ", 'password': 'fine'"
    return f"UPS = {{{ups}}}\nHOSTS = [{{{host}}}]\n"


hostile = st.one_of(
    st.builds(lambda a, c, b: a + MARK + c + b, st.text(max_size=5), st.sampled_from(["\n", "\r", "\x00", "\r\n"]),
              st.text(max_size=5)),
    st.just(MARK + "\n"),
    st.builds(lambda n: [MARK] * n, st.integers(1, 3)),
    st.just({MARK: MARK}),
    st.just((MARK,)),
    st.just(MARK.encode()),
    st.just(7654321987),
    st.just(3.25e17),
    st.just(True),
)


def leaked(value, text):
    parts = [MARK] if MARK in repr(value) else [str(value)]
    return [p for p in parts if p in text]


@fault('a wrong UPS password or key passphrase: line breaks, wrong types (property-based, every secret field)',
       'the config error names the field, never the value')
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(SECRETS), value=hostile)
def test_a_wrong_secret_is_named_by_its_field_never_shown(tmp_path, field, value):
    section, key = field
    path = write(tmp_path / "config.py", config_text(section, key, repr(value)), 0o600)
    with pytest.raises(ConfigError) as caught:
        config.load(path, check_owner=False)
    text = str(caught.value)
    assert not leaked(value, text), text
    assert f".{key}'" in text and "not shown: it is a secret" in text


@pytest.mark.parametrize("field", SECRETS)
def test_a_secret_quoted_by_an_exception_of_the_config_module_is_masked(tmp_path, field):
    section, key = field
    text = config_text(section, key, repr(MARK + "-pw"))
    getter = "UPS" if section == "UPS" else "HOSTS[0]"
    path = write(tmp_path / "config.py", text + f"_n = int({getter}[{key!r}])\n", 0o600)
    with pytest.raises(ConfigError) as caught:
        config.load(path, check_owner=False)
    assert "ValueError" in str(caught.value) and MARK not in str(caught.value)


@pytest.mark.parametrize("field", SECRETS)
def test_hgs_check_config_masks_a_secret_and_its_errors_do_not_show_it(tmp_path, field):
    section, key = field
    good = write(tmp_path / "good.py", config_text(section, key, repr(MARK)), 0o600)
    result = run_hgs("check-config", "--config", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert MARK not in result.stdout + result.stderr
    assert f"{key} = '********'" in result.stdout
    bad = write(tmp_path / "bad.py", config_text(section, key, repr("x\n" + MARK)), 0o600)
    result = run_hgs("check-config", "--config", str(bad))
    assert result.returncode == 2 and key in result.stderr
    assert MARK not in result.stdout + result.stderr

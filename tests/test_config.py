"""The configuration loader: the shipped example, every kind of mistake, masking, paths."""

import os

import pytest

from hgs import config
from hgs.config.fields import Invalid, mac, address
from hgs.errors import ConfigError
from harness import REPO, run_hgs


def test_the_shipped_example_is_valid():
    settings = config.load(REPO / "config.example.py", check_owner=False)
    assert settings.ups.daemon == "apcupsd" and settings.ups.port == 3551
    assert settings.hosts[0].name == "xen1" and settings.hosts[0].mac == "aa:bb:cc:dd:ee:01"
    assert settings.timings.confirm_outage_s == 30


def test_check_config_on_the_example_prints_settings_and_exits_0():
    result = run_hgs("check-config", "--config", str(REPO / "config.example.py"))
    assert result.returncode == 0, result.stderr
    assert "HOSTS[0].mac = 'aa:bb:cc:dd:ee:01'" in result.stdout
    assert "configuration OK" in result.stdout


def test_settings_are_frozen(make_config):
    settings = config.load(make_config(), check_owner=False)
    with pytest.raises(Exception):
        settings.ups.port = 1


def test_relative_paths_are_taken_from_the_config_folder(make_config, tmp_path):
    settings = config.load(make_config(), check_owner=False)
    assert settings.paths.state_dir == str(tmp_path / "state")
    assert settings.paths.log_file == str(tmp_path / "log" / "hgs.log")


def test_nut_address_is_split_into_ups_host_and_port(make_config):
    path = make_config(ups="'daemon': 'nut', 'address': 'myups@[::1]:3500', 'user': 'mon', 'password': 'pw'")
    ups = config.load(path, check_owner=False).ups
    assert (ups.ups_name, ups.host, ups.port) == ("myups", "::1", 3500)
    assert ups.address == "myups@[::1]:3500"


def test_default_ports(make_config):
    assert config.load(make_config(ups="'daemon': 'apcupsd', 'address': 'ups.lan'"), check_owner=False).ups.port == 3551
    path = make_config(ups="'daemon': 'nut', 'address': 'u@ups.lan'")
    assert config.load(path, check_owner=False).ups.port == 3493


def test_secrets_are_masked_by_check_config(make_config):
    path = make_config(ups="'daemon': 'nut', 'address': 'u@127.0.0.1', 'user': 'mon', 'password': 'hunter2-secret'",
                       hosts="[{'name': 'x', 'address': '10.0.0.1', 'ssh_key_passphrase': 'pass-phrase-secret'}]")
    result = run_hgs("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert "pass-phrase-secret" not in result.stdout + result.stderr
    assert "UPS.password = '********'" in result.stdout
    assert "HOSTS[0].ssh_key_passphrase = '********'" in result.stdout


BAD_CONFIGS = [
    # (what, text appended or replacing, expected phrases)
    ("syntax error", "HOSTS = [\n", ["syntax error"]),
    ("unknown top-level name", "TIMINGSS = {}\n", ["At 'TIMINGSS'", "did you mean 'TIMINGS'"]),
    ("unknown key in a section", "TIMINGS = {'vm_shutdown_timout_s': 5}\n",
     ["At 'TIMINGS.vm_shutdown_timout_s'", "did you mean 'vm_shutdown_timeout_s'"]),
    ("wrong type", "TIMINGS = {'confirm_outage_s': '30'}\n", ["At 'TIMINGS.confirm_outage_s'", "expected a number"]),
    ("bad MAC", "HOSTS = [{'name': 'a', 'address': '10.0.0.1', 'mac': 'aa:bb:cc:dd:ee'}]\n",
     ["At 'HOSTS[0].mac'", "expected a MAC address"]),
    ("bad address", "HOSTS = [{'name': 'a', 'address': '10.0.0.300'}]\n", ["At 'HOSTS[0].address'", "host name or IP"]),
    ("negative timeout", "TIMINGS = {'vm_force_timeout_s': -5}\n", ["At 'TIMINGS.vm_force_timeout_s'", "greater than 0"]),
    ("zero timeout", "TIMINGS = {'xe_timeout_s': 0}\n", ["At 'TIMINGS.xe_timeout_s'", "greater than 0"]),
    ("no hosts", "HOSTS = []\n", ["At 'HOSTS'", "at least one host"]),
    ("missing UPS", "del UPS\n", ["At 'UPS'", "required"]),
    ("bad UPS daemon", "UPS = {'daemon': 'apc', 'address': '127.0.0.1'}\n", ["At 'UPS.daemon'", "'apcupsd', 'nut'"]),
    ("NUT address without a UPS name", "UPS = {'daemon': 'nut', 'address': '127.0.0.1:3493'}\n",
     ["At 'UPS.address'", "upsname@host"]),
    ("port out of range", "HOSTS = [{'name': 'a', 'address': 'h', 'ssh_port': 70000}]\n", ["At 'HOSTS[0].ssh_port'", "65535"]),
    ("duplicate host names", "HOSTS = [{'name': 'a', 'address': 'h1'}, {'name': 'a', 'address': 'h2'}]\n",
     ["two hosts are called 'a'"]),
    ("a mail address with a header break", "MAIL = {'to': ['root\\nBcc: x@evil']}\n", ["At 'MAIL.to'"]),
    ("a mistake while running the file", "X = 1 / 0\n", ["ZeroDivisionError"]),
    ("password without user", "UPS = {'daemon': 'nut', 'address': 'u@h', 'password': 'p'}\n", ["At 'UPS.password'"]),
]


@pytest.mark.parametrize("what,extra,phrases", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_a_bad_config_exits_2_naming_the_problem_without_a_traceback(make_config, what, extra, phrases):
    result = run_hgs("check-config", "--config", str(make_config(extra=extra)))
    assert result.returncode == 2, (what, result.stdout, result.stderr)
    for phrase in phrases:
        assert phrase in result.stderr, (what, phrase, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout


def test_every_problem_is_reported_at_once(make_config):
    path = make_config(extra="""\
        TIMINGS = {'xe_timeout_s': 0, 'confirm_outage_s': 'soon'}
        HOSTS = [{'name': 'a', 'address': 'bad address', 'mac': 'zz'}]
        MAILL = {}
        """)
    with pytest.raises(ConfigError) as caught:
        config.load(path, check_owner=False)
    problems = caught.value.problems
    assert len(problems) == 5, problems
    for where in ("TIMINGS.xe_timeout_s", "TIMINGS.confirm_outage_s", "HOSTS[0].address", "HOSTS[0].mac", "MAILL"):
        assert any(f"At '{where}'" in p for p in problems), (where, problems)


def test_a_missing_file_is_a_config_error(tmp_path):
    result = run_hgs("check-config", "--config", str(tmp_path / "nope.py"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the ownership rule applies when hgs runs as root")
def test_as_root_a_group_writable_config_is_refused(make_config):
    path = make_config()
    path.chmod(0o664)
    result = run_hgs("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "must not be writable by group or others" in result.stderr
    assert "chmod go-w" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the ownership rule applies when hgs runs as root")
def test_as_root_a_config_owned_by_another_user_is_refused(make_config):
    path = make_config()
    os.chown(path, 1234, 0)
    result = run_hgs("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "must be owned by root" in result.stderr


def test_helper_names_with_underscore_and_imports_are_allowed(make_config):
    path = make_config(extra="import os\n_subnet = '10.1.1'\ndef _helper():\n    return 1\n")
    assert config.load(path, check_owner=False).hosts


@pytest.mark.parametrize("given,expected", [
    ("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff"),
    ("aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff"),
    ("aabb.ccdd.eeff", "aa:bb:cc:dd:ee:ff"),
    ("AABBCCDDEEFF", "aa:bb:cc:dd:ee:ff"),
])
def test_mac_forms_are_normalised(given, expected):
    assert mac(given) == expected


@pytest.mark.parametrize("bad", ["aa:bb:cc:dd:ee", "aa:bb-cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff", "", 12, None])
def test_bad_macs_are_refused(bad):
    with pytest.raises(Invalid, match="MAC address"):
        mac(bad)


@pytest.mark.parametrize("good", ["10.0.0.1", "::1", "xen1", "xen1.example.com", "fe80::1"])
def test_addresses_accepted(good):
    assert address(good)


@pytest.mark.parametrize("bad", ["10.0.0.256", "1.2.3", "-xen", "a b", "", "x" * 300, "xen_1"])
def test_addresses_refused(bad):
    with pytest.raises(Invalid):
        address(bad)

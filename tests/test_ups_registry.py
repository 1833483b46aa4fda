"""The UPS daemons are one registry (hgs.ups.READERS): the configuration and the wiring both
take a daemon's address form, default port, login and reader from it, so a third daemon is
one entry. No root, no sockets."""

import pytest

from hgs import config, ups
from hgs.errors import ConfigError
from hgs.ups.status import UpsState, UpsStatus


@pytest.fixture
def third_daemon(monkeypatch):
    """Registers a toy daemon 'pdu' (address 'outlet@host', port 7000, no login) that reads on battery."""
    seen = []

    def read(settings):
        seen.append(settings)
        return UpsStatus(UpsState.ON_BATTERY, 55.0, 600, "OB", "pdu", settings.address)

    daemon = ups.Daemon("pdu", "the PDU", 7000, named=True, login=False, read=read)
    monkeypatch.setitem(ups.READERS, "pdu", daemon)
    return seen


def test_a_third_daemon_is_one_registry_entry(make_config, third_daemon):
    settings = config.load(make_config(ups="'daemon': 'pdu', 'address': 'rack2@127.0.0.1'"), check_owner=False)
    assert (settings.ups.daemon, settings.ups.ups_name, settings.ups.host, settings.ups.port) == \
        ("pdu", "rack2", "127.0.0.1", 7000)
    status = ups.reader_for(settings.ups)()
    assert status.state is UpsState.ON_BATTERY and third_daemon == [settings.ups]


def test_the_registry_shapes_the_config_messages(make_config, third_daemon):
    with pytest.raises(ConfigError) as err:
        config.load(make_config(ups="'daemon': 'pdu', 'address': '127.0.0.1', 'user': 'u', 'password': 'p'"),
                    check_owner=False)
    text = str(err.value)
    assert "expected 'upsname@host' or 'upsname@host:port' for the PDU, got '127.0.0.1'" in text
    with pytest.raises(ConfigError) as err:
        config.load(make_config(ups="'daemon': 'apc', 'address': '127.0.0.1'"), check_owner=False)
    assert "expected one of 'apcupsd', 'nut', 'pdu', got 'apc'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config.load(make_config(ups="'daemon': 'pdu', 'address': 'r@127.0.0.1', 'user': 'u', 'password': 'p'"),
                    check_owner=False)
    assert "a user and password are only used with daemon 'nut'; remove them for pdu" in str(err.value)


def test_every_daemon_the_config_accepts_has_a_reader(make_config):
    for name, daemon in ups.READERS.items():
        address = "u@127.0.0.1" if daemon.named else "127.0.0.1"
        settings = config.load(make_config(ups=f"'daemon': {name!r}, 'address': {address!r}"), check_owner=False)
        assert settings.ups.port == daemon.default_port
        assert callable(ups.reader_for(settings.ups))

"""Reading the UPS daemons: apcupsd over NIS and NUT over the upsd protocol."""

from hgs.ups.status import UpsState, UpsStatus


def reader_for(ups_settings):
    """Given UpsSettings, returns a zero-argument callable that reads an UpsStatus."""
    if ups_settings.daemon == "nut":
        from hgs.ups import nut

        return lambda: nut.read_status(
            ups_settings.host, ups_settings.port, ups_settings.ups_name,
            timeout_s=ups_settings.timeout_s, user=ups_settings.user, password=ups_settings.password,
        )
    from hgs.ups import nis

    return lambda: nis.read_status(ups_settings.host, ups_settings.port, timeout_s=ups_settings.timeout_s)


__all__ = ["UpsState", "UpsStatus", "reader_for"]

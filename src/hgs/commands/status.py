"""hgs status: what the UPS daemon reports now (human or --json)."""

import json


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print one JSON object (for monitoring)")


def format_runtime(seconds):
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def run(ctx):
    from hgs.errors import UpsError
    from hgs.ups import reader_for

    settings = ctx.settings
    ups = settings.ups
    try:
        status = reader_for(ups)()
        error = None
    except UpsError as err:
        status, error = None, str(err)
    if ctx.args.json:
        report = {"ups": status.as_dict() if status else
                  {"daemon": ups.daemon, "address": ups.address, "state": None, "error": error}}
        if status:
            report["ups"]["error"] = None
        ctx.out(json.dumps(report, indent=2, sort_keys=True))
    elif status:
        ctx.out(f"UPS ({status.daemon} at {status.address}): {status.state.value}")
        ctx.out(f"  battery charge: {'unknown' if status.charge_pct is None else f'{status.charge_pct:g} %'}")
        ctx.out(f"  runtime left:   {format_runtime(status.runtime_s)}")
        ctx.out(f"  daemon says:    {status.raw or '(nothing)'}")
    else:
        ctx.out(f"UPS ({ups.daemon} at {ups.address}): cannot be read")
        ctx.out(f"  {error}")
    return 0 if status else 1

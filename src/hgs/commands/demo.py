"""hgs demo: a whole outage and restore against the built-in simulated site, on loopback.

It writes its own configuration for the simulated site (in a temporary folder), so it takes
no --config and never reads /etc/hgs/config.py."""


def add_arguments(parser):
    parser.add_argument("--keep", action="store_true", help="keep the demo's files (its config, logs, mails) afterwards")


def run(ctx):
    from hgs.sim import demo

    return demo.run(out=ctx.stdout, keep=ctx.args.keep)

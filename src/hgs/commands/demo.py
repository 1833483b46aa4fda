"""hgs demo: a whole outage and restore against the built-in simulated site, on loopback.

It writes its own configuration for the simulated site (in a temporary folder), so it takes
no --config and never reads /etc/hgs/config.py."""


def add_arguments(parser):
    parser.add_argument("--keep", action="store_true", help="keep the demo's files (its config, logs, mails) afterwards")
    parser.add_argument("--scenario", choices=("pool", "shed"), default="pool",
                        help="pool: a whole outage and restore (default); shed: load shedding and the runtime "
                             "trigger on a battery drained by the site's load")


def run(ctx):
    from hgs.sim import demo

    return demo.run(out=ctx.stdout, keep=ctx.args.keep, scenario=ctx.args.scenario)

"""hgs demo: a whole outage and restore against the built-in simulated site, on loopback."""


def add_arguments(parser):
    parser.add_argument("--keep", action="store_true", help="keep the demo's files (config, logs, mails) afterwards")


def run(ctx):
    from hgs.sim import demo

    return demo.run(out=ctx.stdout, keep=ctx.args.keep)

"""hgs check-config: validate the configuration and print the resolved settings."""

from hgs import config


def add_arguments(parser):
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing when the configuration is valid")


def run(ctx):
    settings = ctx.settings  # raises ConfigError (exit 2) listing every problem
    if not ctx.args.quiet:
        for line in config.describe(settings):
            ctx.out(line)
        ctx.out(f"configuration OK: {len(settings.hosts)} host(s), UPS via {settings.ups.daemon} at {settings.ups.address}")
    return 0

"""The ``bridge`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bridge import __version__, config, logs, probe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="bridge: a live-media server.")
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run every listener in one process. Settings, strongest first: flags, "
        "environment variables, --config FILE.toml, defaults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--config", metavar="FILE.toml", help="a TOML file of settings (KEY = value)"
    )
    for setting in config.SETTINGS:
        default = setting.default if setting.default != "" else "(empty)"
        serve.add_argument(
            setting.flag,
            dest=setting.name,
            metavar="VALUE",
            default=None,
            help=f"{setting.help} [env {setting.name}, default {default}]",
        )
    probe_parser = commands.add_parser(
        "probe",
        help="test which of rtmp, rtmps and rtmpt reach a server, and how fast",
        description="Try RTMP (1935), RTMPS (443) and RTMPT (80), or the ports given, as the "
        "Flash Player did: handshake and connect on each; print which work and how long each "
        "step took.",
    )
    probe.add_arguments(probe_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "probe":
        return probe.main(args)
    if args.command != "serve":
        parser.print_help()
        return 2
    flags = {setting.name: getattr(args, setting.name) for setting in config.SETTINGS}
    try:
        settings = config.load(flags, config_file=args.config)
    except config.ConfigError as exc:
        print(f"bridge: bad setting {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_debug)
    from bridge.app import serve as run

    try:
        asyncio.run(run(settings))
    except OSError as exc:
        print(f"bridge: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0

"""The command line of the daemon: ``python examples/mqd --help``.

It runs in the foreground, logs to stderr and stops on SIGTERM or SIGINT
(``aiosock.run``'s signal handling): it stops accepting, answers what it
received, flushes and fsyncs its log, and exits 0. That is what systemd
(``Type=simple``) and container runtimes expect. The password is read
from a file or the environment, never from the command line, where every
user of the machine can read it in the process list.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import aiosock
from aiosock.aio.loops import LoopName
from mqd.server import Config, Daemon, run_with

__all__ = ["main"]

PASSWORD_VARIABLE = "MQD_PASSWORD"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mqd",
        description="A message-queue daemon that speaks the Redis protocol.",
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="ADDRESS",
        type=_address,
        help="tcp://HOST:PORT, unix:///PATH or fd://N; repeat for several "
        "(default: tcp://127.0.0.1:6380)",
    )
    parser.add_argument(
        "--unix-mode",
        type=_mode,
        default=0o700,
        metavar="OCTAL",
        help="file mode of Unix sockets (default: 700, the owner only)",
    )
    parser.add_argument("--pidfile", type=Path, help="write the process id here")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--maxclients", type=_positive_int, default=10000, metavar="N")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="close a client idle this long (0: never; blocked clients and "
        "subscribers are never idle)",
    )
    parser.add_argument(
        "--appendonly", metavar="PATH", help="keep an append-only log here"
    )
    parser.add_argument(
        "--appendfsync", choices=["always", "everysec", "no"], default="everysec"
    )
    parser.add_argument(
        "--requirepass-file",
        type=Path,
        metavar="PATH",
        help=f"require the password in this file (or in ${PASSWORD_VARIABLE})",
    )
    parser.add_argument(
        "--grace",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long clients may take to finish",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )
    return parser.parse_args(argv)


def _address(text: str) -> str:
    try:
        aiosock.parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal file mode")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def _password(args: argparse.Namespace) -> bytes | None:
    path: Path | None = args.requirepass_file
    if path is not None:
        return path.read_bytes().rstrip(b"\r\n")
    return os.environ.get(PASSWORD_VARIABLE, "").encode() or None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    loop: LoopName = args.loop
    pidfile: Path | None = args.pidfile
    wrote_pidfile = False  # only ours is removed, not another daemon's
    try:
        config = Config(
            listen=args.listen or ["tcp://127.0.0.1:6380"],
            unix_mode=args.unix_mode,
            maxclients=args.maxclients,
            timeout=args.timeout,
            appendonly=args.appendonly,
            appendfsync=args.appendfsync,
            requirepass=_password(args),
            grace=args.grace,
        )

        def ready(daemon: Daemon) -> None:
            nonlocal wrote_pidfile
            if pidfile is not None:
                pidfile.write_text(f"{os.getpid()}\n")
                wrote_pidfile = True
            for address in daemon.addresses:
                print(f"listening on {address}", flush=True)

        aiosock.run(run_with(config, ready)(), loop=loop)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"mqd: {exc}", file=sys.stderr)
        return 1
    finally:
        if pidfile is not None and wrote_pidfile:
            pidfile.unlink(missing_ok=True)
    return 0

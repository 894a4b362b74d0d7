"""A server whose handler ignores shutdown: only a second signal ends it.

``python tests/programs/stubborn.py --loop asyncio ADDRESS`` serves one
address with aiosock.run() and aiosock.serve(), and closes it with a grace
far longer than a test waits. Prints ``listening on ADDRESS`` when ready
and ``handler started`` for each connection; logs (run()'s signal lines
among them) go to stderr. Not a test module: tests run it as a program.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import aiosock

# A minute: only a second signal can end the shutdown within a test's wait.
GRACE = 60.0


async def stubborn(connection: aiosock.Connection[bytes]) -> None:
    print("handler started", flush=True)
    await asyncio.Event().wait()  # never set: only cancellation ends it


async def serve(address: str) -> None:
    server = await aiosock.serve(stubborn, address)
    try:
        print(f"listening on {server.addresses[0]}", flush=True)
        await asyncio.get_running_loop().create_future()  # until a signal
    finally:
        await server.aclose(GRACE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("address")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    aiosock.run(serve(args.address), loop=args.loop)


if __name__ == "__main__":
    main()

"""Container commands and their subcommands: CLIENT, CONFIG, COMMAND.

As in Redis 7, each subcommand has its own arity, flags and summary, and
COMMAND and COMMAND DOCS list them (redis-cli's help for CLIENT SETNAME
comes from there). A container is a command (:func:`mqd.table.command`)
that answers with :func:`dispatch`; :func:`register_container` gives it
its HELP, and :func:`subcommand` registers the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from mqd.replies import Err, Reply, Simple
from mqd.table import Argv, Block, Client, NoReply, Spec, make_spec, wrong_arity

__all__ = ["SUBCOMMANDS", "dispatch", "register_container", "subcommand"]

#: Container name to subcommand name to its Spec (named ``container|name``),
#: in the order registered, HELP first.
SUBCOMMANDS: dict[bytes, dict[bytes, Spec]] = {}

_Run = Callable[[Client, Argv], Reply]


def register_container(container: str) -> None:
    """Start the subcommands of ``container`` with HELP, listed first as
    in Redis."""
    subcommand(container, "help", 2, "loading")(_help)


def subcommand(
    container: str, name: str, arity: int, flags: str = ""
) -> Callable[[_Run], _Run]:
    """Register the decorated function as ``container``'s subcommand
    ``name``; ``arity`` counts the container's name too, as Redis does."""

    def register(run: _Run) -> _Run:
        spec = make_spec(f"{container}|{name}", arity, flags, run, keys=(0, 0, 0))
        SUBCOMMANDS.setdefault(container.encode(), {})[name.encode()] = spec
        return run

    return register


def dispatch(client: Client, argv: Argv) -> Reply:
    """Run the subcommand ``argv[1]`` of the container ``argv[0]``."""
    container = argv[0].lower()
    spec = SUBCOMMANDS[container].get(argv[1].lower())
    if spec is None:
        return Err(
            b"ERR unknown subcommand '%s'. Try %s HELP."
            % (argv[1][:128], container.upper())
        )
    if (spec.arity > 0 and len(argv) != spec.arity) or len(argv) < -spec.arity:
        return wrong_arity(spec.name)
    result = spec.run(client, argv)
    assert not isinstance(result, Block | NoReply)  # no subcommand blocks or pushes
    return result


def _help(client: Client, argv: Argv) -> Reply:
    """Returns helpful text about the different subcommands."""
    container = argv[0].lower()
    lines = [
        Simple(
            b"%s <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
            % container.upper()
        )
    ]
    for name, spec in SUBCOMMANDS[container].items():
        if name != b"help":
            lines += [Simple(name.upper()), Simple(b"    " + spec.summary.encode())]
    return [*lines, Simple(b"HELP"), Simple(b"    Print this help.")]

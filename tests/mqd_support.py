"""What the sans-IO tests of examples/mqd share: a state whose clock the
test moves and whose log it reads, and small readers of replies."""

from __future__ import annotations

from mqd.replies import Map, Reply, Verbatim
from mqd.table import Argv, Block, Client, NoReply, State, execute


class Table:
    """A State with a clock the test moves (``now``, seconds since the
    epoch) and the writes it logged (``logged``: (database, argv))."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.state = State(clock=lambda: self.now)
        self.logged: list[tuple[int, Argv]] = []
        self.state.log = lambda db, argv: self.logged.append((db, argv))

    def connect(self) -> Client:
        return self.state.connect(lambda reply: None)


def connect(state: State | None = None) -> Client:
    """A client of ``state`` (a fresh one if None), as if from 127.0.0.1."""
    return (state or State()).connect(lambda reply: None, "127.0.0.1:5000")


def run(client: Client, *argv: bytes) -> Reply:
    """The reply to ``argv``, which must neither block nor only push."""
    result = execute(client, list(argv))
    assert not isinstance(result, Block | NoReply)
    return result


def pairs(reply: Reply) -> dict[Reply, Reply]:
    assert isinstance(reply, Map)
    return dict(reply.pairs)


def text(reply: Reply) -> bytes:
    assert isinstance(reply, Verbatim)
    return reply.text

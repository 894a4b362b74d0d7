"""Pub/sub fan-out: PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE.

A (un)subscribe command answers with one message per channel or pattern
(``[b"subscribe", channel, count]``), as Redis does; so it sends them
through ``client.push`` (a RESP3 push, a plain array in RESP2) and returns
:data:`mqd.table.NO_REPLY`, which tells the server that nothing more is
written for this command (inside EXEC the messages take its reply's
place). PUBLISH pushes ``[b"message", channel, data]`` to each subscriber
of the channel and ``[b"pmessage", pattern, channel, data]`` to each
subscriber of a matching pattern, and answers how many messages it
pushed: a client that hears the channel and two matching patterns is
counted three times, as in Redis.

Messages go to clients at once, in the order published; nothing is kept for
a client that subscribes later. The RESP2 rule (a subscribed client may
only (un)subscribe, PING, QUIT and RESET) is :func:`mqd.table.execute`'s.
"""

from __future__ import annotations

from mqd.args import glob_match
from mqd.table import NO_REPLY, Argv, Client, NoReply, command

__all__: list[str] = []  # nothing to import: the commands register themselves


@command("subscribe", arity=-2, flags="pubsub loading", keys=(0, 0, 0))
def subscribe(client: Client, argv: Argv) -> NoReply:
    """Listens for messages published to channels.

    One ``[b"subscribe", channel, count]`` per channel, ``count`` being the
    client's channels and patterns together; subscribing twice is harmless.
    """
    for channel in argv[1:]:
        client.state.subscribe(client, channel)
        client.push(b"subscribe", channel, client.subscribed)
    return NO_REPLY


@command("psubscribe", arity=-2, flags="pubsub loading", keys=(0, 0, 0))
def psubscribe(client: Client, argv: Argv) -> NoReply:
    """Listens for messages published to channels that match one or more patterns."""
    for pattern in argv[1:]:
        client.state.subscribe(client, pattern, pattern=True)
        client.push(b"psubscribe", pattern, client.subscribed)
    return NO_REPLY


@command("unsubscribe", arity=-1, flags="pubsub loading", keys=(0, 0, 0))
def unsubscribe(client: Client, argv: Argv) -> NoReply:
    """Stops listening to messages posted to channels.

    Without arguments, from every channel; with none to leave, Redis still
    answers once, ``[b"unsubscribe", None, count]``.
    """
    _unsubscribe(client, argv, pattern=False)
    return NO_REPLY


# The first line of a command's docstring is COMMAND DOCS's summary: Redis's
# own, verbatim, even where it is longer than a line.
@command("punsubscribe", arity=-1, flags="pubsub loading", keys=(0, 0, 0))
def punsubscribe(client: Client, argv: Argv) -> NoReply:
    """Stops listening to messages published to channels that match one or more patterns."""  # noqa: E501
    _unsubscribe(client, argv, pattern=True)
    return NO_REPLY


@command("publish", arity=3, flags="loading fast", keys=(0, 0, 0))
def publish(client: Client, argv: Argv) -> int:
    """Posts a message to a channel.

    Not logged: Redis propagates PUBLISH to replicas only, never to the
    append-only file, since a message is not data.
    """
    state, channel, data = client.state, argv[1], argv[2]
    receivers = 0
    # Copies: a subscriber that fails while being written to may be
    # disconnected, which edits these sets, before the loop is done.
    for member in tuple(state.channels.get(channel, ())):
        member.push(b"message", channel, data)
        receivers += 1
    for pattern, members in tuple(state.patterns.items()):
        if glob_match(pattern, channel):
            for member in tuple(members):
                member.push(b"pmessage", pattern, channel, data)
                receivers += 1
    return receivers


def _unsubscribe(client: Client, argv: Argv, *, pattern: bool) -> None:
    kind = b"punsubscribe" if pattern else b"unsubscribe"
    names = argv[1:] or list(client.patterns if pattern else client.channels)
    if not names:
        client.push(kind, None, client.subscribed)
    for name in names:
        client.state.unsubscribe(client, name, pattern=pattern)
        client.push(kind, name, client.subscribed)

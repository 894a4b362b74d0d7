"""Pub/sub fan-out: PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE.

A (un)subscribe command answers with one message per channel or pattern
(``[b"subscribe", channel, count]``), as Redis does; so it sends them
through ``client.push`` (a RESP3 push, a plain array in RESP2) and returns
:data:`NO_REPLY`, which tells the server that nothing more is written for
this command. PUBLISH pushes ``[b"message", channel, data]`` to each
subscriber of the channel and ``[b"pmessage", pattern, channel, data]`` to
each subscriber of a matching pattern, and answers how many messages it
pushed: a client that hears the channel and two matching patterns is
counted three times, as in Redis.

Messages go to clients at once, in the order published; nothing is kept for
a client that subscribes later. The RESP2 rule (a subscribed client may
only (un)subscribe, PING, QUIT and RESET) is :func:`mqd.table.execute`'s.
"""

from __future__ import annotations

import attrs

from mqd.table import Argv, Client, command

__all__ = ["NO_REPLY", "NoReply", "glob_match", "unsubscribe_all"]


@attrs.frozen
class NoReply:
    """A command's replies were all pushed: the server writes nothing more."""


NO_REPLY = NoReply()


@command("subscribe", arity=-2, flags="pubsub loading", keys=(0, 0, 0))
def subscribe(client: Client, argv: Argv) -> NoReply:
    """Listens for messages published to channels.

    One ``[b"subscribe", channel, count]`` per channel, ``count`` being the
    client's channels and patterns together; subscribing twice is harmless.
    """
    for channel in argv[1:]:
        _join(client.state.channels, client.channels, channel, client)
        client.push(b"subscribe", channel, client.subscribed)
    return NO_REPLY


@command("psubscribe", arity=-2, flags="pubsub loading", keys=(0, 0, 0))
def psubscribe(client: Client, argv: Argv) -> NoReply:
    """Listens for messages published to channels that match one or more patterns."""
    for pattern in argv[1:]:
        _join(client.state.patterns, client.patterns, pattern, client)
        client.push(b"psubscribe", pattern, client.subscribed)
    return NO_REPLY


@command("unsubscribe", arity=-1, flags="pubsub loading", keys=(0, 0, 0))
def unsubscribe(client: Client, argv: Argv) -> NoReply:
    """Stops listening to messages posted to channels.

    Without arguments, from every channel; with none to leave, Redis still
    answers once, ``[b"unsubscribe", None, count]``.
    """
    _unsubscribe(client, b"unsubscribe", client.state.channels, client.channels, argv)
    return NO_REPLY


# The first line of a command's docstring is COMMAND DOCS's summary: Redis's
# own, verbatim, even where it is longer than a line.
@command("punsubscribe", arity=-1, flags="pubsub loading", keys=(0, 0, 0))
def punsubscribe(client: Client, argv: Argv) -> NoReply:
    """Stops listening to messages published to channels that match one or more patterns."""  # noqa: E501
    _unsubscribe(client, b"punsubscribe", client.state.patterns, client.patterns, argv)
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


def unsubscribe_all(client: Client) -> None:
    """Leave every channel and pattern without telling the client (RESET)."""
    for channel in client.channels:
        _leave(client.state.channels, channel, client)
    for pattern in client.patterns:
        _leave(client.state.patterns, pattern, client)
    client.channels.clear()
    client.patterns.clear()


def _unsubscribe(
    client: Client,
    kind: bytes,
    registry: dict[bytes, set[Client]],
    mine: set[bytes],
    argv: Argv,
) -> None:
    names = argv[1:] or list(mine)
    if not names:
        client.push(kind, None, client.subscribed)
    for name in names:
        if name in mine:
            mine.discard(name)
            _leave(registry, name, client)
        client.push(kind, name, client.subscribed)


def _join(
    registry: dict[bytes, set[Client]], mine: set[bytes], name: bytes, client: Client
) -> None:
    mine.add(name)
    registry.setdefault(name, set()).add(client)


def _leave(registry: dict[bytes, set[Client]], name: bytes, client: Client) -> None:
    # The same as State.disconnect's; a nameless set is dropped so that
    # channels nobody hears do not pile up.
    members = registry.get(name)
    if members is not None:
        members.discard(client)
        if not members:
            del registry[name]


# ------------------------------------------------------------------- glob
#
# A stand-in for mqd.keys.glob_match, written concurrently: import that
# instead once it is merged, and delete this section.


def glob_match(pattern: bytes, string: bytes) -> bool:
    """Whether ``string`` matches ``pattern`` as Redis's ``stringmatchlen``
    (src/util.c) has it: ``*``, ``?``, ``[abc]``, ``[^a-z]``, ``\\x``.

    An unclosed ``[``, a trailing ``\\`` and the empty string (which only
    the empty pattern matches, not even ``*``) behave as in Redis. For the
    case-insensitive match (CONFIG GET) lower both sides: Redis's
    ``nocase`` is ASCII ``tolower`` on each side, ranges included.
    """
    return _match(pattern, 0, string, 0, _Give(), 0)


@attrs.define
class _Give:
    # Set once a '*' found no way to match the rest of the pattern anywhere
    # in the rest of the string: every earlier '*' can stop trying too,
    # which keeps patterns like a*a*a*a*b linear rather than exponential.
    up: bool = False


_STAR, _ANY, _OPEN, _CLOSE, _NOT, _RANGE, _ESCAPE = b"*?[]^-\\"


def _match(
    pattern: bytes, p: int, string: bytes, s: int, give: _Give, depth: int
) -> bool:
    if depth > 1000:  # Redis's protection against abusive patterns
        return False
    plen, slen = len(pattern), len(string)
    while p < plen and s < slen:
        char = pattern[p]
        if char == _STAR:
            while p + 1 < plen and pattern[p + 1] == _STAR:
                p += 1
            if p + 1 == plen:
                return True
            while s < slen:
                if _match(pattern, p + 1, string, s, give, depth + 1):
                    return True
                if give.up:
                    return False
                s += 1
            give.up = True
            return False
        if char == _ANY:
            s += 1
        elif char == _OPEN:
            p = _bracket(pattern, p + 1, string[s])
            if p < 0:
                return False
            s += 1
        else:
            if char == _ESCAPE and plen - p >= 2:
                p += 1
            if pattern[p] != string[s]:
                return False
            s += 1
        p += 1
        if s == slen:
            while p < plen and pattern[p] == _STAR:
                p += 1
            break
    return p == plen and s == slen


def _bracket(pattern: bytes, p: int, char: int) -> int:
    """Match ``char`` against the class opening at ``p`` (after ``[``):
    the index of its ``]`` (or of its last byte when unclosed), -1 if no
    match."""
    plen = len(pattern)
    negate = p < plen and pattern[p] == _NOT
    if negate:
        p += 1
    found = False
    while True:
        if p >= plen:  # unclosed: stop on the last byte, as Redis does
            p -= 1
            break
        here = pattern[p]
        if here == _ESCAPE and plen - p >= 2:
            p += 1
            found |= pattern[p] == char
        elif here == _CLOSE:
            break
        elif plen - p >= 3 and pattern[p + 1] == _RANGE:
            low, high = sorted((here, pattern[p + 2]))
            found |= low <= char <= high
            p += 2
        else:
            found |= here == char
        p += 1
    return p if found != negate else -1

"""Connection commands: what clients send before and around data.

PING, ECHO, QUIT, RESET, AUTH, HELLO, and CLIENT with its subcommands.
These are what redis-cli, redis-py and redis-benchmark send when they
connect (HELLO 3, CLIENT SETINFO, AUTH), so their replies follow Redis's
shapes closely; error texts are Redis's own. What describes the server
(CONFIG, COMMAND, INFO) is :mod:`mqd.introspection`'s.

Passwords are compared in constant time, as SHA-256 digests the way Redis
does, so that neither the time taken nor its dependence on length says
anything about the password.
"""

from __future__ import annotations

import hashlib
import hmac

from mqd.args import SYNTAX_ERROR, parse_int, parse_long
from mqd.replies import OK, Err, Map, Reply, Simple, Verbatim
from mqd.subcommands import dispatch, register_container, subcommand
from mqd.table import Argv, Client, command, wrong_arity

__all__ = ["REDIS_VERSION"]

#: The Redis version HELLO and INFO report. Not mqd's own: clients gate
#: features on it (redis-cli drops from its help every command newer than
#: the server), and 7.2.0 is the newest Redis whose connection commands
#: mqd answers: HELLO 3 (6.0), RESET (6.2), COMMAND DOCS (7.0), CLIENT
#: SETINFO (7.2).
REDIS_VERSION = b"7.2.0"

WRONGPASS = Err(b"WRONGPASS invalid username-password pair or user is disabled.")
_NO_PASSWORD = Err(
    b"ERR AUTH <password> called without any password configured for the "
    b"default user. Are you sure your configuration is correct?"
)
_HELLO_NOAUTH = Err(
    b"NOAUTH HELLO must be called with the client already authenticated, "
    b"otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
    b"authenticate the client and select the RESP protocol version at the "
    b"same time"
)
_BAD_NAME = Err(
    b"ERR Client names cannot contain spaces, newlines or special characters."
)


# ------------------------------------------------------------ connection


@command("ping", arity=-1, flags="pubsub fast", keys=(0, 0, 0))
def ping(client: Client, argv: Argv) -> Reply:
    """Returns the server's liveliness response.

    In RESP2 pub/sub mode the reply is ``[b"pong", message or b""]``, an
    array a subscriber can tell from its messages (Redis, commit 2264b981).
    """
    if len(argv) > 2:
        return wrong_arity("ping")
    if client.subscribed and not client.resp3:
        return [b"pong", argv[1] if len(argv) == 2 else b""]
    return argv[1] if len(argv) == 2 else Simple(b"PONG")


@command("echo", arity=2, flags="loading fast", keys=(0, 0, 0))
def echo(client: Client, argv: Argv) -> Reply:
    """Returns the given string."""
    return argv[1]


@command("quit", arity=-1, flags="noauth pubsub nomulti loading fast", keys=(0, 0, 0))
def quit_(client: Client, argv: Argv) -> Reply:
    """Closes the connection.

    The server closes it once this OK is written; replies already queued
    go first.
    """
    client.close_after_reply = True
    return OK


@command("reset", arity=1, flags="noauth pubsub nomulti loading fast", keys=(0, 0, 0))
def reset(client: Client, argv: Argv) -> Reply:
    """Resets the connection.

    As if newly connected: database 0, RESP2, unauthenticated again if
    there is a password, out of MULTI, no watches, no subscriptions (left
    without a message each), no name. The library name and version stay:
    they still describe the library on this connection.
    """
    client.db_index = 0
    client.resp3 = False
    if client.state.requirepass is not None:
        client.authenticated = False
    client.discard_transaction()
    client.state.unsubscribe_all(client)
    client.name = b""
    return Simple(b"RESET")


@command("auth", arity=-2, flags="noauth loading fast", keys=(0, 0, 0))
def auth(client: Client, argv: Argv) -> Reply:
    """Authenticates the connection.

    ``AUTH password`` or ``AUTH default password``: mqd's one user is
    Redis's ``default``. Without ``--requirepass`` the default user takes
    any password (Redis's ``nopass``), but the one-argument form is an
    error, as in Redis. A wrong password leaves the client as it was.
    """
    if len(argv) > 3:
        return SYNTAX_ERROR
    if len(argv) == 2:
        if client.state.requirepass is None:
            return _NO_PASSWORD
        user, password = b"default", argv[1]
    else:
        user, password = argv[1], argv[2]
    return OK if _authenticate(client, user, password) else WRONGPASS


@command("hello", arity=-1, flags="noauth loading fast", keys=(0, 0, 0))
def hello(client: Client, argv: Argv) -> Reply:
    """Handshakes with the Redis server.

    ``HELLO [protover [AUTH user password] [SETNAME name]]``: the options
    are all checked first, then AUTH is tried before anything changes;
    the protocol switches last, so the reply is already in the new one.
    """
    version = 0
    if len(argv) >= 2:
        parsed = parse_long(
            argv[1], message=b"Protocol version is not an integer or out of range"
        )
        if isinstance(parsed, Err):
            return parsed
        if parsed not in (2, 3):
            return Err(b"NOPROTO unsupported protocol version")
        version = parsed
    credentials: tuple[bytes, bytes] | None = None
    name: bytes | None = None
    index = 2
    while index < len(argv):
        option, more = argv[index].lower(), len(argv) - 1 - index
        if option == b"auth" and more >= 2:
            credentials = (argv[index + 1], argv[index + 2])
            index += 3
        elif option == b"setname" and more >= 1:
            name = argv[index + 1]
            if not _printable(name):
                return _BAD_NAME
            index += 2
        else:
            return Err(b"ERR Syntax error in HELLO option '%s'" % argv[index])
    if credentials is not None and not _authenticate(client, *credentials):
        return WRONGPASS
    if not client.authenticated:
        return _HELLO_NOAUTH
    if name is not None:
        client.name = name
    if version:
        client.resp3 = version == 3
    return Map(
        [
            (b"server", b"redis"),
            (b"version", REDIS_VERSION),
            (b"proto", 3 if client.resp3 else 2),
            (b"id", client.id),
            (b"mode", b"standalone"),
            (b"role", b"master"),
            (b"modules", []),
        ]
    )


def _authenticate(client: Client, user: bytes, password: bytes) -> bool:
    """Authenticate ``client`` as ``user`` if ``password`` is right."""
    if user != b"default":
        return False
    expected = client.state.requirepass
    # Digests of equal length, as Redis compares (src/acl.c): the time
    # compare_digest takes says nothing of the password's length either.
    if expected is not None and not hmac.compare_digest(
        hashlib.sha256(password).digest(), hashlib.sha256(expected).digest()
    ):
        return False
    client.authenticated = True
    return True


# ----------------------------------------------------------------- CLIENT


@command("client", arity=-2, flags="loading", keys=(0, 0, 0))
def client_(client: Client, argv: Argv) -> Reply:
    """A container for client connection commands."""
    return dispatch(client, argv)


register_container("client")


@subcommand("client", "id", 2, "loading")
def client_id(client: Client, argv: Argv) -> Reply:
    """Returns the unique client ID of the connection."""
    return client.id


@subcommand("client", "getname", 2, "loading")
def client_getname(client: Client, argv: Argv) -> Reply:
    """Returns the name of the connection."""
    return client.name or None


@subcommand("client", "setname", 3, "loading")
def client_setname(client: Client, argv: Argv) -> Reply:
    """Sets the connection name.

    Printable ASCII without spaces, so that CLIENT LIST splits on spaces;
    an empty name removes the name.
    """
    if not _printable(argv[2]):
        return _BAD_NAME
    client.name = argv[2]
    return OK


@subcommand("client", "setinfo", 4, "loading")
def client_setinfo(client: Client, argv: Argv) -> Reply:
    """Sets information specific to the client or connection."""
    attribute, value = argv[2], argv[3]
    if attribute.lower() not in (b"lib-name", b"lib-ver"):
        return Err(b"ERR Unrecognized option '%s'" % attribute)
    if not _printable(value):
        return Err(
            b"ERR %s cannot contain spaces, newlines or special characters." % attribute
        )
    if attribute.lower() == b"lib-name":
        client.lib_name = value
    else:
        client.lib_ver = value
    return OK


_CLIENT_TYPES = (b"normal", b"master", b"replica", b"slave", b"pubsub")


@subcommand("client", "list", -2, "loading")
def client_list(client: Client, argv: Argv) -> Reply:
    """Lists open connections.

    ``CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]``, one
    line per client in Redis's ``field=value`` format.
    """
    state = client.state
    chosen = list(state.clients.values())
    if len(argv) == 4 and argv[2].lower() == b"type":
        kind = argv[3].lower()
        if kind not in _CLIENT_TYPES:
            return Err(b"ERR Unknown client type '%s'" % argv[3])
        chosen = [
            c for c in chosen if (b"pubsub" if c.subscribed else b"normal") == kind
        ]
    elif len(argv) > 3 and argv[2].lower() == b"id":
        ids = [parse_int(arg) for arg in argv[3:]]
        if None in ids:
            return Err(b"ERR Invalid client ID")
        chosen = [state.clients[i] for i in ids if i in state.clients]
    elif len(argv) != 2:
        return SYNTAX_ERROR
    return Verbatim(b"".join(_client_line(c) + b"\n" for c in chosen))


@subcommand("client", "info", 2, "loading")
def client_info(client: Client, argv: Argv) -> Reply:
    """Returns information about the connection."""
    return Verbatim(_client_line(client) + b"\n")


def _client_line(client: Client) -> bytes:
    # Redis's fields in Redis's order, less those only the server knows
    # (buffers, file descriptor, local address). idle is 0: the table does
    # not yet record when a client last sent a command.
    flags = b"".join(
        letter
        for letter, on in (
            (b"P", client.subscribed),
            (b"x", client.multi is not None),
            (b"d", client.dirty),
            (b"c", client.close_after_reply),
        )
        if on
    )
    fields = [
        (b"id", b"%d" % client.id),
        (b"addr", client.address.encode()),
        (b"name", client.name),
        (b"age", b"%d" % (client.state.clock() - client.created)),
        (b"idle", b"0"),
        (b"flags", flags or b"N"),
        (b"db", b"%d" % client.db_index),
        (b"sub", b"%d" % len(client.channels)),
        (b"psub", b"%d" % len(client.patterns)),
        (b"ssub", b"0"),
        (b"multi", b"%d" % (-1 if client.multi is None else len(client.multi))),
        (b"watch", b"%d" % len(client.watched)),
        (b"cmd", client.last_command or b"NULL"),
        (b"user", b"default"),
        (b"redir", b"-1"),
        (b"resp", b"3" if client.resp3 else b"2"),
        (b"lib-name", client.lib_name),
        (b"lib-ver", client.lib_ver),
    ]
    return b" ".join(b"%s=%s" % field for field in fields)


# ---------------------------------------------------------------- helpers


def _printable(value: bytes) -> bool:
    """Printable ASCII without spaces: what Redis allows in a client's
    name and library fields, so that CLIENT LIST splits on spaces."""
    return all(0x21 <= byte <= 0x7E for byte in value)

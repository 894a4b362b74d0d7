"""Pub/sub through mqd.table.execute: replies, fan-out, counts."""

from __future__ import annotations

import mqd.pubsub  # noqa: F401  (registers the commands)
from mqd.replies import Err, Push, Reply, encode
from mqd.table import NO_REPLY, Block, Client, NoReply, State, execute


def run(client: Client, argv: list[bytes]) -> Reply | NoReply:
    result = execute(client, argv)
    assert not isinstance(result, Block)
    return result


def connect(state: State) -> tuple[Client, list[Reply]]:
    out: list[Reply] = []
    return state.connect(out.append), out


def test_subscribe_replies_one_message_per_channel() -> None:
    state = State()
    client, out = connect(state)
    assert run(client, [b"SUBSCRIBE", b"a", b"b", b"a"]) is NO_REPLY
    assert out == [
        Push([b"subscribe", b"a", 1]),
        Push([b"subscribe", b"b", 2]),
        Push([b"subscribe", b"a", 2]),  # twice is once
    ]
    assert state.channels == {b"a": {client}, b"b": {client}}


def test_subscribe_is_an_array_in_resp2_and_a_push_in_resp3() -> None:
    message = Push([b"subscribe", b"news", 1])
    assert encode(message, False) == b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    assert encode(message, True) == b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"


def test_counts_include_channels_and_patterns() -> None:
    client, out = connect(State())
    execute(client, [b"SUBSCRIBE", b"a"])
    execute(client, [b"PSUBSCRIBE", b"n.*", b"m.*"])
    assert out[1:] == [
        Push([b"psubscribe", b"n.*", 2]),
        Push([b"psubscribe", b"m.*", 3]),
    ]
    out.clear()
    execute(client, [b"PUNSUBSCRIBE", b"n.*", b"never"])
    assert out == [
        Push([b"punsubscribe", b"n.*", 2]),
        Push([b"punsubscribe", b"never", 2]),  # not subscribed: answered still
    ]


def test_unsubscribe_without_arguments_leaves_every_channel() -> None:
    state = State()
    client, out = connect(state)
    execute(client, [b"SUBSCRIBE", b"a", b"b"])
    execute(client, [b"PSUBSCRIBE", b"p*"])
    out.clear()
    assert run(client, [b"UNSUBSCRIBE"]) is NO_REPLY
    items = [item.items for item in out if isinstance(item, Push)]
    assert len(items) == len(out) == 2
    assert {name for _, name, _ in items} == {b"a", b"b"}
    assert [(kind, count) for kind, _, count in items] == [
        (b"unsubscribe", 2),
        (b"unsubscribe", 1),
    ]
    assert state.channels == {}  # no empty sets left behind
    assert state.patterns == {b"p*": {client}}


def test_unsubscribe_with_nothing_to_leave_answers_once_with_null() -> None:
    client, out = connect(State())
    execute(client, [b"PSUBSCRIBE", b"p*"])
    out.clear()
    execute(client, [b"UNSUBSCRIBE"])
    execute(client, [b"PUNSUBSCRIBE"])
    execute(client, [b"PUNSUBSCRIBE"])
    assert out == [
        Push([b"unsubscribe", None, 1]),  # the pattern still counts
        Push([b"punsubscribe", b"p*", 0]),
        Push([b"punsubscribe", None, 0]),
    ]
    assert encode(out[0], False) == b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:1\r\n"
    assert encode(out[0], True) == b">3\r\n$11\r\nunsubscribe\r\n_\r\n:1\r\n"


def test_publish_fans_out_and_counts_each_match() -> None:
    state = State()
    publisher, _ = connect(state)
    first, first_out = connect(state)
    second, second_out = connect(state)
    both, both_out = connect(state)
    execute(first, [b"SUBSCRIBE", b"news.tech"])
    execute(second, [b"SUBSCRIBE", b"news.tech", b"other"])
    execute(both, [b"SUBSCRIBE", b"news.tech"])
    execute(both, [b"PSUBSCRIBE", b"news.*", b"*.tech", b"sport.*"])
    for out in (first_out, second_out, both_out):
        out.clear()

    # three subscribers of the channel, and `both` twice more by pattern
    assert execute(publisher, [b"PUBLISH", b"news.tech", b"hi"]) == 5
    message = Push([b"message", b"news.tech", b"hi"])
    assert first_out == [message]
    assert second_out == [message]
    assert both_out[0] == message
    assert sorted(both_out[1:], key=repr) == [
        Push([b"pmessage", b"*.tech", b"news.tech", b"hi"]),
        Push([b"pmessage", b"news.*", b"news.tech", b"hi"]),
    ]
    assert execute(publisher, [b"PUBLISH", b"nobody", b"hi"]) == 0


def test_messages_in_both_protocols() -> None:
    message = Push([b"message", b"c", b"hi"])
    pattern = Push([b"pmessage", b"c*", b"c", b"hi"])
    assert encode(message, True) == b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n"
    assert encode(message, False) == b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n"
    assert encode(pattern, True).startswith(b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n")
    assert encode(pattern, False).startswith(b"*4\r\n$8\r\npmessage\r\n")


def test_a_publisher_hears_itself_in_resp3() -> None:
    client, out = connect(State())
    client.resp3 = True
    execute(client, [b"SUBSCRIBE", b"c"])
    assert execute(client, [b"PUBLISH", b"c", b"me"]) == 1
    assert out[-1] == Push([b"message", b"c", b"me"])


def test_nothing_reaches_who_left() -> None:
    state = State()
    publisher, _ = connect(state)
    client, out = connect(state)
    execute(client, [b"SUBSCRIBE", b"c"])
    execute(client, [b"PSUBSCRIBE", b"c*"])
    execute(client, [b"UNSUBSCRIBE", b"c"])
    execute(client, [b"PUNSUBSCRIBE", b"c*"])
    out.clear()
    assert execute(publisher, [b"PUBLISH", b"c", b"x"]) == 0
    assert out == []
    execute(client, [b"SUBSCRIBE", b"c"])
    state.disconnect(client)
    assert execute(publisher, [b"PUBLISH", b"c", b"x"]) == 0


def test_unsubscribe_all_leaves_every_name_and_only_its_own() -> None:
    state = State()
    client, out = connect(state)
    other, _ = connect(state)
    execute(client, [b"SUBSCRIBE", b"a", b"b"])
    execute(client, [b"PSUBSCRIBE", b"p*"])
    execute(other, [b"SUBSCRIBE", b"a"])
    out.clear()
    state.unsubscribe_all(client)
    assert out == []  # it tells no one
    assert (client.channels, client.patterns, client.subscribed) == (set(), set(), 0)
    assert state.channels == {b"a": {other}}  # names nobody hears are gone
    assert state.patterns == {}
    state.unsubscribe_all(client)  # twice is harmless
    assert state.channels == {b"a": {other}}


def test_a_subscriber_dropped_mid_publish_does_not_break_the_loop() -> None:
    state = State()
    publisher, _ = connect(state)
    victims: list[Client] = []
    failing = False

    def drop(reply: Reply) -> None:  # a write that fails disconnects them all
        if failing:
            for victim in victims:
                state.disconnect(victim)

    victims += [state.connect(drop) for _ in range(3)]
    for victim in victims:
        execute(victim, [b"SUBSCRIBE", b"c"])
        execute(victim, [b"PSUBSCRIBE", b"*"])
    failing = True
    assert isinstance(execute(publisher, [b"PUBLISH", b"c", b"x"]), int)
    assert state.channels == {}
    assert state.patterns == {}


def test_resp2_subscribed_mode_allows_only_pubsub_commands() -> None:
    client, _ = connect(State())
    execute(client, [b"SUBSCRIBE", b"c"])
    assert execute(client, [b"PUBLISH", b"c", b"x"]) == Err(
        b"ERR Can't execute 'publish': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE"
        b" / PING / QUIT / RESET are allowed in this context"
    )
    execute(client, [b"UNSUBSCRIBE"])
    assert execute(client, [b"PUBLISH", b"c", b"x"]) == 0


def test_resp3_subscribed_mode_allows_everything() -> None:
    client, _ = connect(State())
    client.resp3 = True
    execute(client, [b"SUBSCRIBE", b"c"])
    assert execute(client, [b"PUBLISH", b"c", b"x"]) == 1


def test_arity() -> None:
    client, _ = connect(State())
    for argv in ([b"SUBSCRIBE"], [b"PSUBSCRIBE"], [b"PUBLISH", b"c"]):
        name = argv[0].lower()
        assert execute(client, argv) == Err(
            b"ERR wrong number of arguments for '%s' command" % name
        )


def test_no_reply_is_where_the_server_looks_for_it() -> None:
    import mqd.commands

    assert mqd.commands.NO_REPLY is NO_REPLY

"""mqd: a message-queue daemon on aiosock that speaks the Redis protocol.

Lists as queues (LPUSH, BLPOP, BLMOVE...), pub/sub fan-out, transactions,
an append-only log in RESP that a real Redis loads, in one process that
listens on TCP and Unix sockets at once. Run ``python examples/mqd
--help``; redis-cli, redis-py and redis-benchmark work with it unchanged.
"""

"""Every command family, imported so that each registers its commands."""

from mqd import connection, introspection, keys, lists, pubsub, transactions
from mqd.table import NO_REPLY

__all__ = [
    "NO_REPLY",
    "connection",
    "introspection",
    "keys",
    "lists",
    "pubsub",
    "transactions",
]

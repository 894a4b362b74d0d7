"""The daemon: aiosock servers in front of the command table and the log.

One :class:`Session` (an aiosock ``Protocol``) per connection turns each
decoded command into a reply through :func:`mqd.table.execute` and writes
it in the connection's RESP version. Around that, :class:`Daemon` keeps
what spans connections and time:

- blocked clients: a FIFO line per key; after every command that pushed,
  the lines of the keys it pushed to are served in order (Redis serves
  them after the pushing command completes, and so do we); a timer per
  blocked client gives it the timeout reply; a client that goes away is
  forgotten. Commands a blocked client pipelined wait their turn.
- the append-only log: writes are buffered as they happen and written at
  the end of the loop turn, and the replies of that turn wait for it; with
  ``appendfsync always`` they wait for one fsync too (group commit: one
  fsync serves every client of the turn).
- the idle timeout (``--timeout``), as Redis applies it: not to blocked
  clients nor to subscribers, which wait by design.
- shutdown: aiosock's own (``aiosock.run`` turns SIGTERM and SIGINT into
  ``Server.aclose``); each session is told, answers what it holds and
  closes; then the log is flushed, fsynced and closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import attrs

import aiosock
from aiosock import Limits, RemoteProtocolError, Transport
from mqd import aof, commands
from mqd.replies import Err, Reply, encode
from mqd.resp import ProtocolError, Resp
from mqd.table import Argv, Block, Client, State, execute

__all__ = ["Config", "Daemon", "Session"]

logger = logging.getLogger("mqd")

# A blocked client's pipelined commands wait in memory; past this many the
# socket is not read until it is served (as Redis stops reading it).
_PENDING_HIGH_WATER = 1024
# How often expired keys are swept and idle clients looked for (Redis's
# serverCron runs at hz 10).
_CRON_INTERVAL = 0.1


@attrs.frozen(kw_only=True)
class Config:
    """What the command line sets; the defaults are Redis's where it has one."""

    listen: list[str] = attrs.Factory(lambda: ["tcp://127.0.0.1:6380"])
    unix_mode: int = 0o700  # other users kept out of a Unix socket
    maxclients: int = 10000
    timeout: float = 0  # seconds idle before a client is closed; 0: never
    appendonly: str | None = None
    appendfsync: str = "everysec"
    requirepass: bytes | None = None
    grace: float = 10.0
    # The log is rewritten once it doubled and passed this (Redis's
    # auto-aof-rewrite-min-size); smaller for tests.
    rewrite_min_size: int = aof.REWRITE_MIN_SIZE


class Session(aiosock.Protocol[Argv]):
    """One client connection: commands in, replies out, in order."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.transport: Transport[Argv]
        self.client: Client
        self.block: Block | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._pending: collections.deque[Argv] = collections.deque()
        self.held: list[bytes] = []  # replies waiting for the log's fsync

    def connection_made(self, transport: Transport[Argv]) -> None:
        self.transport = transport
        address = transport.peer_address or transport.local_address
        self._state = self.daemon.state
        self.client = self._state.connect(self.deliver, str(address or ""))
        self.daemon.sessions.add(self)

    def message_received(self, message: Argv) -> None:
        if self.block is not None or self._pending:
            self._pending.append(message)
            if len(self._pending) == _PENDING_HIGH_WATER:
                self.transport.pause_reading()
            return
        self.run(message)

    def run(self, argv: Argv) -> None:
        # Once per command: what the common case reads is kept close.
        client = self.client
        result = execute(client, argv)
        if isinstance(result, Block):
            self.daemon.park(self, result)
        elif result is not commands.NO_REPLY:
            data = encode(result, client.resp3)
            if self.held or self.daemon.holding:
                self.daemon.write(self, data)
            else:
                self.transport.write(data)
        if client.close_after_reply:
            self.transport.close()
        if self._state.ready:
            self.daemon.serve_ready()

    def answer(self, reply: Reply) -> None:
        self.daemon.write(self, encode(reply, self.client.resp3))

    def deliver(self, reply: Reply) -> None:
        """Out of band: a pub/sub message, or a subscription's confirmation."""
        self.answer(reply)

    def resume(self) -> None:
        """Run what was pipelined while blocked, until blocked again."""
        while self._pending and self.block is None and not self.transport.is_closing():
            self.run(self._pending.popleft())
        if not self._pending and not self.transport.is_reading():
            self.transport.resume_reading()

    def framing_error(self, exc: RemoteProtocolError) -> bool:
        # Redis runs the commands before the fault (the adapter delivered
        # them), answers "-ERR Protocol error: ..." and closes.
        text = exc.text if isinstance(exc, ProtocolError) else str(exc).encode()
        self.daemon.write(self, b"-ERR %s\r\n" % text)
        # The commands before the fault may have written: their replies
        # leave only after the log has them, as always; then the close.
        self.daemon.commit()
        self.transport.close()
        return True

    def shutdown_requested(self) -> bool | None:
        # Every command received was run (they run as they arrive); what
        # a reply waits for is the log: write it, then let it close.
        self.daemon.commit()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.daemon.forget(self)


class Daemon:
    """The servers, the state, the log, and the timers that span clients."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = State(requirepass=config.requirepass)
        self.state.config[b"maxclients"] = str(config.maxclients).encode()
        self.state.config[b"timeout"] = str(int(config.timeout)).encode()
        self.sessions: set[Session] = set()
        self.state.blocked_clients = lambda: sum(
            s.block is not None for s in self.sessions
        )
        # Who is blocked on which key, in order; the state reads it too.
        self.blocked: dict[tuple[int, bytes], collections.deque[Session]] = {}
        self.state.waiting = self.blocked
        self.log: aof.AppendOnlyLog | None = None
        # Whether replies go through write() (there is a log to commit
        # first); without one a session writes straight to its transport.
        self.holding = False
        self._holding: set[Session] = set()
        self._commit_scheduled = False
        self._serving = False
        self._server: aiosock.Server | None = None
        self._cron: asyncio.TimerHandle | None = None
        self._idle_marks: dict[Session, int] = {}
        self._idle_since: dict[Session, float] = {}
        # Group commit, measured: fsyncs done and replies they released.
        self.fsyncs = 0
        self.fsynced_sessions = 0
        self.rewrites = 0  # of the log, done

    @property
    def addresses(self) -> list[aiosock.Address]:
        assert self._server is not None
        return self._server.addresses

    async def start(self) -> None:
        """Replay the log, then listen. Raises OSError naming an address."""
        config = self.config
        if config.appendonly is not None:
            self._load(config.appendonly)
            self.log = aof.AppendOnlyLog(
                config.appendonly,
                fsync=aof.Fsync(config.appendfsync),
                rewrite_min_size=config.rewrite_min_size,
            )
            self.state.log = self.log.append
            self.holding = True
            self.state.config[b"appendonly"] = b"yes"
        limits = Limits(max_connections=config.maxclients)
        self._server = await aiosock.create_server(
            lambda: Session(self),
            *config.listen,
            codec=Resp(),
            limits=limits,
            unix_mode=config.unix_mode,
        )
        tcp = [a for a in self._server.addresses if isinstance(a, aiosock.TCPAddress)]
        self.state.config[b"port"] = b"%d" % (tcp[0].port if tcp else 0)
        loop = asyncio.get_running_loop()
        self._cron = loop.call_later(_CRON_INTERVAL, self._tick)

    def _load(self, path: str) -> None:
        """Replay the log into the state, as Redis loads its AOF.

        Time stands still while loading (no key expires half way through a
        replay: a RENAME logged after an EXPIRE must find its key), and a
        change of database is a SELECT, so that a transaction logged across
        databases replays where it ran. Raises ``CorruptLog`` naming the
        offset of a record that does not parse or does not apply.
        """
        state = self.state
        replayer = state.connect(lambda _: None, "log")
        replayer.authenticated = True
        state.loading = True
        count = 0
        try:
            for record in aof.replay(path):
                if record.db != replayer.db_index:
                    execute(replayer, [b"SELECT", b"%d" % record.db])
                result = execute(replayer, record.argv)
                if isinstance(result, Err):
                    why = result.text.decode(errors="replace")
                    raise aof.CorruptLog(path, record.offset, f"it fails: {why}")
                if isinstance(result, Block):
                    raise aof.CorruptLog(path, record.offset, "it blocks")
                count += 1
        finally:
            state.loading = False
            state.disconnect(replayer)
        logger.info("loaded %d writes from %s", count, path)

    async def serve_forever(self) -> None:
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting, answer and close every client, close the log."""
        if self._cron is not None:
            self._cron.cancel()
            self._cron = None
        if self._server is not None:
            await self._server.aclose(self.config.grace)
        self.commit()
        if self.fsyncs:
            logger.info(
                "group commit: %d fsyncs released the replies of %d clients "
                "(%.1f per fsync)",
                self.fsyncs,
                self.fsynced_sessions,
                self.fsynced_sessions / self.fsyncs,
            )
        if self.log is not None:
            self.log.close()
            self.log = None
            self.state.log = None

    # ------------------------------------------------------------ replies

    def write(self, session: Session, data: bytes) -> None:
        """Send ``data`` now, or once the log has what the turn wrote.

        As in Redis, no reply leaves while writes of this turn are only in
        memory: they reach the file (and, with ``always``, the disk) at the
        end of the turn, and the replies after them. A process that dies
        has then acknowledged nothing the kernel does not have.
        """
        log = self.log
        if session.held or (log is not None and log.pending):
            session.held.append(data)
            self._holding.add(session)
            self._schedule_commit()
            return
        session.transport.write(data)

    def _schedule_commit(self) -> None:
        if not self._commit_scheduled:
            self._commit_scheduled = True
            asyncio.get_running_loop().call_soon(self.commit)

    def commit(self) -> None:
        """End of a loop turn: write the log (fsync it for ``always``), then
        release the replies that waited for it."""
        self._commit_scheduled = False
        log = self.log
        holding, self._holding = self._holding, set()
        if log is not None and log.pending:
            try:
                log.commit()
            except OSError as exc:
                # The writes are not durable: their replies must not say
                # they are. Redis exits here; cut those clients off instead.
                logger.error("writing the log failed: %s; closing its clients", exc)
                for session in holding:
                    session.held.clear()
                    session.transport.abort()
                return
            if log.policy is aof.Fsync.ALWAYS:
                self.fsyncs += 1
                self.fsynced_sessions += len(holding)
        for session in holding:
            self.flush_held(session)

    def flush_held(self, session: Session) -> None:
        if session.held and not session.transport.is_closing():
            session.transport.write(b"".join(session.held))
        session.held.clear()

    # ------------------------------------------------------------ blocking

    def park(self, session: Session, block: Block) -> None:
        """``session`` waits for one of ``block.keys`` to be pushed to."""
        session.block = block
        db = session.client.db_index
        for key in block.keys:
            self.blocked.setdefault((db, key), collections.deque()).append(session)
        if block.timeout > 0:
            loop = asyncio.get_running_loop()
            session._timer = loop.call_later(block.timeout, self._time_out, session)

    def unpark(self, session: Session) -> None:
        block = session.block
        if block is None:
            return
        session.block = None
        if session._timer is not None:
            session._timer.cancel()
            session._timer = None
        db = session.client.db_index
        for key in block.keys:
            line = self.blocked.get((db, key))
            if line is not None:
                with contextlib.suppress(ValueError):  # the key named twice
                    line.remove(session)
                if not line:
                    del self.blocked[(db, key)]

    def _time_out(self, session: Session) -> None:
        block = session.block
        assert block is not None
        self.unpark(session)
        session.answer(block.timeout_reply)
        session.resume()

    def serve_ready(self) -> None:
        """Serve clients blocked on keys that were pushed to, first come first."""
        if self._serving:  # a served client's next command pushed: same loop
            return
        self._serving = True
        state = self.state
        try:
            while state.ready:
                ready = list(state.ready)
                state.ready.clear()
                for db_key in ready:
                    line = self.blocked.get(db_key)
                    while line:
                        session = line[0]
                        block = session.block
                        assert block is not None
                        reply = block.retry()
                        if reply is None:
                            break  # nothing left for the next one either
                        self.unpark(session)
                        session.answer(reply)
                        session.resume()
                        line = self.blocked.get(db_key)
        finally:
            self._serving = False

    def forget(self, session: Session) -> None:
        """The connection is gone: unblock it, drop its state."""
        self.unpark(session)
        self.sessions.discard(session)
        self._holding.discard(session)
        self._idle_marks.pop(session, None)
        self._idle_since.pop(session, None)
        self.state.disconnect(session.client)

    # ------------------------------------------------------------ cron

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        for db in self.state.dbs:
            if db.expires:
                db.expire_some()
        if self.config.timeout > 0:
            self._close_idle(loop.time())
        log = self.log
        if log is not None:
            if log.poll_rewrite():
                self.rewrites += 1
            if log.rewrite_needed():
                dbs = self.state.dbs
                log.start_rewrite(lambda: aof.rewrite_commands(dbs))
        self._cron = loop.call_later(_CRON_INTERVAL, self._tick)

    def _close_idle(self, now: float) -> None:
        timeout = self.config.timeout
        for session in list(self.sessions):
            if session.block is not None or session.client.subscribed:
                self._idle_since.pop(session, None)
                continue
            # Replies sent: a client that asks nothing gets none.
            done = session.transport.messages_out
            if self._idle_marks.get(session) != done:
                self._idle_marks[session] = done
                self._idle_since[session] = now
            elif now - self._idle_since[session] >= timeout:
                logger.debug(
                    "closing %s: idle for %g s", session.client.address, timeout
                )
                session.transport.close()


def run_with(
    config: Config, ready: Callable[[Daemon], None] = lambda _: None
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The coroutine function ``aiosock.run`` runs for ``config``."""

    async def main() -> None:
        daemon = Daemon(config)
        try:
            await daemon.start()
        except BaseException:
            await daemon.aclose()
            raise
        ready(daemon)
        await daemon.serve_forever()

    return main

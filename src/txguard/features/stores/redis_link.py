"""A lean Redis link on an event loop: pipelined commands out, hiredis-parsed replies in.

``RedisStore.execute_many_async`` sends a batch's EVALSHAs over one of these instead of handing the
batch to a worker thread (which must win the GIL back from the busy event loop for every batch;
ADR 0007). It is deliberately small: a plain non-blocking ``socket.socket`` to the server of the
store's redis-py client, one request in flight (the scoring pipeline's Coalescer serialises
batches already; other concurrent callers on the loop take turns), replies parsed by ``hiredis.Reader`` in the loop's reader callback. Not redis-py's
asyncio client (ADR 0006 measured it without gain).

Lifetime. A link belongs to the loop it was made on and is registered with that loop
(``add_reader``/``add_writer``) only while a round trip is in flight. An idle link therefore holds
nothing of its loop, and closing it — from any thread, with its loop running, stopped or already
closed — is closing its socket. A close that lands mid-flight from the loop's own thread (or with
the loop stopped) unregisters the socket and fails the waiting round trip with DependencyError;
from another thread while the loop runs, it is scheduled on the loop (``call_soon_threadsafe``)
and waited for briefly.

Failures (all ``DependencyError``; the link is dropped and the next call reconnects):
- connect (and AUTH/SELECT) not done within the connect timeout;
- no complete answer within the read timeout (the client's ``socket_timeout``);
- the connection found closed before a batch is sent (``CLIENT KILL``, a server restart): the
  link reconnects and sends, nothing was lost;
- the connection lost after a batch was sent and before every reply came: NOT resent. Some of
  its transactions may have been applied; sending them again would replay them
  (``first_seen`` False, which the pipeline treats as a duplicate of an earlier request). The
  batch fails like a timeout, and the pipeline's state-store policy decides (fail open/closed).
  redis-py's synchronous pipeline (the threaded path) retries such a batch once instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import weakref
from typing import Any

import hiredis
from hiredis import pack_command

from txguard.domain.errors import DependencyError

_RECV = 1 << 16
_CLOSE_WAIT_S = 1.0  # how long a close from another thread waits for the loop to run it


class Endpoint:
    """Where and how to connect: from a redis-py client's pool, or None where the pool is not
    plain TCP (unix socket, TLS, Sentinel, a custom connection class, a credential provider)."""

    __slots__ = ("auth", "connect_timeout", "db", "host", "port", "read_timeout")

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        auth: tuple[str, ...] = (),
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.host, self.port, self.db, self.auth = host, port, db, auth
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout

    @classmethod
    def of_client(cls, client: Any, *, timeout_s: float) -> Endpoint | None:
        import redis
        from redis.connection import Connection

        pool: Any = getattr(client, "connection_pool", None)
        if not isinstance(client, redis.Redis) or type(pool) not in (
            redis.ConnectionPool,
            redis.BlockingConnectionPool,
        ):
            return None
        if pool.connection_class is not Connection:  # exactly TCP: no SSL, unix, Sentinel
            return None
        kw = pool.connection_kwargs
        if kw.get("credential_provider") is not None or "host" not in kw:
            return None
        password, username = kw.get("password"), kw.get("username")
        auth: tuple[str, ...] = ()
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
        read = kw.get("socket_timeout") or timeout_s
        return cls(
            str(kw["host"]),
            int(kw.get("port") or 6379),
            db=int(kw.get("db") or 0),
            auth=auth,
            connect_timeout=kw.get("socket_connect_timeout") or read,
            read_timeout=read,
        )


class RedisLink:
    """One connection on one event loop; ``await roundtrip(commands)`` → their replies, an
    error reply as a ``hiredis.ReplyError`` in its place. Not thread-safe except ``close``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, endpoint: Endpoint) -> None:
        self._loop_ref = weakref.ref(loop)
        self._endpoint = endpoint
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._lock = threading.Lock()  # busy/closed between the loop's thread and a closer
        self._busy = False  # a round trip (connect included) is running on the loop
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._replies: list[Any] = []
        self._want = 0
        self._out = b""  # what is left to send after a partial write
        self._idle = threading.Event()  # set whenever no round trip runs
        self._idle.set()
        self._turn = asyncio.Lock()  # concurrent callers on the loop: one round trip at a time

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop_ref()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        """The socket's descriptor, -1 if none is open (for tests)."""
        return self._sock.fileno() if self._sock is not None else -1

    def sockname(self) -> tuple[str, int] | None:
        """Our end of the connection as the server sees it (``CLIENT KILL ADDR``), if open."""
        return self._sock.getsockname() if self._sock is not None else None

    # ------------------------------------------------------------------ round trips

    async def roundtrip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        data = b"".join([pack_command(c) for c in commands])
        async with self._turn:  # uncontended under the pipeline: one batch in flight
            return await self._roundtrip(data, len(commands))

    async def _roundtrip(self, data: bytes, n: int) -> list[Any]:
        with self._lock:
            if self._closed:
                raise DependencyError("feature store (redis) failed: link closed")
            self._busy = True
            self._idle.clear()
        try:
            if self._sock is None or not self._alive():
                await self._connect()
            return await self._exchange(data, n, self._endpoint.read_timeout)
        except BaseException:  # failed or cancelled: the connection may be out of step
            self._drop()
            raise
        finally:
            with self._lock:
                self._busy = False
                if self._closed:
                    self._drop()
                self._idle.set()

    def _alive(self) -> bool:
        """An idle connection has nothing to read: EOF or stray bytes mean it is unusable
        (killed, server restarted) — found here, before a batch is sent on it."""
        sock = self._sock
        assert sock is not None
        try:
            sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            pass
        self._drop()
        return False

    async def _connect(self) -> None:
        ep = self._endpoint
        loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader()
        try:
            async with asyncio.timeout(ep.connect_timeout):
                if ":" in ep.host or ep.host.replace(".", "").isdigit():
                    family = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
                    addr: Any = (ep.host, ep.port)
                else:  # a name: resolved in the loop's executor
                    infos = await loop.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
                    family, addr = infos[0][0], infos[0][4]
                sock = self._sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, addr)
        except (OSError, TimeoutError) as e:
            raise DependencyError(
                f"feature store (redis) failed: connect to {ep.host}:{ep.port}: {e!r}"
            ) from e
        hello: list[tuple[Any, ...]] = []
        if ep.auth:
            hello.append(ep.auth)
        if ep.db:
            hello.append(("SELECT", ep.db))
        if hello:
            data = b"".join([pack_command(c) for c in hello])
            for r in await self._exchange(data, len(hello), ep.connect_timeout):
                if isinstance(r, Exception):
                    raise DependencyError(f"feature store (redis) failed: connect: {r}")

    async def _exchange(self, data: bytes, n: int, timeout: float) -> list[Any]:
        """Send ``data`` (n commands) and wait for n replies, at most ``timeout`` seconds."""
        if self._closed:  # closed from the loop's thread while this call was connecting
            raise DependencyError("feature store (redis) failed: link closed")
        loop = asyncio.get_running_loop()
        sock = self._sock
        assert sock is not None
        fd = sock.fileno()
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            raise DependencyError(f"feature store (redis) failed: send: {e!r}") from e
        waiter = self._waiter = loop.create_future()
        self._replies = []
        self._want = n
        if sent < len(data):  # a full socket buffer: the rest when it is writable
            self._out = data[sent:]
            loop.add_writer(fd, self._on_writable)
        loop.add_reader(fd, self._on_readable)
        timer = loop.call_later(timeout, self._on_timeout, waiter, timeout)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
            if self._sock is sock:  # not already unregistered and closed by close()
                self._unregister(loop, fd)
        replies, self._replies = self._replies, []
        return replies

    def _unregister(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        if self._out:
            self._out = b""
            loop.remove_writer(fd)
        loop.remove_reader(fd)

    def _on_writable(self) -> None:
        sock, waiter = self._sock, self._waiter
        if sock is None or waiter is None or waiter.done():
            return
        try:
            sent = sock.send(self._out)
        except BlockingIOError:
            return
        except OSError as e:
            waiter.set_exception(DependencyError(f"feature store (redis) failed: send: {e!r}"))
            return
        self._out = self._out[sent:]
        if not self._out:
            loop = self.loop
            if loop is not None:
                loop.remove_writer(sock.fileno())

    def _on_readable(self) -> None:
        sock, waiter = self._sock, self._waiter
        if sock is None or waiter is None or waiter.done():
            return
        try:
            data = sock.recv(_RECV)
        except BlockingIOError:
            return
        except OSError as e:
            waiter.set_exception(DependencyError(f"feature store (redis) failed: recv: {e!r}"))
            return
        if not data:  # the server closed the connection: a sent batch is not resent
            waiter.set_exception(
                DependencyError("feature store (redis) failed: connection closed by the server")
            )
            return
        reader = self._reader
        reader.feed(data)
        replies = self._replies
        try:
            while len(replies) < self._want:
                r = reader.gets()
                if r is False:
                    return
                replies.append(r)
        except hiredis.ProtocolError as e:
            waiter.set_exception(DependencyError(f"feature store (redis) failed: {e}"))
            return
        waiter.set_result(None)

    @staticmethod
    def _on_timeout(waiter: asyncio.Future[None], timeout: float) -> None:
        if not waiter.done():
            waiter.set_exception(
                DependencyError(f"feature store (redis) failed: no answer within {timeout} s")
            )

    # ------------------------------------------------------------------ lifetime

    def _drop(self) -> None:
        """Close the connection (the link stays usable unless closed: the next call
        reconnects). Only while nothing is registered with the loop, or from its thread."""
        sock, self._sock = self._sock, None
        self._reader = None
        if sock is not None:
            sock.close()

    def _abort(self) -> None:
        """On the loop's thread (or with the loop stopped): fail the round trip in flight and
        free the socket. While it connects, asyncio's own registration holds the socket: the
        round trip frees it when the connect ends (bounded by the connect timeout)."""
        waiter = self._waiter
        if waiter is None:
            return
        if not waiter.done():
            waiter.set_exception(DependencyError("feature store (redis) failed: link closed"))
        loop, sock = self.loop, self._sock
        if loop is not None and sock is not None and not loop.is_closed():
            self._unregister(loop, sock.fileno())
        self._drop()

    def close(self) -> None:
        """Close from any thread, in any state (see the module docstring). Idempotent."""
        loop = self.loop
        with self._lock:
            self._closed = True
            if not self._busy:
                self._drop()
                return
            if loop is None or loop.is_closed():  # its loop is gone: nothing registered lives
                self._drop()
                return
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop or not loop.is_running():
                self._abort()
                return
        # busy on a loop running in another thread: fail the round trip there, and wait for
        # it to let the socket go (bounded: that loop may be blocked waiting for this thread)
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loop.call_soon_threadsafe(self._abort)
        if not self._idle.wait(_CLOSE_WAIT_S):
            return  # the round trip's own timeout ends it; it closes the socket then

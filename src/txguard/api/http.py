"""The HTTP/1.1 protocol ``txguard serve`` runs: uvicorn's httptools protocol, one write per answer.

uvicorn writes a response's head (status line and headers) to the socket when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send`` system
calls and two TCP segments per answer. On loopback and on a busy host each write is paid by the
server (the kernel runs the receiver's side of the segment in the sender's call) and again by
the client that wakes for it. :class:`OneWriteHttpToolsProtocol` hands uvicorn's protocol a
transport that keeps a response head back until the next write, so head and body leave in ONE
write; a head that nothing follows in the same event-loop step (an answer to ``HEAD``, a 204, a
streamed body that is slow to come, ``100 Continue``) is written on the loop's next step. Bytes
keep their order; nothing else about the protocol changes.

Measured (``benchmarks/bench_http.py``-style wrk runs of a bare ASGI echo on this 2-core VM,
alternating): ~10-15 µs less server CPU per request and about half the packets.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD = b"HTTP/"  # every response head uvicorn writes starts with its status line


class OneWriteTransport:
    """An ``asyncio.Transport`` in front of another that joins a response head to the write
    after it (see the module doc). Everything but ``write``/``close`` goes to the real one."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif data[:5] == _HEAD:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)  # written by then at the latest
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write a held head now (no-op when none is held)."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # the rest of the Transport interface
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol over a :class:`OneWriteTransport`
    (``uvicorn.run(..., http="txguard.api.http:OneWriteHttpToolsProtocol")``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWriteTransport(transport, self.loop))  # type: ignore[arg-type]

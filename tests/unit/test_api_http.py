"""api.http: uvicorn's own HTTP/1.1 protocol code over the one-write transport. Head and body of
an answer leave in ONE write; a head nothing follows at once is still written (next loop step);
bytes keep their order over keep-alive requests."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from txguard.api.http import OneWriteHttpToolsProtocol, OneWriteTransport


class FakeTransport:
    """Records what the protocol writes (the socket side of asyncio.Transport)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


async def app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if scope["path"] == "/slow":  # the body comes a loop step or more after the head
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"late", "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})
        return
    out = body + b"!"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(out))],
        }
    )
    await send({"type": "http.response.body", "body": out})


async def _until(cond: Any) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("timed out")


def test_head_and_body_leave_in_one_write_and_nothing_is_held_back() -> None:
    async def go() -> None:
        config = Config(app=app, http=OneWriteHttpToolsProtocol, lifespan="off", log_level="error")
        config.load()
        proto = OneWriteHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        t = FakeTransport()
        proto.connection_made(t)  # type: ignore[arg-type]
        try:
            proto.data_received(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
            await _until(lambda: t.writes)
            await asyncio.sleep(0.01)
            assert len(t.writes) == 1
            assert t.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
            assert t.writes[0].endswith(b"\r\n\r\nhi!")

            # HEAD: uvicorn writes the head and no body; it must still go out
            proto.data_received(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
            await _until(lambda: len(t.writes) == 2)
            assert t.writes[1].startswith(b"HTTP/1.1 200 OK\r\n")
            assert t.writes[1].endswith(b"\r\n\r\n")

            # a streamed body that comes later: the head first, on its own, then the chunks
            proto.data_received(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            await _until(lambda: len(t.writes) >= 4 and t.writes[-1].endswith(b"0\r\n\r\n"))
            assert t.writes[2].startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"transfer-encoding: chunked" in t.writes[2]
            assert b"".join(t.writes[3:]) == b"4\r\nlate\r\n1\r\n!\r\n0\r\n\r\n"
        finally:
            proto.connection_lost(None)
            if proto.timeout_keep_alive_task is not None:
                proto.timeout_keep_alive_task.cancel()

    asyncio.run(go())


def test_the_transport_keeps_order_and_flushes_on_close() -> None:
    async def go() -> None:
        t = FakeTransport()
        ow = OneWriteTransport(t, asyncio.get_running_loop())  # type: ignore[arg-type]
        ow.write(b"plain")
        ow.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert t.writes == [b"plain"]  # the head waits for what follows
        ow.write(memoryview(b"next"))
        assert t.writes == [b"plain", b"HTTP/1.1 204 No Content\r\n\r\nnext"]
        ow.write(b"HTTP/1.1 200 OK\r\n\r\n")
        ow.close()  # closing writes what is held first
        assert t.writes[-1] == b"HTTP/1.1 200 OK\r\n\r\n"
        assert t.closed and ow.is_closing()
        await asyncio.sleep(0)  # the scheduled flushes find nothing left to write
        assert len(t.writes) == 3

    asyncio.run(go())

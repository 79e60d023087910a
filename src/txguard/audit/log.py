"""The audit log: durable before the response, with group commit.

Callers ``submit`` records from any thread (or ``await append`` from the event loop). One writer
thread takes everything queued — up to ``max_batch`` records — and hands it to the store, which
writes the batch in ONE transaction and commits once (SQLite WAL with ``synchronous=FULL``, or a
PostgreSQL commit); only then are the callers' futures resolved. While one commit is in flight
new records queue up, so under load many requests share each commit and durability costs little
throughput; an idle log commits a single record at once (no waiting for a batch to fill).

The writer is also the one place the chain is extended in this process, so chain order equals
``seq`` order; across processes or replicas the store's lock (SQLite's write lock, PostgreSQL's
``pg_advisory_xact_lock``) serialises batches and each batch reads the head inside the lock.

On PostgreSQL an event loop gets its own group-commit writer (``loop_writer``, on by default
there): ``append``/``append_many`` called on a running loop queue on that loop, and everything
queued while its commit is in flight becomes its next commit, driven by the loop itself
(``append_batch_async``: libpq non-blocking, no thread to wake, futures resolved directly). The
thread stays for ``submit``/``append_sync`` callers and for SQLite (file I/O and fsync block);
the two writers of one process are serialised like two replicas (the lock and the head guard).

``append_many`` hands the writer a whole micro-batch (e.g. the concurrent requests the scoring
pipeline gathered) as ONE queue item with ONE waiter: per record the caller pays only
``records.prepare``; the future, the queue put and the wake-up of the event loop are paid once.

>>> import tempfile, os
>>> log = open_audit_log(os.path.join(tempfile.mkdtemp(), "audit.sqlite3"))
>>> log.verify().ok
True
>>> log.close()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, overload

import orjson

from txguard.audit.chain import VerifyReport, verify_rows
from txguard.audit.records import AuditRecord, prepare
from txguard.audit.stores.base import (
    AuditStore,
    Filters,
    LoopAppendStore,
    Pending,
    running_loop,
)
from txguard.domain.errors import (
    ConflictError,
    DependencyError,
    FieldError,
    TxguardError,
    ValidationError,
)

_STOP = object()
MAX_QUERY_LIMIT = 1000


class _Many:
    """The one waiter of an ``append_many`` call: its records sit contiguously in the queue,
    possibly resolved over several commits (in queue order by one writer; in any order when
    ``close`` hands a loop's leftovers to the thread), each into its own slot; the asyncio
    future is settled when the last one is in."""

    __slots__ = ("fut", "left", "loop", "results", "return_exceptions", "slot")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[Any],
        pending: list[Pending],
        return_exceptions: bool,
    ) -> None:
        self.loop = loop
        self.fut = fut
        self.results: list[Any] = [None] * len(pending)
        self.slot = {id(p): i for i, p in enumerate(pending)}
        self.left = len(pending)
        self.return_exceptions = return_exceptions

    def outcome(self) -> Any:
        """The list of results, or (without ``return_exceptions``) the first error among them."""
        if not self.return_exceptions:
            for res in self.results:
                if isinstance(res, BaseException):
                    return res
        return self.results


class _LoopWriter:
    """The group-commit writer of one event loop: records queued on the loop while its commit
    is in flight become its next commit (one commit in flight; ``task`` runs while the queue
    is not empty). ``idle`` lets ``close`` on another thread wait for it."""

    __slots__ = ("idle", "loop", "queue", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[tuple[Pending, Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.idle = threading.Event()
        self.idle.set()


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, num = text.partition(":")
        if prefix != "seq":
            raise ValueError(prefix)
        seq = int(num)
        if seq < 0:
            raise ValueError(num)
        return seq
    except (ValueError, UnicodeDecodeError):
        raise ValidationError([FieldError("cursor", "not a cursor returned by query")]) from None


class AuditLog:
    """An append-only, hash-chained decision log over one store (see module doc)."""

    def __init__(
        self,
        store: AuditStore,
        *,
        max_batch: int = 256,
        linger_s: float = 0.0,
        linger_from: int = 8,
        loop_writer: bool | None = None,
    ) -> None:
        """``loop_writer``: commit ``append``/``append_many`` from the caller's event loop when
        the store can (``LoopAppendStore``: PostgreSQL); None = whenever it can, False = always
        in the writer thread. Ignored for a store without that path (SQLite)."""
        if max_batch < 1:
            raise ValidationError([FieldError("max_batch", "must be at least 1")])
        self._store = store
        self._max_batch = max_batch
        # wait up to linger_s for more records, only after a commit of >= linger_from records
        # and while this batch is under half that size (see _run); linger_s=0 disables it
        self._linger_s = linger_s
        self._linger_from = linger_from if linger_s > 0 else max_batch + 1
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._append_async = (
            store.append_batch_async
            if loop_writer is not False and isinstance(store, LoopAppendStore)
            else None
        )
        self._loop_writers: dict[asyncio.AbstractEventLoop, _LoopWriter] = {}
        self._stopped = False  # the writer thread was told to stop (under _close_lock)
        self.commits = 0  # batches committed (for metrics and the benchmark)
        self.appended = 0  # rows added (duplicates resolved to the first record are not rows)
        self._writer = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._writer.start()

    @property
    def store(self) -> AuditStore:
        return self._store

    @property
    def loop_writer(self) -> bool:
        """Whether ``append``/``append_many`` commit from the caller's event loop."""
        return self._append_async is not None

    # ------------------------------------------------------------------ writing

    def submit(self, record: AuditRecord) -> Future[AuditRecord]:
        """Queue a record; the future resolves with the stored record (seq and hash set) once
        the batch holding it is committed durably — or with the FIRST record stored for the
        same transaction id. Invalid records are refused here, before they can fail a batch."""
        fut: Future[AuditRecord] = Future()
        self._enqueue(record, fut)
        return fut

    def _enqueue(self, record: AuditRecord, waiter: Any) -> None:
        self._put((_pending(record), waiter))

    def _put(self, item: Any) -> None:
        with self._close_lock:
            if self._closed:
                raise ConflictError("audit log is closed")
            self._queue.put(item)

    async def append(self, record: AuditRecord) -> AuditRecord:
        """Durably append (asyncio); returns the stored record.

        With the loop writer the record joins this loop's next commit and the future is
        resolved on the loop; otherwise the writer thread resolves every asyncio waiter of a
        batch with ONE ``call_soon_threadsafe`` per event loop (a ``wrap_future`` per record
        cost a self-pipe write and two callbacks each). Cancelling the awaiting task does not
        withdraw the record: it is committed anyway, and a retry resolves to it (idempotency
        by transaction id)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AuditRecord] = loop.create_future()
        item = (_pending(record), (loop, waiter))
        if self._append_async is None:
            self._put(item)
        else:
            self._put_loop(loop, [item])
        return await waiter

    @overload
    async def append_many(
        self, records: Sequence[AuditRecord], *, return_exceptions: Literal[False] = False
    ) -> list[AuditRecord]: ...

    @overload
    async def append_many(
        self, records: Sequence[AuditRecord], *, return_exceptions: Literal[True]
    ) -> list[AuditRecord | TxguardError]: ...

    async def append_many(
        self, records: Sequence[AuditRecord], *, return_exceptions: bool = False
    ) -> list[AuditRecord] | list[AuditRecord | TxguardError]:
        """Durably append several records (asyncio) with ONE waiter; returns the stored records
        in input order once every commit holding them is durable.

        Per record the semantics are ``append``'s: a transaction id already stored, or earlier
        in this call, resolves to the FIRST record stored for it. The call is all or nothing
        at the door: every record is validated and prepared first, and if any is invalid the
        call raises ``ValidationError`` (fields named ``records[i].field``) and enqueues
        NOTHING — so a caller can fall back to appending the valid ones. After that, a record
        can still fail on its own (a decision id reused for another transaction:
        ``ConflictError``; a failed commit: ``DependencyError``): by default the first such
        error is raised once all are resolved (the others are committed and a retry resolves
        to them); with ``return_exceptions=True`` the error takes that record's place in the
        list instead, as in ``asyncio.gather``. The records keep their order and share
        commits with other callers; more than ``max_batch`` are split over several commits."""
        n = len(records)
        if n == 0:
            return []
        pending: list[Pending] = []
        errors: list[FieldError] = []
        for i, record in enumerate(records):
            try:
                pending.append(_pending(record))
            except ValidationError as e:
                errors.extend(FieldError(f"records[{i}].{f.loc}", f.message) for f in e.errors)
        if errors:
            raise ValidationError(errors, title="invalid audit record")
        loop = asyncio.get_running_loop()
        many = _Many(loop, loop.create_future(), pending, return_exceptions)
        items = [(p, many) for p in pending]
        if self._append_async is None:
            self._put(items)  # one queue item: the writer takes it whole
        else:
            self._put_loop(loop, items)
        result: list[AuditRecord] = await many.fut
        return result

    def _put_loop(self, loop: asyncio.AbstractEventLoop, items: list[tuple[Pending, Any]]) -> None:
        with self._close_lock:
            if self._closed:
                raise ConflictError("audit log is closed")
            lw = self._loop_writers.get(loop)
            if lw is None:
                lw = self._new_loop_writer(loop)
            lw.queue += items
            if lw.task is None:  # starts on the loop's next step: what this step queues joins
                lw.idle.clear()
                lw.task = loop.create_task(self._drain(lw))

    def _new_loop_writer(self, loop: asyncio.AbstractEventLoop) -> _LoopWriter:
        # (under _close_lock) forget writers of loops that have ended: they hold nothing
        for old in [lw for lw in self._loop_writers.values() if lw.loop.is_closed()]:
            if not old.queue:
                del self._loop_writers[old.loop]
        lw = self._loop_writers[loop] = _LoopWriter(loop)
        return lw

    async def _drain(self, lw: _LoopWriter) -> None:
        """Commit this loop's queue, ``max_batch`` at a time, one commit in flight."""
        batch: list[tuple[Pending, Any]] = []
        try:
            while True:
                with self._close_lock:
                    batch = lw.queue[: self._max_batch]
                    del lw.queue[: self._max_batch]
                    if not batch:
                        lw.task = None
                        lw.idle.set()
                        return
                await self._commit_async(lw.loop, batch)
                batch = []
        except BaseException:
            # cancelled (the loop is shutting down): nothing is withdrawn — the batch in flight
            # (outcome unknown: a commit of the same transaction ids resolves to the stored
            # records) and the rest of the queue go to the writer thread
            with self._close_lock:
                rest, lw.queue = batch + lw.queue, []
                lw.task = None
            self._hand_to_thread(rest)
            lw.idle.set()
            raise

    async def _commit_async(
        self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Pending, Any]]
    ) -> None:
        assert self._append_async is not None
        resolved = False

        def committed(results: list[Any]) -> None:
            # from the store's socket callback: the waiters run a loop step sooner
            nonlocal resolved
            resolved = True
            self._committed(batch, results, local=loop)

        try:
            results = await self._append_async([p for p, _ in batch], committed=committed)
        except TxguardError as e:
            results = [e] * len(batch)
        except Exception as e:  # a driver error the store did not map: still fail, never hang
            results = [DependencyError(f"audit store failed: {type(e).__name__}: {e}")] * len(batch)
        else:
            if not resolved:
                committed(results)
            return
        _resolve(batch, results, local=loop)

    def _hand_to_thread(self, items: list[tuple[Pending, Any]]) -> None:
        if not items:
            return
        with self._close_lock:
            if not self._stopped:
                self._queue.put(items)
                return
        err = DependencyError("audit log closed before the record was committed")
        _resolve(items, [err] * len(items))

    def append_sync(self, record: AuditRecord, *, timeout: float | None = None) -> AuditRecord:
        """Durably append, blocking the calling thread."""
        return self.submit(record).result(timeout=timeout)

    def _run(self) -> None:
        get, get_nowait, max_batch = self._queue.get, self._queue.get_nowait, self._max_batch
        stop = False
        last_size = 0
        while not stop:
            first = get()
            if first is _STOP:
                break
            # a list is one append_many call: its records travel (and are taken) together
            batch = first if type(first) is list else [first]
            deadline = 0.0
            while len(batch) < max_batch:
                try:
                    item = get_nowait()
                except queue.Empty:
                    # adaptive linger: only when the previous commit was large (load is high,
                    # callers already wait about a commit each) and this batch is still under
                    # half its size; at most linger_s per batch — an idle log never waits
                    if last_size < self._linger_from or len(batch) * 2 > last_size:
                        break
                    now = time.monotonic()
                    if not deadline:
                        deadline = now + self._linger_s
                    if now >= deadline:
                        break
                    try:
                        item = get(timeout=deadline - now)
                    except queue.Empty:
                        break
                if item is _STOP:
                    stop = True  # commit what was taken, then stop
                    break
                if type(item) is list:
                    batch.extend(item)
                else:
                    batch.append(item)
            last_size = len(batch)
            # an append_many can carry the batch past max_batch: commit it in max_batch slices
            for i in range(0, len(batch), max_batch):
                chunk = batch[i : i + max_batch]
                try:
                    self._commit(chunk)
                except Exception as e:  # never let the writer die: later appends would hang
                    err = DependencyError(f"audit writer failed: {type(e).__name__}: {e}")
                    _resolve(chunk, [err] * len(chunk))

    def _commit(self, batch: list[tuple[Pending, Any]]) -> None:
        # asyncio waiters (a tuple or a _Many) cannot be withdrawn; a concurrent future can
        live = [
            item
            for item in batch
            if type(item[1]) is not Future or item[1].set_running_or_notify_cancel()
        ]
        if not live:
            return
        try:
            results = self._store.append_batch([p for p, _ in live])
        except TxguardError as e:
            _resolve(live, [e] * len(live))
            return
        except Exception as e:  # a driver error the store did not map: still fail, never hang
            err = DependencyError(f"audit store failed: {type(e).__name__}: {e}")
            _resolve(live, [err] * len(live))
            return
        self._committed(live, results)

    def _committed(
        self,
        batch: list[tuple[Pending, Any]],
        results: list[Any],
        *,
        local: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Count a committed batch (rows added: not the records resolved to an earlier one)
        and resolve its waiters (directly on ``local``, the loop this runs on)."""
        self.commits += 1
        for (p, _), res in zip(batch, results, strict=True):
            if type(res) is AuditRecord and res.decision_id == p.record.decision_id:
                self.appended += 1
        _resolve(batch, results, local=local)

    def close(self) -> None:
        """Stop accepting records, commit everything queued, then close the store. From any
        thread: a loop writer whose loop is running drains its queue on the loop (this waits
        for it); one whose loop has stopped, or whose loop is this thread's, hands its queue to
        the writer thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            writers = list(self._loop_writers.values())
        here = running_loop()
        for lw in writers:
            loop = lw.loop
            if loop is not here:
                while not lw.idle.wait(0.05) and loop.is_running():
                    pass
            with self._close_lock:
                rest, lw.queue = lw.queue, []
            self._hand_to_thread(rest)
        with self._close_lock:
            self._stopped = True
            self._queue.put(_STOP)
        self._writer.join()
        self._store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def get(self, decision_id: str) -> AuditRecord | None:
        return self._store.get(decision_id)

    def get_by_transaction(self, transaction_id: str) -> AuditRecord | None:
        return self._store.get_by_transaction(transaction_id)

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        entity: str | None = None,
        model_version: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[AuditRecord], str | None]:
        """Records in seq order matching every filter given (``since`` inclusive, ``until``
        exclusive, on ``decided_at``; ``entity`` is the sender account id). Returns one page
        and the cursor of the next page (None at the end)."""
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ValidationError([FieldError("limit", f"must be 1..{MAX_QUERY_LIMIT}")])
        for name, ts in (("since", since), ("until", until)):
            if ts is not None and ts.tzinfo is None:
                raise ValidationError([FieldError(name, "timestamp has no time zone")])
        after = decode_cursor(cursor) if cursor else 0
        filters = Filters(since, until, action, entity, model_version)
        page = self._store.query(filters, after_seq=after, limit=limit + 1)
        if len(page) > limit:
            page = page[:limit]
            return page, encode_cursor(page[-1].seq)
        return page, None

    def iter_records(self, **filters: Any) -> Iterator[AuditRecord]:
        cursor: str | None = None
        while True:
            page, cursor = self.query(**filters, cursor=cursor, limit=MAX_QUERY_LIMIT)
            yield from page
            if cursor is None:
                return

    def export(self, fp: IO[str] | IO[bytes], **filters: Any) -> int:
        """Write matching records as JSONL (one record with its chain fields per line, sorted
        keys); returns the number written."""
        binary = not isinstance(fp, io.TextIOBase) and "b" in getattr(fp, "mode", "b")
        write: Any = fp.write
        n = 0
        for rec in self.iter_records(**filters):
            line = orjson.dumps(rec.to_dict(), option=orjson.OPT_SORT_KEYS) + b"\n"
            write(line if binary else line.decode())
            n += 1
        return n

    def verify(self, *, anchor: tuple[int, str] | None = None) -> VerifyReport:
        """Recompute the whole chain from one consistent snapshot (see ``chain.verify_rows``);
        ``anchor`` = a (seq, hash) kept outside the database that the chain must pass through."""
        with self._store.snapshot() as (head, rows):
            return verify_rows(rows, head=head, anchor=anchor)


def _pending(record: AuditRecord) -> Pending:
    """A record checked and prepared for the writer: all per-record CPU the caller can do,
    done by the caller; an invalid record is refused here, before it can fail a batch."""
    if not isinstance(record, AuditRecord):
        raise ValidationError([FieldError("record", "expected an AuditRecord")])
    return Pending(*prepare(record))


def _resolve(
    items: list[tuple[Pending, Any]],
    results: list[Any],
    *,
    local: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Hand each waiter its result: concurrent futures directly, asyncio futures grouped into
    one ``call_soon_threadsafe`` per event loop (an ``append_many`` waiter once its last record
    is resolved) — directly for the ``local`` loop, the one this runs on."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
    for (p, waiter), res in zip(items, results, strict=True):
        kind = type(waiter)
        value = res
        if kind is tuple:
            loop, fut = waiter
        elif kind is _Many:
            i = waiter.slot.pop(id(p), None)
            if i is None:  # already resolved (a failure path resolving twice)
                continue
            waiter.results[i] = res
            waiter.left -= 1
            if waiter.left:
                continue
            loop, fut, value = waiter.loop, waiter.fut, waiter.outcome()
        else:
            if not waiter.done():
                if isinstance(res, BaseException):
                    waiter.set_exception(res)
                else:
                    waiter.set_result(res)
            continue
        group = by_loop.get(loop)
        if group is None:
            group = by_loop[loop] = []
        group.append((fut, value))
    for loop, group in by_loop.items():
        if loop is local:
            _settle(group)
            continue
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, group)


def _settle(group: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for fut, res in group:
        if fut.done():  # cancelled while waiting
            continue
        if isinstance(res, BaseException):
            fut.set_exception(res)
        else:
            fut.set_result(res)


def open_audit_log(
    url_or_path: str | Path,
    *,
    timeout: float = 2.0,
    max_batch: int = 256,
    linger_s: float = 0.0,
    loop_writer: bool | None = None,
) -> AuditLog:
    """An AuditLog on SQLite (``sqlite:///path`` or a plain path) or PostgreSQL
    (``postgresql://...``); the schema is migrated on open. ``loop_writer``: commit from the
    caller's event loop (None = yes on PostgreSQL; SQLite always commits in its thread)."""
    target = str(url_or_path)
    if target.startswith(("postgresql://", "postgres://")):
        from txguard.audit.stores.postgres import PostgresAuditStore

        store: AuditStore = PostgresAuditStore(target, timeout=timeout)
    else:
        from txguard.audit.stores.sqlite import SqliteAuditStore

        path = target.removeprefix("sqlite:///") if target.startswith("sqlite:///") else target
        if "://" in path:
            raise ValidationError(
                [
                    FieldError(
                        "db",
                        f"unsupported audit store URL {target!r}; use sqlite:/// or postgresql://",
                    )
                ]
            )
        store = SqliteAuditStore(Path(path), timeout=timeout)
    return AuditLog(store, max_batch=max_batch, linger_s=linger_s, loop_writer=loop_writer)

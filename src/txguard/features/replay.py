"""Offline build: the training matrix from an events table, column at a time.

:func:`build_features` computes, for every transaction, exactly what :class:`FeatureEngine` returns
when the same events are fed to it in replay order (``io.events``: time order, transactions before
labels at equal times) — bit for bit, which ``tests/parity`` checks. It never loops over events in
Python for the numeric aggregates; instead, per entity and bucket width:

* rows are sorted by (entity, replay position); a *run* is the rows of one (entity, bucket);
* each run's totals are built by a sequential scan (position 0, 1, 2 ... of every run at once), so
  a bucket's sum is the same left-to-right sum the online store accumulates;
* a window is a searchsorted range of runs; its sum adds the run totals oldest first, then the
  partial sum of the current run — the order the store's read uses;
* counts, fraud counts and first/last times are integer prefix sums or positions (exact);
* a fraud label adds +1 (or -1 when a verdict flips) to the rows of the entity whose time is after
  the label became known and whose window still covers the labelled transaction's bucket.

* distinct counts and new-value flags come from each row's previous/next sighting of its value
  (a difference array over later rows, see :func:`_distinct_features`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.money import CRYPTO, USD_RATES
from txguard.features import formulas as fm
from txguard.features.engine import US, Plan, _Entity
from txguard.features.spec import FeatureSpec
from txguard.io.events import KIND_LABEL, KIND_TRANSACTION, conform, sort_for_replay

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_SHIFT = np.int64(1) << np.int64(32)

OUTPUT_PREFIX = (
    "transaction_id",
    "occurred_at",
    "sender_account_id",
    "terminal_id",
    "merchant_id",
    "amount",
    "amount_usd",
    "label",
    "label_known_at",
    "typology",
)


def build_features(events: pa.Table, spec: FeatureSpec) -> pa.Table:
    """One row per transaction (first occurrence of each id, replay order): identifiers, the
    label for training (never a feature) and one float64 column per feature in ``spec.names``."""
    conformed = conform(events)
    _check(conformed)
    table = sort_for_replay(conformed)
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    df = df.with_columns(pl.col(pl.Categorical).cast(pl.Utf8), pl.int_range(pl.len()).alias("_pos"))
    kind = pl.col("kind")
    tx = df.filter(kind == KIND_TRANSACTION).unique(
        "transaction_id", keep="first", maintain_order=True
    )
    labels = df.filter(kind == KIND_LABEL).select("transaction_id", "is_fraud", "known_at", "_pos")
    plan = Plan(spec)
    cols = _Columns(tx)
    out: dict[int, F64] = {}  # feature index -> column; absent entity -> all NaN
    for name in spec.pointwise:
        out[plan.index[name]] = cols.numbers[name]
    deltas = _label_deltas(tx, labels)
    for ent in plan.entities:
        _entity_features(ent, cols, deltas, out)

    truth = (
        labels.filter(pl.col("is_fraud"))
        .group_by("transaction_id")
        .agg(pl.col("known_at").min().alias("label_known_at"))
    )
    meta = tx.select(
        "transaction_id",
        "occurred_at",
        "sender_account_id",
        "terminal_id",
        "merchant_id",
        "amount",
        pl.Series("amount_usd", cols.numbers["amount_usd"]).fill_nan(None),
        pl.col("metadata").str.json_path_match("$.typology").alias("typology"),
    ).join(truth, on="transaction_id", how="left", maintain_order="left")
    meta = meta.with_columns(
        pl.col("label_known_at").is_not_null().cast(pl.Int8).alias("label")
    ).select(list(OUTPUT_PREFIX))
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    base = meta.to_arrow()
    for name in OUTPUT_PREFIX:
        col = base.column(name)
        if name in {"occurred_at", "label_known_at"}:
            col = col.cast(pa.timestamp("us", tz="UTC"))
        elif name in (
            "transaction_id",
            "sender_account_id",
            "terminal_id",
            "merchant_id",
            "typology",
        ):
            col = col.cast(pa.string())
        arrays.append(col.combine_chunks())
        fields.append(pa.field(name, arrays[-1].type))
    nan_column = np.full(tx.height, np.nan)
    for i, name in enumerate(spec.names):
        arrays.append(pa.array(out.get(i, nan_column), pa.float64()))
        fields.append(pa.field(name, pa.float64()))
    meta_md = {b"txguard.feature_spec_hash": spec.hash.encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta_md))


# --------------------------------------------------------------------------- inputs


def _check(table: pa.Table) -> None:
    """Refuse rows the replay cannot place or value, naming them (1-based, input order)."""
    cols = ["kind", "occurred_at", "amount", "currency", "known_at", "is_fraud"]
    df = pl.from_arrow(table.select(cols))
    assert isinstance(df, pl.DataFrame)
    df = df.with_columns(pl.col("kind").cast(pl.Utf8))
    is_tx = pl.col("kind") == KIND_TRANSACTION
    is_label = pl.col("kind") == KIND_LABEL
    rules = [
        ("kind", ~(is_tx | is_label), "expected 'transaction' or 'label'"),
        ("occurred_at", is_tx & pl.col("occurred_at").is_null(), "transaction without a time"),
        ("amount", is_tx & pl.col("amount").is_null(), "transaction without an amount"),
        ("currency", is_tx & pl.col("currency").is_null(), "transaction without a currency"),
        ("known_at", is_label & pl.col("known_at").is_null(), "label without known_at"),
        ("is_fraud", is_label & pl.col("is_fraud").is_null(), "label without is_fraud"),
    ]
    errors: list[FieldError] = []
    for column, bad, message in rules:
        rows = df.select(pl.int_range(pl.len()).filter(bad.fill_null(True)))
        for r in rows.to_series().head(5).to_list():
            errors.append(FieldError(column, message, row=r + 1))
    if errors:
        raise ValidationError(errors, "events cannot be replayed")


class _Columns:
    """Transaction columns as numpy arrays, point-wise transforms computed like the engine."""

    def __init__(self, tx: pl.DataFrame) -> None:
        self.tx = tx
        self.n = tx.height
        self.t: I64 = _us(tx["occurred_at"])
        # distinct times and each row's dense rank among them (entity/time searches)
        times, rank = np.unique(self.t, return_inverse=True)
        self.times: I64 = times
        self.rank: I64 = rank.astype(np.int64)
        amount = tx["amount"].cast(pl.Float64).to_numpy()
        given = tx["amount_usd"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        rate = tx["currency"].replace_strict(USD_RATES, default=None, return_dtype=pl.Float64)
        conv = amount * rate.fill_null(np.nan).to_numpy()
        usd = np.where(tx["amount_usd"].is_null().to_numpy(), conv, given)
        t = self.t
        hour = (t // 3_600_000_000) % 24
        dow = (t // 86_400_000_000 + 3) % 7
        created = tx["sender_created_at"]
        age = np.full(self.n, np.nan)
        has = created.is_not_null().to_numpy()
        if has.any():
            cu = (
                _us(created).copy()
                if False
                else created.cast(pl.Datetime("us", "UTC"))
                .cast(pl.Int64)
                .fill_null(0)
                .to_numpy()
                .astype(np.int64)
            )
            age[has] = (t[has] - cu[has]) / 86_400e6
        kyc = tx["sender_kyc_level"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        sc, rc = tx["sender_country"], tx["recipient_country"]
        cross = (sc != rc).cast(pl.Float64).fill_null(np.nan).to_numpy()
        with np.errstate(invalid="ignore"):
            below = np.where(np.isnan(usd), np.nan, ((usd >= 9000.0) & (usd < 10000.0)) * 1.0)
        self.numbers: dict[str, F64] = {
            "amount": amount,
            "amount_usd": usd,
            "amount_ref": usd,
            # libm's log1p, as online: numpy's SIMD log1p (AVX-512 builds) can differ in the
            # last bit, which broke exact parity on such CPUs
            "log_amount": np.fromiter(map(math.log1p, usd.tolist()), np.float64, len(usd)),
            "hour_of_day": hour.astype(np.float64),
            "day_of_week": dow.astype(np.float64),
            "is_weekend": (dow >= 5).astype(np.float64),
            "is_night": (hour < 6).astype(np.float64),
            "account_age_days": age,
            "kyc_level": kyc,
            "sender_kyc_level": kyc,
            "is_crypto": tx["currency"]
            .is_in(list(CRYPTO))
            .fill_null(False)
            .cast(pl.Float64)
            .to_numpy(),
            "is_cross_border": cross,
            "amount_below_10k": below,
        }

    def codes(self, fields: tuple[str, ...]) -> I64:
        """Dense integer code per row of the joined key fields, -1 where any is null."""
        if len(fields) == 1:
            key = self.tx[fields[0]].cast(pl.Utf8)
        else:
            expr = pl.concat_str([pl.col(f).cast(pl.Utf8) for f in fields], separator="|")
            key = self.tx.select(expr.alias("k"))["k"]
        codes = key.cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1)
        return codes.to_numpy().astype(np.int64)

    def values(self, field: str) -> pl.Series:
        return self.tx[field].cast(pl.Utf8)


def _us(s: pl.Series) -> I64:
    return s.cast(pl.Datetime("us", "UTC")).cast(pl.Int64).to_numpy().astype(np.int64)


def _label_deltas(tx: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Effective label changes: (tx row, known_at µs, +1/-1), as the store applies them — only
    for transactions recorded before the label, only when the verdict changes."""
    rows = tx.select(
        "transaction_id", pl.col("_pos").alias("_tx_pos"), pl.int_range(pl.len()).alias("row")
    )
    lab = labels.join(rows, on="transaction_id", how="inner").filter(
        pl.col("_pos") > pl.col("_tx_pos")
    )
    lab = lab.sort("_pos").with_columns(pl.col("is_fraud").cast(pl.Int64).alias("want"))
    lab = lab.with_columns(pl.col("want").shift(1).over("transaction_id").fill_null(0).alias("was"))
    lab = lab.with_columns((pl.col("want") - pl.col("was")).alias("delta")).filter(
        pl.col("delta") != 0
    )
    return lab.select(
        "row", pl.col("known_at").cast(pl.Datetime("us", "UTC")).cast(pl.Int64).alias("k"), "delta"
    )


# --------------------------------------------------------------------------- per entity


def _run_scan(v: F64, run: I64, pos_in_run: I64, nruns: int, use_max: bool) -> tuple[F64, F64]:
    """Per row the running total of the rows before it in its run; per run the total. Runs are
    scanned left to right (the online accumulation order), all runs at once per position."""
    acc = np.full(nruns, -math.inf if use_max else 0.0)
    excl = np.empty(len(v))
    order = np.argsort(_small(pos_in_run), kind="stable")
    counts = np.bincount(pos_in_run) if len(pos_in_run) else np.zeros(0, np.int64)
    start = 0
    for cnt in counts:
        rows = order[start : start + cnt]
        start += cnt
        r = run[rows]
        excl[rows] = acc[r]
        acc[r] = np.maximum(acc[r], v[rows]) if use_max else acc[r] + v[rows]
    return excl, acc


def _small(a: I64) -> npt.NDArray[Any]:
    """Narrow non-negative ints so that numpy's stable sort is a radix sort."""
    top = int(a.max(initial=0))
    return a.astype(np.uint16) if top < 65536 else a


def _window_runs(r0: I64, r1: I64, totals: F64, use_max: bool) -> F64:
    """Per row, the run totals r0..r1-1 combined oldest first (sum or max)."""
    acc = np.full(len(r0), -math.inf if use_max else 0.0)
    nr = r1 - r0
    order = np.argsort(_small(nr.max(initial=0) - nr), kind="stable")
    nr_sorted = nr[order]
    for j in range(int(nr.max()) if len(nr) else 0):
        active = order[: int(np.searchsorted(-nr_sorted, -j, side="left"))]
        vals = totals[r0[active] + j]
        acc[active] = np.maximum(acc[active], vals) if use_max else acc[active] + vals
    return acc


def _entity_features(
    ent: _Entity, cols: _Columns, deltas: pl.DataFrame, out: dict[int, F64]
) -> None:
    code_all = cols.codes(ent.key_fields)
    rows = np.flatnonzero(code_all >= 0)
    if len(rows) == 0:
        return
    order = rows[np.argsort(code_all[rows], kind="stable")]
    code = code_all[order]
    t = cols.t[order]
    m = len(order)
    idx = np.arange(m)
    xs = {f: cols.numbers[f][order] for f in ent.numeric}
    results: dict[int, F64] = {}
    pos_of_row = np.empty(cols.n, np.int64)
    pos_of_row[order] = idx
    d_row = deltas["row"].to_numpy().astype(np.int64)
    mine = code_all[d_row] >= 0
    d_pos = pos_of_row[d_row[mine]]
    d_k = deltas["k"].to_numpy().astype(np.int64)[mine]
    d_v = deltas["delta"].to_numpy().astype(np.int64)[mine]
    no_x = np.full(m, np.nan)

    for g in ent.groups:
        w = g.width_us
        b = t // w
        key = code * _SHIFT + b
        new_run = np.r_[True, key[1:] != key[:-1]]
        run = np.cumsum(new_run) - 1
        nruns = int(run[-1]) + 1
        run_start = np.flatnonzero(new_run)
        pos_in_run = idx - run_start[run]
        run_at = np.r_[run, nruns]  # run index at a sorted position (sentinel at the end)
        scans: dict[tuple[str, str], tuple[F64, F64]] = {}

        def scan(
            f: str,
            stat: str,
            *,
            scans: dict[tuple[str, str], tuple[F64, F64]] = scans,
            run: I64 = run,
            pos_in_run: I64 = pos_in_run,
            nruns: int = nruns,
        ) -> tuple[F64, F64]:
            got = scans.get((f, stat))
            if got is None:
                x = xs[f]
                nan = np.isnan(x)
                if stat == "c":
                    got = (np.r_[0, np.cumsum(~nan)], np.zeros(0))
                else:
                    xv = np.where(nan, -math.inf if stat == "m" else 0.0, x)
                    got = _run_scan(
                        xv * xv if stat == "q" else xv, run, pos_in_run, nruns, stat == "m"
                    )
                scans[(f, stat)] = got
            return got

        run_first = run_start  # first sorted position of each run
        for r in g.ranges:
            if r.delay_us:
                hi_b = (t - r.delay_us) // w - 1
                lo_b = hi_b - r.n_buckets + 1
                lo = np.searchsorted(key, code * _SHIFT + lo_b, "left")
                hi = np.searchsorted(key, code * _SHIFT + hi_b + 1, "left")
                r0, r1 = run_at[lo], run_at[hi]
            else:
                lo = np.searchsorted(key, code * _SHIFT + (b - r.n_buckets + 1), "left")
                hi = idx
                # every row of a run sees the same whole runs: compute them once per run
                rb = b[run_first]
                rlo = np.searchsorted(
                    key, code[run_first] * _SHIFT + (rb - r.n_buckets + 1), "left"
                )
                r0, r1 = run_at[rlo], np.arange(nruns)
            n = hi - lo
            has = n > 0
            stats: dict[str, Any] = {
                "n": n,
                "tmin": np.where(has, t[np.minimum(lo, m - 1)], 0),
                "tmax": np.where(has, t[np.maximum(hi - 1, 0)], 0),
            }
            if g.fraud:
                stats["k"] = _fraud_counts(
                    g.width_us,
                    nb=r.n_buckets,
                    delay=r.delay_us,
                    t=t,
                    code=code,
                    d_pos=d_pos,
                    d_k=d_k,
                    d_v=d_v,
                )
            sums: dict[tuple[str, str], F64] = {}

            def window(
                f: str,
                stat: str,
                *,
                sums: dict[tuple[str, str], F64] = sums,
                lo: I64 = lo,
                hi: I64 = hi,
                r0: I64 = r0,
                r1: I64 = r1,
                delayed: bool = bool(r.delay_us),
                run: I64 = run,
                scan: Any = scan,
            ) -> F64:
                got = sums.get((f, stat))
                if got is None:
                    excl, tot = scan(f, stat)
                    if stat == "c":
                        got = excl[hi] - excl[lo]
                    else:
                        acc = _window_runs(r0, r1, tot, stat == "m")
                        if not delayed:
                            acc = acc[run]
                            acc = np.maximum(acc, excl) if stat == "m" else acc + excl
                        got = acc
                    sums[(f, stat)] = got
                return got

            for fi, agg, offs, fld in ent.readers:
                if agg in ("distinct", "new") or fi in results:
                    continue
                if not _reads(ent, g, r, offs):
                    continue
                d = dict(stats)
                if fld is not None:
                    for stat in ("c", "s", "q", "m"):
                        if stat in offs:
                            d[stat] = window(fld, stat)
                x = xs[fld] if fld is not None else no_x
                results[fi] = fm.vector(agg, d, x, t)
    _distinct_features(ent, cols, order=order, code=code, t=t, results=results)
    for fi, vals in results.items():
        col = np.full(cols.n, np.nan)
        col[order] = vals
        out[fi] = col


def _reads(ent: _Entity, g: Any, r: Any, offs: dict[str, int]) -> bool:
    """Whether feature (agg, offs) reads range r of group g (its offsets fall in r's block)."""
    start = 0
    for g2 in ent.groups:
        for r2 in g2.ranges:
            end = start + len(r2.want)
            if g2 is g and r2 is r:
                return all(start <= o < end for o in offs.values())
            start = end
    return False


def _fraud_counts(
    w: int,
    *,
    nb: int,
    delay: int,
    t: I64,
    code: I64,
    d_pos: I64,
    d_k: I64,
    d_v: I64,
) -> I64:
    """Known-fraud count in the range, per row: each label change adds its delta to the rows of
    its entity with time after the label became known while the range still covers the labelled
    transaction's bucket (a difference array over the (entity, time)-sorted rows)."""
    m = len(t)
    diff = np.zeros(m + 1, np.int64)
    if len(d_pos) == 0:
        return diff[:m]
    ts = t[d_pos]
    bs = ts // w
    if delay:
        a, z = (bs + 1) * w + delay, (bs + nb + 1) * w + delay
    else:
        a, z = ts, (bs + nb) * w
    t0, t1 = int(t.min()), int(t.max()) + 2
    span = t1 - t0 + 1
    c = code[d_pos]
    if int(code.max()) * span < (1 << 62):
        key = code * span + (t - t0)

        def at(x: I64, side: str) -> I64:
            q = c * span + (np.clip(x, t0 - 1, t1) - t0)
            return np.searchsorted(key, q, side)  # type: ignore[call-overload, no-any-return]

        i0 = np.maximum(at(d_k, "right"), at(a, "left"))
        i1 = at(z, "left")
    else:  # keys would overflow int64: search entity by entity
        i0, i1 = np.zeros(len(d_pos), np.int64), np.zeros(len(d_pos), np.int64)
        for j in range(len(d_pos)):
            s0 = int(np.searchsorted(code, c[j], "left"))
            s1 = int(np.searchsorted(code, c[j], "right"))
            seg = t[s0:s1]
            i0[j] = s0 + max(
                int(np.searchsorted(seg, d_k[j], "right")), int(np.searchsorted(seg, a[j], "left"))
            )
            i1[j] = s0 + int(np.searchsorted(seg, z[j], "left"))
    ok = i1 > i0
    np.add.at(diff, i0[ok], d_v[ok])
    np.add.at(diff, i1[ok], -d_v[ok])
    return np.cumsum(diff[:m])


def _distinct_features(
    ent: _Entity, cols: _Columns, *, order: I64, code: I64, t: I64, results: dict[int, F64]
) -> None:
    """Distinct counts and new-value flags for every row at once.

    Online, a row sees each value's *last* time before it (rows of its entity, replay order) and
    counts the values last seen at or after the window start ``lo(i)``. Row ``j`` (value v) is
    the last sighting of v for the rows ``j+1 .. next_j`` (``next_j`` = v's next row, else the
    entity's last row), and it is inside the window of row ``i`` while ``i < E_j``, the first row
    whose window starts after ``t_j`` (``lo`` only grows: times are sorted within an entity). So
    each row adds 1 to an interval of later rows: a difference array, no loop over rows. A value
    ``''`` counts as missing, as in the stores."""
    m = len(order)
    if m == 0:
        return
    new_ent = np.r_[True, code[1:] != code[:-1]]
    ent_start = np.flatnonzero(new_ent)
    ent_end = np.r_[ent_start[1:], m][np.cumsum(new_ent) - 1]  # per row: its entity's end
    finder = _EntityTimeIndex(code, cols.rank[order], cols.times)
    for d in ent.distincts:
        series = cols.values(d.value_field)
        present = series.is_not_null().to_numpy()[order]
        valid = (series.is_not_null() & (series != "")).fill_null(False).to_numpy()[order]
        phys = series.cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1)
        vcode: I64 = phys.to_numpy().astype(np.int64)[order]
        vi = np.flatnonzero(valid)
        s = vi[np.lexsort((vi, vcode[vi], code[vi]))]  # by entity, value, replay position
        same = (code[s[1:]] == code[s[:-1]]) & (vcode[s[1:]] == vcode[s[:-1]])
        prev = np.full(m, -1, np.int64)
        nxt = np.full(m, -1, np.int64)
        prev[s[1:][same]] = s[:-1][same]
        nxt[s[:-1][same]] = s[1:][same]
        has_prev = prev >= 0
        t_prev = t[np.maximum(prev, 0)]
        last_row = np.where(nxt[vi] >= 0, nxt[vi], ent_end[vi] - 1)
        for w, n in d.windows:
            lo_t = (t // w - n + 1) * w
            seen = has_prev & (t_prev >= lo_t)
            e_j = finder.first_at_or_after(code[vi], (t[vi] // w + n) * w)
            hi = np.minimum(last_row, e_j - 1) + 1  # exclusive end of row j's contribution
            ok = hi > vi + 1
            diff = np.bincount(vi[ok] + 1, minlength=m + 1) - np.bincount(hi[ok], minlength=m + 1)
            count = np.cumsum(diff[:m]).astype(np.float64)
            for fi, agg, offs, fld in ent.readers:
                if fld != d.value_field or agg not in ("distinct", "new"):
                    continue
                if _window_of(ent, d, offs) != (w, n):
                    continue
                if agg == "distinct":
                    results[fi] = count
                else:
                    results[fi] = np.where(present, np.where(seen, 0.0, 1.0), np.nan)


class _EntityTimeIndex:
    """Searches rows sorted by (entity code, time): the first row of an entity at or after a
    time, as one combined integer key (entity code, dense rank of the time) — no overflow."""

    def __init__(self, code: I64, rank: I64, times: I64) -> None:
        self.times = times
        self.width = np.int64(len(times) + 1)
        self.key = code * self.width + rank

    def first_at_or_after(self, code: I64, t: I64) -> I64:
        q = code * self.width + np.searchsorted(self.times, t, "left")
        found: I64 = np.searchsorted(self.key, q, "left")
        return found


def _window_of(ent: _Entity, d: Any, offs: dict[str, int]) -> tuple[int, int]:
    start = sum(len(r.want) for g in ent.groups for r in g.ranges)
    for d2 in ent.distincts:
        for win in d2.windows:
            if d2 is d and offs["count"] == start:
                return win
            start += 2
    raise AssertionError("distinct feature without a window")


__all__ = ["OUTPUT_PREFIX", "US", "build_features"]

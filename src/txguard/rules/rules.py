"""Rules and lists at scoring time: :class:`RuleSet` (immutable, compiled) and :class:`RuleEngine`
(holds the current set and swaps it on reload, without a restart).

Loading does all the work — YAML with line numbers, list files, signature checks, type checks,
compiling conditions to closures — so :meth:`RuleSet.evaluate` only extracts the few event
fields and features the rules use, probes the list sets and calls one closure per rule.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "rules.yaml").write_text('''
... version: "1"
... rules:
...   - id: big_new_account
...     when: amount_usd > 10000 and sender_account_age_days < 7
...     action: force_review
...     reason: Large amount from an account opened this week
... ''')
>>> rs = RuleSet.load(d / "rules.yaml", known_features=[])
>>> rs.version.startswith("1+"), [r.id for r in rs.rules]
(True, ['big_new_account'])
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from txguard.domain.errors import FieldError, TxguardError, ValidationError
from txguard.domain.events import TransactionEvent
from txguard.rules.fields import EVENT_FIELDS
from txguard.rules.lists import ListKind, NamedList
from txguard.rules.loader import CompiledRule, parse_rules
from txguard.rules.outcome import Effect, Outcome, RuleHit, combine
from txguard.rules.signing import read_verified, sig_path

__all__ = ["Outcome", "RuleEngine", "RuleHit", "RuleSet", "combine"]

_LIST_EFFECT = {
    ListKind.BLOCK: Effect.FORCE_REJECT,
    ListKind.SANCTIONS: Effect.FORCE_REJECT,
    ListKind.REVIEW: Effect.FORCE_REVIEW,
    ListKind.HIGH_RISK: Effect.FORCE_REVIEW,
    ListKind.ALLOW: Effect.ALLOW,
}


class RuleSet:
    """A compiled, immutable set of rules and lists. Build with :meth:`load` or :meth:`empty`."""

    __slots__ = ("_checks", "_extract", "_features", "_rules", "files", "lists", "rules", "version")

    def __init__(
        self,
        *,
        version: str,
        rules: tuple[CompiledRule, ...] = (),
        lists: Mapping[str, NamedList] | None = None,
        files: tuple[Path, ...] = (),
    ) -> None:
        self.version = version
        self.rules = rules
        self.lists: Mapping[str, NamedList] = dict(lists or {})
        self.files = files  # every file read (rules file first), for change detection
        # (field, values, casefold, hit); for country lists the values map each code to its own
        # hit, so the reason names the country ("...: recipient_country IR") at no cost per event
        checks: list[tuple[str, frozenset[str] | dict[str, RuleHit], bool, RuleHit | None]] = []
        for lst in self.lists.values():
            effect = _LIST_EFFECT.get(lst.kind)
            if effect is None:
                continue
            for f in lst.fields:
                if lst.kind.is_country:
                    table = {
                        c: _list_hit(lst, effect, f"{lst.reason}: {f} {c}") for c in lst.values
                    }
                    checks.append((f, table, False, None))
                else:
                    hit = _list_hit(lst, effect, f"{lst.reason} ({f})")
                    checks.append((f, lst.values, lst.casefold, hit))
        used = {f for f, *_ in checks}
        for r in rules:
            used |= r.condition.names
        self._checks = tuple(checks)
        self._rules = tuple((r.condition.fn, r.hit) for r in rules)
        self._extract: tuple[tuple[str, Callable[[TransactionEvent], Any]], ...] = tuple(
            (n, EVENT_FIELDS[n].extract)  # type: ignore[misc]
            for n in sorted(used)
            if n in EVENT_FIELDS
        )
        self._features = tuple(sorted(n for n in used if n not in EVENT_FIELDS))

    @classmethod
    def empty(cls) -> RuleSet:
        """No rules, no lists: every evaluation returns no hits (e.g. no rules file configured)."""
        return cls(version="empty")

    @classmethod
    def load(
        cls, path: Path, *, known_features: Collection[str], signing_key: str | None = None
    ) -> RuleSet:
        """Load, verify and compile a rules file and the list files it names.

        Raises ValidationError listing every problem as ``file:line: message`` (a file that
        cannot be read is one such problem), IntegrityError when a signing key is given and a
        signature is missing or wrong, ConfigurationError for an empty key.
        """
        path = Path(path)
        files: list[Path] = [path]
        digest = hashlib.sha256()

        def read(p: Path) -> bytes:
            data = read_verified(p, signing_key)
            files.append(p)
            digest.update(b"\0" + str(p.name).encode() + b"\0" + data)
            return data

        try:
            data = read_verified(path, signing_key)
        except OSError as e:
            raise ValidationError([_file_error(path, e)], "rules file unreadable") from None
        digest.update(data)
        parsed, problems = parse_rules(
            data,
            source=str(path),
            base_dir=path.parent,
            known_features=known_features,
            read=read,
        )
        if parsed is None:
            raise ValidationError(problems.field_errors(), "invalid rules file")
        return cls(
            version=f"{parsed.declared_version}+{digest.hexdigest()[:12]}",
            rules=parsed.rules,
            lists=parsed.lists,
            files=tuple(files),
        )

    def evaluate(self, event: TransactionEvent, features: Mapping[str, float]) -> list[RuleHit]:
        """Every list hit (first) and every rule that fires, in file order."""
        v: dict[str, Any] = {n: get(event) for n, get in self._extract}
        for n in self._features:
            x = features.get(n)
            v[n] = None if x is None or x != x else x  # noqa: PLR0124 - NaN is missing
        hits: list[RuleHit] = []
        for f, values, casefold, fixed in self._checks:
            x = v[f]
            if x is not None:
                if casefold:
                    x = x.casefold()
                if x in values:
                    hits.append(fixed or values[x])  # type: ignore[index]
        for cond, hit in self._rules:
            if cond(v):
                hits.append(hit)
        return hits

    def outcome(self, event: TransactionEvent, features: Mapping[str, float]) -> Outcome:
        """:func:`combine` of :meth:`evaluate`."""
        return combine(self.evaluate(event, features))

    def summary(self) -> str:
        n_values = sum(len(lst.values) for lst in self.lists.values())
        return (
            f"version {self.version}: {len(self.rules)} rules, {len(self.lists)} lists "
            f"({n_values:,} values)"
        )

    def __repr__(self) -> str:
        return f"RuleSet({self.summary()})"


def _list_hit(lst: NamedList, effect: Effect, reason: str) -> RuleHit:
    overridable = lst.kind in (ListKind.REVIEW, ListKind.ALLOW)
    return RuleHit(lst.name, effect.value, lst.score, reason, "list", overridable=overridable)


def _file_error(path: Path, e: OSError) -> FieldError:
    why = "file not found" if isinstance(e, FileNotFoundError) else (e.strerror or str(e))
    return FieldError(str(path), why)


Stamp = tuple[tuple[int, int, int] | None, ...]


def _watch_list(paths: Iterable[Path]) -> tuple[str, ...]:
    """Each file and its signature file, as strings (stat'ing a str skips Path overhead)."""
    return tuple(str(q) for p in paths for q in (p, sig_path(p)))


def _stamp(watch: tuple[str, ...]) -> Stamp:
    """(mtime_ns, size, inode) of each watched file: a cheap change detector."""
    out: list[tuple[int, int, int] | None] = []
    for q in watch:
        try:
            st = os.stat(q)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class RuleEngine:
    """Holds the current :class:`RuleSet` of one rules file and reloads it without a restart.

    ``current`` is a plain attribute read (an atomic reference swap under the GIL), so scoring
    threads never lock. A failed reload keeps the previous set serving and raises the error.
    The constructor loads the file and raises if it is invalid: start-up refuses bad rules.
    """

    def __init__(
        self,
        path: Path,
        *,
        known_features: Collection[str],
        signing_key: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._known = frozenset(known_features)
        self._key = signing_key
        self._lock = threading.Lock()
        self._current = RuleSet.load(self.path, known_features=self._known, signing_key=self._key)
        self._watch = _watch_list(self._current.files)
        self._stamp = _stamp(self._watch)
        self._failed_stamp: Stamp | None = None
        self.last_error: TxguardError | None = None

    @property
    def current(self) -> RuleSet:
        return self._current

    def reload(self) -> RuleSet:
        """Load the file again and swap it in; on failure keep the old set and raise."""
        with self._lock:
            return self._reload_locked(_stamp(self._watch))

    def _reload_locked(self, stamp_before: Stamp) -> RuleSet:
        try:
            new = RuleSet.load(self.path, known_features=self._known, signing_key=self._key)
        except TxguardError as e:
            self.last_error = e
            self._failed_stamp = stamp_before
            raise
        # the stamp taken *before* reading: a write during the load is seen next time
        if new.files != self._current.files:
            self._watch = _watch_list(new.files)
            stamp_before = _stamp(self._watch)
        self._stamp = stamp_before
        self._failed_stamp = None
        self.last_error = None
        self._current = new
        return new

    def reload_if_changed(self) -> bool:
        """Reload when a file (rules, lists, signatures) changed since the last load.

        Costs a few ``stat`` calls, cheap enough every N requests or on a timer. Returns True
        when a new set was swapped in. A broken file raises once and is then ignored (the old
        set keeps serving, ``last_error`` says why) until it changes again.
        """
        stamp = _stamp(self._watch)
        if stamp in (self._stamp, self._failed_stamp):
            return False
        with self._lock:
            stamp = _stamp(self._watch)
            if stamp in (self._stamp, self._failed_stamp):
                return False
            old = self._current.version
            new = self._reload_locked(stamp)
            return new.version != old

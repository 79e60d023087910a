"""The one error hierarchy of txguard.

Domain code raises these; exactly one place (``txguard.api.errors``) turns them into HTTP
status codes and the CLI turns them into a one-line message and a non-zero exit::

    TxguardError
    ├── ValidationError          bad input: carries one FieldError per bad field (HTTP 422)
    │   └── PayloadTooLargeError body, batch or field over a configured limit      (HTTP 413)
    ├── NotFoundError            no such decision, model version, key ...          (HTTP 404)
    ├── ConflictError            state does not allow the operation                (HTTP 409)
    ├── ConfigurationError       settings or files that cannot work (start-up refuses)
    ├── IntegrityError           a signature or hash chain does not verify
    ├── DependencyError          a store (Redis, database) failed or timed out     (HTTP 503)
    ├── AuthenticationError      no or bad credentials                             (HTTP 401)
    ├── PermissionDeniedError    credentials valid, role insufficient              (HTTP 403)
    └── RateLimitedError         over the identity's budget; has retry_after       (HTTP 429)
"""

from __future__ import annotations

from dataclasses import dataclass


class TxguardError(Exception):
    """Root of every error txguard raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field. ``loc`` is a dotted path (``sender.country``); ``row`` is a
    1-based line or row number when the input came from a file."""

    loc: str
    message: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"row {self.row}: " if self.row is not None else ""
        return f"{where}{self.loc}: {self.message}"


class ValidationError(TxguardError):
    """Input that does not satisfy the contract. ``errors`` lists every bad field found."""

    def __init__(self, errors: list[FieldError] | tuple[FieldError, ...], title: str = "") -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.title = title or "invalid input"
        super().__init__(self._message())

    def _message(self) -> str:
        if not self.errors:
            return self.title
        shown = "; ".join(str(e) for e in self.errors[:5])
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        return f"{shown}{more}"


class PayloadTooLargeError(ValidationError):
    """A body, batch or field is over a configured limit."""


class NotFoundError(TxguardError):
    """The thing asked for does not exist."""


class ConflictError(TxguardError):
    """The current state does not allow the operation."""


class ConfigurationError(TxguardError):
    """Settings or files that cannot work; entry points refuse to start on it."""


class IntegrityError(TxguardError):
    """A signature, hash or hash chain does not verify."""


class DependencyError(TxguardError):
    """A dependency (state store, database) failed or timed out."""


class AuthenticationError(TxguardError):
    """No credentials, or credentials that do not verify."""


class PermissionDeniedError(TxguardError):
    """Valid credentials without the role the operation needs."""


class RateLimitedError(TxguardError):
    """Over the identity's request budget."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)

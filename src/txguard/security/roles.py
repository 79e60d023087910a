"""Who may do what. Every HTTP route declares exactly one of these roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    SCORER = "scorer"  # score transactions, send labels
    ANALYST = "analyst"  # read decisions and explanations, work cases
    AUDITOR = "auditor"  # read the audit log
    ADMIN = "admin"  # models, rules, keys, metrics


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``subject`` is a key prefix or a token's ``sub``."""

    subject: str
    roles: frozenset[Role]
    method: str  # "api_key" | "jwt"
    expires_at: datetime | None = None
    require_signature: bool = False
    attributes: dict[str, str] = field(default_factory=dict)

    def has(self, role: Role) -> bool:
        return role in self.roles

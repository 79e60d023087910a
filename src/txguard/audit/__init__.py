"""txguard.audit: the durable, append-only, hash-chained decision log (docs/audit.md)."""

from txguard.audit.chain import VerifyReport
from txguard.audit.log import AuditLog, open_audit_log
from txguard.audit.records import AuditRecord, canonical_bytes

__all__ = ["AuditLog", "AuditRecord", "VerifyReport", "canonical_bytes", "open_audit_log"]

"""txguard.domain."""

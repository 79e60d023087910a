"""txguard.audit."""

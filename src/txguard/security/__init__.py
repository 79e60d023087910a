"""txguard.security."""

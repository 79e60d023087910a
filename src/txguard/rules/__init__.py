"""txguard.rules."""

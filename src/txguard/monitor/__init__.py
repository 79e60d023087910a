"""txguard.monitor."""

"""txguard.model."""

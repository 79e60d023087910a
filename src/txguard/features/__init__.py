"""txguard.features."""

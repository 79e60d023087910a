"""txguard.api."""

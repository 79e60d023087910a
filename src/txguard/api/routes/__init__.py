"""txguard.api.routes."""

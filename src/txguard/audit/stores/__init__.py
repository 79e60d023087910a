"""txguard.audit.stores."""

"""txguard.features.stores."""

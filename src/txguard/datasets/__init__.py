"""txguard.datasets."""

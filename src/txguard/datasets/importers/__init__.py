"""txguard.datasets.importers."""

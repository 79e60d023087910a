"""txguard.scoring."""

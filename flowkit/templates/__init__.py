"""Templates for flowkit's generated files (the run report's HTML page)."""

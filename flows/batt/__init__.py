"""The batt ARC workload: a grid DSL, a battery of candidate programs, and their scoring."""

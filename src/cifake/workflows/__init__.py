"""Workflows: the floor above the libraries. Each module composes library code into one job a command runs: a run
end to end (experiment), the search, calibrate, robustness, the explanation report, reproduce. Nothing below
imports this floor; the CLI and the public API sit above it."""

"""The study's 36-topology search (Ray Tune or in-process), its tables next to the paper's, and reproduce."""

from cifake.search.grid import PROFILES, Budget, SearchSpace
from cifake.search.runner import run_search

__all__ = ["PROFILES", "Budget", "SearchSpace", "run_search"]

"""The study's 36-topology search (Ray Tune or in-process), its tables next to the paper's, and reproduce."""

from cifake.search.grid import PROFILES, Budget, SearchSpace
from cifake.search.runner import run_search
from cifake.search.status import SearchStatus, search_status

__all__ = ["PROFILES", "Budget", "SearchSpace", "SearchStatus", "run_search", "search_status"]

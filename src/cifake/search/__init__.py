"""The study's 36-topology search (Ray Tune or in-process) and its tables next to the paper's.

Imported lazily, so that the CLI reads the profiles (cifake.search.grid) without loading torch.
"""

from __future__ import annotations

from cifake.lazy import lazy_attributes

_API = {
    "PROFILES": "cifake.search.grid",
    "Budget": "cifake.search.grid",
    "SearchSpace": "cifake.search.grid",
    "run_search": "cifake.search.runner",
    "SearchStatus": "cifake.search.status",
    "search_status": "cifake.search.status",
}

__all__ = list(_API)


__getattr__ = lazy_attributes(__name__, _API)

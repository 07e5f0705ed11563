"""The REST service and web page (FastAPI + uvicorn)."""

from cifake.serve.app import Access, Limits, create_app

__all__ = ["Access", "Limits", "create_app"]

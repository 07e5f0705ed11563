"""The REST service and web page (FastAPI + uvicorn)."""

from cifake.serve.app import Limits, create_app

__all__ = ["Limits", "create_app"]

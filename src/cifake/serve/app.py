"""The REST service and web page: FastAPI app over a Detector. Bad input gets a JSON 4xx, never a 500.

Inference runs in a worker thread (starlette's threadpool), so the event loop keeps serving other requests. At
most `max_queue` requests wait for or run inference; the next gets an immediate 503 with Retry-After, and one
that waits longer than `timeout_s` a 504. Every request first passes the Guard (serve/guard.py: request id,
access log, API keys, the streamed size limit, metrics). /docs is served from files in the package (no CDN).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cifake import __version__
from cifake.data.decode import BadImage
from cifake.predict.detector import Detector, bundled_model_dir
from cifake.serve.guard import Guard
from cifake.serve.limits import Access, Limits
from cifake.serve.metrics import ServiceMetrics

STATIC = Path(str(resources.files("cifake.serve") / "static"))
# Swagger UI 5 (OpenAPI 3.1, which FastAPI writes), shipped as files by the fastapi-offline package: /docs needs
# no CDN
SWAGGER = Path(str(resources.files("fastapi_offline") / "static"))


async def read_uploads(files: list[UploadFile], limits: Limits) -> list[tuple[str, bytes]]:
    """(name, bytes) of each upload, within the file count and per-file size limits (413 beyond them)."""
    if not files:
        raise HTTPException(422, "send one or more images as multipart form field 'files'")
    if len(files) > limits.max_files:
        raise HTTPException(413, f"{len(files)} files is over the limit of {limits.max_files} per request")
    uploads = []
    for upload in files:
        data = await upload.read(limits.max_file_bytes + 1)
        if len(data) > limits.max_file_bytes:
            raise HTTPException(413, f"{upload.filename}: over the limit of {limits.max_file_bytes:,} bytes")
        uploads.append((upload.filename or "upload", data))
    return uploads


class Service:
    """The detector behind one lock, the limits, and the model card's folder: what every route uses."""

    def __init__(self, detector: Detector, limits: Limits, card_dir: Path):
        self.detector, self.limits, self.card_dir = detector, limits, card_dir
        detector.max_pixels = limits.max_pixels
        self.metrics = ServiceMetrics(detector.model_id, detector.backend, detector.device)
        # One inference at a time: torch already uses every core for one batch, and parallel batches only thrash.
        self.lock = threading.Lock()
        self.pending, self.pending_lock = 0, threading.Lock()  # waiting for or running inference

    async def run(self, function, *args):
        """function(*args) in a worker thread, one at a time; 503 when the queue is full, 504 past the time limit
        (the work already started finishes in its thread and still counts in the queue until then)."""
        with self.pending_lock:
            if self.pending >= self.limits.max_queue:
                self.metrics.refused.inc()
                raise HTTPException(503, f"busy: {self.pending} requests are waiting for inference; retry shortly",
                                    headers={"Retry-After": "1"})
            self.pending += 1
            self.metrics.queue.set(self.pending)

        def locked():
            try:
                with self.lock:
                    return function(*args)
            finally:
                with self.pending_lock:
                    self.pending -= 1
                    self.metrics.queue.set(self.pending)

        try:
            return await asyncio.wait_for(run_in_threadpool(locked), self.limits.timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"inference did not finish within {self.limits.timeout_s:g} s") from None

    def card(self) -> dict:
        # the model card and its figures, as tools/bundle_model.py writes them
        card, metrics = self.card_dir / "MODEL_CARD.md", self.card_dir / "metrics.json"
        return {"model_id": self.detector.model_id, "backend": self.detector.backend, "device": self.detector.device,
                "input": self.detector.input_summary(), "config": self.detector.config,
                "metrics": json.loads(metrics.read_text()) if metrics.is_file() else None,
                "model_card": card.read_text() if card.is_file() else None, "limits": asdict(self.limits)}


def create_app(detector: Detector, limits: Limits = Limits(), model_dir: Path | None = None,
               access: Access = Access()) -> FastAPI:
    service = Service(detector, limits, model_dir or bundled_model_dir())
    app = FastAPI(title="cifake", version=__version__, docs_url=None, redoc_url=None,
                  description="Is an image real or AI-generated? The CIFAKE study's detector, with Grad-CAM.")
    _add_error_handlers(app)
    _add_routes(app, service)
    _add_operations_routes(app, service)
    app.mount("/static/swagger", StaticFiles(directory=SWAGGER), name="swagger")  # before /static
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, api_keys=access.api_keys, max_request_bytes=limits.max_request_bytes,
                       metrics=service.metrics)
    if access.cors_origins:  # outside the Guard: a browser's preflight carries no key
        app.add_middleware(CORSMiddleware, allow_origins=list(access.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], expose_headers=["x-request-id"])
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "details": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)  # also the 404s of the static files
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _add_operations_routes(app: FastAPI, service: Service) -> None:
    """What operators read: Prometheus metrics and the API's docs page (from packaged files)."""

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="cifake API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon.png")


def _add_routes(app: FastAPI, service: Service) -> None:
    detector = service.detector

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "model_id": detector.model_id, "backend": detector.backend,
                "device": detector.device}

    @app.get("/v1/model")
    def model_card() -> dict:
        return service.card()

    @app.post("/v1/predict")
    async def predict(files: list[UploadFile], threshold: Annotated[float | None, Query(
            ge=0, le=1, description="FAKE when P(FAKE) >= this (default: the model's calibrated decision)")] = None
                      ) -> JSONResponse:
        """Scores one or more images (multipart field `files`); per-file errors are reported, not fatal.

        Verdicts follow the model's calibrated decision (REAL, UNSURE or FAKE) unless a threshold is given, and
        are OUT_OF_DOMAIN for an image unlike the model's training data when the model has a domain check."""
        uploads = await read_uploads(files, service.limits)
        predictions = await service.run(detector.predict, [data for _, data in uploads], threshold)
        service.metrics.scored([p.verdict for p in predictions])
        results = [{**p.to_dict(), "source": name} for (name, _), p in zip(uploads, predictions)]
        decision = detector.decision.to_dict() if threshold is None else {"fake_at": threshold, "real_at": threshold}
        body = {"model_id": detector.model_id, "decision": decision, "results": results}
        if all(r["error"] for r in results):
            return JSONResponse({"error": "no image could be read", **body}, status_code=422)
        return JSONResponse(body)

    @app.post("/v1/explain", response_class=Response)
    async def explain(file: UploadFile, target: Literal["predicted", "REAL", "FAKE"] = "predicted") -> Response:
        """The Grad-CAM overlay (PNG) of one image, for its verdict or for target REAL / FAKE."""
        ((name, data),) = await read_uploads([file], service.limits)
        try:
            png = await service.run(detector.overlay_png, data, target)
        except BadImage as exc:
            raise HTTPException(422, f"{name}: {exc}") from None
        return Response(png, media_type="image/png")

    @app.get("/", response_class=FileResponse)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

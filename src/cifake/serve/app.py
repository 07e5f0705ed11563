"""The REST service and web page: FastAPI app over a Detector. Bad input gets a JSON 4xx, never a 500.

Inference runs in a worker thread (starlette's threadpool), so the event loop keeps serving other requests.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cifake import __version__
from cifake.data.decode import BadImage
from cifake.predict.detector import Detector, bundled_model_dir

STATIC = Path(str(resources.files("cifake.serve") / "static"))


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 20 * 1024 * 1024  # one upload
    max_request_bytes: int = 64 * 1024 * 1024  # a whole request
    max_pixels: int = 40_000_000  # larger images are refused as decompression bombs
    max_files: int = 64  # per request


class Service:
    """The detector behind one lock, the limits, and the model card's folder: what every route uses."""

    def __init__(self, detector: Detector, limits: Limits, card_dir: Path):
        self.detector, self.limits, self.card_dir = detector, limits, card_dir
        detector.max_pixels = limits.max_pixels
        # One inference at a time: torch already uses every core for one batch, and parallel batches only thrash.
        self.lock = threading.Lock()

    async def run(self, function, *args):
        def locked():
            with self.lock:
                return function(*args)
        return await run_in_threadpool(locked)

    async def read_uploads(self, files: list[UploadFile]) -> list[tuple[str, bytes]]:
        if not files:
            raise HTTPException(422, "send one or more images as multipart form field 'files'")
        if len(files) > self.limits.max_files:
            raise HTTPException(413, f"{len(files)} files is over the limit of {self.limits.max_files} per request")
        uploads = []
        for upload in files:
            data = await upload.read(self.limits.max_file_bytes + 1)
            if len(data) > self.limits.max_file_bytes:
                raise HTTPException(413, f"{upload.filename}: over the limit of {self.limits.max_file_bytes:,} bytes")
            uploads.append((upload.filename or "upload", data))
        return uploads

    def card(self) -> dict:
        # the model card and its figures, as tools/bundle_model.py writes them
        card, metrics = self.card_dir / "MODEL_CARD.md", self.card_dir / "metrics.json"
        return {"model_id": self.detector.model_id, "backend": self.detector.backend, "device": self.detector.device,
                "config": self.detector.config,
                "metrics": json.loads(metrics.read_text()) if metrics.is_file() else None,
                "model_card": card.read_text() if card.is_file() else None, "limits": asdict(self.limits)}


def create_app(detector: Detector, limits: Limits = Limits(), model_dir: Path | None = None) -> FastAPI:
    service = Service(detector, limits, model_dir or bundled_model_dir())
    app = FastAPI(title="cifake", version=__version__,
                  description="Is an image real or AI-generated? The CIFAKE study's detector, with Grad-CAM.")
    _add_error_handlers(app, limits)
    _add_routes(app, service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_error_handlers(app: FastAPI, limits: Limits) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "details": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)  # also the 404s of the static files
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limits.max_request_bytes:
            return JSONResponse({"error": f"request of {int(length):,} bytes is over the limit of "
                                          f"{limits.max_request_bytes:,} bytes"}, status_code=413)
        return await call_next(request)


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

        Verdicts follow the model's calibrated decision (REAL, UNSURE or FAKE) unless a threshold is given."""
        uploads = await service.read_uploads(files)
        predictions = await service.run(detector.predict, [data for _, data in uploads], threshold)
        results = [{**p.to_dict(), "source": name} for (name, _), p in zip(uploads, predictions)]
        decision = detector.decision.to_dict() if threshold is None else {"fake_at": threshold, "real_at": threshold}
        body = {"model_id": detector.model_id, "decision": decision, "results": results}
        if all(r["error"] for r in results):
            return JSONResponse({"error": "no image could be read", **body}, status_code=422)
        return JSONResponse(body)

    @app.post("/v1/explain", response_class=Response)
    async def explain(file: UploadFile, target: Literal["predicted", "REAL", "FAKE"] = "predicted") -> Response:
        """The Grad-CAM overlay (PNG) of one image, for its verdict or for target REAL / FAKE."""
        ((name, data),) = await service.read_uploads([file])
        try:
            png = await service.run(detector.overlay_png, data, target)
        except BadImage as exc:
            raise HTTPException(422, f"{name}: {exc}") from None
        return Response(png, media_type="image/png")

    @app.get("/", response_class=FileResponse)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

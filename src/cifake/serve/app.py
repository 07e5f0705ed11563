"""The REST service and web page: FastAPI app over a Detector. Bad input gets a JSON 4xx, never a 500.

Inference runs in a worker thread (starlette's threadpool), so the event loop keeps serving other requests.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cifake import __version__
from cifake.data.decode import BadImage
from cifake.predict.detector import Detector, bundled_model_dir


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 20 * 1024 * 1024  # one upload
    max_request_bytes: int = 64 * 1024 * 1024  # a whole request
    max_pixels: int = 40_000_000  # larger images are refused as decompression bombs
    max_files: int = 64  # per request


def create_app(detector: Detector, limits: Limits = Limits(), model_dir: Path | None = None) -> FastAPI:
    detector.max_pixels = limits.max_pixels
    # One inference at a time: torch already uses every core for one batch, and parallel batches only thrash.
    lock = threading.Lock()

    def locked(function):
        def call(*args):
            with lock:
                return function(*args)
        return call
    app = FastAPI(title="cifake", version=__version__,
                  description="Is an image real or AI-generated? The CIFAKE study's detector, with Grad-CAM.")
    card_dir = model_dir or bundled_model_dir()
    static = resources.files("cifake.serve") / "static"

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "details": problems}, status_code=422)

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limits.max_request_bytes:
            return JSONResponse({"error": f"request of {int(length):,} bytes is over the limit of "
                                          f"{limits.max_request_bytes:,} bytes"}, status_code=413)
        return await call_next(request)

    async def read_uploads(files: list[UploadFile]) -> list[tuple[str, bytes]]:
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

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "model_id": detector.model_id, "backend": detector.backend}

    @app.get("/v1/model")
    def model_card() -> dict:
        card = card_dir / "MODEL_CARD.md"
        metrics = card_dir / "metrics.json"
        return {
            "model_id": detector.model_id,
            "backend": detector.backend,
            "config": detector.config,
            "metrics": json.loads(metrics.read_text()) if metrics.is_file() else None,
            "model_card": card.read_text() if card.is_file() else None,
            "limits": limits.__dict__,
        }

    @app.post("/v1/predict")
    async def predict(files: list[UploadFile], threshold: float | None = None) -> JSONResponse:
        """Scores one or more images (multipart field `files`); per-file errors are reported, not fatal.

        Verdicts follow the model's calibrated decision (REAL, UNSURE or FAKE) unless a threshold is given."""
        if threshold is not None and not 0 <= threshold <= 1:
            raise HTTPException(422, f"threshold must lie in [0, 1], got {threshold}")
        uploads = await read_uploads(files)
        predictions = await run_in_threadpool(locked(detector.predict), [data for _, data in uploads], threshold)
        results = [{**p.to_dict(), "source": name} for (name, _), p in zip(uploads, predictions)]
        decision = detector.decision.to_dict() if threshold is None else {"fake_at": threshold, "real_at": threshold}
        body = {"model_id": detector.model_id, "decision": decision, "results": results}
        if all(r["error"] for r in results):
            return JSONResponse({"error": "no image could be read", **body}, status_code=422)
        return JSONResponse(body)

    @app.post("/v1/explain", response_class=Response)
    async def explain(file: UploadFile, target: str = "predicted") -> Response:
        """The Grad-CAM overlay (PNG) of one image, for its verdict or for target REAL / FAKE."""
        if target not in ("predicted", "REAL", "FAKE"):
            raise HTTPException(422, f"target must be predicted, REAL or FAKE, not {target!r}")
        ((name, data),) = await read_uploads([file])
        try:
            png = await run_in_threadpool(locked(detector.overlay_png), data, target)
        except BadImage as exc:
            raise HTTPException(422, f"{name}: {exc}") from None
        return Response(png, media_type="image/png")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (static / "index.html").read_text()

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        files = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in files:
            raise HTTPException(404, f"no asset {name!r}")
        return Response((static / name).read_text(), media_type=files[name])

    return app

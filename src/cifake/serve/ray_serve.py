"""`cifake serve --ray-address ADDR`: the detector as a Ray Serve deployment on an existing Ray cluster.

Replicas each hold one Detector; images from concurrent requests are scored together (`serve.batch`), which a
model this small needs to use its cores well. The API is the local one's: POST /v1/predict (multipart `files`,
optional `threshold`), GET /v1/model, GET /healthz, the same JSON results. Ray Serve's HTTP proxy listens on
the host and port given; it brings its own access control (put it behind the cluster's gateway), so API keys,
the queue limit and /metrics are the local server's features, not this one's.
"""

# no `from __future__ import annotations`: Ray Serve's ingress reads the route signatures as objects
import asyncio
import time
from typing import Annotated

from fastapi import FastAPI, Query, UploadFile
from ray import serve

from cifake.calibration import Decision
from cifake.cluster import ray_session
from cifake.predict.detector import Detector, Prediction
from cifake.serve.app import read_uploads
from cifake.serve.limits import Limits

api = FastAPI(title="cifake (Ray Serve)", docs_url=None, redoc_url=None)


@serve.deployment
@serve.ingress(api)
class DetectorReplica:
    def __init__(self, model: str | None, backend: str, limits: Limits):
        self.detector = Detector.load(model, backend, "cpu", threads=1)  # one replica per CPU
        self.limits = limits

    @api.get("/healthz")
    def healthz(self) -> dict:
        return {"status": "ok", "model_id": self.detector.model_id, "backend": self.detector.backend,
                "device": self.detector.device}

    @api.get("/v1/model")
    def model(self) -> dict:
        return {"model_id": self.detector.model_id, "input": self.detector.input_summary(),
                "config": self.detector.config}

    @api.post("/v1/predict")
    async def predict(self, files: list[UploadFile],
                      threshold: Annotated[float | None, Query(ge=0, le=1)] = None) -> dict:
        uploads = await read_uploads(files, self.limits)
        decision = self.detector.decision if threshold is None else Decision.single(threshold)
        results = []
        scores = await asyncio.gather(*(self.score(data) for _, data in uploads))  # batched with other requests
        for (name, _), scored in zip(uploads, scores):
            verdict = (None if scored.prob_fake is None else scored.verdict if scored.in_domain is False
                       else decision.verdict(scored.prob_fake))  # OUT_OF_DOMAIN whatever the threshold
            results.append({**scored.to_dict(), "source": name, "verdict": verdict, "threshold": decision.fake_at,
                            "real_below": decision.real_at})
        return {"model_id": self.detector.model_id, "decision": decision.to_dict(), "results": results}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def score(self, images: list[bytes]) -> list[Prediction]:
        """Images of concurrent requests, scored in one batch."""
        return self.detector.predict(images)


def run_on_ray(address: str | None, host: str, port: int, model: str | None, backend: str, limits: Limits,
               replicas: int) -> None:
    """Deploy on the cluster at `address` and serve until interrupted."""
    with ray_session(address):
        serve.start(http_options={"host": host, "port": port})
        serve.run(DetectorReplica.options(num_replicas=replicas).bind(model, backend, limits), name="cifake",
                  route_prefix="/")
        try:
            while True:
                time.sleep(3600)
        finally:
            serve.shutdown()

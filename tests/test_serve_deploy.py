"""The service as a team deploys it: API keys, CORS, the queue limit, the time limit, the streamed size limit,
request ids with an access log, and Prometheus metrics. In-process (TestClient); the live server tests are in
test_serve.py."""

import json
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from cifake import Detector
from cifake.serve.app import create_app
from cifake.serve.limits import Access, Limits
from conftest import REPO, cli, flat, jpeg_bytes, synthetic_image

sys.path.insert(0, str(REPO / "benchmarks"))  # the serving benchmarks' server starter and soak

IMAGE = jpeg_bytes(synthetic_image(1, 3))


@pytest.fixture(scope="module")
def detector():
    return Detector.load()


def _predict(client, headers=None, files=1):
    return client.post("/v1/predict", headers=headers or {},
                       files=[("files", (f"{i}.jpg", IMAGE)) for i in range(files)])


def test_api_keys_guard_v1_and_leave_health_open(detector):
    client = TestClient(create_app(detector, access=Access(api_keys=("key-one", "key-two"))))
    refused = client.get("/v1/model")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "API key" in refused.json()["error"]
    assert _predict(client, {"Authorization": "Bearer key-three"}).status_code == 401
    assert _predict(client, {"Authorization": "Basic key-one"}).status_code == 401
    assert _predict(client, {"Authorization": "Bearer key-two"}).status_code == 200
    assert client.get("/v1/model", headers={"Authorization": "Bearer key-one"}).status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
    assert TestClient(create_app(detector)).get("/v1/model").status_code == 200  # no keys: open


def test_cors_is_closed_unless_an_origin_is_given(detector):
    preflight = {"Origin": "https://team.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    closed = TestClient(create_app(detector)).options("/v1/predict", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    client = TestClient(create_app(detector, access=Access(api_keys=("k",), cors_origins=("https://team.example",))))
    opened = client.options("/v1/predict", headers=preflight)  # a preflight carries no key, and must pass
    assert opened.status_code == 200 and opened.headers["access-control-allow-origin"] == "https://team.example"
    other = client.options("/v1/predict", headers=preflight | {"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_cors_lets_a_browser_get_and_post_with_a_key_and_read_the_request_id(detector):
    """What a web page on an allowed origin needs: preflights for GET and for POST with the key and a content type
    pass (any other method does not), and the answer exposes x-request-id to its script."""
    client = TestClient(create_app(detector, access=Access(api_keys=("k",), cors_origins=("https://team.example",))))
    origin = {"Origin": "https://team.example"}
    for method in ("GET", "POST"):
        preflight = client.options("/v1/model", headers=origin | {"Access-Control-Request-Method": method,
                                                                 "Access-Control-Request-Headers":
                                                                     "authorization, content-type"})
        assert preflight.status_code == 200, method
    assert client.options("/v1/model", headers=origin | {"Access-Control-Request-Method": "DELETE"}).status_code == 400
    answer = client.get("/v1/model", headers=origin | {"Authorization": "Bearer k"})
    assert answer.status_code == 200 and answer.headers["access-control-expose-headers"].lower() == "x-request-id"
    assert answer.headers["x-request-id"]


def _slow(detector, monkeypatch, seconds: float, entered: threading.Event):
    predict = detector.predict

    def slow_predict(*args, **kwargs):
        entered.set()
        time.sleep(seconds)
        return predict(*args, **kwargs)

    monkeypatch.setattr(detector, "predict", slow_predict)


def test_a_full_queue_answers_503_at_once_with_retry_after(monkeypatch):
    detector = Detector.load()
    entered = threading.Event()
    _slow(detector, monkeypatch, 1.5, entered)
    client = TestClient(create_app(detector, Limits(max_queue=1)))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_predict, client)
        assert entered.wait(30)
        started = time.perf_counter()
        busy = _predict(client)
        assert time.perf_counter() - started < 1  # refused at once, not after the queue drains
        assert first.result().status_code == 200
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
    assert _predict(client).status_code == 200  # the queue drained
    assert "cifake_busy_refusals_total 1.0" in client.get("/metrics").text


def test_the_queue_counts_every_waiting_request_and_refuses_the_one_past_its_depth(monkeypatch):
    """max_queue 2: one request running and one waiting fill it (the gauge reads 2), so a third is refused at once;
    the gauge is back at 0 when both have finished."""
    detector = Detector.load()
    entered = threading.Event()
    _slow(detector, monkeypatch, 1.5, entered)
    client = TestClient(create_app(detector, Limits(max_queue=2)))

    def depth() -> float:
        line = next(line for line in client.get("/metrics").text.splitlines() if line.startswith("cifake_queue_depth"))
        return float(line.split()[-1])

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_predict, client)
        assert entered.wait(30)
        waiting = pool.submit(_predict, client)
        deadline = time.perf_counter() + 10
        while depth() < 2 and time.perf_counter() < deadline:
            time.sleep(0.02)
        assert depth() == 2
        assert _predict(client).status_code == 503
        assert running.result().status_code == 200 and waiting.result().status_code == 200
    assert depth() == 0


def test_a_request_past_the_time_limit_gets_504(monkeypatch):
    detector = Detector.load()
    _slow(detector, monkeypatch, 1.0, threading.Event())
    response = _predict(TestClient(create_app(detector, Limits(timeout_s=0.2))))
    assert response.status_code == 504 and "within 0.2 s" in response.json()["error"]


def test_a_body_without_content_length_is_stopped_at_the_limit(detector):
    client = TestClient(create_app(detector, Limits(max_request_bytes=50_000)))
    boundary = "cifakeboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff" * 200_000 + f"\r\n--{boundary}--\r\n".encode()

    def chunks():  # a generator body: sent chunked, with no Content-Length
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    response = client.post("/v1/predict", content=chunks(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert response.json()["error"] == "request body over the limit of 50,000 bytes"  # counted as it came in
    declared = client.post("/v1/predict", content=body, headers={
        "content-type": f"multipart/form-data; boundary={boundary}"})
    assert declared.status_code == 413 and declared.json()["error"].startswith(f"request of {len(body):,} bytes")


def test_every_response_has_a_request_id_and_an_access_log_line(detector, caplog):
    client = TestClient(create_app(detector, access=Access(api_keys=("k",))))
    with caplog.at_level(logging.INFO, logger="cifake.serve.access"):
        ok, refused = client.get("/healthz"), client.get("/v1/model")
    ids = [ok.headers["x-request-id"], refused.headers["x-request-id"]]
    assert len(set(ids)) == 2 and all(len(i) == 16 for i in ids)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cifake.serve.access"]
    assert [(line["request_id"], line["path"], line["status"]) for line in lines] == [
        (ids[0], "/healthz", 200), (ids[1], "/v1/model", 401)]
    assert all(line["ms"] >= 0 and line["method"] == "GET" for line in lines)


def test_metrics_count_requests_images_verdicts_and_name_the_model(detector):
    client = TestClient(create_app(detector))
    verdicts = [r["verdict"] for r in _predict(client, files=3).json()["results"]]
    client.get("/no/such/page")
    text = client.get("/metrics").text
    assert 'cifake_requests_total{method="POST",route="/v1/predict",status="200"} 1.0' in text
    assert 'cifake_requests_total{method="GET",route="other",status="404"} 1.0' in text
    assert "cifake_images_scored_total 3.0" in text
    for verdict in set(verdicts):
        assert f'cifake_verdicts_total{{verdict="{verdict}"}} {float(verdicts.count(verdict))}' in text
    assert 'cifake_request_seconds_bucket{le="30.0",route="/v1/predict"} 1.0' in text
    assert "cifake_queue_depth 0.0" in text
    assert f'cifake_model_info{{backend="onnx",device="cpu",model_id="{detector.model_id}"}} 1.0' in text


def test_serve_refuses_a_network_address_without_a_key():
    result = cli("serve", "--host", "0.0.0.0", check=False)
    assert result.returncode == 2 and "refusing to serve on 0.0.0.0 without an API key" in flat(result.stderr)


@pytest.mark.parametrize(("host", "open_without_a_key"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("myhost.local", False)])
def test_only_a_loopback_address_serves_without_a_key(host, open_without_a_key):
    """A host name may resolve to anything, so it counts as exposed; a key or --insecure opens any address."""
    from cifake.serve.launch import access_for

    if open_without_a_key:
        assert access_for(host, None, None, insecure=False, ray_address=None) == Access()
    else:
        with pytest.raises(ValueError, match=f"refusing to serve on {host} without an API key"):
            access_for(host, None, None, insecure=False, ray_address=None)
    assert access_for(host, None, None, insecure=True, ray_address=None) == Access()
    assert access_for(host, ["k1"], ["https://a.example"], insecure=False, ray_address=None) == \
        Access(("k1",), ("https://a.example",))


def test_keys_come_several_to_an_option_and_not_under_ray_serve():
    from cifake.serve.launch import access_for

    access = access_for("0.0.0.0", ["team-a, team-b,", " ci "], None, insecure=False, ray_address=None)
    assert access.api_keys == ("team-a", "team-b", "ci")
    with pytest.raises(ValueError, match="refusing to serve"):  # only commas and spaces: no key at all
        access_for("0.0.0.0", [" , "], None, insecure=False, ray_address=None)
    with pytest.raises(ValueError, match="control access at the cluster's gateway"):
        access_for("127.0.0.1", ["team-a"], None, insecure=False, ray_address="auto")
    assert access_for("0.0.0.0", None, None, insecure=True, ray_address="auto") == Access()


@pytest.mark.e2e
def test_a_short_soak_has_no_errors_and_flat_memory():
    from soak_serve import soak

    result = soak(requests=2000, clients=16)  # benchmarks/soak_serve.py runs 20,000
    assert result["errors"] == 0, result["error_codes"]
    assert result["growth"] < 0.10, result


@pytest.mark.e2e
def test_two_workers_serve_and_report_metrics_summed_over_both():
    import httpx
    from common import start_server

    server, url = start_server("--workers", "2", "--api-key", "team-key")
    key = {"Authorization": "Bearer team-key"}
    try:
        with ThreadPoolExecutor(4) as pool:  # concurrent, so both workers take requests
            codes = list(pool.map(lambda _: httpx.post(f"{url}/v1/predict", headers=key, timeout=60,
                                                       files=[("files", ("a.jpg", IMAGE))]).status_code, range(40)))
        assert codes == [200] * 40
        assert httpx.post(f"{url}/v1/predict", files=[("files", ("a.jpg", IMAGE))]).status_code == 401
        text = httpx.get(f"{url}/metrics").text
        assert 'cifake_requests_total{method="POST",route="/v1/predict",status="200"} 40.0' in text
        assert "cifake_images_scored_total 40.0" in text
    finally:
        server.terminate()
        server.wait(timeout=30)

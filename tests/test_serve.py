"""The REST service: API tests in-process, then a real server on loopback: bad inputs, load, the page in Chromium."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bad_inputs import corpus
import cifake
from cifake import Detector
from cifake.serve.app import create_app
from cifake.serve.limits import Limits
from conftest import cli, flat, jpeg_bytes, synthetic_image


@pytest.fixture(scope="module")
def bundled():
    return Detector.load()


@pytest.fixture
def client(bundled):
    """A fresh app per test (cheap; the detector is shared), so every test exercises create_app's own code."""
    return TestClient(create_app(bundled, Limits(max_file_bytes=2_000_000, max_files=4)))


def test_the_api_docs_are_served_offline_and_carry_the_package_version(bundled, monkeypatch):
    """The docs page loads Swagger UI from the packaged files (no CDN: the service may have no internet), ReDoc is
    off, and the schema's version is the package's, whatever it is."""
    import cifake.serve.app as app_module

    monkeypatch.setattr(app_module, "__version__", "9.8.7")
    client = TestClient(create_app(bundled))
    assert client.get("/openapi.json").json()["info"]["version"] == "9.8.7"
    page = client.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    assert client.get("/redoc").status_code == 404


def test_a_model_without_a_card_or_figures_says_so(bundled, tmp_path):
    card = TestClient(create_app(bundled, model_dir=tmp_path)).get("/v1/model").json()
    assert card["model_card"] is None and card["metrics"] is None and card["model_id"] == bundled.model_id


def test_health_model_card_and_docs(client, bundled):
    assert client.get("/healthz").json()["status"] == "ok"
    card = client.get("/v1/model").json()
    assert card["config"]["positive_class"] == "REAL" and "Intended use" in card["model_card"]
    assert (card["model_id"], card["backend"], card["device"]) == (bundled.model_id, bundled.backend, bundled.device)
    assert card["input"] == {"size": 32, "preprocess": "resize",
                             "described": "shrunk to 32x32 pixels, as in the CIFAKE study"}
    from cifake.predict import bundled_model_dir  # the figures the bundled model ships (recomputed in test_predict)

    assert card["metrics"] == json.loads((bundled_model_dir() / "metrics.json").read_text())
    assert card["limits"] == {"max_file_bytes": 2_000_000, "max_request_bytes": 64 * 1024 * 1024,
                              "max_pixels": 40_000_000, "max_files": 4, "max_queue": 16, "timeout_s": 30.0}
    openapi = client.get("/openapi.json").json()
    assert openapi["paths"].keys() >= {"/v1/predict", "/v1/explain", "/v1/model"}
    assert openapi["info"]["title"] == "cifake" and openapi["info"]["version"] == cifake.__version__
    assert openapi["info"]["description"].startswith("Is an image real or AI-generated?")
    from importlib.metadata import version

    assert version("cifake") == cifake.__version__  # the package's metadata and the API's version are one
    (threshold,) = openapi["paths"]["/v1/predict"]["post"]["parameters"]
    bounds = next(s for s in threshold["schema"]["anyOf"] if s.get("type") == "number")
    assert threshold["name"] == "threshold" and (bounds["minimum"], bounds["maximum"]) == (0, 1)
    (target,) = openapi["paths"]["/v1/explain"]["post"]["parameters"]
    assert target["schema"]["enum"] == ["predicted", "REAL", "FAKE"]
    assert client.get("/docs").status_code == 200


def test_health_reports_the_backend(client):
    assert client.get("/healthz").json()["backend"] == client.get("/v1/model").json()["backend"] == "onnx"


def test_calibrated_model_answers_unsure_inside_its_band():
    from cifake.models import load_model
    from cifake.predict import bundled_model_dir

    model, config = load_model(bundled_model_dir())
    config = {k: v for k, v in config.items() if k != "calibration"}
    image = jpeg_bytes(synthetic_image(1, 3))
    p = Detector(model, config, "plain").predict([image])[0].prob_fake
    band = {"fake_at": min(1.0, p + 0.2), "real_at": max(0.0, p - 0.2)}
    app = TestClient(create_app(Detector(model, config | {"calibration": {"temperature": 1.0, "decision": band}}, "c")))
    body = app.post("/v1/predict", files=[("files", ("a.jpg", image, "image/jpeg"))]).json()
    assert body["decision"] == band and body["results"][0]["verdict"] == "UNSURE"
    assert body["results"][0]["real_below"] == band["real_at"]
    forced = app.post("/v1/predict?threshold=0.0", files=[("files", ("a.jpg", image, "image/jpeg"))]).json()
    assert forced["decision"] == {"fake_at": 0.0, "real_at": 0.0} and forced["results"][0]["verdict"] == "FAKE"


def test_predict_many_files(client):
    files = [("files", (f"{i}.jpg", jpeg_bytes(synthetic_image(i % 2, i)), "image/jpeg")) for i in range(3)]
    body = client.post("/v1/predict", files=files).json()
    assert [r["source"] for r in body["results"]] == ["0.jpg", "1.jpg", "2.jpg"]
    assert all(r["verdict"] in ("REAL", "FAKE", "UNSURE", "OUT_OF_DOMAIN") and r["error"] is None
               for r in body["results"])
    assert all((r["verdict"] == "OUT_OF_DOMAIN") == (r["in_domain"] is False) for r in body["results"])
    direct = Detector.load().predict([synthetic_image(0, 0)])  # the API scores as the Python API does
    assert body["results"][0]["prob_fake"] == pytest.approx(
        Detector.load().predict([jpeg_bytes(synthetic_image(0, 0))])[0].prob_fake)
    assert direct[0].model_id == body["model_id"]


@pytest.mark.parametrize("name", list(corpus()))
def test_bad_input_corpus_through_the_api(client, name):
    data, problem = corpus()[name]
    response = client.post("/v1/predict", files=[("files", (name, data, "application/octet-stream"))])
    if problem is None:
        result = response.json()["results"][0]
        assert response.status_code == 200 and result["verdict"] in ("REAL", "FAKE", "UNSURE", "OUT_OF_DOMAIN")
        assert 0 <= result["prob_fake"] <= 1 and isinstance(result["in_domain"], bool)
    else:
        assert response.status_code == 422 and problem in response.json()["results"][0]["error"]
    overlay = client.post("/v1/explain", files={"file": (name, data)})
    if problem is None:
        assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(overlay.content)).format == "PNG"
    else:
        assert overlay.status_code == 422 and name in overlay.json()["error"] and problem in overlay.json()["error"]


def test_request_limits_give_4xx_not_500(client):
    good = jpeg_bytes(synthetic_image(1, 0))
    one_bad = [("files", ("a.jpg", good)), ("files", ("b.jpg", b"nope"))]
    mixed = client.post("/v1/predict", files=one_bad)
    assert mixed.status_code == 200 and mixed.json()["results"][1]["error"].startswith("not an image")
    too_many = client.post("/v1/predict", files=[("files", (f"{i}.jpg", good)) for i in range(5)])
    assert too_many.status_code == 413 and "over the limit of 4" in too_many.json()["error"]
    too_big = client.post("/v1/predict", files=[("files", ("big.jpg", b"\xff" * 2_000_001))])
    assert too_big.status_code == 413 and "big.jpg" in too_big.json()["error"]
    assert client.post("/v1/predict").status_code == 422
    assert client.post("/v1/predict", data={"x": "1"}).status_code == 422
    assert client.post("/v1/predict?threshold=2", files=[("files", ("a.jpg", good))]).status_code == 422
    assert client.post("/v1/explain?target=BOTH", files={"file": ("a.jpg", good)}).status_code == 422
    assert client.get("/static/../../etc/passwd").status_code == 404


def test_limits_hold_exactly_at_their_edges(client, bundled):
    good = jpeg_bytes(synthetic_image(1, 0))
    four = client.post("/v1/predict", files=[("files", (f"{i}.jpg", good)) for i in range(4)])
    assert four.status_code == 200 and len(four.json()["results"]) == 4  # max_files itself is allowed
    at_limit = client.post("/v1/predict", files=[("files", ("edge.jpg", b"\xff" * 2_000_000))])
    assert at_limit.status_code == 422 and at_limit.json()["results"][0]["error"].startswith("not an image")
    assert at_limit.json()["error"] == "no image could be read"
    for threshold, code in (("0", 200), ("1", 200), ("-0.01", 422), ("1.01", 422)):
        response = client.post(f"/v1/predict?threshold={threshold}", files=[("files", ("a.jpg", good))])
        assert response.status_code == code, threshold
    body = client.post("/v1/predict?threshold=1", files=[("files", ("a.jpg", good))]).json()
    assert body["decision"] == {"fake_at": 1.0, "real_at": 1.0}
    small = TestClient(create_app(bundled, Limits(max_request_bytes=1_000)))
    too_long = small.post("/v1/predict", files=[("files", ("a.jpg", b"\xff" * 2_000))])
    assert too_long.status_code == 413 and "over the limit of 1,000 bytes" in too_long.json()["error"]
    assert small.post("/v1/predict", files=[("files", ("a.jpg", good))]).status_code == 200
    unnamed = client.post("/v1/predict", files=[("files", ("", good, "image/jpeg"))])  # a part without a file name
    assert unnamed.status_code == 422 and unnamed.json()["error"] == "invalid request"


def test_page_and_static_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "<html" in page.text.lower()
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind) and len(asset.text) > 100
    missing = client.get("/static/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"


def test_the_service_pixel_limit_reaches_the_detector():
    small = TestClient(create_app(Detector.load(), Limits(max_pixels=1_000)))
    big = io.BytesIO()
    Image.fromarray(synthetic_image(1, 2, size=40)).save(big, "PNG")  # 1,600 pixels
    response = small.post("/v1/predict", files=[("files", ("big.png", big.getvalue()))])
    assert response.status_code == 422 and "over the limit of 1,000 pixels" in response.json()["results"][0]["error"]
    fits = small.post("/v1/predict", files=[("files", ("ok.jpg", jpeg_bytes(synthetic_image(1, 2))))])
    assert fits.status_code == 200 and fits.json()["results"][0]["error"] is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cifake", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--max-files", "16", "--max-pixels", "1000000", "--max-file-mb", "0.5",
                             "--backend", "onnx"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    yield _wait_until_up(proc, f"http://127.0.0.1:{port}")
    proc.terminate()
    proc.wait(timeout=20)


def _wait_until_up(proc: subprocess.Popen, url: str) -> str:
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stdout.read().decode()}")


@pytest.mark.e2e
def test_live_server_options_bad_inputs_and_concurrent_load(server):
    limits = httpx.get(f"{server}/v1/model").json()["limits"]
    assert limits["max_pixels"] == 1_000_000 and limits["max_file_bytes"] == 512 * 1024 and limits["max_files"] == 16
    assert httpx.get(f"{server}/healthz").json()["backend"] == "onnx"
    for name, (data, problem) in corpus().items():
        response = httpx.post(f"{server}/v1/predict", files=[("files", (name, data))], timeout=60)
        assert response.status_code == (200 if problem is None else 422), name
    large = io.BytesIO()
    Image.new("RGB", (1100, 1000)).save(large, "PNG")  # 1.1 megapixels, a few KB
    refused = httpx.post(f"{server}/v1/predict", files=[("files", ("large.png", large.getvalue()))], timeout=60)
    assert refused.status_code == 422 and "over the limit of 1,000,000 pixels" in refused.text
    heavy = httpx.post(f"{server}/v1/predict", files=[("files", ("heavy.jpg", b"\xff" * 600_000))], timeout=60)
    assert heavy.status_code == 413 and "heavy.jpg" in heavy.json()["error"]

    images = [jpeg_bytes(synthetic_image(i % 2, i)) for i in range(8)]
    expected = [p.prob_fake for p in Detector.load().predict(images)]
    assert len(set(expected)) == 8  # distinct scores: a result given to the wrong request would show

    def client(k: int) -> list[tuple[int, str, float]]:
        with httpx.Client(base_url=server, timeout=60) as http:
            answers = []
            for j in range(50):
                response = http.post("/v1/predict", files=[("files", (f"{k}-{j}.jpg", images[k]))])
                result = response.json()["results"][0]
                answers.append((response.status_code, result["source"], result["prob_fake"]))
            return answers

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(client, range(8)))
    seconds = time.perf_counter() - started
    for k, per_client in enumerate(answers):
        assert [code for code, _, _ in per_client] == [200] * 50
        assert [source for _, source, _ in per_client] == [f"{k}-{j}.jpg" for j in range(50)]
        assert all(abs(p - expected[k]) < 1e-6 for _, _, p in per_client), k
    print(f"\n8 clients x 50 requests: {400 / seconds:.0f} requests/s")
    assert httpx.get(f"{server}/healthz").status_code == 200  # still up


@pytest.mark.e2e
def test_serve_with_a_run_folder_model_and_a_bad_one(tmp_path):
    from cifake.models import create_model, save_model

    import torch

    torch.manual_seed(0)
    run = save_model(create_model("paper"), tmp_path / "my-run")
    bad = subprocess.run([sys.executable, "-m", "cifake", "serve", "--model", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing" in bad.stderr
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cifake", "serve", "--port", str(port), "--model", str(run),
                             "--backend", "torch"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = _wait_until_up(proc, f"http://127.0.0.1:{port}")
        health = httpx.get(f"{url}/healthz").json()
        assert health["backend"] == "torch" and health["model_id"].startswith("my-run-")
        image = jpeg_bytes(synthetic_image(0, 1))
        body = httpx.post(f"{url}/v1/predict", files=[("files", ("a.jpg", image))], timeout=60).json()
        assert body["results"][0]["prob_fake"] == pytest.approx(
            Detector.load(run, backend="torch").predict([image])[0].prob_fake, abs=1e-6)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.e2e
def test_web_page_in_headless_chromium(server, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (make browser)")
        pytest.skip("no chromium on this machine (make browser installs it)")
    from playwright.sync_api import sync_playwright

    image = tmp_path / "photo.jpg"
    image.write_bytes(jpeg_bytes(synthetic_image(1, 4)))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page()
        page.goto(server)
        page.wait_for_function("document.getElementById('model-id').textContent.startsWith('bundled-')")
        page.set_input_files("#picker", str(image))
        page.wait_for_selector(".card .verdict", timeout=30_000)
        verdict = page.inner_text(".card .verdict")
        probability = page.inner_text(".card .prob")
        page.wait_for_function("() => { const i = document.querySelector('.card img.overlay');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
        width = page.evaluate("document.querySelector('.card img.overlay').naturalWidth")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    expected = Detector.load().predict([image])[0]
    assert verdict == expected.verdict and probability == f"{100 * expected.prob_fake:.1f}%"
    assert width >= 512


def _chromium(playwright):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (make browser)")
        pytest.skip("no chromium on this machine (make browser installs it)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"])


@pytest.mark.e2e
def test_the_api_docs_page_works_offline_in_headless_chromium(server):
    from playwright.sync_api import sync_playwright

    elsewhere = []

    def only_the_server(route):  # an offline network: anything but the server itself fails
        if route.request.url.startswith(server):
            return route.continue_()
        elsewhere.append(route.request.url)
        return route.abort()

    with sync_playwright() as playwright:
        browser = _chromium(playwright)
        page = browser.new_page()
        page.route("**/*", only_the_server)
        page.goto(f"{server}/docs")
        page.wait_for_selector(".swagger-ui .opblock-summary-path", timeout=30_000)
        paths = page.eval_on_selector_all(".opblock-summary-path", "nodes => nodes.map(n => n.textContent)")
        browser.close()
    assert {"/v1/predict", "/v1/explain", "/v1/model"} <= {p.replace("\u200b", "") for p in paths}
    assert elsewhere == []


@pytest.mark.e2e
def test_a_live_server_stops_a_chunked_upload_at_the_limit():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cifake", "serve", "--port", str(port), "--max-request-mb", "1",
                             "--backend", "onnx"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sent = [0]

    def endless():  # 64 MB in 64 KB chunks, with no Content-Length
        boundary = b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.jpg\"\r\n\r\n"
        yield boundary
        for _ in range(1024):
            sent[0] += 65536
            yield b"\xff" * 65536

    try:
        url = _wait_until_up(proc, f"http://127.0.0.1:{port}")
        try:
            response = httpx.post(f"{url}/v1/predict", content=endless(), timeout=60,
                                  headers={"content-type": "multipart/form-data; boundary=b"})
            assert response.status_code == 413 and "over the limit" in response.json()["error"]
        except httpx.TransportError:
            pass  # the server answered and closed the connection while the client was still sending
        assert sent[0] < 16 * 1024 * 1024, "the server read far past its limit"
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_options_come_from_limits_in_their_own_units_and_are_checked(monkeypatch):
    """`cifake serve`'s limit options are generated from Limits: MB given, bytes kept; defaults are Limits'."""
    from cifake.serve import launch

    launched = []
    monkeypatch.setattr(launch, "serve_here", lambda host, port, detector, limits, *rest: launched.append(limits))
    cli("serve", "--backend", "torch", "--device", "cpu")
    cli("serve", "--backend", "torch", "--device", "cpu", "--max-file-mb", "0.5", "--max-request-mb", "2",
        "--timeout", "5", "--max-queue", "3", "--max-files", "7", "--max-pixels", "1000")
    assert launched[0] == Limits()
    assert launched[1] == Limits(max_file_bytes=512 * 1024, max_request_bytes=2 * 1024 * 1024, timeout_s=5.0,
                                 max_queue=3, max_files=7, max_pixels=1000)
    refused = cli("serve", "--backend", "torch", "--device", "cpu", "--max-queue", "0", check=False)
    assert refused.returncode == 2 and "service limit max_queue must be >= 1, not 0" in flat(refused.stderr)
    assert len(launched) == 2


def test_a_request_with_no_files_is_refused_with_422_saying_what_to_send():
    """The check that both the FastAPI app and the Ray Serve deployment call on the form's files."""
    import asyncio

    from fastapi import HTTPException

    from cifake.serve.app import read_uploads

    with pytest.raises(HTTPException) as refused:
        asyncio.run(read_uploads([], Limits()))
    assert refused.value.status_code == 422 and refused.value.detail == ("send one or more images as multipart form "
                                                                         "field 'files'")


def test_a_file_sent_without_a_name_is_reported_as_upload(client):
    """A multipart part with filename="" (some clients send that for a blob) is still scored, under "upload"."""
    image = jpeg_bytes(synthetic_image(1, 2))
    body = (b'--b\r\nContent-Disposition: form-data; name="files"; filename=""\r\nContent-Type: image/jpeg\r\n\r\n'
            + image + b"\r\n--b--\r\n")
    answer = client.post("/v1/predict", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 200 and [r["source"] for r in answer.json()["results"]] == ["upload"]

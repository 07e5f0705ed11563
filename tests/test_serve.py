"""The REST service: API tests in-process, then a real server on loopback: bad inputs, load, the page in Chromium."""

import io
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
from cifake import Detector
from cifake.serve import Limits, create_app
from conftest import jpeg_bytes, synthetic_image


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(Detector.load(), Limits(max_file_bytes=2_000_000, max_files=4)))


def test_health_model_card_and_docs(client):
    assert client.get("/healthz").json()["status"] == "ok"
    card = client.get("/v1/model").json()
    assert card["config"]["positive_class"] == "REAL" and "Intended use" in card["model_card"]
    assert card["metrics"]["test"]["accuracy"] > 0.9
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/v1/predict", "/v1/explain", "/v1/model"}
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
    assert all(r["verdict"] in ("REAL", "FAKE", "UNSURE") and r["error"] is None for r in body["results"])
    direct = Detector.load().predict([synthetic_image(0, 0)])  # the API scores as the Python API does
    assert body["results"][0]["prob_fake"] == pytest.approx(
        Detector.load().predict([jpeg_bytes(synthetic_image(0, 0))])[0].prob_fake)
    assert direct[0].model_id == body["model_id"]


@pytest.mark.parametrize("name", list(corpus()))
def test_bad_input_corpus_through_the_api(client, name):
    data, problem = corpus()[name]
    response = client.post("/v1/predict", files=[("files", (name, data, "application/octet-stream"))])
    if problem is None:
        assert response.status_code == 200 and response.json()["results"][0]["verdict"] in ("REAL", "FAKE", "UNSURE")
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cifake", "serve", "--port", str(port), "--max-files", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"server did not start: {proc.stdout.read().decode()}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_live_server_bad_inputs_and_concurrent_load(server):
    for name, (data, problem) in corpus().items():
        response = httpx.post(f"{server}/v1/predict", files=[("files", (name, data))], timeout=60)
        assert response.status_code == (200 if problem is None else 422), name
    images = [jpeg_bytes(synthetic_image(i % 2, i)) for i in range(8)]

    def client(k: int) -> list[int]:
        with httpx.Client(base_url=server, timeout=60) as http:
            return [http.post("/v1/predict", files=[("files", (f"{k}-{j}.jpg", images[k]))]).status_code
                    for j in range(50)]

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        codes = [code for result in pool.map(client, range(8)) for code in result]
    seconds = time.perf_counter() - started
    assert codes == [200] * 400
    print(f"\n8 clients x 50 requests: {400 / seconds:.0f} requests/s")
    assert httpx.get(f"{server}/healthz").status_code == 200  # still up


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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

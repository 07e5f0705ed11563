"""Scale-out on Ray, on a local Ray instance: `cifake predict --ray-address` (Ray Data) writes what the local
path writes, and `cifake serve --ray-address` (Ray Serve) answers the local detector's verdicts on 1,000 CIFAKE
test images."""

import signal
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cifake import Detector
from conftest import cli, jpeg_bytes, synthetic_image

pytestmark = pytest.mark.e2e


def test_bulk_prediction_on_ray_data_writes_the_local_rows(tmp_path):
    pytest.importorskip("ray.data", reason="ray is in the dev extra; CI installs it")
    folder = tmp_path / "images"
    for i in range(300):
        (folder / f"part{i % 3}").mkdir(parents=True, exist_ok=True)
        (folder / f"part{i % 3}" / f"{i:04d}.jpg").write_bytes(jpeg_bytes(synthetic_image(i % 2, i)))
    (folder / "part0" / "broken.jpg").write_text("not an image")
    local = cli("predict", folder, "--csv", check=False)
    on_ray = subprocess.run([sys.executable, "-m", "cifake", "predict", str(folder), "--csv", "--ray-address", "local",
                             "--actors", "2"], capture_output=True, text=True, timeout=300)
    assert local.returncode == on_ray.returncode == 1  # the broken file is named and counted, on both paths
    assert "broken.jpg: not an image" in on_ray.stderr
    assert on_ray.stdout.splitlines() == local.stdout.splitlines()
    assert len(local.stdout.splitlines()) == 1 + 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ray_serve_answers_the_local_verdicts_on_1000_test_images(cifake_data):
    pytest.importorskip("ray.serve", reason="ray[serve] is in the dev extra; CI installs it")
    with zipfile.ZipFile(cifake_data / "test.zip") as archive:
        members = [i for i in archive.infolist() if i.filename.endswith(".jpg")]
        chosen = members[:: len(members) // 1000][:1000]
        images = [(i.filename, archive.read(i)) for i in chosen]
    expected = Detector.load().predict([data for _, data in images])
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cifake", "serve", "--ray-address", "local", "--port",
                               str(port), "--replicas", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300  # Ray starts its instance, controller and replicas first
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail(f"cifake serve --ray-address local did not answer /healthz within 300 s (exit code "
                        f"{server.poll()})")

        def request(start: int) -> list[dict]:
            batch = [("files", (name, data)) for name, data in images[start:start + 50]]
            response = httpx.post(f"{url}/v1/predict", files=batch, timeout=120)
            assert response.status_code == 200, response.text
            return response.json()["results"]

        with ThreadPoolExecutor(4) as pool:  # concurrent requests: their images are batched together
            results = [r for part in pool.map(request, range(0, 1000, 50)) for r in part]
    finally:
        server.send_signal(signal.SIGINT)  # the command shuts Ray Serve and its Ray instance down
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    assert [r["source"] for r in results] == [name for name, _ in images]
    assert [r["verdict"] for r in results] == [p.verdict for p in expected]
    assert max(abs(r["prob_fake"] - p.prob_fake) for r, p in zip(results, expected)) < 1e-5

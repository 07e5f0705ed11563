"""Joining a Ray cluster as a user would: a head started here with token authentication, `cifake search
--ray-address` with its token, with a wrong one, and an address where nothing listens (search, reproduce and
generate share one connection helper)."""

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cifake.cluster import ClusterUnreachable, check_reachable, split_address
from conftest import flat

pytestmark = pytest.mark.e2e
TOKEN = "cifake-test-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A Ray head on this machine that requires a token; its address. Stopped by signal, not `ray stop` (which
    would stop every Ray instance on the machine, other tests' too)."""
    pytest.importorskip("ray", reason="ray is in the dev extra; CI installs it")
    port = _free_port()
    home = Path(tempfile.mkdtemp(prefix="cifake-head-"))
    temp_dir = tempfile.mkdtemp(prefix="rh")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    ray = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen([str(ray), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            check_reachable(address, timeout=1)
            break
        except ClusterUnreachable:
            if time.monotonic() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("the Ray head did not start within 60 s")
            time.sleep(0.5)
    time.sleep(2)  # the GCS listens before the head node has registered
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    try:  # `ray start --block` often outlives SIGTERM: waiting longer than this only held the test worker
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _cifake(*args, token: str | None, timeout: float = 240) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = tempfile.mkdtemp(prefix="cifake-client-")  # no ~/.ray/auth_token but the one given
    if token:
        env["RAY_AUTH_TOKEN"] = token
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cifake", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return done, time.monotonic() - started


def _search(data, out, address):
    return ["search", "--data", data, "--out", out, "--ray-address", address, "--filters", "4,8", "--conv-layers",
            "1", "--stages", "1", "--epochs", "1", "--limit", "60", "--quiet", "--json"]


@pytest.mark.xdist_group("ray_head")  # one worker starts the head for both
def test_a_search_runs_on_a_cluster_that_requires_a_token(head, learnable_zip, tmp_path):
    done, _ = _cifake(*_search(learnable_zip, tmp_path / "search", head), token=TOKEN)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert sorted(r["name"] for r in summary["stage1"]) == ["f4-c1-dnone", "f8-c1-dnone"]
    assert (tmp_path / "search" / "trials" / "f4-c1-dnone" / "run.json").is_file()


@pytest.mark.xdist_group("ray_head")  # one worker starts the head for both
def test_a_wrong_token_is_a_clear_error_within_30_seconds(head, learnable_zip, tmp_path):
    done, seconds = _cifake(*_search(learnable_zip, tmp_path / "search", head), token="not-the-token")
    message = flat(done.stderr)
    # 30 s for the join, and 15 more for the command's start-up (torch, ray) on a busy machine
    assert done.returncode == 2 and seconds < 45, (seconds, done.stderr)
    assert f"Ray cluster at {head} refused the connection" in message and "RAY_AUTH_TOKEN" in message
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [
    ["search", "--data", "DATA", "--out", "OUT"],
    ["reproduce", "--data", "DATA", "--out", "OUT"],
    ["generate", "--out", "OUT", "--per-class", "1"],
])
def test_an_address_where_nothing_listens_fails_fast(command, learnable_zip, tmp_path):
    args = [str(learnable_zip) if a == "DATA" else str(tmp_path / "out") if a == "OUT" else a for a in command]
    done, seconds = _cifake(*args, "--ray-address", f"127.0.0.1:{_free_port()}", token=None, timeout=120)
    assert done.returncode == 2 and seconds < 30, (seconds, done.stderr)
    assert "no Ray cluster answers at 127.0.0.1:" in flat(done.stderr) and "Traceback" not in done.stderr


def test_addresses_are_read_as_ray_writes_them():
    assert split_address("10.0.0.5:6380") == ("10.0.0.5", 6380)
    assert split_address("ray://head.example:10002") == ("head.example", 10002)
    assert split_address("ray://head.example") == ("head.example", 10001)
    assert split_address("head") == ("head", 6379)
    with pytest.raises(ValueError, match="the port must be a number"):
        split_address("head:port")


def test_a_failed_join_leaves_the_auth_mode_as_it_found_it(monkeypatch):
    pytest.importorskip("ray", reason="ray is in the dev extra; CI installs it")
    from cifake.cluster import ray_session

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    with pytest.raises(ClusterUnreachable, match="no Ray cluster answers"):
        with ray_session(f"127.0.0.1:{_free_port()}"):
            pass
    assert "RAY_AUTH_MODE" not in os.environ



def test_ray_workers_keep_a_second_threads_large_tensors():
    """A Ray Tune trial trains in a worker's second thread: its 64 MiB tensors (a 4096x4096 weight's gradient),
    made and freed on every step, must come back from the kept heap, not be page-faulted in afresh."""
    ray = pytest.importorskip("ray", reason="ray is in the dev extra; CI installs it")
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's arenas are what is tested")
    from cifake.cluster import ray_session

    def faults_per_allocation() -> list[int]:  # defined here, so Ray ships the function itself to its worker
        import resource
        import threading

        import torch

        from cifake.training.memory import keep_freed_memory

        keep_freed_memory()
        faults = []

        def allocate():
            for _ in range(16):
                before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                torch.empty(4096, 4096).fill_(1.0)
                faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

        second = threading.Thread(target=allocate)
        second.start()
        second.join()
        return faults

    with ray_session(num_cpus=1):
        faults = ray.get(ray.remote(faults_per_allocation).remote())
    # mapped afresh, each faults in all of its 16,384 pages of 4 KiB; kept, the last ones fault in none
    assert faults[0] > 10_000 and max(faults[-4:]) < 1_000, faults


def test_the_token_is_looked_for_where_ray_looks_in_ray_s_order(monkeypatch, tmp_path):
    """RAY_AUTH_TOKEN, then the file RAY_AUTH_TOKEN_PATH names, then ~/.ray/auth_token; an empty variable is
    no token."""
    from cifake.cluster import auth_token_source

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert auth_token_source() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(TOKEN)
    assert auth_token_source() == str(tmp_path / ".ray" / "auth_token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "elsewhere"))
    assert auth_token_source() == f"RAY_AUTH_TOKEN_PATH ({tmp_path / 'elsewhere'})"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "")
    assert auth_token_source() == f"RAY_AUTH_TOKEN_PATH ({tmp_path / 'elsewhere'})"
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    assert auth_token_source() == "RAY_AUTH_TOKEN"


@pytest.mark.parametrize(("token", "mode", "during"), [
    (True, None, "token"),  # a token to send: token mode on for the span of the session
    (False, None, None),  # nothing to send: left alone
    (True, "disabled", "disabled"),  # the user's own setting wins
])
def test_token_mode_is_on_while_joining_with_a_token_and_left_as_found(monkeypatch, tmp_path, token, mode, during):
    import types

    from cifake import cluster

    seen = []
    fake_ray = types.SimpleNamespace(is_initialized=lambda: False, shutdown=lambda: None, __version__="test",
                                     init=lambda **kwargs: seen.append(os.environ.get("RAY_AUTH_MODE")))
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setattr(cluster, "check_reachable", lambda address: None)
    monkeypatch.setattr(cluster, "_set_auth_mode", lambda value: (os.environ.__setitem__("RAY_AUTH_MODE", value)
                                                                   if value else os.environ.pop("RAY_AUTH_MODE")))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    if token:
        monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    else:
        monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    if mode:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    else:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with cluster.ray_session("127.0.0.1:6379"):  # nothing is sent: ray.init is a stand-in
        pass
    assert seen == [during] and os.environ.get("RAY_AUTH_MODE") == mode

"""Connecting to Ray: one helper for every command that uses it (search, reproduce, generate).

`ray_session(address)` starts Ray on this machine (address None or "local") or joins an existing cluster, and
lets go of it when the block ends. Joining fails fast and says what to check:

- nothing answers at the address: a TCP connection is tried first (5 s), because `ray.init` itself retries an
  unreachable head for many minutes and does not stop on SIGTERM meanwhile;
- the head refuses the connection (token authentication, the default since Ray 2.59 for local clusters): the
  token is taken from RAY_AUTH_TOKEN, the file named by RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, as Ray
  documents; when one is found and RAY_AUTH_MODE is unset, token mode is switched on for this process, since Ray
  sends no token otherwise. A head without authentication ignores the token.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# glibc gives each thread but the main one an arena of its own, whose heaps hold 64 MiB at most, and maps a larger
# allocation there afresh (unmapping it when freed) whatever mallopt says (cifake.training.memory). Ray Tune runs a
# trial's training in a second thread, so the gradient of a 4096x4096 weight was page-faulted in on every step: the
# largest dense head's fp32 step took 432 ms there against 332 on a main thread and 346 in a second thread with one
# arena (`benchmarks/bench_step.py --runners main,thread,thread-one-arena`, AVX2 CPU). glibc reads this once, when a
# process starts, so it goes into the environment of Ray's workers.
ONE_ARENA = {"MALLOC_ARENA_MAX": "1"}
CONNECT_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"ray": 10001, "gcs": 6379}  # Ray Client's port, the head's GCS port


class ClusterUnreachable(ConnectionError):
    """No Ray cluster could be joined at the address given; the message says what to check."""


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None
                ) -> Iterator[None]:
    """Ray for the span of a block: a local instance (address None or "local"; `num_cpus` / `num_gpus` limit
    it), or the cluster at `address` ("auto", "HOST:PORT", "ray://HOST:PORT"). A Ray already initialised in this
    process is used as it is and left running."""
    import ray  # the distributed extra: cifake runs without it

    if ray.is_initialized():
        yield
        return
    # trials train in a worker's second thread: one malloc arena keeps their large tensors (cifake.training.memory)
    options = {"include_dashboard": False, "log_to_driver": False, "runtime_env": {"env_vars": dict(ONE_ARENA)}}
    joining = address not in (None, "local")
    # Ray sends no token unless token mode is on: switch it on when there is a token to send (a head without
    # authentication ignores it), and back off when the block ends, also when joining failed
    token_mode_set = joining and bool(auth_token_source()) and "RAY_AUTH_MODE" not in os.environ
    if token_mode_set:
        _set_auth_mode("token")
    try:
        if joining:
            _join(ray, address, options)
        else:  # "local": a new instance, even where a cluster runs on this machine
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, **options)
        yield
    finally:
        ray.shutdown()  # a local instance started here stops here; a cluster connection is let go
        if token_mode_set:
            _set_auth_mode(None)


def _join(ray, address: str, options: dict) -> None:
    """Connect to the cluster at `address`, or raise ClusterUnreachable saying what to check."""
    token = auth_token_source()
    if address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address, **options)
    except ConnectionError as exc:
        held = f"a token from {token} was sent" if token else \
            "no token was found (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)"
        raise ClusterUnreachable(
            f"Ray cluster at {address} refused the connection ({exc}); {held}. If the cluster uses token "
            "authentication, give this machine its token (`ray get-auth-token` on the head prints it) in "
            f"RAY_AUTH_TOKEN or ~/.ray/auth_token; also check that the head runs Ray {ray.__version__} like "
            "this machine") from None


def _set_auth_mode(mode: str | None) -> None:
    """Set (or unset) RAY_AUTH_MODE for this process. Ray reads its config once, at import; refreshing it is what
    Ray itself does when it turns token mode on for a new local cluster (ray._private.authentication)."""
    if mode:
        os.environ["RAY_AUTH_MODE"] = mode
    else:
        os.environ.pop("RAY_AUTH_MODE", None)
    try:
        from ray._raylet import Config
    except ImportError:  # another Ray: it reads the environment when it connects
        return
    Config.initialize("")


def auth_token_source() -> str | None:
    """Where this process would read a Ray token from, or None when there is none (the token is not read here)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH ({path})"
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ClusterUnreachable unless something accepts a TCP connection at the address's host and port."""
    host, port = split_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterUnreachable(
            f"no Ray cluster answers at {address} ({host}:{port}: {reason}). Check the address (`ray start --head` "
            f"prints it), that the head is running (`ray status --address {host}:{port}` on it), and that this "
            f"machine can reach port {port}") from None


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of "HOST[:PORT]" or "ray://HOST[:PORT]", with Ray's default ports."""
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host:
        raise ValueError(f"Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        return host.strip("[]"), int(port) if port else DEFAULT_PORTS["ray" if client else "gcs"]
    except ValueError:
        raise ValueError(f"Ray address {address!r}: the port must be a number") from None

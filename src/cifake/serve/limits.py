"""What the service allows and who may use it: plain settings (no FastAPI here), so `cifake serve` builds its
options from them at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from cifake.settings import Allowed, check_settings, setting

MB = 1024 * 1024
POSITIVE = Allowed(low=0, low_open=True)


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = setting(20 * MB, "Largest upload, in MB.", POSITIVE, flag="--max-file-mb", unit=MB)
    max_request_bytes: int = setting(64 * MB, "Largest request body, in MB, enforced as it streams in (also without "
                                              "Content-Length).", POSITIVE, flag="--max-request-mb", unit=MB)
    max_pixels: int = setting(40_000_000, "Largest image, in pixels (decompression bombs are refused).", POSITIVE)
    max_files: int = setting(64, "Most files per request.", Allowed(low=1))
    max_queue: int = setting(16, "Requests waiting for or running inference; more get 503 with Retry-After at once.",
                             Allowed(low=1))
    timeout_s: float = setting(30.0, "Seconds a request may wait for inference before a 504.", POSITIVE,
                               flag="--timeout")

    def __post_init__(self) -> None:
        check_settings(self, "service limit")


@dataclass(frozen=True)
class Access:
    """Who may use the service: with api_keys, /v1/* needs one as a bearer token; cors_origins are the web
    origins whose pages may call the API from a browser (none by default)."""

    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()

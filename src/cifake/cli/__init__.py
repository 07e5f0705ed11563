"""The `cifake` command line: one app, its commands in a module per group (data, train, search, predict, serve,
generate)."""

from __future__ import annotations

import sys

from cifake.cli import data, train, search, predict, serve, generate  # noqa: F401, I001  (each registers its commands;
# this order is --help's)
from cifake.cli.common import app


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

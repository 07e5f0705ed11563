"""Settings declared once: a dataclass field carries its default, its --help text and the values it may take, so
the CLI builds its options from the dataclass (cifake.cli.options) and the dataclass checks itself. No imports
beyond the standard library: the CLI reads these at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Allowed:
    """The values a setting may take, as a check and as words for its error message."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression the whole value must match
    described: str = ""  # the pattern in words, for the error message

    def admits(self, value) -> bool:
        if self.pattern:
            return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None
        if self.choices:
            return value in self.choices
        return ((self.low is None or value > self.low or (value == self.low and not self.low_open))
                and (self.high is None or value < self.high or (value == self.high and not self.high_open)))

    def __str__(self) -> str:
        if self.pattern:
            return self.described
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def setting(default, help: str, allowed: Allowed | None = None, flag: str | None = None, resumable: bool = True,
            unit: float = 1):
    """A setting: its default, its --help text, the values it may take, its option name when that is not the
    field's, whether a training checkpoint must share it with the run that resumes it (resumable=False: the run
    may change it, e.g. extend its epochs), and the option's unit when it is not the field's (the option's value
    times `unit` is the field's, e.g. MB given for bytes kept)."""
    return field(default=default, metadata={"help": help, "allowed": allowed, "flag": flag, "fixed": resumable,
                                            "unit": unit})


def check_settings(settings, kind: str) -> None:
    """Refuse a dataclass of settings whose field holds a value its `allowed` does not admit."""
    for one in fields(settings):
        allowed, value = one.metadata.get("allowed"), getattr(settings, one.name)
        if allowed and not allowed.admits(value):
            raise ValueError(f"{kind} {one.name} must be {allowed}, not {value!r}")

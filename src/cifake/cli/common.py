"""What every command shares: the app, the one error path, the options used by several commands, the
terminal table and JSON writers. Commands live in one module per group and stay thin: parse, call, print."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from cifake.choices import BACKENDS, DEVICE_HELP, PREPROCESSING
from cifake.errors import SearchInterrupted, WeightsNotFound

console = Console()  # wraps at the terminal's width (80 columns when piped)
err = Console(stderr=True, soft_wrap=True)

# Errors a user can fix (a bad argument, file or setting, a device that is not there, a cluster that cannot be
# reached): their message on stderr and exit code 2.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, ImportError, ConnectionError)


@contextmanager
def one_error_path(ctx: click.Context):
    """How every command ends when it cannot finish: a message, never a traceback. Exit 2 for a user error,
    130 for Ctrl-C or a stop signal (finished work is kept, and the message says how to resume)."""
    try:
        yield
    except SearchInterrupted as exc:  # its message says how to resume
        err.print(f"[yellow]stopped:[/] {exc}")
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        how = ("add --resume to the same command to continue from the last finished epoch"
               if ctx.invoked_subcommand == "train" else "run the same command again to resume")
        err.print(f"[yellow]stopped:[/] interrupted. Finished work is kept; {how}.")
        raise typer.Exit(130) from None
    except (*USER_ERRORS, WeightsNotFound) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err.print("[red]error:[/] ", end="")
        err.print(str(message), markup=False, highlight=False)
        raise typer.Exit(2) from None


class _Commands(TyperGroup):
    """The command group: every command runs inside one_error_path."""

    def invoke(self, ctx: click.Context):
        with one_error_path(ctx):
            return super().invoke(ctx)


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True,
                  help="The `cifake` command line. Labels: REAL = 1 (positive), FAKE = 0.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect, audit and assemble CIFAKE sources.")
app.add_typer(data_app, name="data")


def choice(name: str, values: Iterable[str]) -> type[Enum]:
    """An Enum of the library's allowed values: --help lists them and the parser refuses any other."""
    return Enum(name, {value: value for value in values}, type=str)


def value(option):
    """A choice option's plain value (the library takes strings)."""
    return option.value if isinstance(option, Enum) else option


Backend = choice("Backend", BACKENDS)

# --- options and arguments used by several commands -----------------------------------------------------------
Source = Annotated[Path, typer.Argument(
    help="CIFAKE folder tree, zip, folder of split zips, or folder with REAL/ and FAKE/.")]
DataOption = Annotated[Path, typer.Option("--data", envvar="CIFAKE_DATA",
                                          help="CIFAKE source (default: $CIFAKE_DATA).")]
Cache = Annotated[Optional[Path], typer.Option("--cache", envvar="CIFAKE_CACHE",
                                               help="Cache folder for decoded images.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the figures as JSON instead of tables.")]
RunDir = Annotated[Path, typer.Argument(help="Run folder holding model.safetensors and config.json.")]
Preprocessing = choice("Preprocessing", PREPROCESSING)
TestShare = Annotated[float, typer.Option(help="Share held out as test when the data has no train/ and test/ folders "
                                              "(seeded, stratified by label and source; recorded).")]
ExcludeSource = Annotated[Optional[list[str]], typer.Option(
    help="Train without this source (a folder under REAL/ or FAKE/); repeatable. Its test images stay, so the test "
         "table shows how the model does on it.")]
ModelDir = Annotated[Optional[Path], typer.Option(help="Run folder of a trained model (default: the bundled one).")]
BackendOption = Annotated[Backend, typer.Option(help="Scoring backend (auto: onnxruntime when installed).")]
Ray = Annotated[bool, typer.Option("--ray/--no-ray", help="Run trials through Ray Tune, or in-process.")]
RayAddress = Annotated[Optional[str], typer.Option(envvar="RAY_ADDRESS", help=(
    "Existing Ray cluster to use (HOST:PORT, ray://HOST:PORT or auto); its token, if it has one, from "
    "RAY_AUTH_TOKEN or ~/.ray/auth_token."))]
DeviceOption = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
GpusPerTrial = Annotated[Optional[float], typer.Option(help=(
    "GPUs each trial asks Ray for; fractions share one (0.25: four trials per GPU). Default: 0.25 where the Ray "
    "cluster has GPUs, else 0."))]


def use_device(spec: str) -> str:
    """Resolve a --device option (a clear error if it is not there) and say on stderr which device runs."""
    from cifake.devices import device_name, resolve_device

    device = resolve_device(spec)
    err.print(f"device: {device} ({device_name(device)})", markup=False, highlight=False)
    return str(device)


def load(source: Path, cache: Path | None, quiet: bool, refresh: bool = False, preprocess=None):
    """A source decoded (once, then from the cache) at an input size and preprocessing (default 32 px, resize)."""
    from cifake.data import Preprocess, load_dataset

    return load_dataset(source, preprocess=preprocess or Preprocess(), cache_root=cache, refresh=refresh,
                        progress=not quiet)


def load_for_model(source: Path, cache: Path | None, quiet: bool, run_dir: Path | None):
    """A source decoded at the input of the model in `run_dir` (its size and preprocessing, from its config; the
    bundled model's when None)."""
    from cifake.data import Preprocess
    from cifake.runfolder import RunFolder

    if run_dir is None:
        from cifake.models.io import bundled_model_dir

        run_dir = bundled_model_dir()
    folder = RunFolder(run_dir)
    preprocess = Preprocess.of_model(folder.read_config()) if folder.config.is_file() else None
    return load(source, cache, quiet, preprocess=preprocess)


# --- output ----------------------------------------------------------------------------------------------------
def print_json(value) -> None:
    print(json.dumps(value, indent=2))


def print_table(header: Sequence[str], rows: Iterable[Sequence], title: str | None = None) -> None:
    """The terminal table of every command: the first column may wrap, the others (figures) never do, so every
    number stays whole at 80 columns. A header may hold a newline to stay narrow. No edge: its two blank columns
    would fold the longest topology names in `search-status`'s seven columns."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=i > 0, overflow="fold")
    for row in rows:
        table.add_row(*(fmt(cell) for cell in row))
    console.print(table)


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, str)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def print_metrics(by_split: dict[str, dict]) -> None:
    """The study's metrics (REAL positive) and more, one column per split, then each split's confusion matrix."""
    keys = ("n", "accuracy", "loss", "precision", "recall", "f1", "roc_auc", "average_precision",
            "fake_precision", "fake_recall", "fake_f1")
    print_table(["metric", *by_split], [[key, *(m.get(key) for m in by_split.values())] for key in keys],
                "Metrics (REAL = positive class, as in the study)")
    for split, metrics in by_split.items():
        (tn, fp), (fn, tp) = metrics["confusion_matrix"]["matrix"]
        console.print(f"{split} confusion matrix: true FAKE -> {tn:,} FAKE, {fp:,} REAL; "
                      f"true REAL -> {fn:,} FAKE, {tp:,} REAL")
    for split, metrics in by_split.items():
        if metrics.get("per_source"):
            print_sources(metrics["per_source"], f"{split}: accuracy per source")


def print_sources(per_source: dict[str, dict], title: str) -> None:
    """compute_metrics' per-source scores as a table."""
    print_table(["source", "label", "n", "accuracy", "P(REAL)", "ROC-AUC"],
                [[name, row["label"], row["n"], row["accuracy"], row["mean_prob_real"], row["roc_auc"]]
                 for name, row in per_source.items()], title)

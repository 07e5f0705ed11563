"""`cifake data info | audit | build | subset`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cifake.cli.common import (AsJson, Cache, Preprocessing, Quiet, Source, console, data_app, load, print_json,
                               print_table, value)


@data_app.command("info")
def data_info(
    source: Source,
    image_size: Annotated[int, typer.Option(help="Decode at this size (a model's input size).")] = 32,
    preprocess: Annotated[Preprocessing, typer.Option(help="resize (the study) or crop (native pixels).")
                          ] = "resize",
    cache: Cache = None,
    refresh: Annotated[bool, typer.Option(help="Decode again.")] = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Counts per split, label, CIFAR-10 class and source; skipped files with reasons; the cache location."""
    from cifake.data import CIFAR10_CLASSES, Preprocess

    chosen = Preprocess(image_size, value(preprocess))
    data = load(source, cache, quiet, refresh, chosen)
    info = {
        "source": str(source), "cache": str(data.cache_dir), **chosen.to_dict(),
        ("upscaled" if chosen.crops else "converted_or_resized"): data.converted,
        "splits": {name: images.counts() for name, images in data.splits.items()},
        "sources": {name: images.source_counts() for name, images in data.splits.items()},
        "skipped": [{"name": s.name, "reason": s.reason} for s in data.skipped],
    }
    if as_json:
        return print_json(info)
    # One column per split and label, one row per class: narrow enough for 80 columns with any number of classes.
    columns = [(split, label) for split, counts in info["splits"].items() for label in counts]
    rows = [[name, *(info["splits"][split][label].get(name, 0) for split, label in columns)]
            for name in ("total", *CIFAR10_CLASSES, "unknown")]
    print_table(["class", *(f"{split} {label}" for split, label in columns)], [r for r in rows if any(r[1:])],
                f"{source} (REAL = 1, positive; FAKE = 0)")
    sources = [(split, label, name, count) for split, labels in info["sources"].items()
               for label, counts in labels.items() for name, count in counts.items()]
    if any(name not in ("REAL", "FAKE") for _, _, name, _ in sources):
        print_table(["source", "split", "label", "images"], [[n, s, label, c] for s, label, n, c in sources],
                    "Images per source (the folder under REAL/ or FAKE/)")
    if chosen.crops:
        console.print(f"Smaller than {image_size} px, enlarged to fit the crop: {data.converted:,}")
    else:
        console.print(f"Converted or resized to {image_size}x{image_size} RGB: {data.converted:,}")
    console.print(f"Skipped files: {len(data.skipped):,}")
    for skipped in data.skipped:
        console.print(f"  {skipped.name}: {skipped.reason}", markup=False)
    console.print(f"Cache: {data.cache_dir}")


@data_app.command("audit")
def data_audit(
    source: Source,
    out: Annotated[Path, typer.Option(help="Folder for audit.json, audit.md and audit.html.")] = Path("audit"),
    cache: Cache = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Byte- and pixel-identical duplicates within and across splits (train/test leakage), as a report."""
    from cifake.data.audit import KINDS, audit, write_audit

    report = audit(load(source, cache, quiet))
    json_path, md_path = write_audit(report, out)
    if as_json:
        return print_json(report)
    print_table(["split", "images"], report["splits"].items(), f"Duplicate audit of {source}")
    for kind in KINDS:
        section = report[kind]
        print_table([f"{kind}-identical pairs", "pairs"], section["pairs"].items(),
                    f"{section['groups']:,} groups of {kind}-identical images ({section['images_in_groups']:,} images)")
        leaked = report.get(f"leaked_test_{kind}")
        if leaked is not None:
            console.print(f"Test images with a {kind}-identical copy in train (leaked): {len(leaked):,}")
    console.print(f"Report: {md_path} (and .html); every group in {json_path}")


@data_app.command("build")
def data_build(
    real: Annotated[Path, typer.Option(help="Source of REAL images (any layout; its REAL images are used).")],
    fake: Annotated[Path, typer.Option(help="Source of FAKE images, e.g. the output of `cifake generate`.")],
    out: Annotated[Path, typer.Option(help="New folder for the CIFAKE-layout dataset.")],
    test_fraction: Annotated[float, typer.Option(help="Share of each label (per class) put in test.")] = 1 / 6,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 1,
) -> None:
    """Assemble train/test x REAL/FAKE in the CIFAKE layout from a real and a synthetic source."""
    from cifake.data.build import build_dataset

    counts = build_dataset(real, fake, out, test_fraction, seed)
    print_table(["where", "images"], counts.items())
    console.print(f"Dataset: {out} (read it with `cifake data info {out}`)")


@data_app.command("subset")
def data_subset(
    source: Source,
    out: Annotated[Path, typer.Option(help="The zip to write (CIFAKE layout: train|test/REAL|FAKE/...).")],
    train: Annotated[int, typer.Option(help="Train images per label.")] = 10_000,
    test: Annotated[int, typer.Option(help="Test images per label.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 1,
) -> None:
    """A seeded sample of a source as one small zip (original bytes and names), e.g. to carry to a GPU machine."""
    from cifake.data.build import subset_zip

    counts = subset_zip(source, out, {"train": train, "test": test}, seed)
    print_table(["where", "images"], counts.items())
    console.print(f"Subset: {out} ({out.stat().st_size / 1e6:.1f} MB)")

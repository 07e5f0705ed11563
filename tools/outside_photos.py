"""Real photographs from outside CIFAKE, for the bundled detector's generalisation check.

    python tools/outside_photos.py OUT    (`make bundle` runs it, then `cifake robustness --data OUT/...`)

No download: the photographs are the sample images that ship inside installed Python packages (matplotlib,
scikit-learn, and scikit-image when it is installed). Two sets, each laid out as SET/test/REAL/*.png so that
`cifake evaluate` and `cifake robustness` read them like any source (every image is REAL, so accuracy is the
share of real photos called REAL, and 1 - accuracy the false-accusation rate):

- OUT/photos: each colour photograph whole, plus square tiles of 1/2 and 1/4 of its short side on a grid (more
  images from few photos, at several framings). Each is stored at its own resolution; the tool resizes it to
  32 x 32 as it resizes any input.
- OUT/faces: scikit-image's 200-face subset of Labeled Faces in the Wild (grayscale, 25 x 25).
- OUT/grayscale: scikit-image's grayscale photographs (camera, coins, moon, brick, grass, gravel, clock, page,
  text), whole and tiled as above.
- OUT/scans: scientific and clinical images (scikit-image's retina fundus photograph, immunohistochemistry slide
  and Hubble deep field), whole and tiled as above.
- OUT/SET-32px for each: every image shrunk (or, for the 25 px faces, enlarged) to 32 x 32 bilinearly, as the
  CIFAKE study shrank its images: the domain check must judge thumbnails, not only large files.

Tiles are written losslessly (PNG), so the only re-encoding an image gets is the one a robustness condition adds.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

TILE_FRACTIONS = (1 / 2, 1 / 4)  # of the short side; the whole photograph is kept too


def colour_photographs() -> Iterator[tuple[str, np.ndarray]]:
    """(name, H x W x 3 uint8) of each natural colour photograph shipped with an installed package."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        yield "matplotlib-grace_hopper", np.asarray(Image.open(handle).convert("RGB"))
    samples = load_sample_images()
    for filename, image in zip(samples.filenames, samples.images):
        yield f"sklearn-{Path(filename).stem}", image
    try:
        from skimage import data
    except ImportError:
        return
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        yield f"skimage-{name}", getattr(data, name)()[..., :3]
    yield "skimage-motorcycle", data.stereo_motorcycle()[0]  # (left view, right view, disparity)


def tiles(image: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """The whole image, then non-overlapping square tiles of each TILE_FRACTIONS of its short side."""
    yield "whole", image
    height, width = image.shape[:2]
    for fraction in TILE_FRACTIONS:
        side = int(min(height, width) * fraction)
        for top in range(0, height - side + 1, side):
            for left in range(0, width - side + 1, side):
                yield f"{side}px-{top}-{left}", image[top : top + side, left : left + side]


GRAYSCALE = ("camera", "coins", "moon", "brick", "grass", "gravel", "clock", "page", "text")
SCANS = ("retina", "immunohistochemistry", "hubble_deep_field")
THUMBNAIL = 32  # the study's size


def write_set(folder: Path, images: Iterator[tuple[str, np.ndarray]]) -> int:
    """SET/test/REAL/NAME.png as it comes, and SET-32px/test/REAL/NAME.png as a 32 px thumbnail."""
    target = folder / "test" / "REAL"
    thumbnails = folder.with_name(f"{folder.name}-{THUMBNAIL}px") / "test" / "REAL"
    target.mkdir(parents=True, exist_ok=True)
    thumbnails.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, pixels in images:
        image = Image.fromarray(np.ascontiguousarray(pixels))
        image.save(target / f"{name}.png")
        image.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR).save(thumbnails / f"{name}.png")
        count += 1
    return count


def tiled(named_images: Iterator[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray]]:
    return ((f"{name}-{tile}", pixels) for name, image in named_images for tile, pixels in tiles(image))


def main(out: Path) -> None:
    photos = write_set(out / "photos", tiled(colour_photographs()))
    print(f"{out / 'photos'}: {photos} images from the colour photographs")
    try:
        from skimage import data
    except ImportError:
        print("scikit-image is not installed: no faces, grayscale or scans sets")
        return
    faces = data.lfw_subset()  # (200, 25, 25) floats in 0..1
    count = write_set(out / "faces", ((f"lfw-{i:03d}", np.rint(face * 255).astype(np.uint8))
                                      for i, face in enumerate(faces)))
    print(f"{out / 'faces'}: {count} grayscale faces")
    count = write_set(out / "grayscale", tiled((name, getattr(data, name)()) for name in GRAYSCALE))
    print(f"{out / 'grayscale'}: {count} images from grayscale photographs")
    count = write_set(out / "scans", tiled((name, getattr(data, name)()[..., :3]) for name in SCANS))
    print(f"{out / 'scans'}: {count} images from scientific and clinical images")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))

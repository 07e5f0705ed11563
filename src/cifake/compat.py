"""Keep torchvision importable beside a torch it was not built for (imports only torch).

timm needs torchvision, and torchmetrics imports it whenever it is installed. A torchvision wheel whose compiled
operators cannot load beside the torch in use (a CUDA torchvision beside the CPU torch, as on this project's
machines, where no CPU build of torchvision exists) fails on import: since 0.20 it registers fake kernels for two of
those operators without checking that they loaded. Declaring the two operators' schemas first lets it import; only
its Python parts are used here, and the operators (box suppression) stay unavailable, as they were.
"""

from __future__ import annotations

import sys

import torch

_declared: list = []  # keeps the declaring library alive: a torch.library.Library drops its operators when collected


def import_torchvision() -> None:
    """Import torchvision if it is installed, declaring its two operators when its compiled part cannot load."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or _declared:
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _declared.append(library)
        import torchvision  # noqa: F401

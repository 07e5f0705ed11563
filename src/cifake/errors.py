"""Exceptions the CLI turns into messages, in a module of their own: the CLI imports them at start-up, and the
modules that raise them pull in torch, scikit-learn or diffusers (3.4 s of `cifake predict`'s start-up)."""


class SearchInterrupted(RuntimeError):
    """The search stopped (Ctrl-C, a signal) before every trial finished; the same command resumes it."""


class WeightsNotFound(RuntimeError):
    """The diffusion model's weights are neither on disk nor downloadable."""

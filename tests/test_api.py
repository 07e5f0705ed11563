import subprocess
import sys

import pytest

import cifake


def test_public_api_names_resolve_to_their_modules_objects():
    import importlib
    import importlib.metadata
    import inspect

    from cifake import _API

    assert set(cifake.__all__) == {"__version__", *_API}
    assert cifake.__version__ == importlib.metadata.version("cifake")
    for name, module in _API.items():
        value = getattr(cifake, name)
        assert value is getattr(importlib.import_module(module), name), name
        assert inspect.isclass(value) or inspect.isfunction(value), name
        assert value.__name__ == name and value.__doc__, name  # documented, and not an alias of something else
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cifake.nothing  # noqa: B018 (the attribute look-up is what is tested)


def test_import_is_light():
    """`import cifake` (and the decoding workers) must not pay for torch."""
    code = "import sys, cifake, cifake.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

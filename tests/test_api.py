import subprocess
import sys

import cifake


def test_public_api_names_resolve():
    for name in cifake.__all__:
        assert getattr(cifake, name) is not None, name


def test_import_is_light():
    """`import cifake` (and the decoding workers) must not pay for torch."""
    code = "import sys, cifake, cifake.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

"""Smoke run of benchmarks/monotonicity_search.py (4 seeded configurations, about 15 s on 2 cores)."""
import os
import subprocess
import sys
from pathlib import Path


def test_monotonicity_search_smoke(tmp_path):
    # The child imports the edgeworth this process imported (installed, or the tree on PYTHONPATH), from a
    # working directory outside the source tree, whose own edgeworth/ may hold no built extension.
    import edgeworth
    root = Path(__file__).resolve().parent.parent
    package_parent = str(Path(edgeworth.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "monotonicity_search.py"), "--smoke"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "seed 0; command: PYTHONPATH=. python benchmarks/monotonicity_search.py --seed 0 --configs 4" in out
    assert "4 configurations" in out and "0 violations, 0 failures" in out
    for quantity in ("epsilon", "delta", "noise_multiplier"):
        assert f"{quantity}: " in out and "pairs checked" in out

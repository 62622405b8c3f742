"""Smoke run of benchmarks/speed_grid.py (12 seeded configurations): it runs end to end and its table is whole."""
import os
import re
import subprocess
import sys
from pathlib import Path


def test_speed_grid_smoke(tmp_path):
    import edgeworth
    root = Path(__file__).resolve().parent.parent
    package_parent = str(Path(edgeworth.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
    out = tmp_path / "speed.md"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "speed_grid.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert text.strip() == proc.stdout.strip()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (certified `\w+`|Opacus \w+ `\w+`) \| ([^|]+) \|", text,
                                                      re.M)}
    assert rows["certified `epsilon`"].strip() == "12"  # the smoke grid's 12 draws, none declined
    assert int(rows["certified `noise_multiplier`"]) >= 1
    assert "Opacus RDP `get_noise_multiplier`" in rows
    assert "--seed 0 --configs 12" in text

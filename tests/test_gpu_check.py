"""benchmarks/gpu_check.py in its CPU smoke mode (tiny models, synthetic data): it runs end to end and its
figures are consistent (the certified eps is edgeworth.epsilon of each DP run's ledger, the ratios are the
throughputs' ratios)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import edgeworth  # noqa: E402
from conftest import package_env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_smoke_mode(tmp_path):
    env = package_env(OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["smoke"] and summary["card"] == "cpu (smoke)"
    runs = summary["runs"]
    assert [(r["run"], r["private"]) for r in runs] == [("tiny-bert", True), ("tiny-bert", False),
                                                        ("tiny-llama-lora", True), ("tiny-llama-lora", False)]
    for dp, plain in zip(runs[0::2], runs[1::2]):
        # 2 timed steps after 1 warm-up: the ledger has 3 steps at q = 16 / 400
        assert dp["sample_rate"] == 16 / 400
        assert dp["eps_certified"] == edgeworth.epsilon(dp["noise_multiplier"], 1e-5, 3, 16 / 400)
        assert 7.99 < dp["eps_certified"] <= 8.0
        assert plain["examples"] == 32 and dp["examples"] >= 0
        ratio = summary["dp_over_nonprivate_throughput"][dp["run"]]
        assert ratio == round(dp["examples_per_s"] / plain["examples_per_s"], 3)

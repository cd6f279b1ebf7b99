"""Every benchmark script runs end to end (tiny budgets), so the figures in the README can be
re-measured from a fresh clone. Their numbers are not checked here: benchmarks print figures,
tests do not time anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "intake": (["--images", "30"], "images/s"),
    "proposals": (["--images", "4", "--sources", "sliding,edgeboxes"], "R@100"),
    "teacher": (["--images", "24", "--epochs", "1", "--image-size", "96", "--proposals",
                 "sliding", "--max-proposals", "20", "--threads", "1", "--only", "refine"],
                "CorLoc"),
    "tagging": (["--images", "12", "--device", "cpu", "--batch-size", "4", "--teacher-images", "2"],
                "vs naive"),
    "distill_targets": (["--images", "16", "--teacher-size", "96", "--max-proposals", "20"],
                        "cold pass"),
    "gallery": (["--images", "300", "--distinct", "20", "--frames", "5"], "first paint"),
    "hardware": (["--images", "8", "--train-images", "12", "--teacher-size", "64",
                  "--max-proposals", "12", "--proposals", "sliding", "--student-size", "32",
                  "--startup-runs", "1"],
                 "host syncs per training step"),
    "kd_ablation": (["--images", "40", "--seeds", "0", "--teacher-scratch", "--teacher-backbone",
                     "resnet18", "--teacher-epochs", "1", "--teacher-size", "96",
                     "--max-proposals", "20", "--student-epochs", "1", "--student-size", "64",
                     "--kd-boxes", "8", "--threads", "1"], "beats no KD"),
    "partial_labels": (["--images", "40", "--train-images", "20", "--seeds", "0",
                        "--teacher-epochs", "1", "--teacher-size", "96", "--max-proposals", "20",
                        "--student-epochs", "1", "--student-size", "64", "--unknown-weights", "0"],
                       "beats 'untagged"),
    "photos": (["--images", "24", "--epochs", "1", "--size", "64", "--teacher-size", "96",
                "--seeds", "0", "--threads", "1", "--set", "max_proposals=16",
                "--set", "proposals=sliding"], "beats plain fine-tuning"),
    "rounds": (["--sizes", "200", "--images", "24", "--epochs", "1", "--size", "64",
                "--latency-images", "24"],
               "quick round"),
    "scale": (["--tags", "2000", "--images", "3000", "--classes", "20", "--only",
               "import,scores"], "re-scoring"),
    "review_loop": (["--images", "60", "--rounds", "1", "--fix", "5", "--epochs", "1",
                     "--warm-epochs", "1", "--size", "32", "--seeds", "0", "--modes",
                     "random,uncertain"], "uncertain vs random"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs(name, tmp_path):
    args, expected = CASES[name]
    if name == "photos" and not list(Path("/usr/share/backgrounds/gnome").glob("*.webp")):
        pytest.skip("the photo benchmark needs gnome-backgrounds (apt-get install gnome-backgrounds)")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1",
           "XDG_DATA_HOME": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout, result.stdout[-3000:]

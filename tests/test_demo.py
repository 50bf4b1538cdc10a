"""The README's main job: `aligntune train` with no config trains the offline demo and the accuracy rises."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_raises_held_out_preference_accuracy(tmp_path):
    work = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "aligntune", "train"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ALIGNTUNE_DEMO_DIR": str(work), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((work / "demo_result.json").read_text())
    assert 0.35 <= result["held_out_accuracy_before"] <= 0.65  # a random model prefers either answer by chance
    assert result["held_out_accuracy_after"] >= 0.9
    assert "held-out preference accuracy: before" in proc.stdout
    assert (work / "model" / "aligntune_run.json").is_file()
    held_out = [json.loads(line) for line in (work / "data" / "held_out.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (work / "data" / "train.jsonl").read_text().splitlines()]
    assert result["held_out_pairs"] == len(held_out) and result["train_pairs"] == len(train)
    # Honest split: no held-out problem is in training, in either order.
    def problem(row):
        a, _, b, _ = row["prompt"].split()
        return frozenset((int(a), int(b)))

    assert not {problem(r) for r in held_out} & {problem(r) for r in train}

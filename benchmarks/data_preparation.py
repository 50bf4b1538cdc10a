"""Preparing the 8,552 hh-rlhf test pairs for training (parse + tokenize): aligntune vs plain TRL.

    python benchmarks/data_preparation.py [--data ../shared/data/hh-rlhf] [--repeats 3] [--json PATH]

Both start from the raw files and end with a trainer whose `train_dataset` holds `prompt_ids`/`chosen_ids`/
`rejected_ids`, using the same locally built tiny model and tokenizer (its load is a few milliseconds of each):

- plain TRL: `datasets` JSON loading, then `DPOTrainer(...)`, which extracts the prompt by common prefix and
  tokenizes row by row;
- aligntune: `create_rl_trainer(dataset_name="Anthropic/hh-rlhf", ...)`: the hh-rlhf plugin's lossless split, then
  batched tokenization.

The last line is machine-readable: `speedup_vs_trl: X`. `--json PATH` also writes the result (command, commit,
machine, versions, every repeat's time) there; the results the docs quote are stored in docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hh-rlhf"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="also write the result (with machine, versions, command) here")
    args = parser.parse_args()
    from _record import Recorder, relative

    recorder = Recorder("data_preparation")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import datasets
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from aligntune.core.backend_factory import create_rl_trainer
    from aligntune.data import load_preference_dataset
    from aligntune.demo.tiny_model import build_tiny_llama
    from aligntune.logging_setup import configure_logging

    configure_logging(level="warning")
    datasets.disable_progress_bars()
    datasets.disable_caching()  # every repeat does the work again (no map results reused from disk)
    work = Path(tempfile.mkdtemp(prefix="aligntune-prep-"))
    files = sorted(str(p) for p in Path(args.data).glob("*/test.jsonl.gz"))
    sample = load_preference_dataset("Anthropic/hh-rlhf", data_files=args.data, split="test", max_samples=2000)
    model = build_tiny_llama(work / "model", [r["prompt"] + r["chosen"] for r in sample], vocab_size=4096)

    def trl_prepare():
        raw = datasets.load_dataset("json", data_files=files, split="train", cache_dir=str(work / "hf-cache"))
        trainer = DPOTrainer(model=str(model), train_dataset=raw, processing_class=AutoTokenizer.from_pretrained(model),
                             args=DPOConfig(output_dir=str(work / "trl"), use_cpu=True, report_to="none",
                                            max_length=1024, bf16=False))
        return len(trainer.train_dataset)

    def ours_prepare():
        trainer = create_rl_trainer(model_name=str(model), dataset_name="Anthropic/hh-rlhf", data_files=args.data,
                                    split="test", output_dir=str(work / "ours"), max_seq_length=1024,
                                    precision="fp32", prefix_sharing=False,
                                    # data preparation only: no reference pass before training (TRL's default too)
                                    precompute_ref_log_probs=False)
        return len(trainer.train_dataset)

    def timed(fn):
        timings, result = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = fn()
            timings.append(time.perf_counter() - start)
        return statistics.median(timings), result, timings

    trl_seconds, trl_pairs, trl_timings = timed(trl_prepare)
    ours_seconds, ours_pairs, ours_timings = timed(ours_prepare)
    print(f"raw pairs: 8552 ({len(files)} files); prepared: TRL {trl_pairs}, aligntune {ours_pairs}")
    print(f"plain TRL (JSON load + extract_prompt + row-wise tokenization): {trl_seconds:.2f} s (median of {args.repeats})")
    print(f"aligntune (lossless hh-rlhf split + batched tokenization):     {ours_seconds:.2f} s")
    if args.json:
        recorder.write(args.json, settings={
            "data": relative(args.data), "files": [relative(f) for f in files], "raw_pairs": 8552,
            "repeats": args.repeats, "max_length": 1024, "tokenizer": "BPE, 4,096 tokens, trained on 2,000 pairs",
            "datasets_caching": False,
        }, runs={
            "trl": {"description": "datasets JSON load + DPOTrainer (extract_prompt, row-wise tokenization)",
                    "seconds": trl_timings, "median_seconds": trl_seconds, "prepared_pairs": trl_pairs},
            "aligntune": {"description": "hh-rlhf plugin's lossless split + batched tokenization",
                          "seconds": ours_timings, "median_seconds": ours_seconds, "prepared_pairs": ours_pairs},
        }, headline={"speedup_vs_trl": trl_seconds / ours_seconds})
    print(f"speedup_vs_trl: {trl_seconds / ours_seconds:.2f}")


if __name__ == "__main__":
    main()

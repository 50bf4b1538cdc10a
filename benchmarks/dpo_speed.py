"""Plain TRL DPOTrainer vs aligntune on the same model, the same real hh-rlhf pairs and the same settings.

    python benchmarks/dpo_speed.py [--pairs 256] [--batch-size 8] [--max-length 512] [--data ../shared/data/hh-rlhf]

Each configuration trains in its own subprocess (so peak memory is its own) with the same seed and therefore the
same data order. Reported per run: samples/s, tokens processed by the model (all positions of every forward, padding
included), peak memory (max RSS on CPU; CUDA max allocated on a GPU), and the per-step losses. A speed figure only
counts if the per-step losses agree with plain TRL's (|Δ| <= 1e-3).

The last two lines are machine-readable: `speedup_vs_trl: X` (aligntune's default layout on this machine — packed
prefix sharing on a CPU — vs plain TRL, samples/s)
and `loss_max_abs_diff: Y`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = {
    "trl": "plain TRL DPOTrainer",
    "aligntune-unshared": "aligntune, two rows per pair (prefix_sharing=false)",
    "aligntune": "aligntune, prefix sharing, no packing",
    "aligntune-packed": "aligntune, prefix sharing + packing (the default on CPU)",
    "aligntune-cached": "aligntune, prefix sharing + packing + reference log-probs from the disk cache",
}


def build_model(directory: Path, texts: list[str], *, gpu: bool) -> None:
    from aligntune.demo.tiny_model import save_tiny_llama, train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size=4096)
    if gpu:  # ~0.5B parameters from a local config
        save_tiny_llama(directory, tokenizer, hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096,
                        max_position_embeddings=4096, seed=0)
    else:  # a few million parameters
        save_tiny_llama(directory, tokenizer, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688,
                        max_position_embeddings=4096, seed=0)


def worker(args: argparse.Namespace) -> None:
    import torch

    work = Path(args.work)
    rows = [json.loads(line) for line in (work / "pairs.jsonl").read_text().splitlines()]
    common = dict(batch_size=args.batch_size, max_seq_length=args.max_length, learning_rate=1e-5, seed=0)
    gpu = torch.cuda.is_available()
    started = time.perf_counter()
    if args.worker == "trl":
        import datasets
        from transformers import AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=str(work / "model"), train_dataset=datasets.Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(work / "model"),
            args=DPOConfig(output_dir=str(work / "out-trl"), per_device_train_batch_size=args.batch_size,
                           max_length=args.max_length, learning_rate=1e-5, seed=0, num_train_epochs=1,
                           logging_steps=1, save_strategy="no", report_to="none", use_cpu=not gpu,
                           bf16=gpu, gradient_checkpointing=False, disable_tqdm=True),
        )
    else:
        from aligntune.core.backend_factory import create_rl_trainer
        from aligntune.logging_setup import configure_logging

        configure_logging(level="warning")
        options = dict(prefix_sharing=args.worker != "aligntune-unshared", packing=args.worker in ("aligntune-packed", "aligntune-cached"))
        if args.worker == "aligntune-cached":
            options.update(precompute_ref_log_probs=True, ref_logps_cache_dir=str(work / "ref-cache"))
        trainer = create_rl_trainer(
            model_name=str(work / "model"), dataset_name=str(work / "pairs.jsonl"), output_dir=str(work / "out-at"),
            num_epochs=1, logging_steps=1, save_steps=None, precision="bf16" if gpu else "fp32",
            gradient_checkpointing=False, training_args={"disable_tqdm": True}, **common, **options,
        )
    setup = time.perf_counter() - started
    tokens = {"n": 0}

    def count(module, inputs, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else inputs[0]
        if torch.is_grad_enabled():
            tokens["n"] += ids.numel()

    trainer.model.register_forward_pre_hook(count, with_kwargs=True)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    peak = (torch.cuda.max_memory_allocated() if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({
        "run": args.worker, "pairs": len(rows), "train_seconds": result.metrics["train_runtime"], "setup_seconds": setup,
        "samples_per_second": len(rows) / result.metrics["train_runtime"], "policy_tokens": tokens["n"],
        "peak_memory_bytes": peak, "memory_kind": "cuda_max_allocated" if gpu else "max_rss", "losses": losses,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hh-rlhf"))
    parser.add_argument("--subset", default="helpful-base")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        worker(args)
        return

    import torch

    from aligntune.data import load_preference_dataset
    from aligntune.logging_setup import configure_logging

    configure_logging(level="warning")
    work = Path(tempfile.mkdtemp(prefix="aligntune-bench-"))
    rows = load_preference_dataset("Anthropic/hh-rlhf", data_files=args.data, split="test", dataset_config=args.subset,
                                   max_samples=args.pairs).to_list()
    (work / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_model(work / "model", [r["prompt"] + r["chosen"] + r["rejected"] for r in rows], gpu=torch.cuda.is_available())
    names = [name for name in args.runs.split(",") if name]
    if "aligntune-cached" in names:  # fill the cache once (a previous run), then measure the warm run
        names = ["aligntune-cached"] + names
    results = {}
    for name in names:
        command = [sys.executable, __file__, "--worker", name, "--work", str(work), "--batch-size", str(args.batch_size),
                   "--max-length", str(args.max_length)]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"run {name} failed:\n{proc.stderr[-4000:]}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])

    base = results["trl"]
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
    print(f"data: {len(rows)} hh-rlhf pairs ({args.subset}), batch {args.batch_size}, max_length {args.max_length}")
    print(f"{'run':<20} {'samples/s':>10} {'x TRL':>7} {'policy tok':>10} {'peak MB':>9} {'x TRL':>7} {'max |Δloss|':>12}")
    diffs = {}
    for name, r in results.items():
        diff = max(abs(a - b) for a, b in zip(r["losses"], base["losses"]))
        diffs[name] = diff
        print(f"{name:<20} {r['samples_per_second']:>10.2f} {r['samples_per_second'] / base['samples_per_second']:>7.2f} "
              f"{r['policy_tokens']:>10} {r['peak_memory_bytes'] / 2**20:>9.0f} "
              f"{r['peak_memory_bytes'] / base['peak_memory_bytes']:>7.2f} {diff:>12.2e}")
    for name in results:
        print(f"  {name}: {RUNS[name]}")
    print("loss curves (first 8 steps):")
    for name, r in results.items():
        print(f"  {name:<20} " + " ".join(f"{v:.4f}" for v in r["losses"][:8]))
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"details: {work / 'results.json'}")
    # The headline is aligntune's default layout on this machine: packed on a CPU, prefix-shared on a GPU.
    headline = "aligntune" if torch.cuda.is_available() else "aligntune-packed"
    if headline not in results:
        headline = next(name for name in results if name != "trl")
    print(f"speedup_vs_trl: {results[headline]['samples_per_second'] / base['samples_per_second']:.3f}")
    print(f"loss_max_abs_diff: {diffs[headline]:.3e}")


if __name__ == "__main__":
    main()

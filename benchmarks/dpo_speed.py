"""Plain TRL DPOTrainer (with and without precomputed reference log-probs) vs aligntune, on the same model, the
same real hh-rlhf pairs read from the same file, and the same settings.

    python benchmarks/dpo_speed.py [--model tiny|50m|qwen3-0.6b] [--pairs 256] [--batch-size 8] [--max-length 512]
                                   [--runs trl,trl-precompute,...] [--data ../shared/data/hh-rlhf] [--json PATH]

Each configuration trains in its own subprocess (so peak memory and caches are its own) with the same seed and so
the same data order; both sides load the pairs from the same JSON Lines file (so TRL's own `datasets` cache works as
a user would see it). Runs whose name ends in `-warm` repeat the run before them in a new process, with the caches
that run left on disk.

Reported per run: the reference pass before training when log-probs are precomputed (`ref s`, timed around
`_precompute_ref_logps`; it runs while the trainer is built), training time (Trainer's `train_runtime`), whole-process
time (start to exit, measured by this script, model loading and tokenization included), samples/s and tokens/s of
the work (`ref s` + `train s`, so a precomputed reference is never free), tokens the model processed (every position of every
forward with gradients, padding included), peak memory from the start of `train()` (CUDA max allocated on a GPU;
the process's peak RSS, reset at `train()` through /proc/self/clear_refs, on a CPU), model FLOP utilisation on a
GPU, and the per-step losses. Step counts must be equal to the baseline's (the script stops otherwise); a speed
figure only counts if the per-step losses agree (|Δ| <= 1e-3). Each run also records how much CPU other processes
took while it ran (`contention`, from /proc/stat); with `--retries N` a run they disturbed by more than
`--busy-threshold` (a fraction of all cores) is repeated, up to N times, and the least disturbed attempt counts
(a repeat of an aligntune run first deletes the reference cache its earlier attempt wrote; all attempts are stored).

The last lines are machine-readable: `speedup_vs_trl: X` (aligntune's defaults vs the better of plain TRL and TRL
with precomputed reference log-probs, samples/s of the work) and `loss_max_abs_diff: Y`. `--json PATH` also writes
the whole result (command, commit, machine, versions, settings, every run's figures and losses, the ratios) there;
the results the docs quote are stored in docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = {
    "trl": "plain TRL DPOTrainer",
    "trl-precompute": "TRL, precompute_ref_log_probs=True (cold: first run on this data)",
    "trl-precompute-warm": "TRL, precompute_ref_log_probs=True, again (warm datasets cache)",
    "aligntune-unshared": "aligntune, two rows per pair (prefix_sharing=false)",
    "aligntune-shared": "aligntune, prefix sharing, no packing",
    "aligntune-packed": "aligntune, prefix sharing + packing",
    "aligntune-precompute": "aligntune, sharing + packing + precomputed reference log-probs (cold cache)",
    "aligntune-precompute-warm": "aligntune, the same, reference log-probs read from the disk cache",
    "aligntune": "aligntune with its defaults on this device (what a user gets)",
}
BASELINES = ("trl", "trl-precompute", "trl-precompute-warm")

# Model shapes. Parameter counts are those of the built model (printed).
MODELS = {
    "tiny": dict(hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=4, intermediate_size=688, vocab=4096,
                 tie=False),
    "50m": dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=8, intermediate_size=1376, vocab=32000,
                tie=False),
    # Qwen3-0.6B's shape (hidden 1024, 28 layers, 16 heads / 8 KV heads of 128, MLP 3072, vocab 151,936, tied).
    "qwen3-0.6b": dict(hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8, intermediate_size=3072,
                       vocab=151936, tie=True, head_dim=128, qwen3=True),
}
# Dense bf16 peak of the GPUs we are lent, for model FLOP utilisation.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def build_model(directory: Path, texts: list[str], shape: dict) -> int:
    """A randomly initialised model of `shape` with a BPE tokenizer trained on `texts`; the vocabulary is padded to
    the shape's size (the LM head's cost depends on it). Returns the parameter count."""
    import torch
    from aligntune.demo.tiny_model import train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = train_tokenizer(texts, vocab_size=min(shape["vocab"], 8192))
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    common = dict(vocab_size=max(shape["vocab"], len(tokenizer)), hidden_size=shape["hidden_size"],
                  intermediate_size=shape["intermediate_size"], num_hidden_layers=shape["num_layers"],
                  num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"],
                  max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  tie_word_embeddings=shape["tie"])
    torch.manual_seed(0)
    if shape.get("qwen3"):
        from transformers import Qwen3Config, Qwen3ForCausalLM

        model = Qwen3ForCausalLM(Qwen3Config(**common, head_dim=shape["head_dim"]))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return sum(p.numel() for p in model.parameters())


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
    except OSError:
        pass


def _rss() -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args: argparse.Namespace) -> None:
    import torch

    work = Path(args.work)
    name = args.worker.removesuffix("-warm")
    gpu = torch.cuda.is_available()
    precompute = {"seconds": 0.0}

    def timed(cls):
        """Time the reference pass before training (it happens while the trainer is built, outside `train()`)."""
        original = cls._precompute_ref_logps

        def wrapper(self, *a, **k):
            started = time.perf_counter()
            try:
                return original(self, *a, **k)
            finally:
                precompute["seconds"] += time.perf_counter() - started

        cls._precompute_ref_logps = wrapper

    if name.startswith("trl"):
        import datasets
        from transformers import AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        timed(DPOTrainer)
        trainer = DPOTrainer(
            model=str(work / "model"),
            train_dataset=datasets.load_dataset("json", data_files=str(work / "pairs.jsonl"), split="train"),
            processing_class=AutoTokenizer.from_pretrained(work / "model"),
            args=DPOConfig(output_dir=str(work / f"out-{args.worker}"), per_device_train_batch_size=args.batch_size,
                           max_length=args.max_length, learning_rate=1e-5, seed=0, num_train_epochs=1,
                           logging_steps=1, save_strategy="no", report_to="none", use_cpu=not gpu, bf16=gpu,
                           gradient_checkpointing=False, disable_tqdm=True,
                           precompute_ref_log_probs=name == "trl-precompute"),
        )
    else:
        from aligntune.core.backend_factory import create_rl_trainer
        from aligntune.logging_setup import configure_logging
        from aligntune_backend_trl.trainer import AlignTuneDPOTrainer

        timed(AlignTuneDPOTrainer)
        configure_logging(level="warning")
        layouts = {
            "aligntune-unshared": dict(prefix_sharing=False, packing=False, precompute_ref_log_probs=False),
            "aligntune-shared": dict(prefix_sharing=True, packing=False, precompute_ref_log_probs=False),
            "aligntune-packed": dict(prefix_sharing=True, packing=True, precompute_ref_log_probs=False),
            "aligntune-precompute": dict(prefix_sharing=True, packing=True, precompute_ref_log_probs=True),
            "aligntune": {},
        }
        trainer = create_rl_trainer(
            model_name=str(work / "model"), dataset_name=str(work / "pairs.jsonl"),
            output_dir=str(work / f"out-{args.worker}"), overwrite_output_dir=True, num_epochs=1, logging_steps=1,
            save_steps=None, precision="bf16" if gpu else "fp32", gradient_checkpointing=False, learning_rate=1e-5,
            seed=0, batch_size=args.batch_size, max_seq_length=args.max_length,
            # Each configuration has its own cache (a user's first run is cold); a `-warm` run reuses its cold twin's.
            ref_logps_cache_dir=str(work / f"ref-cache-{name}"), training_args={"disable_tqdm": True},
            **layouts[name],
        )
    tokens = {"n": 0, "reference": 0}

    def count(module, inputs, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else inputs[0]
        tokens["n" if torch.is_grad_enabled() else "reference"] += ids.numel()

    trainer.model.register_forward_pre_hook(count, with_kwargs=True)
    if getattr(trainer, "ref_model", None) is not None:
        trainer.ref_model.register_forward_pre_hook(count, with_kwargs=True)
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_memory = torch.cuda.memory_allocated()
    else:
        start_memory = _rss()
        _reset_peak_rss()
    result = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    peak = torch.cuda.max_memory_allocated() if gpu else _peak_rss()
    seconds = result.metrics["train_runtime"]
    work_seconds = seconds + precompute["seconds"]  # the reference pass is part of the work, wherever it runs
    print(json.dumps({
        "run": args.worker, "pairs": args.pairs, "steps": trainer.state.global_step, "train_seconds": seconds,
        "precompute_seconds": precompute["seconds"], "work_seconds": work_seconds,
        "samples_per_second": args.pairs / work_seconds, "policy_tokens": tokens["n"],
        "tokens_per_second": tokens["n"] / work_seconds, "reference_tokens_in_training": tokens["reference"], "peak_memory_bytes": peak,
        "memory_at_train_start_bytes": start_memory,
        "memory_kind": "cuda_max_allocated" if gpu else "peak_rss", "losses": losses,
        "layout": _layout(trainer),
    }))


def _layout(trainer) -> dict | None:
    """What aligntune actually ran (its defaults resolved), for the report."""
    config = getattr(trainer, "aligntune_config", None)
    if config is None:
        return None
    layout = trainer.layout
    return {"layout": layout.description, "prefix_sharing": layout.prefix_sharing, "packing": layout.packing,
            "precompute_ref_log_probs": bool(trainer.precompute_ref_logps), "lm_head": trainer._head_layout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hh-rlhf"))
    parser.add_argument("--subset", default="helpful-base")
    parser.add_argument("--model", choices=list(MODELS), default="tiny")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--json", metavar="PATH", help="also write the result (with machine, versions, command) here")
    parser.add_argument("--retries", type=int, default=0,
                        help="repeat a run (up to this many times) when other processes took more than "
                             "--busy-threshold of the CPU during it; the least disturbed attempt counts")
    parser.add_argument("--busy-threshold", type=float, default=0.1)
    parser.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        worker(args)
        return

    from _record import Contention, Recorder, relative

    recorder = Recorder("dpo_speed")
    import torch
    from aligntune.data import load_preference_dataset
    from aligntune.logging_setup import configure_logging

    configure_logging(level="warning")
    work = Path(tempfile.mkdtemp(prefix="aligntune-bench-"))
    os.environ["HF_DATASETS_CACHE"] = str(work / "datasets-cache")  # a cold cache for this benchmark, shared by runs
    rows = load_preference_dataset("Anthropic/hh-rlhf", data_files=args.data, split="test", dataset_config=args.subset,
                                   max_samples=args.pairs).to_list()
    args.pairs = len(rows)
    (work / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    parameters = build_model(work / "model", [r["prompt"] + r["chosen"] + r["rejected"] for r in rows],
                             MODELS[args.model])
    names = [name for name in args.runs.split(",") if name]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
    results = {}
    for name in names:
        command = [sys.executable, __file__, "--worker", name, "--work", str(work), "--batch-size", str(args.batch_size),
                   "--max-length", str(args.max_length), "--pairs", str(args.pairs), "--model", args.model]
        attempts = []
        for _ in range(1 + max(0, args.retries)):
            if attempts and name.startswith("aligntune") and not name.endswith("-warm"):
                # A repeat starts as cold as the first attempt: without the reference cache that attempt wrote.
                # (TRL's repeats find the datasets cache its earlier runs left, which can only make TRL faster.)
                shutil.rmtree(work / f"ref-cache-{name}", ignore_errors=True)
            contention = Contention()
            started = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"run {name} failed:\n{proc.stderr[-4000:]}")
            attempts.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "process_seconds": wall,
                             "contention": contention.stop()})
            busy = attempts[-1]["contention"]["other_cpu_fraction"]
            print(f"  {name}: {wall:.1f} s" + ("" if busy is None else f", other processes took {busy:.0%} of the CPU"),
                  flush=True)
            if busy is None or busy <= args.busy_threshold:
                break
        kept = min(attempts, key=lambda a: a["contention"]["other_cpu_fraction"] or 0.0)
        results[name] = {**kept, "attempts": len(attempts), "other_attempts": [a for a in attempts if a is not kept]}

    baselines = [name for name in BASELINES if name in results]
    if not baselines:
        raise SystemExit("no TRL baseline among the runs: include trl and/or trl-precompute")
    steps = {name: r["steps"] for name, r in results.items()}
    if len(set(steps.values())) != 1 or any(len(r["losses"]) != r["steps"] for r in results.values()):
        raise SystemExit(f"runs trained different numbers of steps (or logged a loss per step differently): {steps}")
    best = max(baselines, key=lambda name: results[name]["samples_per_second"])
    base = results[best]
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if gpu else f"{os.cpu_count()} CPU cores, no GPU"
    peak_flops = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device), None) if gpu else None
    print(f"device: {device}; torch {torch.__version__}")
    print(f"model: {args.model} ({parameters / 1e6:.1f} M parameters); data: {args.pairs} hh-rlhf pairs "
          f"({args.subset}), batch {args.batch_size}, max_length {args.max_length}, {steps[best]} steps")
    print(f"baseline for ratios: {best} (the faster TRL row)")
    header = (f"{'run':<26} {'ref s':>6} {'train s':>8} {'process s':>9} {'samples/s':>9} {'x TRL':>6} {'tok/s':>8} "
              f"{'peak MB':>8} {'x TRL':>6} {'max |Δloss|':>11}")
    if peak_flops:
        header += f" {'MFU':>6}"
    print(header)
    diffs = {}
    for name, r in results.items():
        diff = max(abs(a - b) for a, b in zip(r["losses"], base["losses"], strict=True))
        diffs[name] = diff
        line = (f"{name:<26} {r['precompute_seconds']:>6.1f} {r['train_seconds']:>8.1f} {r['process_seconds']:>9.1f} "
                f"{r['samples_per_second']:>9.2f} "
                f"{r['samples_per_second'] / base['samples_per_second']:>6.2f} {r['tokens_per_second']:>8.0f} "
                f"{r['peak_memory_bytes'] / 2**20:>8.0f} {r['peak_memory_bytes'] / base['peak_memory_bytes']:>6.2f} "
                f"{diff:>11.2e}")
        if peak_flops:  # 6 N FLOPs per policy token (forward + backward), 2 N per reference token, weights only
            flops = 6 * parameters * r["policy_tokens"] + 2 * parameters * r["reference_tokens_in_training"]
            line += f" {flops / r['train_seconds'] / peak_flops:>6.1%}"
        print(line)
    for name in results:
        print(f"  {name}: {RUNS[name]}" + (f" {results[name]['layout']}" if name == "aligntune" else ""))
    print("loss curves (first 6 steps):")
    for name, r in results.items():
        print(f"  {name:<26} " + " ".join(f"{v:.4f}" for v in r["losses"][:6]))
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"details: {work / 'results.json'}")
    headline = "aligntune" if "aligntune" in results else next(n for n in results if n not in BASELINES)
    speedup = results[headline]["samples_per_second"] / base["samples_per_second"]
    if args.json:
        fastest_process = min(baselines, key=lambda name: results[name]["process_seconds"])
        for name, r in results.items():
            r["description"] = RUNS[name]
            r["samples_per_second_vs_best_trl"] = r["samples_per_second"] / base["samples_per_second"]
            r["peak_memory_vs_best_trl"] = r["peak_memory_bytes"] / base["peak_memory_bytes"]
            r["loss_max_abs_diff_vs_best_trl"] = diffs[name]
        recorder.write(args.json, settings={
            "device": device, "model": args.model, "shape": MODELS[args.model], "parameters": parameters,
            "data": relative(args.data), "subset": args.subset, "pairs": args.pairs, "batch_size": args.batch_size,
            "max_length": args.max_length, "steps": steps[best], "epochs": 1, "seed": 0,
            "precision": "bf16" if gpu else "fp32", "runs": names, "retries": args.retries,
            "busy_threshold": args.busy_threshold,
        }, runs=results, headline={
            "baseline": best,
            "headline_run": headline,
            "speedup_vs_trl": speedup,
            "memory_vs_trl": results[headline]["peak_memory_bytes"] / base["peak_memory_bytes"],
            "loss_max_abs_diff": diffs[headline],
            "speedup_vs_plain_trl": (results[headline]["samples_per_second"] / results["trl"]["samples_per_second"]
                                     if "trl" in results else None),
            "process_baseline": fastest_process,
            "process_speedup_vs_trl": (results[fastest_process]["process_seconds"]
                                       / results[headline]["process_seconds"]),
        })
    print(f"speedup_vs_trl: {speedup:.3f}")
    print(f"loss_max_abs_diff: {diffs[headline]:.3e}")


if __name__ == "__main__":
    main()

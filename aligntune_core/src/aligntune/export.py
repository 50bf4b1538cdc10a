"""Turn a finished run into a model others can load: merge a LoRA adapter into its base, write safetensors with the
tokenizer, a model card that says what was trained (base model, data, loss, β, evaluation), and optionally upload it.

    aligntune export output/run --merge --output exported/ [--push-to-hub user/name]
    from aligntune.export import export_model
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import structlog

from aligntune.errors import ConfigError
from aligntune.runs.record import RunRecord, load_run_record

log = structlog.get_logger("aligntune.export")

RECORD = "aligntune_run.json"
ADAPTER_CONFIG = "adapter_config.json"


# What the model card shows; a record without one of these cannot describe the model (train_metrics may be absent
# from a format-1 record: the card then leaves them out, with a warning).
CARD_NEEDS = ("model_name", "use_lora", "loss_type", "reference_free", "beta", "label_smoothing", "dataset", "config",
              "global_step")


def read_run_record(run_dir: Path) -> RunRecord:
    """The run record of `run_dir`, typed; an error when there is none or it cannot be used."""
    if not (run_dir / RECORD).is_file():
        raise ConfigError(f"{run_dir}: no {RECORD} here, so this is not a finished aligntune run directory. Give the "
                          "output_dir of a run (it holds the model or adapter and aligntune_run.json).")
    try:
        record = load_run_record(run_dir)
    except OSError as exc:
        raise ConfigError(f"{run_dir / RECORD}: cannot be read ({exc})") from None
    assert record is not None
    return record


def find_eval_results(run_dir: Path, given: str | Path | None = None) -> dict[str, Any] | None:
    """Evaluation results for the model card: `given` (a results.json or the folder holding one), else the first
    `results.json` in a folder of the run directory (e.g. `<run>/eval/results.json`)."""
    if given is not None:
        path = Path(given)
        path = path / "results.json" if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"eval results {given}: no results.json there (run `aligntune eval` first, or leave the "
                              "option out)")
        candidates = [path]
    else:
        candidates = sorted(run_dir.glob("*/results.json"))
    for path in candidates:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, Mapping) and isinstance(data.get("metrics"), Mapping):
            return {"path": str(path), **data}
    return None


def _dataset_label(record: RunRecord) -> str:
    datasets = record.datasets or [attrs.asdict(record.dataset)]
    labels = []
    for entry in datasets:
        label = str(entry.get("name"))
        if entry.get("config"):
            label += f" ({entry['config']})"
        if entry.get("split"):
            label += f", split {entry['split']}"
        if entry.get("weight") is not None:
            label += f", weight {entry['weight']:g}"
        labels.append(label)
    return "; ".join(labels)


def render_model_card(record: RunRecord | Mapping[str, Any], *, eval_results: Mapping[str, Any] | None = None,
                      merged: bool = False, repo_id: str | None = None, location: str | None = None) -> str:
    """A model card (README.md with YAML front matter) from the run record (a `RunRecord`, or its JSON): the real
    base model, the data, the loss and β, the training settings, and the evaluation results if there are any.

    A record that lacks a part the card shows is a `RunRecordError` naming the key, the file and the backend."""
    if not isinstance(record, RunRecord):
        record = RunRecord.from_json(record)
    record.require(*CARD_NEEDS, purpose="the model card",
                   hint="Export a run recorded by this aligntune, or write the card by hand.")
    config = record.config
    # A LoRA record names its base model; the base is the model the run started from (so a format-1 record
    # without the key still names it truly).
    base = (None if record.lacks("base_model") else record.base_model) or record.model_name
    adapter = record.use_lora and not merged
    loss = record.loss_type
    loss_label = " + ".join(loss) if isinstance(loss, list) else str(loss)
    hub_base = base if not base.startswith(("/", ".")) else None
    tags = ["aligntune", "dpo", "trl"] + (["lora"] if record.use_lora else [])
    front = ["---", f"library_name: {'peft' if adapter else 'transformers'}", "pipeline_tag: text-generation"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front += ["tags:"] + [f"- {tag}" for tag in tags] + ["---", ""]
    name = repo_id or location or "path/to/this/folder"
    lines = [
        f"# {repo_id or Path(str(config.get('output_dir') or 'model')).name}", "",
        f"{'A LoRA adapter for' if adapter else 'A fine-tuned version of'} "
        + (f"[{hub_base}](https://huggingface.co/{hub_base})" if hub_base else f"`{base}` (a local model)")
        + ", trained with DPO (Direct Preference Optimization) with aligntune on "
        f"{_dataset_label(record)}." + (" The LoRA adapter is merged into the base weights." if merged else ""),
        "",
        "## Training", "",
        "| setting | value |", "|---|---|",
        f"| base model | `{base}` |",
        f"| data | {_dataset_label(record)} |",
        # loss_weights may be absent from a format-1 record: it predates weighted losses (none, then)
        f"| loss | `{loss_label}`" + (f" (weights {record.loss_weights})"
                                      if not record.lacks("loss_weights") and record.loss_weights else "")
        + (" , reference-free" if record.reference_free else "") + " |",
        f"| β | {record.beta} |",
        f"| label smoothing | {record.label_smoothing} |",
        f"| learning rate | {config.get('learning_rate')} |",
        f"| batch size per process | {config.get('batch_size')} |",
        f"| steps | {record.global_step} |",
        f"| max sequence length | {config.get('max_seq_length')} |",
        f"| precision | {config.get('precision')} |",
        "| LoRA | " + (f"r={config.get('lora_r')}, alpha={config.get('lora_alpha')}, "
                       f"dropout={config.get('lora_dropout')}"
                       if record.use_lora else "no (full fine-tuning)") + " |",
    ]
    if record.lacks("train_metrics.whole_run"):
        log.warning("the model card leaves out the training metrics: the run record has no train_metrics.whole_run",
                    record=record.source, written_by=record.writer_label)
        metrics: Mapping[str, Any] = {}
    else:
        metrics = record.train_metrics.whole_run
    shown = {key: metrics[key] for key in ("loss", "rewards/accuracies", "rewards/margins") if key in metrics}
    if shown:
        lines += ["", "Training metrics, averaged over the run: "
                  + ", ".join(f"{key} {value:.4g}" for key, value in shown.items() if isinstance(value, (int, float)))
                  + "."]
    if eval_results:
        plan = eval_results.get("plan") or {}
        data = (eval_results.get("config") or {}).get("dataset_name")
        lines += ["", "## Evaluation", "", f"On {data or 'held-out pairs'}"
                  + (f" against the reference `{plan.get('reference_path')}`" if plan.get("reference_path") else "")
                  + ":", "", "| metric | value |", "|---|---|"]
        for key, value in eval_results["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append(f"| {key} | {value:.4g} |")
    load = (f'from peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained("{name}")'
            if adapter else
            f'from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained("{name}")')
    lines += ["", "## Use", "", "```python", load, "```", "",
              "The full training record is `aligntune_run.json` next to the weights.", ""]
    return "\n".join(front + lines)


def export_model(run_dir: str | Path, output_dir: str | Path | None = None, *, merge: bool = True,
                 eval_results: str | Path | None = None, push_to_hub: str | None = None, private: bool = True,
                 token: str | None = None, hub_api: Any = None) -> Path:
    """Write a loadable model from a run directory into `output_dir` (default `<run_dir>-export`).

    A LoRA run with `merge=True` is merged into its base model (`merge_and_unload`) and saved as plain safetensors;
    with `merge=False` the adapter is copied. A full fine-tune is copied. The tokenizer, `aligntune_run.json` and a
    model card come along. `push_to_hub="user/name"` then creates the repository (private unless `private=False`)
    and uploads the folder (`hub_api`: an `huggingface_hub.HfApi`-like object, for tests).
    """
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    output = Path(output_dir) if output_dir is not None else run_dir.with_name(run_dir.name + "-export")
    if output.resolve() == run_dir.resolve():
        raise ConfigError("export: the output directory must differ from the run directory (the run stays as it is)")
    if output.exists() and any(output.iterdir()):
        raise ConfigError(f"export: {output} exists and is not empty; give an empty or new directory (nothing there "
                          "is overwritten)")
    adapter = (run_dir / ADAPTER_CONFIG).is_file()
    results = find_eval_results(run_dir, eval_results)
    output.mkdir(parents=True, exist_ok=True)
    if adapter and merge:
        _merge_adapter(run_dir, record, output)
    else:
        for path in run_dir.iterdir():  # the weights and tokenizer files; not checkpoints, logs or evaluations
            if path.is_file() and path.name not in ("README.md", "training_args.bin") and not path.name.startswith("."):
                shutil.copy2(path, output / path.name)
    shutil.copy2(run_dir / RECORD, output / RECORD)
    (output / "README.md").write_text(
        render_model_card(record, eval_results=results, merged=adapter and merge, repo_id=push_to_hub,
                          location=str(output.resolve())),
        encoding="utf-8")
    log.info("model exported", run=str(run_dir), output=str(output),
             kind="merged LoRA" if adapter and merge else "LoRA adapter" if adapter else "full model",
             eval_results=results["path"] if results else None)
    if push_to_hub:
        upload(output, push_to_hub, private=private, token=token, hub_api=hub_api)
    return output


def _merge_adapter(run_dir: Path, record: RunRecord, output: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_config = json.loads((run_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    record.require("config", purpose="merging the adapter (it is loaded in the run's precision)",
                   hint="Export with --no-merge to copy the adapter as it is.")
    base_name = None if record.lacks("base_model") else record.base_model
    if not base_name:
        base_name = adapter_config.get("base_model_name_or_path")
        log.warning(f"the run record names no base_model: merging into the base named in {ADAPTER_CONFIG}",
                    record=record.source, written_by=record.writer_label, base_model=base_name)
    if not base_name:
        raise ConfigError(f"{run_dir}: neither {RECORD} nor {ADAPTER_CONFIG} names the base model to merge into")
    if record.config.get("load_in_4bit"):
        log.warning("the adapter was trained on a 4-bit base; it is merged into the base in bf16, so the merged "
                    "weights differ slightly from what the adapter saw in training")
    precision = record.config.get("precision")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}.get(precision, "auto")
    try:
        base = AutoModelForCausalLM.from_pretrained(base_name, dtype=dtype)
    except OSError as exc:
        raise ConfigError(f"cannot load the base model {base_name!r} to merge into: {exc}") from None
    merged = PeftModel.from_pretrained(base, str(run_dir)).merge_and_unload()
    merged.save_pretrained(output, safe_serialization=True)
    AutoTokenizer.from_pretrained(run_dir).save_pretrained(output)


def upload(folder: Path, repo_id: str, *, private: bool = True, token: str | None = None, hub_api: Any = None) -> str:
    """Create `repo_id` on the Hugging Face Hub if needed and upload `folder`; returns the commit URL."""
    if hub_api is None:
        from huggingface_hub import HfApi

        hub_api = HfApi(token=token)
    hub_api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    commit = hub_api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message="Upload model exported by aligntune")
    log.info("uploaded to the Hugging Face Hub", repo=repo_id, commit=str(commit))
    return str(commit)

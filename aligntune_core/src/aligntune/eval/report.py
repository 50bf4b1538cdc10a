"""Writing the evaluation's files: results.json, per_example.jsonl, report.md and the margin histogram."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aligntune.atomic import write_json_atomic
from aligntune.eval.context import EvalContext, NotComputed

HISTOGRAM = "reward_margins.png"


def notes(name: str, results: Mapping[str, float]) -> str:
    """What a reader must know to read the value: ties counted ½."""
    ties = results.get(f"{name}_ties")
    if ties:
        return f"{int(ties)} tie{'s' if ties != 1 else ''} counted as 1/2"
    return ""


def not_computed_text(entry: NotComputed) -> str:
    return f"not computed: {entry.reason}; add {entry.add}"


def format_table(results: Mapping[str, float], names: list[str], not_computed: Mapping[str, NotComputed]) -> str:
    """The metrics as a plain-text table (what `aligntune eval` prints)."""
    width = max(len(name) for name in [*names, "metric"])
    lines = [f"{'metric'.ljust(width)}  {'value':>9}  95% interval"]
    for name in names:
        if name in not_computed:
            lines.append(f"{name.ljust(width)}  {'-':>9}  {not_computed_text(not_computed[name])}")
            continue
        low, high = results.get(f"{name}_ci95_low"), results.get(f"{name}_ci95_high")
        interval = f"[{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
        note = notes(name, results)
        lines.append(f"{name.ljust(width)}  {results[name]:>9.4f}  {interval}{'  ' + note if note else ''}".rstrip())
    return "\n".join(lines)


def _finite_or_null(results: Mapping[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: a value that is not a number (a metric not computed) is written as null."""
    return {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in results.items()}


def _per_example(context: EvalContext, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for pair in context.pairs:
        row = rows[pair.index]
        out.append({
            "index": pair.index,
            "prompt": row["prompt"],
            "chosen": row["chosen"],
            "rejected": row["rejected"],
            "policy_chosen_logps": pair.policy_chosen_logps,
            "policy_rejected_logps": pair.policy_rejected_logps,
            "ref_chosen_logps": pair.ref_chosen_logps,
            "ref_rejected_logps": pair.ref_rejected_logps,
            "chosen_reward": pair.chosen_reward,
            "rejected_reward": pair.rejected_reward,
            "margin": pair.margin,
            "policy_chosen_entropy": pair.policy_chosen_entropy,
            "policy_rejected_entropy": pair.policy_rejected_entropy,
            "chosen_tokens": pair.chosen_tokens,
            "rejected_tokens": pair.rejected_tokens,
        })
    return out


def write_histogram(margins: list[float], path: Path, beta: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    axis.hist(margins, bins=min(50, max(10, len(margins) // 4)), color="#4C72B0", edgecolor="white")
    axis.axvline(0.0, color="#C44E52", linewidth=1.5, label="margin = 0")
    axis.set_xlabel(f"reward margin  β·Δ log-ratio  (β = {beta:g})")
    axis.set_ylabel("pairs")
    axis.set_title(f"Reward margins over {len(margins)} pairs")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(output_dir: Path, *, results: dict[str, float], context: EvalContext, rows: list[dict[str, Any]],
                 plan: dict[str, Any], config: dict[str, Any], data_report: dict[str, Any], metric_names: list[str],
                 data_label: str | None = None, split: str | None = None,
                 not_computed: Mapping[str, NotComputed] | None = None):
    output_dir.mkdir(parents=True, exist_ok=True)
    per_example = _per_example(context, rows)
    if context.comparisons:
        by_prompt = {json.dumps(c.prompt, sort_keys=True): c for c in context.comparisons}
        for record in per_example:
            comparison = by_prompt.get(json.dumps(record["prompt"], sort_keys=True))
            if comparison is not None:
                record.update(policy_response=comparison.policy_response,
                              reference_response=comparison.reference_response,
                              policy_score=comparison.policy_score, reference_score=comparison.reference_score,
                              win=comparison.outcome)
    with open(output_dir / "per_example.jsonl", "w", encoding="utf-8") as handle:
        for record in per_example:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    not_computed = dict(not_computed or {})
    record = {"metrics": _finite_or_null(results), "plan": plan, "config": config, "data": data_report}
    if not_computed:
        record["not_computed"] = {name: entry.as_dict() for name, entry in not_computed.items()}
    write_json_atomic(output_dir / "results.json", record)  # read back by `aligntune export`: never half-written
    margins = [pair.margin for pair in context.pairs]
    write_histogram(margins, output_dir / HISTOGRAM, context.beta)

    lines = ["# Evaluation report", "", f"- policy: `{plan['policy_path']}`"
             + (f" (LoRA adapter on `{plan['policy_adapter_on']}`)" if plan["policy_adapter_on"] else ""),
             f"- reference: `{plan['reference_path']}`",
             f"- β = {plan['beta']:g} (from {plan['beta_source']})",
             f"- data: `{data_label or config['dataset_name']}` split `{split or config['split']}`, "
             f"{len(context.pairs)} pairs", "",
             "| metric | value | 95% interval | note |", "|---|---|---|---|"]
    for name in metric_names:
        if name in not_computed:
            lines.append(f"| {name} | not computed | | {not_computed[name].reason}; add `{not_computed[name].add}` |")
            continue
        low, high = results.get(f"{name}_ci95_low"), results.get(f"{name}_ci95_high")
        interval = f"[{_fmt(low)}, {_fmt(high)}]" if low is not None else ""
        lines.append(f"| {name} | {_fmt(results[name])} | {interval} | {notes(name, results)} |")
    lines += ["", f"![reward margins]({HISTOGRAM})", "",
              "Definitions: docs/evaluation.md. Per-pair log-probs, rewards and margins: per_example.jsonl."]
    if per_example:
        ranked = sorted(per_example, key=lambda r: r["margin"])
        lines += ["", "## Lowest-margin pairs", ""]
        for record in ranked[:3]:
            lines.append(f"- #{record['index']}: margin {record['margin']:.4f}")
    (output_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

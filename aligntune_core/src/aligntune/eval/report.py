"""Writing the evaluation's files: results.json, per_example.jsonl, report.md and the margin histogram."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aligntune.eval.context import EvalContext

HISTOGRAM = "reward_margins.png"


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
                 plan: dict[str, Any], config: dict[str, Any], data_report: dict[str, Any], metric_names: list[str]):
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
    (output_dir / "results.json").write_text(
        json.dumps({"metrics": results, "plan": plan, "config": config, "data": data_report}, indent=2, default=str)
        + "\n", encoding="utf-8")
    margins = [pair.margin for pair in context.pairs]
    write_histogram(margins, output_dir / HISTOGRAM, context.beta)

    lines = ["# Evaluation report", "", f"- policy: `{plan['policy_path']}`"
             + (f" (LoRA adapter on `{plan['policy_adapter_on']}`)" if plan["policy_adapter_on"] else ""),
             f"- reference: `{plan['reference_path']}`",
             f"- β = {plan['beta']:g} (from {plan['beta_source']})",
             f"- data: `{config['dataset_name']}` split `{config['split']}`, {len(context.pairs)} pairs", "",
             "| metric | value | 95% interval |", "|---|---|---|"]
    for name in metric_names:
        low, high = results.get(f"{name}_ci95_low"), results.get(f"{name}_ci95_high")
        interval = f"[{_fmt(low)}, {_fmt(high)}]" if low is not None else ""
        lines.append(f"| {name} | {_fmt(results[name])} | {interval} |")
    lines += ["", f"![reward margins]({HISTOGRAM})", "",
              "Definitions: docs/evaluation.md. Per-pair log-probs, rewards and margins: per_example.jsonl."]
    if per_example:
        ranked = sorted(per_example, key=lambda r: r["margin"])
        lines += ["", "## Lowest-margin pairs", ""]
        for record in ranked[:3]:
            lines.append(f"- #{record['index']}: margin {record['margin']:.4f}")
    (output_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

"""Convert the 8,552 hh-rlhf test pairs with aligntune's loader and with TRL's own preparation; time both.

    python benchmarks/hh_rlhf_conversion.py [--data ../shared/data/hh-rlhf] [--repeats 5] [--json PATH]

TRL's preparation of implicit-prompt data is `datasets` JSON loading + `trl.data_utils.extract_prompt`
(the longest common character prefix of chosen and rejected). Also reports how many of TRL's rows differ from a
lossless split (the prompt cut into the responses), and aligntune's counts per subset. Needs aligntune-data-hh-rlhf
and trl installed. `--json PATH` also writes the result (command, commit, machine, versions, every repeat's time,
the counts) there; the results the docs quote are stored in docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _time(fn, repeats: int, timings: list[float] | None = None) -> tuple[float, object]:
    timings = [] if timings is None else timings
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hh-rlhf"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the result (with machine, versions, command) here")
    args = parser.parse_args()
    from _record import Recorder, relative

    recorder = Recorder("hh_rlhf_conversion")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    import datasets
    from trl.data_utils import extract_prompt

    from aligntune.data import load_preference_data
    from aligntune.logging_setup import configure_logging

    configure_logging(level="warning")
    datasets.disable_progress_bars()
    files = sorted(str(p) for p in Path(args.data).glob("*/test.jsonl.gz"))
    if len(files) != 4:
        raise SystemExit(f"expected the four hh-rlhf test files under {args.data}, found {len(files)}")

    ours_timings, trl_timings = [], []
    ours_seconds, ours = _time(
        lambda: load_preference_data("Anthropic/hh-rlhf", data_files=args.data, split="test"), args.repeats,
        ours_timings,
    )

    cache = tempfile.mkdtemp(prefix="hh-bench-")

    def trl_prepare():
        raw = datasets.load_dataset("json", data_files=files, split="train", cache_dir=cache)
        return raw.map(extract_prompt, load_from_cache_file=False)

    trl_seconds, trl_rows = _time(trl_prepare, args.repeats, trl_timings)

    kept = {(r["prompt"] + r["chosen"], r["prompt"] + r["rejected"]): r["prompt"] for r in ours.dataset}
    cut_into_response = sum(
        1 for r in trl_rows if not r["prompt"].endswith("\n\nAssistant:")
    )
    differs = sum(
        1 for r in trl_rows
        if (r["prompt"] + r["chosen"], r["prompt"] + r["rejected"]) in kept
        and kept[(r["prompt"] + r["chosen"], r["prompt"] + r["rejected"])] != r["prompt"]
    )
    print(f"pairs read:                    {ours.report['read']}")
    print(f"aligntune kept / dropped:      {ours.report['kept']} / {sum(ours.report['dropped'].values())} "
          f"{ours.report['dropped']}")
    print(f"aligntune conversion (median): {ours_seconds:.3f} s")
    print(f"TRL load + extract_prompt:     {trl_seconds:.3f} s")
    print(f"TRL prompts not ending at an assistant turn (cut into a response): {cut_into_response}")
    print(f"TRL prompts that differ from aligntune's for the same kept pair:   {differs}")
    subsets = {}
    for file in files:
        subset = Path(file).parent.name
        report = load_preference_data("Anthropic/hh-rlhf", data_files=args.data, split="test",
                                      dataset_config=subset).report
        subsets[subset] = {"read": report["read"], "kept": report["kept"], "dropped": dict(report["dropped"])}
        print(f"  {subset:<26} read {report['read']:>5}, kept {report['kept']:>5}, dropped {dict(report['dropped'])}")
    if args.json:
        recorder.write(args.json, settings={
            "data": relative(args.data), "files": [relative(f) for f in files], "repeats": args.repeats,
        }, runs={
            "aligntune": {"description": "load_preference_data('Anthropic/hh-rlhf', ...): read, split, check, "
                                         "build the datasets.Dataset",
                          "seconds": ours_timings, "median_seconds": ours_seconds, "read": ours.report["read"],
                          "kept": ours.report["kept"], "dropped": dict(ours.report["dropped"]), "subsets": subsets},
            "trl": {"description": "datasets JSON loading + trl.data_utils.extract_prompt",
                    "seconds": trl_timings, "median_seconds": trl_seconds, "rows": len(trl_rows),
                    "prompt_cut_into_response": cut_into_response, "prompt_differs_from_aligntune": differs},
        }, headline={"speedup_vs_trl": trl_seconds / ours_seconds})
    print(f"speedup_vs_trl: {trl_seconds / ours_seconds:.2f}")


if __name__ == "__main__":
    main()

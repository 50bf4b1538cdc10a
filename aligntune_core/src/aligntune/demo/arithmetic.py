"""The demo's synthetic preference task: correct vs wrong sums.

Problems are `a + b =` with a, b in [0, 20). The held-out split is made on unordered pairs {a, b}, so a held-out
problem appears in training in neither order. Each wrong answer is the sum of another random problem, so rejected
answers are spread like correct ones and a prompt-blind preference for some answers does not help: the model has to
read the prompt.
"""

from __future__ import annotations

import random

import attrs

OPERANDS = 20
HELD_OUT_FRACTION = 0.2
WRONG_ANSWERS_PER_PROBLEM = 4


@attrs.frozen
class ArithmeticTask:
    train: list[dict[str, str]]
    held_out: list[dict[str, str]]
    train_problems: int
    held_out_problems: int


def make_task(seed: int = 0) -> ArithmeticTask:
    rng = random.Random(seed)
    problems = [(a, b) for a in range(OPERANDS) for b in range(OPERANDS)]
    unordered = sorted({(min(a, b), max(a, b)) for a, b in problems})
    rng.shuffle(unordered)
    held_out_pairs = set(unordered[: round(HELD_OUT_FRACTION * len(unordered))])
    held_out = [p for p in problems if (min(p), max(p)) in held_out_pairs]
    train = [p for p in problems if (min(p), max(p)) not in held_out_pairs]

    def wrong_answers(correct: int) -> list[int]:
        answers: set[int] = set()
        while len(answers) < WRONG_ANSWERS_PER_PROBLEM:
            candidate = sum(rng.choice(problems))
            if candidate != correct:
                answers.add(candidate)
        return sorted(answers)

    def rows(selected: list[tuple[int, int]]) -> list[dict[str, str]]:
        out = []
        for a, b in selected:
            for wrong in wrong_answers(a + b):
                out.append({"prompt": f"{a} + {b} =", "chosen": f" {a + b}", "rejected": f" {wrong}"})
        return out

    train_rows = rows(train)
    rng.shuffle(train_rows)
    return ArithmeticTask(train=train_rows, held_out=rows(held_out), train_problems=len(train),
                          held_out_problems=len(held_out))


def make_tokenizer():
    """A word-level tokenizer over the task's symbols; BOS is prepended, EOS is added to completions by training."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "+", "="] + [str(i) for i in range(2 * OPERANDS - 1)]
    vocab = {word: index for index, word in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )

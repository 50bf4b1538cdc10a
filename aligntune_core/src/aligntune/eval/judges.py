"""The built-in judge: a sequence-classification reward model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aligntune.errors import ConfigError


def render_prompt(tokenizer, prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return "".join(f"\n\n{m['role'].capitalize()}: {m['content']}" for m in prompt) + "\n\nAssistant:"


class RewardModelJudge:
    """Scores `prompt + response` with a reward model: the logit of a one-label head, or the log-probability of
    the last label of a multi-label head."""

    def __init__(self, path: str, dtype: str = "float32", max_length: int = 2048, device: Any = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, dtype="auto" if dtype == "auto" else getattr(torch, dtype)
            ).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the judge reward model {path!r}: {exc}") from None
        if device is not None:
            self.model = self.model.to(device)
        self.max_length = max_length

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        import torch

        device = next(self.model.parameters()).device
        scores = []
        with torch.no_grad():
            for prompt, response in zip(prompts, responses):
                text = render_prompt(self.tokenizer, prompt) + response
                encoded = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=self.max_length)
                logits = self.model(**{k: v.to(device) for k, v in encoded.items()}).logits[0].float()
                scores.append(float(logits[0]) if logits.numel() == 1 else float(logits.log_softmax(-1)[-1]))
        return scores


def create_reward_model_judge(config) -> RewardModelJudge:
    if not config.judge_model_path:
        raise ConfigError(
            "the reward_model judge needs judge_model_path: a sequence-classification reward model (hub id or path)"
        )
    from aligntune.eval.models import resolve_device

    return RewardModelJudge(config.judge_model_path, dtype=config.dtype, device=resolve_device(config.device))

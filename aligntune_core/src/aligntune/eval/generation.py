"""Generating one response per prompt from the policy and from the reference, with the same decoding settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from aligntune.eval.config import EvalConfig


def prompt_ids(tokenizer, prompt: Any) -> list[int]:
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    ids = tokenizer.apply_chat_template(list(prompt), tokenize=True, add_generation_prompt=True, return_dict=False)
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def generate(model, tokenizer, prompts: Sequence[Any], config: EvalConfig, *, context, desc: str,
             max_prompt_length: int | None = None) -> list[str]:
    """Decode as `config.decoding()` says (greedy unless sampling is asked for); when sampling, each prompt is
    seeded with `seed + index` so both models draw alike."""
    decoding = config.decoding()
    device = next(model.parameters()).device
    responses = []
    with torch.no_grad(), context():
        for index, prompt in enumerate(tqdm(prompts, desc=desc, unit="prompt")):
            ids = prompt_ids(tokenizer, prompt)
            if max_prompt_length is not None:
                ids = ids[-max_prompt_length:]
            input_ids = torch.tensor([ids], device=device)
            kwargs: dict[str, Any] = dict(
                max_new_tokens=config.max_new_tokens,
                do_sample=decoding.do_sample,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            if decoding.do_sample:
                kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p)
                if decoding.top_k is not None:
                    kwargs.update(top_k=decoding.top_k)
                torch.manual_seed(config.seed + index)
            output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
            responses.append(tokenizer.decode(output[0, len(ids):], skip_special_tokens=True))
    return responses

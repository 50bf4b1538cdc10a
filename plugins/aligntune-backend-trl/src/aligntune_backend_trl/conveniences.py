"""What AlignTune 0.x users call on a trainer besides `train()`: `config`, `tokenizer`, `predict(prompt)` and
`push_to_hub(repo_id)`. Mixed into the TRL backend's trainer; Trainer's own `predict(dataset)` keeps working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aligntune.errors import AlignTuneError, ConfigError


class TrainerConveniences:
    @property
    def config(self):
        """The resolved `TrainConfig` of this run, read-only, with AlignTune 0.x's nested sections beside its fields
        (`trainer.config.train.beta`, `trainer.config.model.name_or_path`: `aligntune.core.config_view`)."""
        from aligntune.core.config_view import ConfigView

        return ConfigView(self.aligntune_config, self.args)

    @property
    def tokenizer(self):
        return self.processing_class

    @property
    def dataset_dict(self):
        """The preference pairs this run trains (and evaluates) on, before tokenization, as a `DatasetDict`:
        `train`, and the evaluation split under its own name when there is one. `run_eval(config, trainer.dataset_dict)`
        scores its `config.split`."""
        import datasets

        sources = getattr(self, "data_sources", None) or {}
        splits = {}
        if sources.get("train") is not None:
            splits["train"] = sources["train"].dataset
        if sources.get("eval") is not None:
            splits[self.aligntune_config.eval_split or "test"] = sources["eval"].dataset
        if any(isinstance(d, datasets.IterableDataset) for d in splits.values()):
            return datasets.IterableDatasetDict(splits)
        return datasets.DatasetDict(splits)

    def predict(self, prompts: Any, *args: Any, max_new_tokens: int = 128, do_sample: bool = False, **kwargs: Any):
        """`predict("a prompt")` -> the policy's reply (greedy unless `do_sample`); a list of prompts -> a list of
        replies. A prompt may be a list of {role, content} messages (rendered with the chat template). Anything else
        is Trainer's `predict(test_dataset)`."""
        single = isinstance(prompts, str) or _is_messages(prompts)
        many = isinstance(prompts, (list, tuple)) and prompts and all(
            isinstance(p, str) or _is_messages(p) for p in prompts)
        if not single and not many:
            return super().predict(prompts, *args, **kwargs)
        import torch
        from aligntune.eval.generation import prompt_ids

        model = self.accelerator.unwrap_model(self.model)
        tokenizer = self.processing_class
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        replies = []
        try:
            with torch.no_grad():
                for prompt in [prompts] if single else prompts:
                    ids = prompt_ids(tokenizer, prompt)
                    input_ids = torch.tensor([ids], device=device)
                    output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                            max_new_tokens=max_new_tokens, do_sample=do_sample,
                                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                            **kwargs)
                    replies.append(tokenizer.decode(output[0, len(ids):], skip_special_tokens=True))
        finally:
            model.train(was_training)
        return replies[0] if single else replies

    def push_to_hub(self, repo_id: str | None = None, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "aligntune: upload trained model", **kwargs: Any) -> str:
        """Upload the trained model (or adapter), tokenizer and `aligntune_run.json` in `output_dir` to `repo_id`
        on the Hugging Face Hub; returns the repository URL. Without `repo_id`: Trainer's own (`hub_model_id`)."""
        if repo_id is None:
            return super().push_to_hub(commit_message=commit_message, token=token, **kwargs)
        if not isinstance(repo_id, str) or repo_id.count("/") != 1:
            raise ConfigError(f"push_to_hub: repo_id must be 'user/name' or 'organisation/name', got {repo_id!r}")
        folder = Path(self.args.output_dir)
        if not (folder / "aligntune_run.json").is_file() or not any(folder.glob("*.safetensors")):
            raise ConfigError(f"push_to_hub: {folder} holds no trained model yet; call train() first")
        from huggingface_hub import create_repo, upload_folder

        try:
            url = create_repo(repo_id, private=private, token=token, exist_ok=True)
            upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message, token=token,
                          ignore_patterns=["checkpoint-*", ".aligntune.lock", "*.tmp"])
        except Exception as exc:  # network, authentication, offline mode: the Hub client has many error types
            raise AlignTuneError(f"push_to_hub {repo_id!r} failed: {type(exc).__name__}: {exc}. The model stays in "
                                 f"{folder}; log in with `hf auth login` (or pass token=...) and try again.") from None
        return str(url)


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)

"""The hooks a plugin can implement.

Every hook takes no arguments and yields typed records (see `aligntune.plugins.records`). A plugin is a module
registered under the `aligntune` entry-point group:

    [project.entry-points.aligntune]
    my-plugin = "my_plugin"

Keep the plugin module light: import torch, transformers or your own heavy code inside the callables you put in
the records, not at module level, so that `aligntune plugins list` stays fast and a broken dependency only breaks
what uses it.

Each plugin is validated on its own when it loads: every `@hookimpl` must be one of the hooks below (a misspelt
`aligntune_loss` is caught), take no arguments, and yield records of the hook's type with valid fields. A plugin
that fails any of this — or raises anything, `sys.exit()` included, while importing or in a hook — is listed as
`failed` with the reason and provides nothing; the other plugins are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from aligntune.plugins.records import BackendSpec, DatasetAdapterSpec, JudgeSpec, LossSpec, MetricSpec

PROJECT = "aligntune"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def aligntune_backends() -> Iterable[BackendSpec]:
    """Training backends this plugin provides.

    `create_trainer(config)` returns a `BackendTrainer` (`train`, `evaluate`, `save_model`, `log_history`, `config`);
    `aligntune.testing.check_backend_contract` checks the run guarantees behind them (docs/plugins/writing-a-backend.md).

    Example plugin module::

        from aligntune.plugins import BackendSpec, hookimpl

        def _create_trainer(config):
            from my_backend.trainer import build  # heavy imports happen here, at use
            return build(config)

        @hookimpl
        def aligntune_backends():
            yield BackendSpec(name="my-backend", summary="Trains with my library", create_trainer=_create_trainer)
    """


@hookspec
def aligntune_losses() -> Iterable[LossSpec]:
    """DPO-family losses this plugin provides.

    Example plugin module (the "slic" hinge loss with a calibration margin)::

        from aligntune.plugins import LossSpec, hookimpl

        def slic(inputs):
            import torch
            margin = inputs.params["margin"]
            return torch.relu(margin - inputs.beta * inputs.logits)

        @hookimpl
        def aligntune_losses():
            yield LossSpec(name="slic", summary="SLiC hinge loss", fn=slic, params={"margin": 1.0})
    """


@hookspec
def aligntune_dataset_adapters() -> Iterable[DatasetAdapterSpec]:
    """Dataset adapters this plugin provides.

    Example plugin module::

        from aligntune.plugins import DatasetAdapterSpec, hookimpl

        def _load(request):
            from aligntune.data import PreferenceData, rows_to_dataset
            rows = [{"prompt": "2+2=", "chosen": "4", "rejected": "5"}]
            return PreferenceData(dataset=rows_to_dataset(rows), report={"kept": 1})

        @hookimpl
        def aligntune_dataset_adapters():
            yield DatasetAdapterSpec(name="toy", summary="One toy pair", load=_load, dataset_names=("me/toy",))
    """


@hookspec
def aligntune_metrics() -> Iterable[MetricSpec]:
    """Evaluation metrics this plugin provides.

    Example plugin module::

        from aligntune.plugins import MetricSpec, hookimpl

        def _mean_chosen_logp(context):
            values = [pair.policy_chosen_logps for pair in context.pairs]
            return {"mean_chosen_logp": sum(values) / len(values)}

        @hookimpl
        def aligntune_metrics():
            yield MetricSpec(name="mean_chosen_logp", summary="Mean log p(chosen)", compute=_mean_chosen_logp)
    """


@hookspec
def aligntune_judges() -> Iterable[JudgeSpec]:
    """Judges that score responses for win rate.

    Example plugin module (prefers shorter answers)::

        from aligntune.plugins import JudgeSpec, hookimpl

        class _Brevity:
            def score(self, prompts, responses):
                return [-float(len(response)) for response in responses]

        @hookimpl
        def aligntune_judges():
            yield JudgeSpec(name="brevity", summary="Shorter is better", create=lambda config: _Brevity())
    """

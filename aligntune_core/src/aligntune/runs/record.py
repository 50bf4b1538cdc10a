"""The run record (`aligntune_run.json`) as typed, versioned classes: what a backend writes and what evaluation,
export and the model card read back.

A backend builds one with `RunRecord.create(config, ...)`: every part is a required argument, so a backend cannot
leave one out. `record.write(directory)` writes `record.to_json()` atomically; `load_run_record(directory)` reads it
back. Its JSON Schema ships next to this module (`run_record.schema.json`,
generated from these classes by `aligntune.runs.record_schema`).

Formats: 2 is written now. 1 is what aligntune wrote before the record was typed (the same keys, without
`written_by`; very early runs lack some parts): it is read, and a part it lacks is `None` and named in `missing`,
so that a reader that needs it raises an error naming it (`RunRecord.require`) instead of guessing.
"""

from __future__ import annotations

import platform
import typing
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs

from aligntune.errors import RunRecordError
from aligntune.runs.record_schema import (
    SCHEMA_FILE,
    is_extra,
    is_internal,
    is_optional_key,
    json_key,
    load_schema,
    validate,
)

if typing.TYPE_CHECKING:
    from aligntune.core.config import TrainConfig

FORMAT_VERSION = 2
OLDEST_FORMAT = 1
_VERSIONED = ("aligntune-core", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth")
_VERSIONS_SCHEMA = {
    "type": "object",
    "properties": {"python": {"type": "string"},
                   "plugins": {"type": "object", "additionalProperties": {"type": "string"}}},
    "required": ["python", "plugins"],
    "additionalProperties": {"type": "string"},
}


def _doc(text: str, **metadata: Any) -> dict[str, Any]:
    return {"doc": text, **metadata}


@attrs.frozen
class Writer:
    """Who wrote the record: the backend's distribution and its version, and the core's version."""

    distribution: str = attrs.field(metadata=_doc("the distribution that provides the backend"))
    version: str = attrs.field(metadata=_doc("its version"))
    aligntune_core: str = attrs.field(metadata=_doc("the aligntune-core version the backend ran with"))


@attrs.frozen
class DatasetSource:
    """The training data as configured (a mixture: `name` is `mixture: a + b`, the entries are in `datasets`)."""

    name: str
    config: str | None
    split: str | None
    data_files: Any
    max_samples: int | None


@attrs.frozen
class TokenizationLimits:
    """The length limits training tokenized with; evaluation scores pairs with the same ones."""

    max_seq_length: int | None
    max_prompt_length: int | None
    max_completion_length: int | None


@attrs.frozen
class ResumedFrom:
    """The checkpoint (absolute path) and step a resumed run continued from."""

    checkpoint: str
    step: int


@attrs.frozen
class RunStatus:
    """How the run went: why it stopped, whether the directory holds its final model, steps, the fingerprint."""

    stop_reason: str = attrs.field(metadata=_doc("finished, non-finite, interrupted, failed: <error>, or running"))
    model_saved: bool = attrs.field(metadata=_doc("whether output_dir holds this run's final model"))
    output_dir: str
    resumed_from: ResumedFrom | None
    steps_run: int = attrs.field(metadata=_doc("optimizer steps trained by this session (after a resume: since it)"))
    max_steps: int = attrs.field(metadata=_doc("optimizer steps planned for the whole run"))
    nonfinite_steps_skipped: int
    on_nonfinite: str
    fingerprint: str | None = attrs.field(metadata=_doc("digest of the settings and data a resume must match"))


@attrs.frozen
class ReferenceLogProbs:
    """How the reference model's log-probabilities were obtained."""

    precomputed: bool = attrs.field(metadata=_doc("computed once before training (no reference model kept)"))
    cache_hits: int = attrs.field(metadata=_doc("passes read from the on-disk cache instead of computed"))


@attrs.frozen(kw_only=True)
class Processes:
    """How many processes trained and how they were launched and sharded."""

    world_size: int
    kind: str = attrs.field(metadata=_doc("how the processes were launched: single, torchrun, accelerate, ..."))
    config: str | None = attrs.field(default=None, metadata=_doc("the distributed config asked for",
                                                                  omit_if_none=True))
    description: str | None = attrs.field(default=None, metadata=_doc("what that config does", omit_if_none=True))
    distributed_type: str = attrs.field(metadata=_doc("accelerate's: NO, MULTI_GPU, MULTI_CPU, FSDP, DEEPSPEED"))


@attrs.frozen
class TokenizationCounts:
    """Pairs through tokenization: in, kept, dropped by reason, cut; the other counts as the tokenizer reports
    them (truncated pairs, the longest and median prompt, ...)."""

    pairs_in: int
    pairs_kept: int
    dropped: dict[str, int]
    more: dict[str, Any] = attrs.field(factory=dict, metadata={"extra": True})


@attrs.frozen
class DataSplit:
    """One split's counts: the dataset adapter's report (rows read, kept, dropped by reason, its provenance) and
    the tokenization's."""

    adapter: dict[str, Any] | None
    tokenization: TokenizationCounts | None


@attrs.frozen
class DataReports:
    """The counts of the training split and, when there is one, the evaluation split."""

    train: DataSplit | None = attrs.field(default=None, metadata={"omit_if_none": True})
    eval: DataSplit | None = attrs.field(default=None, metadata={"omit_if_none": True})


@attrs.frozen
class TrainMetrics:
    """Training metrics (TRL's names: loss, rewards/accuracies, ...): over the whole run (across resumes), over the
    last logging window (with its `steps`), and the trainer's figures for this session (runtime, speed)."""

    whole_run: dict[str, float]
    last_window: dict[str, float]
    this_session: dict[str, float]


@attrs.frozen(kw_only=True)
class RunRecord:
    """`aligntune_run.json`: how a model was trained, written next to it so evaluation and export can read it back.

    Format 2. Construct it with `RunRecord.create` (the configuration-derived parts are filled in from the config);
    a backend supplies the rest."""

    format_version: int = attrs.field(metadata=_doc("the record's format", key="format",
                                                    schema={"type": "integer", "const": FORMAT_VERSION}))
    created: str = attrs.field(metadata=_doc("when the record was first built (ISO 8601, UTC)"))
    algorithm: str
    backend: str = attrs.field(metadata=_doc("the backend's name (e.g. trl)"))
    written_by: Writer
    model_name: str = attrs.field(metadata=_doc("the model trained from; a local path made absolute"))
    model_name_given: str = attrs.field(metadata=_doc("the model as the configuration wrote it"))
    reference_model: str | None = attrs.field(metadata=_doc("the reference model; null when reference-free"))
    reference_free: bool
    loss_type: str | list[str]
    loss_weights: list[float] | None
    loss_params: dict[str, Any]
    beta: float
    label_smoothing: float
    use_lora: bool
    base_model: str | None = attrs.field(metadata=_doc("the model a LoRA adapter applies to; null without LoRA"))
    dataset: DatasetSource
    datasets: list[dict[str, Any]] | None = attrs.field(
        default=None, metadata=_doc("a mixture's entries as given; absent otherwise", omit_if_none=True))
    tokenization: TokenizationLimits
    config: dict[str, Any] = attrs.field(metadata=_doc("the resolved training configuration, every option"))
    versions: dict[str, Any] = attrs.field(metadata=_doc(
        "package versions, Python, and every installed aligntune plugin (plugins: distribution -> version)",
        schema=_VERSIONS_SCHEMA))
    global_step: int = attrs.field(metadata=_doc("optimizer steps in the whole run"))
    run: RunStatus
    reference_log_probs: ReferenceLogProbs
    processes: Processes
    data: DataReports
    train_metrics: TrainMetrics
    # Not in the file: where it was read from, and (format 1) the dotted keys it lacked.
    source: str | None = attrs.field(default=None, eq=False, metadata={"internal": True})
    missing: frozenset[str] = attrs.field(factory=frozenset, eq=False, metadata={"internal": True})

    # -- building --------------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, config: TrainConfig, *, global_step: int, run: RunStatus,
               reference_log_probs: ReferenceLogProbs, processes: Processes, data: DataReports,
               train_metrics: TrainMetrics, reference_free: bool | None = None,
               created: str | None = None) -> RunRecord:
        """The record of a run of `config`; the backend gives what happened (`reference_free`: what the trainer
        actually did, when it differs from the config)."""
        from aligntune.core.model_paths import resolved_path

        if config.use_lora is None:
            raise TypeError("RunRecord.create: config.use_lora is None; a backend records what it trained, so resolve "
                            "its default first (attrs.evolve(config, use_lora=...))")
        model = resolved_path(config.model_name)
        free = config.reference_free if reference_free is None else reference_free
        return cls(
            format_version=FORMAT_VERSION,
            created=created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            algorithm=config.algorithm,
            backend=config.backend,
            written_by=backend_writer(config.backend),
            model_name=model,
            model_name_given=config.model_name,
            reference_model=None if free else model,
            reference_free=free,
            loss_type=config.loss_type,
            loss_weights=config.loss_weights,
            loss_params=dict(config.loss_params),
            beta=config.beta,
            label_smoothing=config.label_smoothing,
            use_lora=config.use_lora,
            base_model=model if config.use_lora else None,
            dataset=DatasetSource(
                name=config.dataset_name or "mixture: " + " + ".join(entry["name"] for entry in config.datasets),
                config=config.dataset_config, split=config.split, data_files=config.data_files,
                max_samples=config.max_samples),
            # A mixture: each entry as given (what each contributed is in data.train.adapter.mixture).
            datasets=[dict(entry) for entry in config.datasets] if config.datasets else None,
            tokenization=TokenizationLimits(max_seq_length=config.max_seq_length,
                                            max_prompt_length=config.max_prompt_length,
                                            max_completion_length=config.max_completion_length),
            config=config.to_dict(),
            versions=package_versions(),
            global_step=global_step,
            run=run,
            reference_log_probs=reference_log_probs,
            processes=processes,
            data=data,
            train_metrics=train_metrics,
        )

    # -- the file --------------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object written to `aligntune_run.json` (the keys of format 2)."""
        return _unstructure(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "run record") -> RunRecord:
        """Read a record of format 1 or 2 (`source`: the file, for messages). A newer format, a value of the wrong
        type, or (format 2) a missing key is a `RunRecordError`."""
        if not isinstance(data, Mapping):
            raise RunRecordError(f"{source}: not a run record (expected a JSON object, got {type(data).__name__})")
        data = dict(data)
        found = data.get("format", OLDEST_FORMAT)  # the first records had no format key
        writer = _writer_label(data)
        if isinstance(found, bool) or not isinstance(found, int) or found < OLDEST_FORMAT:
            raise RunRecordError(f"{source}: key 'format' must be a run record format number "
                                 f"({OLDEST_FORMAT} to {FORMAT_VERSION}), got {found!r} (written by {writer})")
        if found > FORMAT_VERSION:
            raise RunRecordError(
                f"{source}: written by {writer}; this aligntune-core ({_version('aligntune-core')}) reads run record "
                f"formats {OLDEST_FORMAT} to {FORMAT_VERSION}. Upgrade aligntune-core to the version that wrote it, "
                "or newer.")
        problems = validate({**data, "format": FORMAT_VERSION}, load_schema())
        lenient = found < FORMAT_VERSION
        wrong = [problem for problem in problems if not (lenient and problem.missing_key)]
        if wrong:
            listed = "; ".join(f"key '{problem.path}' {problem.message}" for problem in wrong[:6])
            more = f" (and {len(wrong) - 6} more)" if len(wrong) > 6 else ""
            raise RunRecordError(
                f"{source}: not a valid run record of format {found} (written by {writer}): {listed}{more}. "
                f"A backend must write every part the schema ({SCHEMA_FILE.name} in aligntune.runs) requires: "
                "report this to the backend's authors; until then give the missing settings to `aligntune eval` "
                "or `aligntune export` explicitly where they take them.")
        missing: set[str] = set()
        record = _structure(cls, data, "", missing)
        missing.discard("format")  # the first records had none: format 1
        return attrs.evolve(record, format_version=found, source=source, missing=frozenset(missing))

    def write(self, directory: str | Path) -> Path:
        """Write the record into `directory` as `aligntune_run.json`, atomically; returns the file's path."""
        from aligntune.core.run_record import write_run_record

        return write_run_record(directory, self.to_json())

    # -- reading -----------------------------------------------------------------------------------------------------

    @property
    def writer_label(self) -> str:
        """Who wrote it, for messages: the backend, its distribution and version, and the record's format."""
        return _writer_label({**self.to_json(), "format": self.format_version}, self.written_by)

    def lacks(self, key: str) -> bool:
        """Whether a (format 1) record lacks `key` (dotted: `run.model_saved`), or the part that holds it."""
        parts = key.split(".")
        return any(".".join(parts[: end]) in self.missing for end in range(1, len(parts) + 1))

    def require(self, *keys: str, purpose: str, hint: str = "") -> None:
        """Raise a `RunRecordError` naming the first of `keys` this record lacks, the file, and who wrote it."""
        for key in keys:
            if self.lacks(key):
                raise RunRecordError(
                    f"{self.source or 'run record'}: key '{key}' is missing from the run record ({self.writer_label})"
                    f"; {purpose} needs it" + (f". {hint}" if hint else "."))


def package_versions() -> dict[str, Any]:
    """The `versions` part: the packages that shape a run, Python, and every installed aligntune plugin."""
    out: dict[str, Any] = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    from aligntune.plugins import list_plugins

    out["plugins"] = {p.name: p.version for p in list_plugins() if p.status == "ok"}
    return out


def backend_writer(backend: str) -> Writer:
    """The `written_by` part for the backend called `backend`, from the installed plugin that provides it."""
    from aligntune.plugins import registry

    provided = registry().lookup("backends", backend)
    core = _version("aligntune-core")
    if provided is None:
        return Writer(distribution="(unregistered)", version="unknown", aligntune_core=core)
    return Writer(distribution=provided.plugin.name, version=provided.plugin.version, aligntune_core=core)


def load_run_record(directory: str | Path) -> RunRecord | None:
    """The record in `directory` (None when there is none); a corrupt or unusable one is a `ConfigError` naming
    the file."""
    from aligntune.core.run_record import RUN_FILE, read_run_record

    data = read_run_record(directory)
    if data is None:
        return None
    return RunRecord.from_json(data, source=str(Path(directory) / RUN_FILE))


# -- helpers ---------------------------------------------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _writer_label(data: Mapping[str, Any], writer: Writer | None = None) -> str:
    backend = data.get("backend")
    found = data.get("format", OLDEST_FORMAT)
    if writer is None and isinstance(data.get("written_by"), Mapping):
        given = data["written_by"]
        writer = Writer(distribution=str(given.get("distribution")), version=str(given.get("version")),
                        aligntune_core=str(given.get("aligntune_core")))
    if writer is not None:
        made = f"{writer.distribution} {writer.version}"
    else:  # format 1: the backend's distribution is among the plugins the record lists, when it is a known one
        from aligntune.plugins.records import FIRST_PARTY

        distribution = FIRST_PARTY["backends"].get(str(backend))
        plugins = (data.get("versions") or {}).get("plugins") if isinstance(data.get("versions"), Mapping) else None
        known = plugins.get(distribution) if isinstance(plugins, Mapping) and distribution else None
        made = f"{distribution} {known}" if known else "version not recorded"
    name = f"backend {backend!r}" if isinstance(backend, str) else "an unnamed backend"
    return f"{name} ({made}), record format {found}"


def _structure(hint: Any, value: Any, path: str, missing: set[str]) -> Any:
    """A validated JSON value as `hint` (attrs classes built, absent keys of a format-1 record set to None)."""
    if attrs.has(hint) and isinstance(value, Mapping):
        hints = typing.get_type_hints(hint)
        known: set[str] = set()
        kwargs: dict[str, Any] = {}
        extra = None
        for field in attrs.fields(hint):
            if is_internal(field):
                continue
            if is_extra(field):
                extra = field
                continue
            key = json_key(field)
            known.add(key)
            where = f"{path}.{key}" if path else key
            if key in value:
                kwargs[field.name] = _structure(hints[field.name], value[key], where, missing)
            elif is_optional_key(field):
                kwargs[field.name] = None
            else:
                missing.add(where)
                kwargs[field.name] = None
        if extra is not None:
            kwargs[extra.name] = {key: item for key, item in value.items() if key not in known}
        return hint(**kwargs)
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, type(int | None)) else ()
    for member in members:
        if attrs.has(member) and isinstance(value, Mapping):
            return _structure(member, value, path, missing)
    return value


def _unstructure(value: Any) -> Any:
    if attrs.has(type(value)):
        out: dict[str, Any] = {}
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if is_internal(field) or (is_optional_key(field) and item is None):
                continue
            if is_extra(field):
                out.update(item)
                continue
            out[json_key(field)] = _unstructure(item)
        return out
    if isinstance(value, Mapping):
        return {key: _unstructure(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unstructure(item) for item in value]
    return value

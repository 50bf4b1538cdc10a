"""OpenAssistant message trees (oasst1, oasst2, tree exports) to conversational preference pairs.

Sources: the hub ids `OpenAssistant/oasst1` and `OpenAssistant/oasst2` (flat messages, via `datasets.load_dataset`),
or local files in `data_files=`: flat message lists (one message per row, linked by `parent_id`) or nested tree
exports (one tree per row, children under `replies`). Every message is read into one graph; pairs come from ranked
sibling assistant replies to the same prompter message, with the thread from the root as the prompt.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import structlog

from aligntune.data.files import every_data_file, resolve_data_files
from aligntune.data.request import DatasetRequest, DropReport, PreferenceData
from aligntune.data.rows import rows_to_dataset, validate_rows
from aligntune.data.transforms import split_name
from aligntune.errors import DataError

log = structlog.get_logger("aligntune.data")

PAIR_MODES = ("best_vs_worst", "all")
ROLES = {"prompter": "user", "assistant": "assistant"}
TRAIN_SPLIT = "train"
HELD_OUT_SPLITS = ("test", "validation", "valid", "eval", "dev")
# Message drop reasons, in the order they are checked: each dropped message is counted once, under the first.
DROP_REASONS = ("orphan", "wrong_lang", "deleted", "not_reviewed", "synthetic")
# Drop reasons that are a selection the user asked for rather than a problem in the data: never errors in strict mode.
SELECTIONS = ("wrong_lang",)
FILE_TYPES = ("jsonl", "json", "parquet")
# Columns read from hub datasets (the others, e.g. detoxify and labels, are never decoded).
FIELDS = (
    "message_id",
    "parent_id",
    "message_tree_id",
    "role",
    "text",
    "rank",
    "lang",
    "deleted",
    "review_result",
    "synthetic",
    "replies",
)
REQUIRED = ("message_id", "role", "text")


# -- options ---------------------------------------------------------------------------------------------------------


@attrs.frozen
class Options:
    pairs: str
    langs: frozenset[str] | None  # lower case; None keeps every language
    drop_deleted: bool
    require_review: bool
    drop_synthetic: bool
    holdout_fraction: float


def parse_options(options: Mapping[str, Any]) -> Options:
    """Check the adapter's options (already merged with the defaults by the core)."""
    pairs = options.get("pairs", "best_vs_worst")
    if pairs not in PAIR_MODES:
        raise DataError(
            f"oasst option pairs={pairs!r} is not valid; valid values: {', '.join(repr(m) for m in PAIR_MODES)}"
        )
    flags = {}
    for name in ("drop_deleted", "require_review", "drop_synthetic"):
        value = options.get(name, True)
        if not isinstance(value, bool):
            raise DataError(f"oasst option {name}={value!r} is not valid; valid values: True, False")
        flags[name] = value
    fraction = options.get("holdout_fraction", 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise DataError(
            f"oasst option holdout_fraction={fraction!r} is not valid; use a number in [0, 1) "
            "(0 = no held-out split; 0.05 holds out about 5% of the trees)"
        )
    return Options(
        pairs=pairs, langs=_parse_lang(options.get("lang", "en")), holdout_fraction=float(fraction), **flags
    )


def _parse_lang(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)) or not values or not all(
        isinstance(v, str) and v.strip() for v in values
    ):
        raise DataError(
            f"oasst option lang={value!r} is not valid; use a language code such as 'en', a list of codes, "
            "or None for every language"
        )
    return frozenset(v.strip().lower() for v in values)


# -- messages --------------------------------------------------------------------------------------------------------


class Message:
    """One message of a tree, with where it was read (for errors)."""

    __slots__ = (
        "message_id",
        "parent_id",
        "declared_tree_id",
        "role",
        "text",
        "rank",
        "lang",
        "deleted",
        "review_result",
        "synthetic",
        "location",
        "index",
    )

    def __init__(self, row: Mapping[str, Any], location: str, index: int, parent_id: Any) -> None:
        self.location = location
        self.index = index
        missing = [key for key in REQUIRED if key not in row]
        if missing:
            found = ", ".join(sorted(map(str, row))) or "none"
            raise DataError(
                f"{location}: missing key {missing[0]!r}; an OpenAssistant message needs {', '.join(REQUIRED)} "
                f"(found: {found})"
            )
        self.message_id = _get(row, "message_id", location, str, "a string")
        if not self.message_id:
            raise DataError(f"{location}, key 'message_id': expected a non-empty string, got ''")
        self.role = _get(row, "role", location, str, "a string")
        if self.role not in ROLES:
            raise DataError(
                f"{location}, key 'role': expected one of {', '.join(repr(r) for r in ROLES)}, got {self.role!r}"
            )
        self.text = _get(row, "text", location, str, "a string")
        self.parent_id = _check(parent_id, "parent_id", location, (str, type(None)), "a string or null")
        self.declared_tree_id = _get(row, "message_tree_id", location, (str, type(None)), "a string or null")
        self.lang = _get(row, "lang", location, (str, type(None)), "a string or null")
        self.rank = _rank(row.get("rank"), location)
        self.deleted = bool(_get(row, "deleted", location, (bool, type(None)), "true, false or null"))
        self.review_result = _get(row, "review_result", location, (bool, type(None)), "true, false or null")
        self.synthetic = bool(_get(row, "synthetic", location, (bool, type(None)), "true, false or null"))

    def turn(self) -> dict[str, str]:
        return {"role": ROLES[self.role], "content": self.text}


def _check(value: Any, key: str, location: str, types: type | tuple[type, ...], expected: str) -> Any:
    if not isinstance(value, types):
        raise DataError(f"{location}, key {key!r}: expected {expected}, got {type(value).__name__} {_short(value)}")
    return value


def _get(row: Mapping[str, Any], key: str, location: str, types: type | tuple[type, ...], expected: str) -> Any:
    return _check(row.get(key), key, location, types, expected)


def _rank(value: Any, location: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # e.g. files written through pandas
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(
            f"{location}, key 'rank': expected an integer >= 0 (0 = best) or null, got "
            f"{type(value).__name__} {_short(value)}"
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- reading ---------------------------------------------------------------------------------------------------------


@attrs.define
class Source:
    """What was read: messages in read order, and the format of each file (or hub split)."""

    messages: list[Message] = attrs.field(factory=list)
    formats: dict[str, str] = attrs.field(factory=dict)
    seen: dict[str, str] = attrs.field(factory=dict)  # message_id -> location, to catch duplicates

    def add(self, message: Message) -> None:
        first = self.seen.get(message.message_id)
        if first is not None:
            raise DataError(
                f"{message.location}: message_id {message.message_id!r} was already read at {first}; "
                "pass each message once (oasst2 contains oasst1: do not load both)"
            )
        self.seen[message.message_id] = message.location
        self.messages.append(message)

    def read_rows(self, name: str, rows: Iterable[tuple[str, Any]]) -> None:
        kinds: set[str] = set()
        for location, row in rows:
            if not isinstance(row, Mapping):
                raise DataError(
                    f"{location}: expected an OpenAssistant message or tree (an object), got {type(row).__name__}"
                )
            if "message_id" not in row and isinstance(row.get("prompt"), Mapping):
                # The official tree export wraps each tree: {"message_tree_id", "tree_state", "prompt": root}.
                kinds.add("trees")
                wrapper_id = _get(row, "message_tree_id", location, (str, type(None)), "a string or null")
                self._read_tree(row["prompt"], location, "prompt", wrapper_id)
            elif "replies" in row:
                kinds.add("trees")
                self._read_tree(row, location)
            else:
                kinds.add("messages")
                self.add(Message(row, location, len(self.messages), row.get("parent_id")))
        self.formats[name] = "mixed" if len(kinds) > 1 else next(iter(kinds), "empty")

    def _read_tree(
        self, root: Mapping[str, Any], location: str, root_path: str = "", wrapper_id: str | None = None
    ) -> None:
        # Depth first, iteratively; a nested reply's parent is the message it is nested in.
        stack: list[tuple[Mapping[str, Any], str, Any]] = [(root, root_path, root.get("parent_id"))]
        while stack:
            row, path, parent_id = stack.pop()
            where = f"{location}, {path}" if path else location
            message = Message(row, where, len(self.messages), parent_id)
            if path == root_path and message.declared_tree_id is None:
                message.declared_tree_id = wrapper_id
            self.add(message)
            replies = row.get("replies")
            if replies is None:
                continue
            if not isinstance(replies, list):
                raise DataError(f"{where}, key 'replies': expected a list of messages, got {type(replies).__name__}")
            nested = []
            for number, reply in enumerate(replies):
                reply_path = f"{path}.replies[{number}]" if path else f"replies[{number}]"
                if not isinstance(reply, Mapping):
                    raise DataError(
                        f"{location}, {reply_path}: expected a message (an object), got {type(reply).__name__}"
                    )
                nested.append((reply, reply_path, message.message_id))
            stack.extend(reversed(nested))


def _read_source(request: DatasetRequest, source_split: str) -> Source:
    source = Source()
    # aligntune.data.files: files, directories (every data file in them), globs, lists, {split: paths}, slices.
    files = resolve_data_files(request.data_files, source_split, dataset_name=request.dataset_name,
                               layout=every_data_file, formats=FILE_TYPES)
    if files is None:
        dataset = _load_hub(request, source_split)
        name = f"{request.dataset_name} [{source_split}]"
        source.read_rows(name, ((f"{name} row {index}", row) for index, row in enumerate(dataset)))
        return source
    for path, rows in files.by_file():
        source.read_rows(str(path), rows)
    return source


def _load_hub(request: DatasetRequest, split: str):
    import datasets

    try:
        dataset = datasets.load_dataset(request.dataset_name, request.dataset_config, split=split)
    except Exception as exc:  # datasets raises many unrelated types (network, missing split, cache, offline mode)
        raise DataError(
            f"cannot load {request.dataset_name!r} (config {request.dataset_config!r}, split {split!r}) from the "
            f"Hugging Face Hub: {type(exc).__name__}: {exc}. Check the dataset id, the split name (oasst1 has "
            "'train' and 'validation'), and network access or HF_DATASETS_OFFLINE; for downloaded files pass "
            "data_files=... (.jsonl, .jsonl.gz, .json or .parquet; flat messages or nested trees)"
        ) from None
    keep = [c for c in dataset.column_names if c in FIELDS]
    return dataset.select_columns(keep) if len(keep) < len(dataset.column_names) else dataset


# -- trees -----------------------------------------------------------------------------------------------------------


def is_held_out(tree_id: str, fraction: float) -> bool:
    """Whether a tree belongs to the held-out split: a stable hash of its id, so the split never changes."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(tree_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _split_side(split: str, fraction: float) -> tuple[str, bool | None]:
    """The split to read from the source, and which side of the held-out split to keep (None: no held-out split)."""
    if fraction <= 0:
        return split, None
    if split == TRAIN_SPLIT:
        return TRAIN_SPLIT, False
    if split in HELD_OUT_SPLITS:
        return TRAIN_SPLIT, True
    raise DataError(
        f"split {split!r} is not valid with holdout_fraction={fraction}: use {TRAIN_SPLIT!r} for the kept trees, "
        f"or one of {', '.join(repr(s) for s in HELD_OUT_SPLITS)} for the held-out ones"
    )


def tree_id(root: Message) -> str:
    """A tree's id: the root's message_tree_id (oasst sets it to the root's message_id), else the root's id."""
    return root.declared_tree_id or root.message_id


def _child_order(message: Message) -> tuple[bool, int, int]:
    return (message.rank is None, message.rank or 0, message.index)


@attrs.define
class Counts:
    trees_read: int = 0
    trees_without_root: int = 0
    trees_other_split: int = 0
    trees_wrong_lang: int = 0
    trees_kept: int = 0
    messages_read: int = 0
    messages_other_split: int = 0
    messages_dropped: Counter = attrs.field(factory=Counter)
    messages_kept: int = 0
    replies_kept_unranked: int = 0
    prompts_kept: int = 0
    prompts_dropped_thread: int = 0
    prompts_fewer_than_2_ranked_replies: int = 0
    prompts_tied_ranks: int = 0
    prompts_paired: int = 0
    pairs_built: int = 0

    def as_dict(self) -> dict[str, Any]:
        values = attrs.asdict(self)
        values["messages_dropped"] = {reason: self.messages_dropped[reason] for reason in DROP_REASONS}
        return values


def _drop_reason(message: Message, options: Options) -> str | None:
    if options.drop_deleted and message.deleted:
        return "deleted"
    if options.require_review and message.review_result is not True:
        return "not_reviewed"
    if options.drop_synthetic and message.synthetic:
        return "synthetic"
    return None


def _describe_drop(message: Message, reason: str) -> str:
    return {
        "orphan": f"its parent {message.parent_id!r} is not in the data, so it has no thread",
        "deleted": "deleted is true (drop_deleted=False keeps it)",
        "not_reviewed": f"review_result is {message.review_result!r}, not true (require_review=False keeps it)",
        "synthetic": "synthetic is true (drop_synthetic=False keeps it)",
    }[reason]


def build_pairs(
    source: Source, options: Options, held_out_side: bool | None, strict: bool
) -> tuple[list[tuple[str, dict[str, Any]]], Counts]:
    """Classify every message, then walk the kept trees and build `(location, row)` pairs in a stable order."""
    messages = source.messages
    by_id = {m.message_id: m for m in messages}
    children: dict[str, list[Message]] = {}
    for m in messages:
        if m.parent_id is not None and m.parent_id in by_id:
            children.setdefault(m.parent_id, []).append(m)
    for siblings in children.values():
        siblings.sort(key=_child_order)

    # Reachable messages: everything below a root (a message without parent), by the root's message id.
    root_of: dict[str, str] = {}
    roots = [m for m in messages if m.parent_id is None]
    for root in roots:
        stack = [root]
        while stack:
            node = stack.pop()
            root_of[node.message_id] = root.message_id
            stack.extend(c for c in children.get(node.message_id, ()) if c.message_id not in root_of)

    # Each tree is kept whole or left out whole: by its held-out side, then by its root's language.
    counts = Counts(messages_read=len(messages))
    tree_state: dict[str, str] = {}  # root message id -> other_split | wrong_lang | kept
    for root in roots:
        if held_out_side is not None and is_held_out(tree_id(root), options.holdout_fraction) != held_out_side:
            tree_state[root.message_id] = "other_split"
        elif options.langs is not None and (root.lang or "").lower() not in options.langs:
            tree_state[root.message_id] = "wrong_lang"
        else:
            tree_state[root.message_id] = "kept"
    rootless_trees: set[str] = set()

    dropped: dict[str, str] = {}  # message_id -> reason
    for m in messages:
        root_id = root_of.get(m.message_id)
        if root_id is None:
            reason = "orphan"
            rootless_trees.add(m.declared_tree_id or _top_ancestor(m, by_id))
        elif tree_state[root_id] == "other_split":
            counts.messages_other_split += 1
            continue
        elif tree_state[root_id] == "wrong_lang":
            reason = "wrong_lang"
        else:
            reason = _drop_reason(m, options)
        if reason is None:
            counts.messages_kept += 1
            if m.role == "assistant" and m.rank is None:
                counts.replies_kept_unranked += 1
            continue
        if strict and reason not in SELECTIONS:
            raise DataError(
                f"{m.location}: message {m.message_id} dropped ({reason}: {_describe_drop(m, reason)}); "
                "strict mode stops here"
            )
        dropped[m.message_id] = reason
        counts.messages_dropped[reason] += 1

    states = Counter(tree_state.values())
    counts.trees_without_root = len(rootless_trees - {tree_id(root) for root in roots})
    counts.trees_read = len(roots) + counts.trees_without_root
    counts.trees_other_split = states["other_split"]
    counts.trees_wrong_lang = states["wrong_lang"]
    counts.trees_kept = states["kept"]

    # Trees in the order their first message was read (a flat file may list a reply before its root).
    by_root = {root.message_id: root for root in roots}
    order = list(dict.fromkeys(root_of[m.message_id] for m in messages if m.message_id in root_of))
    pairs: list[tuple[str, dict[str, Any]]] = []
    for root in (by_root[root_id] for root_id in order):
        if tree_state[root.message_id] != "kept":
            continue
        # Depth first from the root, siblings by rank; `clean` = no dropped message from the root to here.
        stack: list[tuple[Message, tuple[Message, ...], bool]] = [(root, (), True)]
        while stack:
            node, above, clean_above = stack.pop()
            thread = (*above, node)
            clean = clean_above and node.message_id not in dropped
            kids = children.get(node.message_id, [])
            if node.role == "prompter" and node.message_id not in dropped:
                counts.prompts_kept += 1
                if not clean:
                    counts.prompts_dropped_thread += 1
                else:
                    pairs.extend(_pairs_for(node, thread, kids, dropped, options, counts))
            stack.extend((kid, thread, clean) for kid in reversed(kids))
    counts.pairs_built = len(pairs)
    return pairs, counts


def _top_ancestor(message: Message, by_id: Mapping[str, Message]) -> str:
    """The id of the highest ancestor present in the data (names the tree of an orphan without message_tree_id)."""
    seen = {message.message_id}
    while message.parent_id in by_id and message.parent_id not in seen:
        message = by_id[message.parent_id]
        seen.add(message.message_id)
    return message.message_id


def _pairs_for(
    prompt: Message,
    thread: tuple[Message, ...],
    replies: list[Message],
    dropped: Mapping[str, str],
    options: Options,
    counts: Counts,
) -> list[tuple[str, dict[str, Any]]]:
    ranked = [r for r in replies if r.role == "assistant" and r.rank is not None and r.message_id not in dropped]
    if len(ranked) < 2:
        counts.prompts_fewer_than_2_ranked_replies += 1
        return []
    if ranked[0].rank == ranked[-1].rank:  # sorted by rank: every eligible reply has the same rank
        counts.prompts_tied_ranks += 1
        return []
    counts.prompts_paired += 1
    if options.pairs == "best_vs_worst":
        worst = next(r for r in ranked if r.rank == ranked[-1].rank)  # first in read order among equal worst
        chosen_rejected = [(ranked[0], worst)]
    else:
        chosen_rejected = [
            (better, worse) for i, better in enumerate(ranked) for worse in ranked[i + 1 :] if better.rank < worse.rank
        ]
    turns = [m.turn() for m in thread]
    return [
        (
            f"{prompt.location}: replies {chosen.message_id} (rank {chosen.rank}) vs {rejected.message_id} "
            f"(rank {rejected.rank})",
            {"prompt": turns, "chosen": [chosen.turn()], "rejected": [rejected.turn()]},
        )
        for chosen, rejected in chosen_rejected
    ]


# -- the adapter -----------------------------------------------------------------------------------------------------


def load(request: DatasetRequest) -> PreferenceData:
    options = parse_options(request.options)
    name = split_name(request.split)
    source_name, held_out_side = _split_side(name, options.holdout_fraction)
    # A slice (`train[:10%]`) selects rows of the source, read before trees are held out: the hub's rows or the files'.
    source_split = request.split.replace(name, source_name, 1)
    source = _read_source(request, source_split)
    pairs, counts = build_pairs(source, options, held_out_side, request.strict)
    report = DropReport()
    dataset = rows_to_dataset(
        validate_rows(iter(pairs), report=report, strict=request.strict, max_samples=request.max_samples)
    )
    summary = {**report.as_dict(), **counts.as_dict(), "pairs_emitted": report.kept, "sources": dict(source.formats)}
    (log.warning if report.dropped else log.info)(
        "loaded OpenAssistant preference pairs", dataset=request.dataset_name, split=request.split, **summary
    )
    if len(dataset) == 0:
        raise DataError(
            f"dataset {request.dataset_name!r} (split {request.split!r}) has no usable preference pairs"
            f"{_empty_hint(counts, options)} ({summary})"
        )
    return PreferenceData(dataset=dataset, report=summary)


def _empty_hint(counts: Counts, options: Options) -> str:
    if counts.messages_read == 0:
        return ": no messages were read"
    if counts.trees_kept == 0 and counts.trees_wrong_lang:
        langs = sorted(options.langs or ())
        return f": no tree has a root message in language {langs}; lang=None keeps every language"
    if counts.trees_kept == 0 and counts.trees_other_split:
        fraction = options.holdout_fraction
        return f": every tree fell on the other side of the held-out split (holdout_fraction={fraction})"
    if counts.prompts_dropped_thread and not counts.prompts_paired:
        dropped = {k: v for k, v in counts.messages_dropped.items() if v}
        return f": the prompts with ranked replies have a thread that passes through a dropped message ({dropped})"
    return ""


__all__ = ["DROP_REASONS", "PAIR_MODES", "Options", "build_pairs", "is_held_out", "load", "parse_options"]

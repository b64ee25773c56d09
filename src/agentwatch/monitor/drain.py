"""Drain: an online log-template miner (He et al., ICWS 2017), rebuilt from stored templates.

A message is masked (UUIDs, hex ids, e-mails, IPs, times, amounts, numbers and quoted text become
placeholders such as ``<NUM>``; see :data:`DEFAULT_MASKS`) and split into tokens. It is routed through a
fixed-depth prefix tree: first by its token count, then by its first ``depth - 2`` tokens (never by its last
token, so two messages that differ only there meet in one leaf). A token holding a digit or a placeholder
routes to the ``<*>`` child; so does a new token once a node has ``max_children - 1`` other children (the
last slot is kept for ``<*>``). In the leaf the message joins the most similar cluster (similarity = equal
non-``<*>`` tokens / length; ties go to more ``<*>`` then to the lower id) when the similarity is at least
``similarity``, and the tokens that differ become ``<*>``; otherwise it starts a new cluster. Parameters
(methods.md §4): ``similarity`` 0.5 (Drain3's ``sim_th`` default is 0.4; agent error strings are short),
``depth`` 4, i.e. two routing tokens as in the paper (Drain3's depth 4 routes by one), ``max_children`` 100,
no cluster limit (evicting clusters would fake novelty), numeric tokens parametrized.

Tokens are split on whitespace; ``key=value`` and ``word:value`` are also split after the ``=``/``:`` (the
key keeps its punctuation: ``error=timeout`` -> ``error= timeout``), so that the key stays in the template
while the value generalizes; commas stay attached (a list is one token). Quoted text becomes ``<STR>``
unless it is one identifier-like word of at most 32 characters (``'shipped'``, ``"customer_id"``), which is
kept because such words name enum values and keys that tell failure kinds apart.

Why not Drain3: it has had no release since 2022, it persists its state by pickling it with jsonpickle,
and we need a miner rebuilt from rows of our own database. :meth:`Drain.restore` rebuilds the prefix tree
from ``(id, template, size)`` rows alone: nodes are only created when a cluster is, and merging only turns
tokens into ``<*>``, so a template's routing tokens still lead along the path its first message took when
the clusters are replayed in id order (creation order); the tree, and so every later ``add`` and ``match``,
is the same as in a miner that never stopped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

PARAM = "<*>"

Change = Literal["created", "changed", "none"]


def _mask(pattern: str, replacement: str) -> tuple[re.Pattern[str], str]:
    return re.compile(pattern), replacement


_TZ = r"(?:Z|[+-]\d{2}:?\d{2})?"
#: (regex, replacement) pairs applied in order before tokenizing (replacements are ``re.sub`` templates).
DEFAULT_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    _mask(r"(?<![0-9A-Za-z])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?![0-9A-Za-z])", "<UUID>"),
    # 16+ hex digits (trace/span ids, digests); `_` may glue it to a prefix: req_<HEX>.
    _mask(r"(?<![0-9A-Za-z])(?:0[xX])?[0-9a-fA-F]{16,}(?![0-9A-Za-z])", "<HEX>"),
    _mask(r"[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b", "<EMAIL>"),
    _mask(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\.?\d)", "<IP>"),
    # ISO dates with an optional time (`T` or one space), and bare hh:mm:ss times.
    _mask(rf"(?<!\d)\d{{4}}-\d{{2}}-\d{{2}}(?:[T ]\d{{2}}:\d{{2}}(?::\d{{2}}(?:[.,]\d+)?)?{_TZ})?(?!\d)"
          rf"|(?<![\d:])\d{{2}}:\d{{2}}:\d{{2}}(?:[.,]\d+)?{_TZ}(?![\d:])", "<TIME>"),
    _mask(r"-?[$€£¥]\s?\d+(?:,\d{3})*(?:\.\d+)?", "<AMOUNT>"),
    # Every run of digits, also inside a token (v12 -> v<NUM>, shard7 -> shard<NUM>, cust-01003 -> cust-<NUM>);
    # a sign only when the minus is not glued to a word; 1,200 and 1.2.3 are one number.
    _mask(r"0[xX][0-9a-fA-F]+|(?:(?<![\w.])-)?\d+(?:,\d{3}(?!\d))*(?:\.\d+)*", "<NUM>"),
    # Quoted text, except one identifier-like word (kept). A quote opens after a non-word character and
    # closes before one, so apostrophes (can't, customer's) are not quotes.
    _mask(r"(?<!\w)'(?![A-Za-z_][\w.-]{0,31}'(?!\w))(?:[^'\n]|'(?=\w))*'(?!\w)"
          r"|(?<!\w)\"(?![A-Za-z_][\w.-]{0,31}\"(?!\w))[^\"\n]*\"(?!\w)", "<STR>"),
)

#: Split after the `=` of key=value and the `:` of word:value (not `==`, `://`, `::` or `C:\`).
_SPLIT = re.compile(r"(?<=[\w>)\]\"'][=:])(?=[^\s=:/\\])")
_PLACEHOLDER = re.compile(r"<[A-Z]+>|<\*>|\d")


@dataclass
class Cluster:
    """A template and how many messages it has absorbed; the miner updates it in place."""

    id: int
    tokens: list[str]
    size: int

    @property
    def template(self) -> str:
        return " ".join(self.tokens)


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    cluster_ids: list[int] = field(default_factory=list)


def _score(template: Sequence[str], tokens: Sequence[str]) -> tuple[float, int]:
    """(equal non-param tokens / length, number of params) of a template against tokens of its length."""
    if not tokens:
        return 1.0, 0
    equal = params = 0
    for t, m in zip(template, tokens, strict=True):
        if t == PARAM:
            params += 1
        elif t == m:
            equal += 1
    return equal / len(tokens), params


def _fits(template: Sequence[str], tokens: Sequence[str]) -> bool:
    return all(t == PARAM or t == m for t, m in zip(template, tokens, strict=True))


class Drain:
    """The miner. ``add`` learns; ``match`` only looks; ``restore`` rebuilds from stored templates."""

    def __init__(self, *, depth: int = 4, similarity: float = 0.5, max_children: int = 100,
                 masks: Sequence[tuple[re.Pattern[str], str]] = DEFAULT_MASKS) -> None:
        if depth < 3:
            raise ValueError(f"depth must be at least 3, got {depth}")
        if not 0.0 <= similarity <= 1.0:
            raise ValueError(f"similarity must be within [0, 1], got {similarity}")
        if max_children < 1:
            raise ValueError(f"max_children must be at least 1, got {max_children}")
        self.depth = depth
        self.similarity = similarity
        self.max_children = max_children
        self.masks = tuple(masks)
        self._roots: dict[int, _Node] = {}
        self._clusters: dict[int, Cluster] = {}
        self._next_id = 1

    @property
    def clusters(self) -> dict[int, Cluster]:
        """The clusters by id (a new dict; the clusters themselves are live)."""
        return dict(self._clusters)

    def tokenize(self, message: str) -> list[str]:
        """The masked tokens of a message."""
        for pattern, replacement in self.masks:
            message = pattern.sub(replacement, message)
        return _SPLIT.sub(" ", message).split()

    def add(self, message: str) -> tuple[Cluster, Change]:
        """Learn a message: its cluster and whether it was ``created``, its template ``changed``, or ``none``."""
        tokens = self.tokenize(message)
        leaf = self._leaf(tokens)
        best: Cluster | None = None
        if leaf is not None and leaf.cluster_ids:
            best = max((self._clusters[i] for i in leaf.cluster_ids),
                       key=lambda c: (*_score(c.tokens, tokens), -c.id))
        if best is None or _score(best.tokens, tokens)[0] < self.similarity:
            cluster = Cluster(self._next_id, tokens, 1)
            self._create(cluster)
            return cluster, "created"
        best.size += 1
        merged = [t if t == m else PARAM for t, m in zip(best.tokens, tokens, strict=True)]
        if merged == best.tokens:
            return best, "none"
        best.tokens = merged
        return best, "changed"

    def match(self, message: str) -> Cluster | None:
        """The cluster whose template fits the message exactly (``<*>`` fits any token), or None; learns nothing.

        The most specific fitting template (fewest ``<*>``, then lowest id) in the message's leaf wins; when
        none fits there, all clusters of the message's length are searched, because a message can route
        elsewhere than when it was added (its first tokens may since have become children of their own).
        Whenever ``add`` would return a cluster with change ``none``, ``match`` returns that cluster.
        """
        tokens = self.tokenize(message)
        pools: list[Iterable[int]] = []
        leaf = self._leaf(tokens)
        if leaf is not None:
            pools.append(leaf.cluster_ids)
        root = self._roots.get(len(tokens))
        if root is not None:
            pools.append(_subtree_ids(root))
        for ids in pools:
            fitting = [c for c in (self._clusters[i] for i in ids) if _fits(c.tokens, tokens)]
            if fitting:
                return max(fitting, key=lambda c: (_score(c.tokens, tokens)[0], -c.id))
        return None

    @classmethod
    def restore(cls, rows: Iterable[tuple[int, str, int]], *, depth: int = 4, similarity: float = 0.5,
                max_children: int = 100, masks: Sequence[tuple[re.Pattern[str], str]] = DEFAULT_MASKS) -> Drain:
        """A miner rebuilt from ``(id, template, size)`` rows, in any order, with the parameters it had.

        Ids are kept; the next new cluster gets the largest id + 1.
        """
        miner = cls(depth=depth, similarity=similarity, max_children=max_children, masks=masks)
        for cluster_id, template, size in sorted(rows, key=lambda row: row[0]):
            if cluster_id in miner._clusters:
                raise ValueError(f"duplicate cluster id {cluster_id}")
            miner._create(Cluster(int(cluster_id), template.split(), int(size)))
        return miner

    def _route(self, tokens: Sequence[str]) -> Sequence[str]:
        """The routing tokens: the first depth - 2, never the last one."""
        return tokens[: min(self.depth - 2, max(len(tokens) - 1, 0))]

    def _leaf(self, tokens: Sequence[str]) -> _Node | None:
        node = self._roots.get(len(tokens))
        for token in self._route(tokens):
            if node is None:
                return None
            child = node.children.get(token)
            node = child if child is not None else node.children.get(PARAM)
        return node

    def _create(self, cluster: Cluster) -> None:
        self._clusters[cluster.id] = cluster
        self._next_id = max(self._next_id, cluster.id + 1)
        node = self._roots.setdefault(len(cluster.tokens), _Node())
        for token in self._route(cluster.tokens):
            child = node.children.get(token)
            if child is None:
                others = len(node.children) - (PARAM in node.children)
                literal = _PLACEHOLDER.search(token) is None and others < self.max_children - 1
                child = node.children.setdefault(token if literal else PARAM, _Node())
            node = child
        node.cluster_ids.append(cluster.id)


def _subtree_ids(node: _Node) -> list[int]:
    out = list(node.cluster_ids)
    for child in node.children.values():
        out.extend(_subtree_ids(child))
    return out

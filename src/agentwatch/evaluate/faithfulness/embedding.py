"""The optional semantic faithfulness: answer sentences close (cosine) to some evidence sentence.

It needs the ``sentence-transformers`` package and a model already on disk,
loaded with ``local_files_only=True``: nothing is ever downloaded. An
:data:`Embedder` in its place serves tests or another library.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.faithfulness.canon import _SENTENCE_END
from agentwatch.evaluate.faithfulness.evidence import _answer_texts, _evidence_texts, _user_texts
from agentwatch.evaluate.rules import ParamReader
from agentwatch.evaluate.session import SessionView

#: Turns texts into vectors: one vector (a sequence of floats) per text, in order.
Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]
EMBEDDINGS_EXTRA = "pip install 'agentwatch[embeddings]'"


def sentences(text: str, min_chars: int = 12) -> list[str]:
    """``text`` split into sentences (and lines); pieces shorter than ``min_chars`` or without letters dropped."""
    out = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip(" \t-*•#>")
        if len(piece) >= min_chars and any(c.isalpha() for c in piece):
            out.append(piece)
    return out


def _evidence_sentences(text: str, min_chars: int) -> list[str]:
    """Evidence as sentences; a JSON document becomes one ``path: value`` line per leaf."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if value is not None:
            lines: list[str] = []
            _flatten(value, "", lines)
            return [line for line in lines if len(line) >= min_chars] or [stripped]
    return sentences(text, min_chars)


def _flatten(value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flatten(item, f"{path}.{i}" if path else str(i), out)
    elif value is not None:
        out.append(f"{path.replace('_', ' ')}: {value}" if path else str(value))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors of the same length (0.0 when either is all zeros)."""
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths: {len(a)} and {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0


@dataclass(frozen=True, slots=True)
class EmbeddingParams:
    model: str | None = None
    threshold: float = 0.7
    min_sentence_chars: int = 12
    answers: str = "all"
    supported_by: tuple[str, ...] = ("turn",)
    max_listed: int = 5


class EmbeddingFaithfulness:
    """Share of answer sentences close (cosine) to some evidence sentence of the same turn.

    ``model`` is a local path or the name of a model already in the Hugging
    Face cache; it is loaded with ``local_files_only=True`` and nothing is ever
    downloaded. ``embedder`` replaces the model (tests, or another library).
    Turns without evidence are not scored (chit-chat has nothing to be
    faithful to); a session with no scored sentence scores 1.0.
    """

    name = "faithfulness_embedding"

    def __init__(self, params: Mapping[str, Any] | None = None, *, embedder: Embedder | None = None) -> None:
        p = ParamReader(self.name, params, [f for f in EmbeddingParams.__dataclass_fields__], kind="evaluator")
        threshold = p.number("threshold", minimum=None)
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise p.error("threshold", "a number in [-1, 1]")
        sources = p.strings("supported_by")
        if sources is not None and any(s not in ("turn", "user") for s in sources):
            raise p.error("supported_by", "a list of 'turn' and 'user'")
        self.params = EmbeddingParams(
            model=p.string("model"),
            threshold=0.7 if threshold is None else threshold,
            min_sentence_chars=p.integer("min_sentence_chars", minimum=1) or 12,
            answers=p.string("answers", choices=("all", "final")) or "all",
            supported_by=sources or ("turn",),
            max_listed=p.integer("max_listed", minimum=1) or 5,
        )
        if embedder is None:
            if self.params.model is None:
                raise ValueError(f"{p.owner}: parameter 'model' is required (a local model path or cached name)")
            embedder = _load_model(self.params.model)
        self.embed = embedder

    def similarities(self, answer: Sequence[str], evidence: Sequence[str]) -> list[float]:
        """For each answer sentence, its best cosine similarity with any evidence sentence."""
        if not answer:
            return []
        if not evidence:
            return [0.0] * len(answer)
        vectors = list(self.embed([*answer, *evidence]))
        if len(vectors) != len(answer) + len(evidence):
            raise ValueError(f"the embedder returned {len(vectors)} vectors for {len(answer) + len(evidence)} texts")
        mine, theirs = vectors[: len(answer)], vectors[len(answer):]
        return [max(cosine(a, b) for b in theirs) for a in mine]

    async def evaluate(self, session: SessionView) -> EvalResult:
        try:
            return await asyncio.to_thread(self._evaluate, session)
        except Exception as exc:  # an evaluator error is recorded, never scored 0
            return EvalResult.failure(f"evaluator {self.name!r} failed: {type(exc).__name__}: {exc}")

    def _evaluate(self, session: SessionView) -> EvalResult:
        if not any(_answer_texts(turn, self.params.answers) for turn in session.turns):
            return EvalResult.failure("no agent answer text in the session; is message content capture on?")
        size = self.params.min_sentence_chars
        total = 0
        weak: list[tuple[int, str, float]] = []
        for turn in session.turns:
            texts = list(_evidence_texts(turn))
            if not texts:
                continue
            if "user" in self.params.supported_by:
                texts.extend(_user_texts(session, turn))
            evidence = [s for text in texts for s in _evidence_sentences(text, size)]
            answer = [s for text in _answer_texts(turn, self.params.answers) for s in sentences(text, size)]
            for sentence, score in zip(answer, self.similarities(answer, evidence), strict=True):
                total += 1
                if score < self.params.threshold:
                    weak.append((turn.index, sentence, score))
        if total == 0:
            return EvalResult.ok(1.0, reason="no answer sentence in a turn with evidence")
        reason = f"{total - len(weak)}/{total} sentences supported (cosine >= {self.params.threshold:g})"
        if weak:
            limit = self.params.max_listed
            listed = "; ".join(f"turn {i}: {_clip(s)!r} ({score:.2f})" for i, s, score in weak[:limit])
            more = f"; and {len(weak) - limit} more" if len(weak) > limit else ""
            reason += f"; unsupported: {listed}{more}"
        return EvalResult.ok((total - len(weak)) / total, reason=reason)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_model(model: str) -> Embedder:
    """A sentence-transformers model from local files only, as an :data:`Embedder`."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(f"EmbeddingFaithfulness needs the sentence-transformers package: {EMBEDDINGS_EXTRA}") \
            from None
    try:
        loaded = SentenceTransformer(model, local_files_only=True)
    except Exception as exc:
        raise ValueError(f"evaluator 'faithfulness_embedding': cannot load model {model!r} from local files "
                         f"(nothing is downloaded): {exc}") from exc

    def embed(texts: Sequence[str]) -> Sequence[Sequence[float]]:
        return [list(map(float, row)) for row in loaded.encode(list(texts), convert_to_numpy=True)]

    return embed

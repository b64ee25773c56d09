"""Scoring retained sessions again: shadow scores for a new evaluator version, and backfills.

Both queue the complete sessions that ended in a window before the project's
watermark and still have their payloads. A **shadow** run follows a change of
an evaluator's version (its prompt, parameters or code): the new version
scores the last :data:`SHADOW_WINDOW_S` of *sampled* sessions, so drift has a
baseline for it at once and a change of judge is not mistaken for a change of
agent (shadow scores go to their own rollup series). A **backfill**
(``agentwatch eval backfill``) scores every retained session of a window the
operator names, with the current version.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

from agentwatch.store import evaluations

logger = logging.getLogger(__name__)

#: How far back a new evaluator version shadow-scores sampled sessions: drift's default baseline.
SHADOW_WINDOW_S = 7 * 86400.0


def queue_recent(engine: Any, project_id: int, watermark_ns: int, window_s: float, evaluator: str, *,
                 reason: str, sampled_only: bool = False) -> int:
    """Queue ``evaluator`` on the retained sessions that ended in the ``window_s`` before the watermark."""
    return evaluations.enqueue_window(engine, project_id, since_ns=watermark_ns - int(window_s * 1e9),
                                      until_ns=watermark_ns + 1, reason=reason, evaluators=[evaluator],
                                      sampled_only=sampled_only)


def shadow_new_versions(engine: Any, new_versions: Iterable[tuple[str, str]],
                        watermarks: Mapping[int, int]) -> int:
    """Shadow-score each new version of an evaluator that had an older one, in every project; answers how many
    sessions were queued. ``new_versions``: what :func:`~agentwatch.store.evaluations.register_evaluators`
    answered; ``watermarks``: each project's event-time watermark."""
    total = 0
    for name, version in new_versions:
        if not evaluations.older_versions(engine, name, version):
            continue
        for project_id, watermark_ns in watermarks.items():
            queued = queue_recent(engine, project_id, watermark_ns, SHADOW_WINDOW_S, name, reason="shadow",
                                  sampled_only=True)
            if queued:
                logger.info("evaluator %s changed to version %s: shadow-scoring %d sessions of project %d",
                            name, version, queued, project_id)
            total += queued
    return total

"""The feedback loop: review queue, labels, datasets, calibration runs and the regression gate.

Flagged sessions (and a small random sample of passing ones) wait in the
review queue (:mod:`~agentwatch.feedback.review`); a reviewer's label says
whether the evaluator was right. Labelled sessions become cases of a named,
versioned, immutable dataset (:mod:`~agentwatch.feedback.datasets`). A
calibration run (:mod:`~agentwatch.feedback.calibration`) re-runs an evaluator
version over a dataset version and reports its agreement with the labels
(:mod:`~agentwatch.feedback.agreement`). The gate
(:mod:`~agentwatch.feedback.gate`) scores a candidate agent's outputs for the
cases with the pinned evaluator versions and fails a deploy that brings a
labelled failure back.
"""

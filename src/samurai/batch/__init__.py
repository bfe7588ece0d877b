"""Batch tracking: a manifest of videos tracked to files, resumably, on local workers or Ray.

Example:
    >>> from samurai.batch import BatchConfig, ManagerSpec, load_manifest, run_batch
    >>> jobs = load_manifest("videos.jsonl")  # doctest: +SKIP
    >>> summary = run_batch(jobs, BatchConfig(out=Path("out"), workers=2))  # doctest: +SKIP
    >>> summary.failed  # doctest: +SKIP
    {}

``samurai batch`` is the command-line form; docs/cluster.md covers running it on Ray.
"""

from __future__ import annotations

from samurai.batch.manifest import BatchJob, JobOptions, load_manifest, parse_jobs, parse_save
from samurai.batch.runner import JOURNAL, BatchConfig, BatchProgress, BatchSummary, run_batch
from samurai.batch.worker import JobReport, ManagerSpec

__all__ = [
    "JOURNAL",
    "BatchConfig",
    "BatchJob",
    "BatchProgress",
    "BatchSummary",
    "JobOptions",
    "JobReport",
    "ManagerSpec",
    "load_manifest",
    "parse_jobs",
    "parse_save",
    "run_batch",
]

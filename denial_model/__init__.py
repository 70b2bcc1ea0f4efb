"""denial-model: predict, explain and prevent claim-line denials for physician-administered drugs.

The public API, what the README and the notebooks use, is importable from here
(`from denial_model import read_table, check_frame, load_model, score_file`); each name is
loaded on first use, so importing one part does not import all of them (the CLI starts fast).
The modules, one concept each, are listed in the README's Layout section. Functions named
like a module (`denial_model.simulate.simulate`, `denial_model.rules.evaluate`) are imported
from their module: a package attribute cannot be both.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.8.0"

_EXPORTS: dict[str, str] = {
    # errors
    "DenialModelError": "errors",
    "ClaimTableError": "errors",
    "PackError": "errors",
    "ArtifactError": "errors",
    "ConfigError": "errors",
    # files and the claim-line table
    "read_table": "files",
    "write_table": "files",
    "validate": "table",
    "ClaimFrame": "table",
    # rules
    "load_pack": "rules.pack",
    "check_frame": "scrub",
    "check_file": "scrub",
    "sample_table": "samples",
    "clean_claim": "samples",
    # simulator
    "SimConfig": "simulate",
    "STRESS_WORLDS": "simulate",
    "write_history": "simulate",
    "oracle_and_rules_report": "metrics",
    "time_split": "metrics",
    # model
    "RuleFeaturizer": "features",
    "ClaimFeatures": "features",
    "TrainConfig": "train",
    "train_model": "train",
    "Thresholds": "thresholds",
    "comparison_table": "evaluate",
    "generalization_table": "evaluate",
    "Scorer": "scorer",
    # artifact and jobs
    "load_artifact": "artifact",
    "save_artifact": "artifact",
    "LoadedModel": "artifact",
    "load_model": "jobs",
    "run_training": "jobs",
    "run_evaluation": "jobs",
    "run_scoring": "jobs",
    # scoring
    "score_frame": "score",
    "score_file": "score",
    # the work queue
    "REASON_GROUPS": "groups",
    "build_queue": "queue",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'denial_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"denial_model.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""The model a running service scores with, and how it is swapped without dropping requests.

`ModelHolder.current` is one immutable `Served` (model, version, when loaded). A request
takes it once and scores with it to the end; `reload` loads and warms the new model aside
(scoring the made-up sample claims once, which also checks the fast predictor), hands it to
`prepare` (the scoring processes of `--workers N` take it there) and only then replaces the
reference, so requests in flight finish on the old model and new ones get the
new model. A reload that fails leaves the old model serving and says why.

`models:/NAME@ALIAS` is resolved again on every reload: moving the alias in the registry and
then calling the reload route (or sending SIGHUP) switches the service to that version. A
path is read again from disk, verified the same way as at start.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from denial_model.artifact import LoadedModel
from denial_model.jobs import load_model
from denial_model.samples import DRUG_LINES, clean_claim

__all__ = ["ModelHolder", "Served", "warm"]


@dataclass(frozen=True)
class Served:
    loaded: LoadedModel
    ref: str
    version: str
    loaded_at: str

    @property
    def sha256(self) -> str:
        return str(self.loaded.manifest.get("sha256", ""))


def warm(loaded: LoadedModel) -> None:
    """Score the sample claims once: builds the scorer, checks the fast predictor, fills caches."""
    lines = pd.concat([clean_claim(d, claim_id=f"WARM-{d}") for d in DRUG_LINES], ignore_index=True)
    loaded.estimator.explain(lines)


class ModelHolder:
    def __init__(self, ref: str | None, sha256: str | None = None, tracking_uri: str | None = None):
        self.ref, self.sha256, self.tracking_uri = ref, sha256, tracking_uri
        self.current: Served | None = None
        # called with a new model before it serves (the scoring processes take it); raising
        # fails the reload and the old model goes on serving
        self.prepare: Callable[[Served], None] | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one reload at a time; scoring never waits for it

    def _load(self) -> Served:
        assert self.ref is not None
        loaded = load_model(self.ref, self.tracking_uri, self.sha256)
        warm(loaded)
        version = str(loaded.manifest.get("registered_version") or loaded.manifest.get("sha256", "")[:12])
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return Served(loaded=loaded, ref=self.ref, version=version, loaded_at=now)

    def reload(self) -> dict:
        """Load the model again (resolving an alias anew) and swap it in; the old one keeps
        serving if anything fails. Returns what happened."""
        if self.ref is None:
            return {"reloaded": False, "reason": "no model configured (rules-only service)"}
        with self._lock:
            before = self.current
            try:
                new = self._load()
                if self.prepare is not None:
                    self.prepare(new)
            except Exception as exc:  # a bad new model must not take the service down
                self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                return {"reloaded": False, "reason": self.last_error, "version": before and before.version}
            self.current, self.last_error = new, None
        changed = before is None or before.sha256 != new.sha256
        return {"reloaded": True, "changed": changed, "version": new.version, "sha256": new.sha256}

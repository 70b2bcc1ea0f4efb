"""The Scorer: one fitted model, ready to score claim lines, built once.

The model is one scikit-learn `Pipeline` of two named steps (`FEATURES`: `ClaimFeatures`,
`CLASSIFIER`: the calibrated booster); this module is the only code that reads them. Batch
scoring, the tracking plots, evaluation and the artifact all ask a `Scorer` for the
features, the rule engine or the predictor, so the Pipeline's shape can change in one place.

The fast predictor (`denial_model.predict`) reads scikit-learn internals. The first time it
scores, it is checked against the public `predict_proba` on the first lines (up to 256):
equal, it is used and the scikit-learn version it was checked on is recorded
(`predictor_check`, logged with every scoring run); different, the Scorer warns and uses
the public path from then on.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import sklearn

from denial_model.explain import (
    counterfactuals,
    fixable_pairs,
    reasons_and_fixes,
    repaired,
    zeroed_fixes,
)
from denial_model.features.claim import FeatureColumns
from denial_model.groups import REASON_GROUPS, TEAMS, group_proba, rules_group
from denial_model.predict import BinnedGroups, BinnedPredictor, PublicPredictor, make_predictor
from denial_model.rules.engine import RuleResult
from denial_model.table import ClaimFrame
from denial_model.thresholds import TIERS, Thresholds

__all__ = [
    "CLASSIFIER",
    "FEATURES",
    "GROUP_COLUMNS",
    "NUMBER_COLUMNS",
    "SCORE_COLUMNS",
    "SCORE_TYPES",
    "Scored",
    "Scorer",
    "ScoringModel",
]

FEATURES = "features"
# P(denied for the group) = P(denied) x P(group | denied), for the lines given a reason group
GROUP_COLUMNS = tuple(f"denial_probability_{g}" for g in REASON_GROUPS)
CLASSIFIER = "classifier"
SCORE_COLUMNS = (
    "denial_probability",
    "risk_tier",
    "rule_hits",
    "reasons",
    "fixes",
    "dollars_at_risk",
    "probability_after_fixes",
    "reason_group",
    "owner_team",
    *GROUP_COLUMNS,
)
NUMBER_COLUMNS = ("denial_probability", "dollars_at_risk", "probability_after_fixes", *GROUP_COLUMNS)
SCORE_TYPES = {c: pa.float64() if c in NUMBER_COLUMNS else pa.string() for c in SCORE_COLUMNS}
_TIERS = pa.array(TIERS)
_GROUPS = pa.array([*REASON_GROUPS, ""])
_OWNERS = pa.array([*(TEAMS[g] for g in REASON_GROUPS), ""])


# Below this many lines the group model is walked in line: each of its few hundred tree calls
# holds the GIL for longer than it walks, so a thread beside the fixes only waits for it.
GROUPS_THREAD_ROWS = 20_000


@dataclass
class Scored:
    """Score columns of a block of lines (Arrow arrays, in SCORE_COLUMNS order) and what a
    job summary needs from them."""

    columns: dict[str, pa.Array]
    p: np.ndarray
    tier: np.ndarray  # index into TIERS
    billed: np.ndarray
    dollars: np.ndarray  # expected dollars at risk per line
    features: FeatureColumns  # the non-rule features (drift reads them)
    result: RuleResult
    after_fixes: np.ndarray  # P(denied) with every fixable finding corrected
    group: np.ndarray  # index into REASON_GROUPS of the likeliest reason group, -1 for none


class ScoringModel(Protocol):
    """What scoring needs of a model (a `LoadedModel`, a `DenialModel`): its Scorer and the
    training data's drift profile."""

    @property
    def scorer(self) -> Scorer: ...

    @property
    def drift_reference(self) -> dict | None: ...


class Scorer:
    """Scores validated claim lines with a fitted model and its risk thresholds."""

    def __init__(self, model, thresholds: Thresholds, groups=None):
        self.model = model
        self.thresholds = thresholds
        self.groups = groups  # P(reason group | denied), or None (models before 0.6)
        self._groups_verified = False
        self.features = model.named_steps[FEATURES]
        self.classifier = model.named_steps[CLASSIFIER]
        self.predictor_check = "not checked yet (checked on the first lines scored)"
        self._verified = False

    @property
    def rules(self):
        """The fitted `RuleFeaturizer` (the rule pack the model was trained with)."""
        return self.features.rules_

    @property
    def pack_sha256(self) -> str:
        return self.rules.pack_sha256_

    def feature_names(self) -> list[str]:
        return [str(n) for n in self.features.get_feature_names_out()]

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """The full feature frame of claim lines (public path)."""
        return self.features.transform(df)

    def proba_of_features(self, X: pd.DataFrame) -> np.ndarray:
        """P(denied) from a feature frame (public path)."""
        return self.classifier.predict_proba(X)[:, 1]

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """P(denied) of claim lines (public path: the Pipeline's own `predict_proba`)."""
        return self.model.predict_proba(df)[:, 1]

    @cached_property
    def predictor(self) -> BinnedPredictor | PublicPredictor:
        """The fast exact predictor when the fitted classifier allows it (see `_checked`)."""
        fast = make_predictor(self.classifier)
        if not isinstance(fast, BinnedPredictor):
            self.predictor_check = "public predict_proba (fast path unavailable)"
        return fast

    def _checked(self, attrs: FeatureColumns, binary: tuple[list[str], np.ndarray]):
        """The predictor to use. The first time, the fast path is compared with the public
        `predict_proba` on the first lines being scored (up to 256); if they differ, the
        Scorer warns and keeps the public path from then on."""
        predictor = self.predictor
        if self._verified or not isinstance(predictor, BinnedPredictor) or not attrs.n:
            return predictor
        k = min(attrs.n, 256)
        rows = (binary[0], binary[1][:k])
        sample = attrs.take(np.arange(k))
        public = PublicPredictor(self.classifier)
        expected = public.proba(public.prepare(sample, rows))
        got = predictor.proba(predictor.prepare(sample, rows))
        version = sklearn.__version__
        if not np.allclose(got, expected, rtol=0, atol=1e-12):
            warnings.warn(
                f"fast binned prediction differs from predict_proba on scikit-learn {version} "
                f"(max difference {np.abs(got - expected).max():.3g}); scoring with the public path",
                RuntimeWarning,
                stacklevel=3,
            )
            self.predictor_check = f"public predict_proba (fast path disagreed on scikit-learn {version})"
            self.__dict__["predictor"] = public
            return public
        self._verified = True
        self.predictor_check = (
            f"binned, equal to predict_proba on the first {k} lines, scikit-learn {version}"
        )
        return predictor

    def prepared(self, lines: pd.DataFrame) -> tuple[BinnedPredictor | PublicPredictor, object]:
        """(the checked predictor, validated lines prepared for it): what the fast paths score."""
        frame = ClaimFrame(lines)
        rk = self.rules.evaluate(frame)
        attrs = self.features.attribute_columns(frame, rk)
        predictor = self._checked(attrs, (rk.ids, rk.hits))
        return predictor, predictor.prepare(attrs, binary=(rk.ids, rk.hits))

    def proba_lines(self, lines: pd.DataFrame) -> np.ndarray:
        """P(denied) of validated lines, without reasons (the fast path of `predict_proba`)."""
        predictor, prepared = self.prepared(lines)
        return predictor.proba(prepared)

    def relevant_until(self, lines: pd.DataFrame) -> np.ndarray:
        """For validated earlier lines: the last day a later line's cross-line rules reach each."""
        return self.rules.evaluate(ClaimFrame(lines)).relevant_until

    def score_lines(self, lines: pd.DataFrame | ClaimFrame, earlier: pd.DataFrame | None = None) -> Scored:
        """Score validated lines (a frame, or a ClaimFrame of them: `Validated.claim_frame`);
        `earlier`: look-back lines the cross-line rules read (not scored)."""
        frame = lines if isinstance(lines, ClaimFrame) else ClaimFrame(lines)
        lines = frame.df
        rk = self.rules.evaluate(frame, earlier=earlier)
        attrs = self.features.attribute_columns(frame, rk)
        predictor = self._checked(attrs, (rk.ids, rk.hits))
        prepared = predictor.prepare(attrs, binary=(rk.ids, rk.hits))
        raw = predictor.raw(prepared)
        p = predictor.calibrate(raw)
        if len(lines) < GROUPS_THREAD_ROWS:
            group, given = self.reason_groups(rk, attrs, p, 1)
            findings = counterfactuals(predictor, prepared, rk, raw)
            after_fixes = self.after_fixes(frame, earlier, rk, predictor, prepared, p)
        else:
            with ThreadPoolExecutor(max_workers=1) as pool:
                # the group model walks its trees (no GIL) on one thread beside the fixes
                pending = pool.submit(self.reason_groups, rk, attrs, p, 1)
                findings = counterfactuals(predictor, prepared, rk, raw)
                after_fixes = self.after_fixes(frame, earlier, rk, predictor, prepared, p)
                group, given = pending.result()
        reasons, fixes = reasons_and_fixes(
            findings,
            rk,
            p,
            self.thresholds.high,
            self.features.prior_,
            attrs,
            frame.column("payer_id"),
            frame.column("hcpcs_code"),
            after_fixes,
        )
        tier = self.thresholds.tier_index(p)
        hit_codes, hit_text = rk.per_line_codes(RuleResult.hit_ids)
        billed = frame.values("billed_amount", float)
        dollars = np.round(p * billed, 2)
        columns = {
            "denial_probability": pa.array(p, pa.float64()),
            "risk_tier": _TIERS.take(pa.array(tier)),
            "rule_hits": pa.array(hit_text, pa.string()).take(pa.array(hit_codes)),
            "reasons": reasons,
            "fixes": fixes,
            "dollars_at_risk": pa.array(dollars, pa.float64()),
            "probability_after_fixes": pa.array(after_fixes, pa.float64()),
            "reason_group": _GROUPS.take(pa.array(np.where(group < 0, len(REASON_GROUPS), group))),
            "owner_team": _OWNERS.take(pa.array(np.where(group < 0, len(REASON_GROUPS), group))),
            **{
                c: pa.array(p * given[:, k], pa.float64(), from_pandas=True)  # NaN: not routed
                for k, c in enumerate(GROUP_COLUMNS)
            },
        }
        return Scored(
            columns=columns,
            p=p,
            tier=tier,
            billed=billed,
            dollars=dollars,
            features=attrs,
            result=rk,
            after_fixes=after_fixes,
            group=group,
        )

    def after_fixes(
        self, frame: ClaimFrame, earlier, rk: RuleResult, predictor, prepared, p: np.ndarray
    ) -> np.ndarray:
        """P(denied) of each line once all its fixable findings are corrected, re-scored as
        the corrected claim would be: the findings a kind can repair are repaired in the
        data (a copy of the lines of the patients concerned, in validated form), whose rules
        and features are evaluated again; the lines with a fixable finding of their own are
        scored on them, and what still fires that is fixable is corrected at the feature
        level (`explain.zeroed_fixes`). A line without a fixable finding keeps `p`."""
        rows, rules = fixable_pairs(rk)
        found = repaired(frame, rk, rows, rules, self.rules.pack_) if len(rows) else None
        if found is None:
            return zeroed_fixes(predictor, prepared, rk, p)
        sub, take = found
        frame = ClaimFrame(sub)
        rk2 = self.rules.evaluate(frame, earlier=earlier)  # whole patients: the cross-line rules
        mine = np.flatnonzero(np.isin(take, rows))  # only lines with a fixable finding of their own
        attrs = self.features.attribute_columns(frame, rk2).take(mine)
        rk2 = rk2.take(mine)
        prepared2 = predictor.prepare(attrs, binary=(rk2.ids, rk2.hits))
        again = zeroed_fixes(predictor, prepared2, rk2, predictor.proba(prepared2))
        rescored = np.zeros(len(p), dtype=bool)
        rescored[take[mine]] = True
        out = zeroed_fixes(predictor, prepared, rk, p, skip=rescored)  # the others, on the first pass
        out[take[mine]] = again
        return out

    @cached_property
    def group_predictor(self) -> BinnedGroups | None:
        """The group model on its own bins, or None (the public path) when it does not allow it."""
        try:
            return BinnedGroups(self.groups)
        except (TypeError, AttributeError, KeyError, IndexError, ImportError, ValueError):
            return None

    def group_proba(
        self, ids: list[str], hits: np.ndarray, attrs: FeatureColumns, threads: int | None = None
    ) -> np.ndarray | None:
        """P(reason group | denied) per line (columns: REASON_GROUPS), None without a group
        model. On the group booster's bins when it allows it (`threads`: its tree walk's):
        the first time, checked against its public `predict_proba` on the first lines (up to
        256), and on any difference the public path is used from then on."""
        if self.groups is None:
            return None
        fast = self.group_predictor
        if fast is not None:
            proba = fast.proba(fast.prepare(attrs, binary=(ids, hits)), threads)
            out = np.zeros((attrs.n, len(REASON_GROUPS)))
            out[:, np.asarray(self.groups.classes_, dtype=np.int64)] = proba
            if self._groups_verified:
                return out
            k = min(attrs.n, 256)
            public = group_proba(self.groups, self.features.assemble(hits[:k], attrs.take(np.arange(k))))
            if np.allclose(out[:k], public, rtol=0, atol=1e-12):
                self._groups_verified = True
                return out
            warnings.warn(
                "fast binned reason groups differ from predict_proba; using the public path",
                RuntimeWarning,
                stacklevel=2,
            )
            self.__dict__["group_predictor"] = None
        return group_proba(self.groups, self.features.assemble(hits, attrs))

    def reason_groups(
        self, rk: RuleResult, attrs: FeatureColumns, p: np.ndarray, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(likeliest reason group, P(group | denied)) of each line that has a finding or is
        medium or high risk: an index into REASON_GROUPS (-1 for a low-risk line with no
        finding: nothing to route) and one column per group (NaN where not routed). By the
        group model, else (models before 0.6) by the rules (`groups.rules_group`), which give
        no probabilities (all NaN)."""
        given = np.full((attrs.n, len(REASON_GROUPS)), np.nan)
        if self.groups is not None:
            out = np.full(attrs.n, -1, dtype=np.int64)
            rows = np.flatnonzero(rk.hits.any(axis=1) | (p >= self.thresholds.medium))
            if len(rows):
                given[rows] = self.group_proba(rk.ids, rk.hits[rows], attrs.take(rows), threads)
                out[rows] = np.argmax(given[rows], axis=1)
            return out, given
        named = rules_group(rk)
        return pd.Index(REASON_GROUPS).get_indexer(pd.Series(named, dtype=object)).astype(np.int64), given

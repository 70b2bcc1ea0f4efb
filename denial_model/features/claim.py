"""The model's transformers: claim-line tables in, one feature frame out.

`RuleFeaturizer` wraps the rule engine so the whole model is one `Pipeline` that joblib and
MLflow persist as one object. The fitted featurizer carries its rule pack, so an artifact
scores with the rules it was trained with even if the YAML on disk changes later.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from denial_model.errors import ClaimTableError, ConfigError
from denial_model.features.context import (
    CONTEXT_NUMERIC,
    LINE_KINDS,
    claim_context,
    claim_max,
    line_kinds,
    multi_hot,
    multi_hot_names,
    vocabulary,
)
from denial_model.features.history import (
    FINDINGS,
    HISTORY_KEYS,
    _History,
    composite_key,
    entity_key,
    factorized,
    finding_pairs,
    gamma_poisson_prior,
    per_line_any,
    per_line_max,
    smoothed,
)
from denial_model.rules.engine import RuleResult, evaluate
from denial_model.rules.pack import RulePack, load_pack
from denial_model.table import ClaimFrame, _categorical_of, denied_labels, factorize_objects, validate


class FeatureColumns(dict):
    """The features that are not rule hits, one array per name (float arrays and
    `pd.Categorical`s), for `n` lines: what scoring reads by name. A DataFrame of ~100
    columns costs more to build, and each column more to read back out of it, than a claim
    costs to score; `frame()` builds one for the public path. Reads as a DataFrame does by
    name (`X[name]`, `name in X`); `len()` is the number of columns, the lines are `n`."""

    def __init__(self, columns: dict, n: int):
        super().__init__(columns)
        self.n = n

    def take(self, rows: np.ndarray) -> FeatureColumns:
        """The lines `rows`, in that order."""
        return FeatureColumns({k: v[rows] for k, v in self.items()}, len(rows))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(dict(self), index=pd.RangeIndex(self.n))


def as_claim_frame(X: pd.DataFrame | ClaimFrame) -> ClaimFrame:
    """Validated, normalized view of `X`; any bad row is an error naming row and column."""
    if isinstance(X, ClaimFrame):
        return X
    v = validate(X)
    if len(v.rejects):
        first = v.rejects.iloc[0]
        raise ClaimTableError(
            f"{len(v.rejects)} row(s) failed validation; first: row {first['row']} "
            f"(claim {first['claim_id']}), column {first['column']}: {first['reason']}"
        )
    return ClaimFrame(v.lines)


class RuleFeaturizer(TransformerMixin, BaseEstimator):
    """One 0/1 feature per rule of the pack (rule id as the feature name).

    Parameters
    ----------
    pack_dir : folder of a rule pack; None uses the pack shipped with the package.
    """

    def __init__(self, pack_dir: str | Path | None = None):
        self.pack_dir = pack_dir

    def fit(self, X, y=None):
        self.pack_: RulePack = load_pack(self.pack_dir)
        self.rule_ids_ = np.array(self.pack_.ids, dtype=object)
        self.pack_sha256_ = self.pack_.sha256
        return self

    def evaluate(self, X: pd.DataFrame | ClaimFrame, earlier: pd.DataFrame | None = None) -> RuleResult:
        """Full rule result (hit matrix, rule_hits strings, CARCs) for `X`; `earlier`:
        validated lines before `X` that the cross-line rules read (see `rules.engine`)."""
        check_is_fitted(self, "pack_")
        return evaluate(as_claim_frame(X), self.pack_, earlier=earlier)

    def transform(self, X):
        hits = self.evaluate(X).hits
        return pd.DataFrame(hits.astype(np.float32), columns=list(self.rule_ids_))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "pack_")
        return self.rule_ids_.copy()


# ----------------------------------------------------------------------------- claim features

# feature groups added in 0.5 (`ClaimFeatures.groups_`): older artifacts have none of them
GROUPS = ("context", "multi_hot", "recent", "expected")
MIN_MULTI_HOT_LINES = 20  # a modifier or diagnosis group on fewer fitting lines gets no column
RECENT = (
    "hist_provider_recent",
    "hist_payer_code_recent",
    "hist_payer_recent",
    "hist_payer_finding_rate",
    "hist_payer_finding_recent",
    "hist_provider_finding_rate",
    "hist_provider_finding_recent",
    "hist_payer_finding_lines",
    "hist_provider_finding_lines",
    "claim_payer_finding_recent",
)
# added in 0.7: what the payer's rates for each of a line's findings predict together (any
# of them can deny it), and a provider's earlier denials against what its lines' findings
# predicted (its quality no rule sees, read from all its lines, not only the clean ones)
EXPECTED = ("hist_payer_findings_any", "hist_provider_excess", "hist_provider_expected")
# entities whose denial rate is also kept per kind of finding: a payer's strictness per
# category, a provider's rate on clean lines (its quality no rule sees)
FINDING_ENTITIES = {"payer": "payer_id", "provider": "provider_npi"}
CATEGORICAL = ("payer_id", "payer_type", "hcpcs_code", "place_of_service", "drug", "dx_group", "provider_npi")
_LINE_KINDS = pd.Index(list(LINE_KINDS))  # the line_kind categories, as pandas infers them
NUMERIC = (
    "units",
    "billed_amount",
    "dose_mg",
    "days_to_submission",
    "n_modifiers",
    "n_diagnoses",
    "n_documentation",
    "has_ndc",
    "has_prior_auth",
    "has_description",
    "mod_jw",
    "mod_jz",
    "mod_25",
    "mod_59",
)


def _popcount(mask: np.ndarray, bits: int = 16) -> np.ndarray:
    return sum(((mask >> i) & 1) for i in range(bits)).astype(float)


# fitted ClaimFeatures -> its `_level_lookup`s; gone with the estimator
_LEVEL_LOOKUPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ClaimFeatures(TransformerMixin, BaseEstimator):
    """Rule hits, claim attributes, claim context and leakage-safe history, as one DataFrame.

    History features are denial rates of the line's provider, payer and payer-code pair, and
    of its payer with each kind of finding it has, among lines of the fitting history
    adjudicated before the line's submission date (`history`): cumulative rates smoothed
    towards the overall rate, and recent ones (half-life `half_life_days`) smoothed towards
    the next coarser entity's. Claim context and multi-hot attributes: `context`. Labels of
    the table being transformed are never read. Categorical columns keep their `max_levels`
    most frequent values (others become missing) so HistGradientBoosting can split on them
    natively; the multi-hot vocabularies keep at most `max_multi_hot` items per family.
    `groups`: which of the 0.5 feature groups (GROUPS) to build; fewer for an ablation.

    Artifacts fitted before 0.5 have no `groups_` and produce exactly their old features.
    """

    def __init__(
        self,
        pack_dir: str | Path | None = None,
        max_levels: int = 250,
        smoothing: float = 20.0,
        half_life_days: float = 60.0,
        max_multi_hot: int = 30,
        groups: tuple[str, ...] = GROUPS,
    ):
        self.pack_dir = pack_dir
        self.max_levels = max_levels
        self.smoothing = smoothing
        self.half_life_days = half_life_days
        self.max_multi_hot = max_multi_hot
        self.groups = groups

    def fit(self, X, y=None):
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise ConfigError(f"unknown feature group(s) {unknown}; known: {list(GROUPS)}")
        frame = as_claim_frame(X)
        df = frame.df
        self.rules_ = RuleFeaturizer(self.pack_dir).fit(frame)
        result = self.rules_.evaluate(frame)
        base = self._attributes(frame, result.drug)
        self.levels_ = {c: self._levels(*base[c], self.max_levels) for c in CATEGORICAL}
        if y is None:
            if "denied" not in df.columns:
                raise ClaimTableError("ClaimFeatures.fit needs outcomes: a 'denied' column or y")
            y = denied_labels(df)
        y = np.asarray(y, dtype=bool)
        if "adjudication_date" not in df.columns:
            raise ClaimTableError("ClaimFeatures.fit needs 'adjudication_date' for leakage-safe history")
        adj = pd.to_datetime(df["adjudication_date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
        self.prior_ = float(y.mean())
        hl = self.half_life_days
        self.history_ = {
            name: _History(entity_key(frame, cols), adj, y, hl) for name, cols in HISTORY_KEYS.items()
        }
        rows, found = finding_pairs(result.categories)
        self.history_["finding"] = _History((found, FINDINGS), adj[rows], y[rows], hl)
        for entity, col in FINDING_ENTITIES.items():
            pair = _entity_finding(factorized(frame, col), rows, found)
            self.history_[f"{entity}_finding"] = _History(pair, adj[rows], y[rows], hl)
        if "expected" in self.groups:
            self.history_["provider_excess"] = excess = self._provider_excess(frame, result, adj, y)
            self.provider_prior_ = gamma_poisson_prior(*excess.totals())
        self.vocabulary_ = vocabulary(frame, self.max_multi_hot, min_lines=MIN_MULTI_HOT_LINES)
        self.groups_ = tuple(g for g in GROUPS if g in self.groups)
        group_columns = {
            "context": [*CONTEXT_NUMERIC, "line_kind"],
            "multi_hot": multi_hot_names(self.vocabulary_),
            "recent": list(RECENT),
            "expected": list(EXPECTED),
        }
        self.feature_names_out_ = np.array(
            [
                *self.rules_.get_feature_names_out(),
                *NUMERIC,
                *CATEGORICAL,
                *[f"hist_{k}_{s}" for k in HISTORY_KEYS for s in ("rate", "lines")],
                *(c for g in self.groups_ for c in group_columns[g]),
            ],
            dtype=object,
        )
        return self

    @staticmethod
    def _attributes(frame: ClaimFrame, drug: np.ndarray) -> dict[str, tuple[np.ndarray, list[str]]]:
        """Categorical attributes as (codes, distinct values as text), without per-row strings."""
        out = {c: factorized(frame, c) for c in ("payer_id", "payer_type", "hcpcs_code", "place_of_service")}
        out["provider_npi"] = factorized(frame, "provider_npi")
        out["drug"] = factorized(drug)
        dx_codes, dx = factorized(frame, "diagnosis_codes")
        first3, groups = factorize_objects([d[:3] for d in dx])
        out["dx_group"] = (first3.astype(np.int64)[dx_codes], [str(g) for g in groups])
        return out

    def _level_lookup(self, c: str) -> tuple[pd.CategoricalDtype, dict]:
        """(categorical dtype, level -> code) of a fitted categorical column, built once per
        fitted model (kept beside it, not in it: not pickled, not a parameter): building
        them costs more than a claim's whole column."""
        cache = _LEVEL_LOOKUPS.setdefault(self, {})
        levels = self.levels_[c]
        got = cache.get(c)
        if got is None or got[0] is not levels:  # refitted: new levels
            got = cache[c] = (levels, pd.CategoricalDtype(levels), {v: i for i, v in enumerate(levels)})
        return got[1], got[2]

    @staticmethod
    def _levels(codes: np.ndarray, names: list[str], max_levels: int) -> list[str]:
        """The `max_levels` most frequent values (ties by value), sorted."""
        counts = pd.Series(np.bincount(codes, minlength=len(names)), index=names).groupby(level=0).sum()
        counts = counts[counts > 0]  # categories of rejected rows are not levels
        top = counts.sort_index().sort_values(ascending=False, kind="stable").index[:max_levels]
        return sorted(top.tolist())

    def transform(self, X):
        return self.transform_with_rules(as_claim_frame(X))[0]

    def transform_with_rules(self, frame: ClaimFrame) -> tuple[pd.DataFrame, RuleResult]:
        """Features and the rule result they were built from (scoring needs both)."""
        check_is_fitted(self, "history_")
        result = self.rules_.evaluate(frame)
        return self.assemble(result.hits, self.attributes(frame, result)), result

    def assemble(self, hits: np.ndarray, attributes: pd.DataFrame | FeatureColumns) -> pd.DataFrame:
        """The full feature frame from the rule hit matrix and `attributes`."""
        rules = pd.DataFrame(hits.astype(np.float32), columns=list(self.rules_.rule_ids_))
        attrs = (
            attributes.frame()
            if isinstance(attributes, FeatureColumns)
            else attributes.reset_index(drop=True)
        )
        return pd.concat([rules, attrs], axis=1)[list(self.feature_names_out_)]

    def attributes(self, frame: ClaimFrame, result: RuleResult) -> pd.DataFrame:
        """The features that are not rule hits, as a frame (see `attribute_columns`)."""
        return self.attribute_columns(frame, result).frame()

    def attribute_columns(self, frame: ClaimFrame, result: RuleResult) -> FeatureColumns:
        """The features that are not rule hits: claim attributes, context and history rates.

        Batch scoring keeps the rule hits as the engine's bool matrix and reads only these
        (92 float columns of 0/1 would cost more to build than to score)."""
        check_is_fitted(self, "history_")
        out: dict[str, object] = self._numeric(frame)
        attrs = self._attributes(frame, result.drug)
        for c in CATEGORICAL:
            codes, names = attrs[c]
            dtype, position = self._level_lookup(c)
            lut = np.array([position.get(v, -1) for v in names] + [-1], dtype=np.intp)  # per distinct value
            out[c] = _categorical_of(lut[codes], dtype.categories)  # codes valid by construction
        sub = frame.days("submission_date")
        groups = getattr(self, "groups_", ())
        recent, keys = {}, {}
        for name, cols in HISTORY_KEYS.items():
            key = keys[name] = entity_key(frame, cols)
            if "recent" in groups:
                (n, y), recent[name] = self.history_[name].before_and_recent(key, sub)
            else:
                n, y = self.history_[name].before(key, sub)
            out[f"hist_{name}_rate"] = smoothed(n, y, self.prior_, self.smoothing)
            out[f"hist_{name}_lines"] = n.astype(float)
        if "context" in groups:
            out.update(claim_context(frame, result))
            out["line_kind"] = _categorical_of(line_kinds(frame, result.drug_line), _LINE_KINDS)
        if "multi_hot" in groups:
            out.update(multi_hot(frame, self.vocabulary_))
        rates = (
            self._finding_rates(frame, sub, finding_pairs(result.categories))
            if {"recent", "expected"} & set(groups)
            else {}
        )
        if "recent" in groups:
            out.update(self._recent(frame, recent, rates))
        if "expected" in groups:
            expected, observed = self.history_["provider_excess"].before(keys["provider"], sub)
            out["hist_payer_findings_any"] = rates["payer"]["any"]
            # 0.7's artifacts: towards 1 with `smoothing` lines' worth of expected denials
            mean, strength = getattr(self, "provider_prior_", (1.0, self.smoothing * self.prior_))
            out["hist_provider_excess"] = smoothed(expected, observed, mean, strength)
            out["hist_provider_expected"] = expected
        return FeatureColumns(out, frame.n)

    def _numeric(self, frame: ClaimFrame) -> dict[str, np.ndarray]:
        """The NUMERIC columns."""
        num = {
            "units": frame.values("units", float),
            "billed_amount": frame.values("billed_amount", float),
            "dose_mg": frame.values("dose_mg", float),
            "days_to_submission": (frame.days("submission_date") - frame.days("service_date")).astype(float),
            "n_modifiers": frame.per_value("modifiers", lambda m: str(m).count(";") + (str(m) != "")),
            "n_diagnoses": frame.per_value("diagnosis_codes", lambda d: str(d).count(";") + 1),
            # -1: not known (an ingested 837), a value of its own, not "none" (0)
            "n_documentation": np.where(
                frame.documentation_unknown, -1.0, _popcount(frame.documentation_mask)
            ),
            "has_ndc": frame.filled("ndc"),
            "has_prior_auth": frame.filled("prior_auth_number"),
            "has_description": frame.filled("drug_description"),
        }
        for m in ("JW", "JZ", "25", "59"):
            num[f"mod_{m.lower()}"] = frame.has_modifier([m]).astype(float)
        return num

    def _recent(
        self, frame: ClaimFrame, recent: dict[str, tuple], rates: dict[str, dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """The RECENT columns: time-decayed rates, each smoothed towards its coarser entity's,
        and the payer's rates for the kinds of finding the line has (its worst)."""
        s, prior = self.smoothing, self.prior_
        payer = smoothed(*recent["payer"], prior, s)
        out = {
            "hist_provider_recent": smoothed(*recent["provider"], prior, s),
            "hist_payer_code_recent": smoothed(*recent["payer_code"], payer, s),
            "hist_payer_recent": payer,
        }
        for entity, r in rates.items():
            out[f"hist_{entity}_finding_rate"] = r["rate"]
            out[f"hist_{entity}_finding_recent"] = r["recent"]
            out[f"hist_{entity}_finding_lines"] = r["lines"]
        # what the payer's recent strictness says of the claim's worst line: the lines of a
        # claim are adjudicated together
        out["claim_payer_finding_recent"] = claim_max(frame, out["hist_payer_finding_recent"])
        return out

    def _finding_rates(
        self,
        frame: ClaimFrame,
        sub: np.ndarray,
        pairs: tuple[np.ndarray, np.ndarray],
        entities: tuple[str, ...] = tuple(FINDING_ENTITIES),
        rate_only: bool = False,
    ) -> dict[str, dict[str, np.ndarray]]:
        """Per FINDING_ENTITIES entity, each line's rates of that entity with the kinds of
        finding `pairs` gives it ((line, finding) pairs sorted by line, every line present:
        `finding_pairs`), smoothed towards the kind's own rate: `rate` (cumulative), `recent`
        and `lines` of its worst finding, and `any`, the chance that at least one of its
        findings is denied (cumulative rates, as independent). `rate_only`: `rate` alone (the
        decayed sums are not computed)."""
        s, prior = self.smoothing, self.prior_
        rows, found = pairs
        day = sub[rows]

        def counts(name: str, key: tuple) -> tuple[tuple, tuple | None]:
            history = self.history_[name]
            return (history.before(key, day), None) if rate_only else history.before_and_recent(key, day)

        kind, kind_recent = counts("finding", (found, FINDINGS))
        kind_rate = smoothed(*kind, prior, s)
        out = {}
        for entity in entities:
            pair = _entity_finding(factorized(frame, FINDING_ENTITIES[entity]), rows, found)
            (n, y), pair_recent = counts(f"{entity}_finding", pair)
            rate = smoothed(n, y, kind_rate, s)
            out[entity] = {"rate": per_line_max(rows, rate, frame.n)}
            if not rate_only:
                recent = smoothed(*pair_recent, smoothed(*kind_recent, prior, s), s)
                out[entity]["recent"] = per_line_max(rows, recent, frame.n)
                out[entity]["lines"] = per_line_max(rows, n.astype(float), frame.n)
                out[entity]["any"] = per_line_any(rows, rate, frame.n)
        return out

    def _provider_excess(
        self, frame: ClaimFrame, result: RuleResult, adj: np.ndarray, y: np.ndarray
    ) -> _History:
        """Per provider, its fitting lines' denials and expected denials by adjudication date.

        A line's expected denial is its payer's rate for its worst finding, read as of its own
        submission like any line's features. What a provider's quality moves is the payer's
        rate on clean lines; a line the payer denies for a finding says little about it, so
        each line counts with weight min(1, clean rate / expected): 1 for a clean line, small
        for a line its finding all but decides (the score of the provider's shift in log-odds)."""
        sub = frame.days("submission_date")

        def payer_rate(pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            return self._finding_rates(frame, sub, pairs, ("payer",), rate_only=True)["payer"]["rate"]

        expected = payer_rate(finding_pairs(result.categories))
        # the payer's rate on clean lines: every line's rate as if it had no finding
        clean_rate = payer_rate((np.arange(frame.n), np.full(frame.n, FINDINGS.index("clean"))))
        weight = np.minimum(1.0, clean_rate / np.maximum(expected, 1e-12))
        key = entity_key(frame, HISTORY_KEYS["provider"])
        return _History(key, adj, weight * y, exposure=weight * expected)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "history_")
        return self.feature_names_out_.copy()


def _entity_finding(
    entity: tuple[np.ndarray, list[str]], rows: np.ndarray, found: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Key of each (line, finding) pair: the line's entity (payer, provider; factorized) and
    the finding."""
    codes, names = entity
    return composite_key([(codes[rows], names), (found, FINDINGS)])

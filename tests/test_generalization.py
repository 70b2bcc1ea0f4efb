"""Beyond our own simulator: stress worlds, the features that learn what no rule names, and the
model's gap to the oracle on each world.

The features are pinned to plain per-row computations written here (a claim's other lines
counted one by one, a decayed rate summed line by line), not to the vectorized code."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_model.cli import app
from denial_model.errors import ConfigError
from denial_model.estimator import DenialModel
from denial_model.evaluate import comparison_table, generalization_table, segments
from denial_model.features import ClaimFeatures
from denial_model.features.history import gamma_poisson_prior
from denial_model.rules.engine import evaluate
from denial_model.rules.pack import CATEGORIES
from denial_model.score import score_frame
from denial_model.scorer import Scorer
from denial_model.simulate import STRESS_WORLDS, SimConfig, build_world, simulate
from denial_model.simulate.outcomes import COUPLED
from denial_model.table import DOC_UNKNOWN, ClaimFrame, validate
from denial_model.train import TrainConfig, train_model
from denial_model.tune import tune


@pytest.fixture(scope="module")
def worlds():
    """Each stress world (and the default one) at a size a test can train on."""
    return {w: simulate(SimConfig.stress(w, lines=40_000, seed=5)) for w in STRESS_WORLDS if w != "all"} | {
        "default": simulate(SimConfig(lines=40_000, seed=5))
    }


@pytest.fixture(scope="module")
def fitted(worlds):
    history = worlds["coupled"]
    return ClaimFeatures().fit(history), history


def test_stress_worlds_are_off_by_default_and_unknown_names_are_refused():
    cfg = SimConfig()
    assert cfg.claim_coupling == 0 and not cfg.payer_preferences and not cfg.policy_changes
    assert cfg.provider_volume_shape == 0
    with pytest.raises(ConfigError, match="'nope'"):
        SimConfig.stress("nope")


def _claim_level_drug_denial(h: pd.DataFrame) -> pd.Series:
    """Per claim: its drug line was planted with a missing authorization."""
    pa = h["planted_categories"].str.contains("prior_auth_missing") & (h["line_number"] == 1)
    return pa.groupby(h["claim_id"]).any()


def test_claim_coupling_takes_the_claims_other_lines_with_the_drug_line(worlds):
    rates = {}
    for w in ("default", "coupled"):
        h = worlds[w]
        flagged = h["claim_id"].map(_claim_level_drug_denial(h))
        admin = h[(h["hcpcs_code"].str.startswith("963")) & flagged]
        rates[w] = admin["denied"].mean()
        # p_true stays each line's marginal probability
        se = np.sqrt(admin["p_true"].mean() * (1 - admin["p_true"].mean()) / len(admin))
        assert abs(admin["denied"].mean() - admin["p_true"].mean()) < 4 * se + 0.01
    assert rates["coupled"] > rates["default"] + 0.3


def test_payer_preferences_deny_lines_for_attributes_no_rule_names(worlds):
    h = worlds["preferences"]
    drug = h[(h["payer_id"] == "COMMERCIAL-1") & (h["line_number"] == 1) & (h["planted_categories"] == "")]
    lacks = ~drug["documentation"].str.contains("progress_notes")
    assert lacks.any() and (~lacks).any()
    assert drug.loc[lacks, "p_true"].mean() > drug.loc[~lacks, "p_true"].mean() + 0.4


def test_policy_changes_switch_a_payers_strictness_on_their_date(worlds):
    h = worlds["policy_changes"]
    m = (h["payer_id"] == "MEDICARE_ADVANTAGE-2") & (h["planted_categories"] == "prior_auth_missing")
    after = pd.to_datetime(h["service_date"]) >= "2025-03-01"
    assert h.loc[m & after, "p_true"].min() > 0.9 > 0.4 > h.loc[m & ~after, "p_true"].max()


def test_sparse_providers_leave_many_providers_with_a_handful_of_lines(worlds):
    cfg = SimConfig.stress("sparse_providers")
    share = build_world(cfg).prov_volume * cfg.n_providers  # 1 = an average provider's volume
    assert (share < 0.1).mean() > 0.25 and share.max() > 10
    assert worlds["sparse_providers"]["provider_npi"].nunique() > 500
    assert build_world(SimConfig()).prov_volume is None


# ----------------------------------------------------------------------------- features, per row


def test_claim_context_counts_match_the_claims_other_lines_one_by_one(fitted):
    features, history = fitted
    sample = history.iloc[:3000].reset_index(drop=True)
    out = features.transform(sample)
    lines = validate(sample).lines
    cats = evaluate(ClaimFrame(lines)).category_hits()
    for i in range(0, len(sample), 7):
        same = sample.index[(sample["claim_id"] == sample.at[i, "claim_id"]) & (sample.index != i)]
        assert out.at[i, "claim_lines"] == len(same) + 1
        for c in CATEGORIES:
            assert out.at[i, f"claim_other_{c}"] == cats.loc[same, c].sum(), (i, c)
        assert out.at[i, "claim_prior_auth"] == float(
            (sample.loc[[i, *same], "prior_auth_number"] != "").any()
        )


def test_multi_hot_columns_match_the_raw_tokens(fitted):
    features, history = fitted
    sample = history.iloc[:2000].reset_index(drop=True)
    out = features.transform(sample)
    dx_cols = [c for c in out.columns if c.startswith("dxg_")]
    assert dx_cols, "the fitted vocabulary has diagnosis groups"
    for i in range(0, len(sample), 11):
        docs = set(sample.at[i, "documentation"].split(";"))
        assert out.at[i, "doc_progress_notes"] == float("progress_notes" in docs)
        assert out.at[i, "doc_invoice"] == float("invoice" in docs)
        groups = {d[:3].lower() for d in sample.at[i, "diagnosis_codes"].split(";")}
        for c in dx_cols:
            assert out.at[i, c] == float(c[4:] in groups), (i, c)


def test_recent_rates_are_decayed_sums_of_earlier_outcomes_only(fitted):
    features, history = fitted
    hl, s, prior = features.half_life_days, features.smoothing, features.prior_
    adj = pd.to_datetime(history["adjudication_date"])
    sample = history.sample(40, random_state=1).reset_index(drop=True)
    out = features.transform(sample)
    for i in range(len(sample)):
        sub = pd.Timestamp(sample.at[i, "submission_date"])
        seen = (history["provider_npi"] == sample.at[i, "provider_npi"]) & (adj < sub)
        w = np.exp2(-((sub - adj[seen]).dt.days.to_numpy()) / hl)
        expected = (np.sum(w * history.loc[seen, "denied"].to_numpy()) + s * prior) / (w.sum() + s)
        assert out.at[i, "hist_provider_recent"] == pytest.approx(expected, rel=1e-9)


def test_provider_excess_is_its_earlier_denials_over_what_their_findings_predicted(fitted):
    """Each earlier line of the provider counts with weight min(1, its payer's clean-line rate /
    its expected denial), both read as of its own submission: computed here line by line."""
    features, history = fitted
    s, prior = features.smoothing, features.prior_
    assert len(validate(history).lines) == len(history)
    expected_of = features.transform(history)["hist_payer_finding_rate"].to_numpy()
    clean = ~evaluate(ClaimFrame(validate(history).lines)).category_hits().to_numpy().any(axis=1)
    adj, sub = pd.to_datetime(history["adjudication_date"]), pd.to_datetime(history["submission_date"])
    y, payer, provider = (
        history["denied"].to_numpy(),
        history["payer_id"].to_numpy(),
        history["provider_npi"].to_numpy(),
    )

    def clean_rate(j: int) -> float:
        before = clean & (adj < sub.iloc[j]).to_numpy()
        kind = (y[before].sum() + s * prior) / (before.sum() + s)
        same = before & (payer == payer[j])
        return (y[same].sum() + s * kind) / (same.sum() + s)

    sample = history.sample(12, random_state=2).reset_index(drop=True)
    out = features.transform(sample)
    for i in range(len(sample)):
        seen = np.flatnonzero(
            (provider == sample.at[i, "provider_npi"]) & (adj < sample.at[i, "submission_date"]).to_numpy()
        )
        w = np.array([min(1.0, clean_rate(j) / expected_of[j]) for j in seen])
        observed, expected = float((w * y[seen]).sum()), float((w * expected_of[seen]).sum())
        assert out.at[i, "hist_provider_expected"] == pytest.approx(expected, rel=1e-9)
        mean, k = features.provider_prior_
        assert out.at[i, "hist_provider_excess"] == pytest.approx(
            (observed + k * mean) / (expected + k), rel=1e-9
        )


def test_provider_smoothing_is_estimated_from_how_much_providers_differ():
    """Ratios drawn from a gamma of known variance, counts Poisson around exposure x ratio: the
    estimate finds the variance (strength = mean / variance); providers that do not differ at
    all get heavy smoothing, and the fitted features carry the estimate of their history."""
    rng = np.random.default_rng(0)
    exposure = rng.gamma(0.5, 20.0, 20_000)
    for variance in (0.1, 0.5, 2.0):
        ratio = rng.gamma(1.3**2 / variance, variance / 1.3, len(exposure))  # mean 1.3
        mean, strength = gamma_poisson_prior(exposure, rng.poisson(exposure * ratio))
        assert mean == pytest.approx(1.3, rel=0.03)
        assert mean / strength == pytest.approx(variance, rel=0.15)
    mean, strength = gamma_poisson_prior(exposure, rng.poisson(exposure * 0.8))
    assert strength >= 50 and mean == pytest.approx(0.8, rel=0.03)
    assert gamma_poisson_prior(np.zeros(3), np.zeros(3)) == (1.0, 1.0)  # nothing to estimate from


def test_any_finding_rate_is_the_worst_for_one_finding_and_more_for_several(fitted):
    features, history = fitted
    sample = history.iloc[:5000].reset_index(drop=True)
    out = features.transform(sample)
    found = evaluate(ClaimFrame(validate(sample).lines)).category_hits().sum(axis=1).to_numpy()
    worst, any_ = out["hist_payer_finding_rate"].to_numpy(), out["hist_payer_findings_any"].to_numpy()
    assert (found >= 2).sum() > 50, "the sample has lines with several findings"
    assert np.allclose(any_[found <= 1], worst[found <= 1])
    assert (any_[found >= 2] > worst[found >= 2]).all()


def test_new_history_features_know_nothing_before_the_first_adjudication(fitted):
    features, history = fitted
    first_day = history.sort_values("submission_date").head(50)
    out = features.transform(first_day)
    for c in (
        "hist_provider_recent",
        "hist_payer_recent",
        "hist_payer_code_recent",
        "hist_payer_finding_rate",
        "hist_payer_finding_recent",
        "hist_provider_finding_rate",
        "claim_payer_finding_recent",
    ):
        assert np.allclose(out[c], features.prior_), c
    assert (out["hist_payer_finding_lines"] == 0).all() and (out["hist_provider_finding_lines"] == 0).all()
    # with nothing seen yet, a provider's ratio is the providers' mean
    assert np.allclose(out["hist_provider_excess"], features.provider_prior_[0])
    assert (out["hist_provider_expected"] == 0).all()


# ----------------------------------------------------------------------------- the gap to the oracle


def _gap(history: pd.DataFrame, cfg: TrainConfig, result=None) -> pd.DataFrame:
    result = result or train_model(history, cfg)
    table = comparison_table(
        Scorer(result.model, result.thresholds),
        result.splits.earlier,
        result.splits.test,
        include_logistic=False,
    )
    return generalization_table(table).set_index("segment")


@pytest.fixture(scope="module")
def coupled_model(worlds):
    return train_model(worlds["coupled"], TrainConfig(max_iter=150))


@pytest.mark.parametrize("world", ["default", "coupled", "preferences", "policy_changes", "sparse_providers"])
def test_the_model_stays_near_the_oracle_on_each_world(worlds, coupled_model, world):
    """A 40k-line history leaves ~1,400 administration lines to test on and a small
    calibration slice: the bounds are loose (measured at 40k: AUROC gap 0.011-0.026 overall,
    0.03-0.08 on administration lines; log loss 8-16% above the oracle's).
    benchmarks/generalization.py measures the targets at 1M lines."""
    gap = _gap(worlds[world], TrainConfig(max_iter=150), coupled_model if world == "coupled" else None)
    assert gap.at["all", "auroc_gap"] < 0.04, gap
    assert gap.at["drug_lines", "auroc_gap"] < 0.04, gap
    assert gap.at["administration_lines", "auroc_gap"] < 0.12, gap
    assert gap.at["all", "log_loss_excess"] < 0.25, gap


def test_claim_context_is_what_reads_a_claim_level_denial_on_the_administration_line(worlds, coupled_model):
    """Ablation on the coupled world: without the claim-context group the administration
    lines lose most of what the drug line's findings say about them."""
    full = _gap(worlds["coupled"], TrainConfig(max_iter=150), coupled_model)
    without = _gap(worlds["coupled"], TrainConfig(max_iter=150, feature_groups=("multi_hot", "recent")))
    admin = "administration_lines"
    assert without.at[admin, "auroc_gap"] > full.at[admin, "auroc_gap"] + 0.02, (full, without)


def test_a_line_that_goes_down_with_its_claim_says_so_and_names_the_other_lines_findings(coupled_model):
    test = coupled_model.splits.test
    model = DenialModel.from_fitted(coupled_model.model, coupled_model.thresholds)
    scored, _ = score_frame(test, model)
    admin = scored[
        test["hcpcs_code"].str.startswith("963").to_numpy() & (scored["rule_hits"] == "").to_numpy()
    ]
    told = admin[admin["reasons"].str.contains("goes down with its claim", regex=False)]
    assert len(told) > 0
    # in this world a sibling goes down only for its drug line's claim-level findings
    claim_level = "|".join(c.replace("_", " ") for c in COUPLED)
    assert told["reasons"].str.contains(claim_level).mean() > 0.8
    assert told["fixes"].str.startswith("correct the claim's other lines first").all()


def test_a_history_with_no_documentation_known_trains(worlds):
    """An ingested 837 carries no documentation: the token columns are -1, never all missing
    (scikit-learn cannot bin a column with no value)."""
    history = worlds["default"].copy()
    history["documentation"] = DOC_UNKNOWN
    result = train_model(history, TrainConfig(max_iter=20))
    docs = result.model.named_steps["features"].transform(result.splits.test).filter(like="doc_")
    assert len(docs.columns) == 15 and (docs == -1).all().all()


def test_unknown_feature_groups_are_refused_naming_them(worlds):
    with pytest.raises(ConfigError, match="'siblings'"):
        ClaimFeatures(groups=("context", "siblings")).fit(worlds["default"])


# ----------------------------------------------------------------------------- model selection on time


def test_tuning_validates_on_months_after_the_fit_and_before_calibration_and_test(worlds):
    space = {"max_leaf_nodes": (7, 31), "min_samples_leaf": (50,)}
    result = tune(worlds["default"], TrainConfig(max_iter=60), space=space)
    b = result.bounds
    assert b["fit_to"] < b["valid_from"] <= b["valid_to"] < b["untouched_from"]
    c = result.candidates
    assert len(c) == 2 and c["valid_log_loss"].is_monotonic_increasing
    assert result.best.max_leaf_nodes == c.at[0, "max_leaf_nodes"]
    assert json.loads(json.dumps(result.params()))["max_leaf_nodes"] == result.best.max_leaf_nodes
    with pytest.raises(ConfigError, match="max_depth"):
        tune(worlds["default"], space={"max_depth": (3,)})


def test_cli_tune_writes_settings_that_train_uses(tmp_path, monkeypatch):
    from denial_model.tune import SEARCH_SPACE

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(SEARCH_SPACE, "max_leaf_nodes", (7,))
    monkeypatch.setitem(SEARCH_SPACE, "min_samples_leaf", (40,))
    monkeypatch.setitem(SEARCH_SPACE, "l2_regularization", (0.5,))
    simulate(SimConfig(lines=12_000, seed=5)).to_parquet("h.parquet")
    runner = CliRunner()
    out = runner.invoke(app, ["tune", "--data", "h.parquet", "--output", "tuned.json"])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "tuned.json").read_text())["params"]["max_leaf_nodes"] == 7
    out = runner.invoke(
        app, ["train", "--data", "h.parquet", "-o", "m.joblib", "--params", "tuned.json", "--no-tracking"]
    )
    assert out.exit_code == 0, out.output
    manifest = json.loads((tmp_path / "m.joblib.manifest.json").read_text())
    assert manifest["train_config"]["max_leaf_nodes"] == 7
    assert manifest["train_config"]["l2_regularization"] == 0.5


def test_cli_simulates_a_stress_world_by_name(tmp_path):
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "simulate",
            "--world",
            "coupled",
            "--lines",
            "3000",
            "--seed",
            "5",
            "-o",
            str(tmp_path / "h.parquet"),
        ],
    )
    assert out.exit_code == 0, out.output
    expected = simulate(SimConfig.stress("coupled", lines=3000, seed=5))
    got = pd.read_parquet(tmp_path / "h.parquet")
    np.testing.assert_array_equal(got["p_true"].to_numpy(), expected["p_true"].to_numpy())
    bad = runner.invoke(app, ["simulate", "--world", "nope", "-o", str(tmp_path / "x.parquet")])
    assert bad.exit_code != 0 and "'nope'" in bad.output


def test_the_segments_of_a_history_read_from_text_are_those_of_the_typed_history(coupled_model):
    """An ingested or CSV history carries its dates as text: the slices the comparison table
    reports (payer types, kinds of line) are found on the validated lines, the same as for
    the simulator's typed columns."""
    scorer = Scorer(coupled_model.model, coupled_model.thresholds)
    test = coupled_model.splits.test.head(3_000).reset_index(drop=True)
    dates = ("service_date", "submission_date", "adjudication_date")
    text = test.assign(**{c: test[c].dt.strftime("%Y-%m-%d") for c in dates})
    want, got = segments(scorer, test), segments(scorer, text)
    assert [name for name, _ in got] == [name for name, _ in want]
    assert any(name == "administration_lines" for name, _ in got)
    for (name, a), (_, b) in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)

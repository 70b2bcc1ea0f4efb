"""The work queue and what it reads: reason groups, repairs, all fixes together, tiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_model.artifact import load_artifact
from denial_model.errors import ClaimTableError, ConfigError
from denial_model.explain import repaired
from denial_model.files import write_table
from denial_model.groups import (
    REASON_GROUPS,
    TEAMS,
    UNFIXABLE_CATEGORIES,
    carc_group,
    group_labels,
    team_of,
)
from denial_model.jobs import run_training
from denial_model.queue import QUEUE_COLUMNS, build_queue
from denial_model.rules.engine import evaluate
from denial_model.rules.kinds import KINDS, LineEdits
from denial_model.samples import claim_for_rule, clean_claim
from denial_model.score import score_frame
from denial_model.simulate import SimConfig, simulate
from denial_model.simulate.outcomes import BASE_CARCS, CARC
from denial_model.table import ClaimFrame, validate
from denial_model.thresholds import MAX_MEDIUM_SHARE, choose_thresholds
from denial_model.train import TrainConfig


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("queue-model")
    out = run_training(
        simulate(SimConfig(lines=40_000, seed=31)),
        folder / "model.joblib",
        TrainConfig(max_iter=80),
        track=False,
    )
    return folder / "model.joblib", out


@pytest.fixture(scope="module")
def scored(trained):
    batch = simulate(SimConfig(lines=8_000, seed=77, start=pd.Timestamp("2025-10-01").date(), months=1))
    out, _ = score_frame(batch, load_artifact(trained[0]))
    return out


def test_every_carc_the_pack_and_the_simulator_use_has_a_reason_group_and_an_owner(pack):
    carcs = {r.carc for r in pack.rules} | set(CARC.values()) | set(BASE_CARCS)
    groups = carc_group(sorted(carcs))
    assert (groups != "").all(), dict(zip(sorted(carcs), groups, strict=True))
    assert set(team_of(groups)) <= set(TEAMS.values()) and set(TEAMS) == set(REASON_GROUPS)
    assert list(carc_group(["PR-96", "co-197;CO-16", "", None, "CO-999"])) == [
        "not_covered",
        "authorization",
        "",
        "",
        "",
    ], "the first code decides, the group code does not; unknown codes have no group"


def test_every_repair_cures_the_finding_its_rule_reports(pack):
    policies = {p.name: p for p in pack.policies}
    checked = 0
    for rule in pack.rules:
        repair = KINDS[rule.kind].repairs
        if repair is None or (rule.kind == "billed_under" and not policies.get(rule.policy)):
            continue
        _, broken = claim_for_rule(rule)
        lines = validate(broken).lines
        before = evaluate(ClaimFrame(lines), pack)
        j = before.rules.index(rule)
        assert before.hits[0, j], rule.id
        sub, take = repaired(ClaimFrame(lines), before, np.array([0]), np.array([j]), pack)
        if sub.astype(str).equals(lines.iloc[take].reset_index(drop=True).astype(str)):
            continue  # the kind declined (the right code is another policy's): feature level
        revalidated = validate(sub, keep_extra=False)
        assert len(revalidated.rejects) == 0, rule.id
        for c in revalidated.lines.columns:  # the repair writes the validated form: no second validation
            pd.testing.assert_series_equal(
                sub[c].astype(object), revalidated.lines[c].astype(object), obj=f"{rule.id}: {c}"
            )
        after = evaluate(ClaimFrame(sub), pack)
        assert not after.hits[np.searchsorted(take, 0), after.rules.index(rule)], f"{rule.id} still fires"
        checked += 1
    assert checked >= 40, checked


def test_all_fixes_together_is_what_the_corrected_claim_scores(trained):
    """Prior authorization missing and a document missing on one drug line: the probability
    after all fixes is the score of the claim with the number and the document added."""
    loaded = load_artifact(trained[0])
    claim = clean_claim("esketamine", "commercial", service_date=pd.Timestamp("2025-10-06").date())
    broken = claim.copy()
    broken.loc[0, "prior_auth_number"] = ""
    broken.loc[0, "documentation"] = ";".join(
        t for t in str(claim.loc[0, "documentation"]).split(";") if t != "rems_enrollment"
    )
    got, _ = score_frame(broken, loaded)
    assert {"esketamine.prior_auth"} <= set(got.loc[0, "rule_hits"].split(";"))
    fixed = broken.copy()
    fixed.loc[0, "prior_auth_number"] = "AUTH-ON-FILE"
    fixed.loc[0, "documentation"] = claim.loc[0, "documentation"]
    want, _ = score_frame(fixed, loaded)
    assert got.loc[0, "probability_after_fixes"] == pytest.approx(
        want.loc[0, "denial_probability"], abs=1e-12
    )
    assert got.loc[0, "probability_after_fixes"] < got.loc[0, "denial_probability"]
    assert got.loc[0, "fixes"].split(" | ")[0].startswith("correct all "), got.loc[0, "fixes"]


def test_all_fixes_together_equals_scoring_the_whole_batch_corrected(trained, pack):
    """Scoring re-scores copies of the patients with a repairable finding only; the answer is
    the one of the plain way: repair every such finding in the whole batch, score it, and
    correct what still fires at the feature level."""
    loaded = load_artifact(trained[0])
    batch = simulate(SimConfig(lines=6_000, seed=79, start=pd.Timestamp("2025-10-01").date(), months=1))
    first, _ = score_frame(batch, loaded)
    lines = validate(batch).lines
    rk = evaluate(ClaimFrame(lines), pack)
    policies = {p.name: p for p in pack.policies}
    edits = LineEdits(lines.copy())
    for j, rule in enumerate(rk.rules):  # rule by rule, as scoring applies them
        repair = KINDS[rule.kind].repairs
        if repair is not None and rule.category not in UNFIXABLE_CATEGORIES and rk.hits[:, j].any():
            repair(edits, np.flatnonzero(rk.hits[:, j]), rule.params, policies.get(rule.policy))
    fixed = edits.frame()
    second, _ = score_frame(fixed, loaded)
    left = evaluate(ClaimFrame(fixed), pack)
    repairable = np.array(
        [KINDS[r.kind].repairs is not None and r.category not in UNFIXABLE_CATEGORIES for r in rk.rules]
    )
    fixable = np.array([r.category not in UNFIXABLE_CATEGORIES for r in rk.rules])
    compare = rk.hits[:, fixable].any(axis=1) & ~left.hits[:, repairable].any(axis=1)
    assert compare.sum() > 500 and (rk.hits[:, repairable].any(axis=1) & compare).sum() > 200
    np.testing.assert_allclose(
        first["probability_after_fixes"].to_numpy()[compare],
        second["probability_after_fixes"].to_numpy()[compare],
        rtol=0,
        atol=1e-12,
    )


def test_no_fix_is_offered_that_does_not_lower_the_score_and_the_group_has_its_owner(scored):
    pairs = scored["fixes"].str.extractall(r"(\d\.\d\d) -> (\d\.\d\d)").astype(float)
    assert len(pairs) and (pairs[1] < pairs[0]).all()
    assert (scored["probability_after_fixes"] <= 1).all() and (scored["probability_after_fixes"] >= 0).all()
    has = scored["reason_group"] != ""
    needs = (scored["rule_hits"] != "") | (scored["risk_tier"] != "low")
    assert (has == needs).all(), "every line with a finding or at medium or high risk has a group, no other"
    assert (team_of(scored["reason_group"].to_numpy()) == scored["owner_team"].to_numpy()).all()


def test_the_group_probabilities_split_the_denial_probability_and_name_the_group(scored):
    cols = [f"denial_probability_{g}" for g in REASON_GROUPS]
    has = scored["reason_group"] != ""
    given = scored.loc[has, cols].to_numpy()
    assert has.any() and np.isfinite(given).all() and (given >= 0).all()
    np.testing.assert_allclose(
        given.sum(axis=1), scored.loc[has, "denial_probability"], rtol=1e-9, atol=1e-12
    )
    named = np.asarray(REASON_GROUPS)[np.argmax(given, axis=1)]
    assert (named == scored.loc[has, "reason_group"].to_numpy()).all()
    assert scored.loc[~has, cols].isna().all().all(), "no group, no group probabilities"


def test_the_group_model_names_the_denial_group_better_than_the_rules(trained):
    table = trained[1].groups.set_index("model")
    assert {"model", "rules_only", "prior"} <= set(table.index)
    assert (
        table.loc["model", "log_loss"] < table.loc["rules_only", "log_loss"] < table.loc["prior", "log_loss"]
    )
    assert table.loc["model", "top1_accuracy"] > table.loc["rules_only", "top1_accuracy"]
    assert "reason_groups.top1_accuracy" in trained[1].manifest["metrics"]


def test_group_labels_are_the_denied_lines_first_carc_group():
    df = pd.DataFrame(
        {"denied": [True, True, False, True], "carc_codes": ["CO-197", "CO-999", "CO-16", "CO-18"]}
    )
    assert list(group_labels(df)) == [
        REASON_GROUPS.index("authorization"),
        -1,
        -1,
        REASON_GROUPS.index("duplicate"),
    ]


def test_the_queue_takes_the_most_valuable_lines_per_team_each_with_a_reason(scored):
    q = build_queue(scored, capacity=5, by="team", recovery_rate=0.7, rework_cost=15.0)
    assert list(q.columns) == [c for c in QUEUE_COLUMNS if c in q.columns] and len(q)
    assert (q.groupby("owner_team").size() <= 5).all()
    assert (q["reason"] != "").all() and (q["value"] > 0).all()
    value = (q["denial_probability"] - q["probability_after_fixes"]) * q["billed_amount"] * 0.7 - 15.0
    assert np.allclose(q["value"], value.round(2))
    for _, team in q.groupby("owner_team"):
        assert team["value"].is_monotonic_decreasing and list(team["rank"]) == list(range(1, len(team) + 1))
    everyone = build_queue(scored, capacity=10**9)
    best = everyone.groupby("owner_team")["value"].apply(lambda v: v.head(5).sum())
    assert np.allclose(q.groupby("owner_team")["value"].sum().sort_index(), best.sort_index())
    by_day = build_queue(scored, capacity=3, by="day")
    assert (by_day.groupby(pd.to_datetime(by_day["submission_date"]).dt.date).size() <= 3).all()


def test_the_queue_refuses_what_it_cannot_rank():
    with pytest.raises(ConfigError, match="capacity"):
        build_queue(pd.DataFrame(), capacity=0)
    with pytest.raises(ConfigError, match="by must be"):
        build_queue(pd.DataFrame(), capacity=3, by="payer")
    with pytest.raises(ClaimTableError, match="score it with"):
        build_queue(pd.DataFrame({"claim_id": ["A"]}), capacity=3)


def test_cli_queue_writes_the_queue_it_prints(scored, tmp_path):
    from denial_model.cli import app

    write_table(scored, tmp_path / "scored.parquet")
    res = CliRunner().invoke(
        app,
        [
            "queue",
            str(tmp_path / "scored.parquet"),
            "--capacity",
            "4",
            "--by",
            "team",
            "-o",
            str(tmp_path / "q.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Work queue" in res.output and "value of the queue" in res.output
    q = pd.read_csv(tmp_path / "q.csv")
    assert len(q) == len(build_queue(scored, capacity=4, by="team"))


def test_the_medium_tier_is_at_most_a_fifth_of_the_calibration_lines():
    rng = np.random.default_rng(3)
    p = np.round(rng.beta(0.6, 4, 20_000), 3)  # a step calibrator's ties included
    y = rng.random(len(p)) < p
    t = choose_thresholds(y, p, np.full(len(p), 2_000.0), recovery_rate=0.7, rework_cost=15.0)
    medium = (p >= t.medium) & (p < t.high)
    assert 0 < medium.mean() <= MAX_MEDIUM_SHARE and t.medium <= t.high
    lower = p[p < t.medium].max()
    assert ((p >= lower) & (p < t.high)).mean() > MAX_MEDIUM_SHARE, "the lowest cut that keeps the share"


def test_the_scoring_runs_report_shows_the_scored_files_numbers(trained, tmp_path):
    """A tracked run's report.html, rendered and read back: dollars by payer and by reason
    group and the top lines are the scored file's."""
    import re

    from mlflow import MlflowClient

    from denial_model.jobs import run_scoring

    batch = simulate(SimConfig(lines=3_000, seed=78, start=pd.Timestamp("2025-10-01").date(), months=1))
    write_table(batch, tmp_path / "b.parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = run_scoring(
        tmp_path / "b.parquet", tmp_path / "s.parquet", load_artifact(trained[0]), tracking_uri=uri
    )
    client = MlflowClient(tracking_uri=uri)
    page = (Path(client.download_artifacts(run.tracking["run_id"], "report.html", str(tmp_path)))).read_text()
    scored = pd.read_parquet(tmp_path / "s.parquet")
    for col, title in (("payer_id", "payer"), ("reason_group", "reason group")):
        section = page.split(f"Dollars at risk by {title}</h2>", 1)[1].split("</table>", 1)[0]
        shown = dict(re.findall(r"<tr><td>([^<]*)</td><td class=\"n\">\$([\d,]+)</td>", section))
        want = scored.groupby(col)["dollars_at_risk"].sum()
        assert len(shown) == len(want[want.index != ""]) or len(shown) == len(want)
        for key, dollars in shown.items():
            assert float(dollars.replace(",", "")) == pytest.approx(
                want[key if key != "(none)" else ""], abs=1.0
            )
    queue = build_queue(scored, capacity=20)
    top = page.split("The most valuable lines to work</h2>", 1)[1].split("</table>", 1)[0]
    claims = re.findall(r"<tr><td>([^<]+)</td><td class=\"n\">(\d+)</td>", top)
    assert claims == list(zip(queue["claim_id"].astype(str), queue["line_number"].astype(str), strict=True))
    assert "data:image/png;base64," in page and "Drift" in page
    assert not set(scored["patient_id"].astype(str)) & set(re.findall(r"[\w-]+", page)), (
        "no patient on the page"
    )

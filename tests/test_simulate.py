"""The simulator: deterministic, schema-conformant, calibrated, and its planted breaks are
exactly what the rule engine flags."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_model.cli import app
from denial_model.metrics import oracle_and_rules_report
from denial_model.rules import CATEGORIES, evaluate
from denial_model.simulate import SimConfig, simulate, write_history
from denial_model.table import INPUT_COLUMNS, LABEL_COLUMNS, validate


@pytest.fixture(scope="module")
def history():
    return simulate(SimConfig(lines=120_000, seed=11))


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz"])
def test_same_seed_and_config_give_the_same_bytes(tmp_path, suffix):
    cfg = SimConfig(lines=8_000, seed=5, block_patients=500)
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    write_history(cfg, a)
    write_history(cfg, b)
    assert _sha(a) == _sha(b)
    other = tmp_path / f"c{suffix}"
    write_history(SimConfig(lines=8_000, seed=6, block_patients=500), other)
    assert _sha(a) != _sha(other)


def test_output_does_not_depend_on_chunk_size():
    small = simulate(SimConfig(lines=15_000, seed=3, block_patients=400, chunk_blocks=1))
    large = simulate(SimConfig(lines=15_000, seed=3, block_patients=400, chunk_blocks=7))
    pd.testing.assert_frame_equal(small, large)


def test_every_generated_row_passes_table_validation(history):
    assert set(INPUT_COLUMNS) <= set(history.columns)
    assert set(LABEL_COLUMNS) <= set(history.columns)
    v = validate(history)
    assert len(v.rejects) == 0, v.rejects.head().to_dict("records")
    assert len(history) <= 120_000
    assert history.groupby("claim_id")["line_number"].apply(lambda s: s.is_unique).all()


def _planted_equals_flagged(history, pack):
    v = validate(history)
    flagged = evaluate(v.lines, pack).category_hits()
    planted = (
        v.lines["planted_categories"]
        .str.get_dummies(sep=";")
        .reindex(columns=list(CATEGORIES), fill_value=0)
        .astype(bool)
    )
    for cat in CATEGORIES:
        missed = int((planted[cat] & ~flagged[cat]).sum())
        extra = int((flagged[cat] & ~planted[cat]).sum())
        assert (missed, extra) == (0, 0), (cat, missed, extra)
    return planted


def test_planted_categories_are_exactly_what_the_engine_flags(history, pack):
    planted = _planted_equals_flagged(history, pack)
    assert planted.any().all(), "every category is planted somewhere"


def test_the_simulator_reads_requirements_from_the_pack_it_is_given(tmp_path, pack):
    """Edit the pack (Medicaid also needs authorization for naltrexone; Medicare JW/JZ from
    2024; commercial filing limit 60 days): the simulator follows, and stays exact."""
    import shutil

    from denial_model.rules import load_pack

    folder = tmp_path / "rules"
    shutil.copytree(pack.folder, folder)
    nal = folder / "policies" / "naltrexone.yaml"
    nal.write_text(
        nal.read_text().replace(
            "applies_to: {drugs: [naltrexone], payer_types: [commercial, medicare_advantage]}",
            "applies_to: {drugs: [naltrexone], payer_types: [commercial, medicare_advantage, medicaid]}",
        )
    )
    common = folder / "common.yaml"
    text = common.read_text()
    edited = text.replace("service_from: 2023-07-01", "service_from: 2024-01-01").replace(
        "commercial: 90", "commercial: 60"
    )
    assert edited != text
    common.write_text(edited)
    edited_pack = load_pack(folder)
    history = simulate(SimConfig(lines=40_000, seed=12), pack=edited_pack)
    _planted_equals_flagged(history, edited_pack)
    lines = history[(history["hcpcs_code"] == "J2315") & (history["payer_type"] == "medicaid")]
    assert len(lines) and (lines["prior_auth_number"] != "").mean() > 0.8


def test_a_failed_simulation_leaves_no_file_behind(tmp_path, monkeypatch):
    from denial_model.simulate import writer

    real = writer.iter_chunks

    def failing(*args, **kwargs):
        it = real(*args, **kwargs)
        yield next(it)
        raise RuntimeError("disk gone")

    monkeypatch.setattr(writer, "iter_chunks", failing)
    cfg = SimConfig(lines=6_000, seed=1, block_patients=300, chunk_blocks=1)
    for name in ("h.parquet", "h.csv.gz"):
        with pytest.raises(RuntimeError, match="disk gone"):
            write_history(cfg, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_calibration_bands_match_published_figures(history):
    rate = history["denied"].mean()
    by_type = history.groupby("payer_type")["denied"].mean()
    assert 0.10 <= rate <= 0.20
    assert by_type.idxmin() == "medicare" and by_type["medicare"] <= 0.11
    assert 0.13 <= by_type["medicaid"] <= 0.19 and 0.13 <= by_type["medicare_advantage"] <= 0.19
    assert 0.11 <= by_type["commercial"] <= 0.17
    groups = {
        "CO-16": "info",
        "CO-197": "auth",
        "CO-50": "necessity",
        "CO-11": "necessity",
        "CO-4": "coding",
        "CO-181": "coding",
        "CO-151": "coding",
    }
    causes = history.loc[history["denied"], "carc_codes"].map(groups).fillna("other").value_counts()
    assert set(causes.drop("other").index[:4]) == {"info", "auth", "necessity", "coding"}


def test_outcome_columns_are_consistent(history):
    denied = history["denied"]
    assert (history.loc[denied, "paid_amount"] == 0).all()
    assert (history.loc[~denied, "paid_amount"] > 0).all()
    assert (history.loc[denied, "carc_codes"] != "").all() and (
        history.loc[~denied, "carc_codes"] == ""
    ).all()
    assert (history["adjudication_date"] > history["submission_date"]).all()
    assert history["p_true"].between(0, 1).all()
    # denied is drawn from p_true: the mean of p_true matches the denial rate
    assert abs(history["p_true"].mean() - denied.mean()) < 0.01


def test_policy_changes_show_in_time(history):
    """The payer that starts enforcing prior authorization denies more missing-PA lines after."""
    pa_missing = history["planted_categories"].str.contains("prior_auth_missing")
    payer = history["payer_id"] == "COMMERCIAL-2"
    after = history["service_date"] >= pd.Timestamp("2024-07-01")
    before_rate = history.loc[pa_missing & payer & ~after, "p_true"].mean()
    after_rate = history.loc[pa_missing & payer & after, "p_true"].mean()
    assert after_rate > before_rate + 0.5


def test_oracle_leaves_room_for_learning_over_rules_only():
    report = oracle_and_rules_report(simulate(SimConfig(lines=150_000, seed=7)))
    assert report["oracle"]["auroc"] >= report["rules_only"]["auroc"] + 0.05
    assert report["oracle"]["log_loss"] < report["rules_only"]["log_loss"]


def test_yaml_config_overrides_any_knob_and_refuses_unknown(tmp_path):
    good = tmp_path / "sim.yaml"
    good.write_text("months: 12\nbase_denial: {medicare: 0.5}\n")
    cfg = SimConfig.from_yaml(good, lines=1000)
    assert cfg.months == 12 and cfg.lines == 1000
    assert (
        cfg.base_denial["medicare"] == 0.5
        and cfg.base_denial["commercial"] == SimConfig().base_denial["commercial"]
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("monthz: 12\n")
    with pytest.raises(ValueError, match="monthz"):
        SimConfig.from_yaml(bad)


def test_cli_simulate_writes_history_and_prints_summary(tmp_path):
    out = tmp_path / "h.parquet"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--lines",
            "5000",
            "--seed",
            "2",
            "--months",
            "12",
            "--start",
            "2024-01-01",
            "--output",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert 4_000 < len(df) <= 5_000
    assert df["service_date"].min() >= pd.Timestamp("2024-01-01")
    assert df["service_date"].max() <= pd.Timestamp("2024-12-31")
    for words in ("line denial rate", "medicare", "missing information"):
        assert words in res.output
    assert np.isclose(
        df["denied"].mean(),
        float(res.output.split("line denial rate")[1].split("%")[0].strip(" │")) / 100,
        atol=0.001,
    )

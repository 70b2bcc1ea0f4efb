"""The command-line contract: names, outputs, exit codes, and clear errors."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_model.cli import app
from denial_model.rules import CATEGORIES
from denial_model.samples import sample_table

runner = CliRunner()


@pytest.fixture
def sample_csv(tmp_path, pack):
    path = tmp_path / "claims.csv"
    sample_table(pack).to_csv(path, index=False)
    return path


def test_check_writes_rows_with_rule_hits_and_prints_summary(tmp_path, sample_csv):
    out = tmp_path / "checked.parquet"
    res = runner.invoke(app, ["check", str(sample_csv), "--output", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert len(df) == len(pd.read_csv(sample_csv))
    assert "rule_hits" in df.columns
    assert (df.loc[df["claim_id"].str.startswith("CLEAN"), "rule_hits"] == "").all()
    for cat in ("timely_filing", "duplicate_line", "lines with findings"):
        assert cat in res.output


def test_check_puts_bad_rows_in_rejects_and_accounts_for_every_row(tmp_path, sample_csv):
    df = pd.read_csv(sample_csv, dtype=str, keep_default_na=False)
    df.loc[5, "units"] = "-2"
    df.loc[7, "ndc"] = "1234"
    df.to_csv(sample_csv, index=False)
    out, rej = tmp_path / "o.csv", tmp_path / "r.csv"
    res = runner.invoke(app, ["check", str(sample_csv), "--output", str(out), "--rejects", str(rej)])
    assert res.exit_code == 0, res.output
    rejects = pd.read_csv(rej)
    assert list(rejects["row"]) == [5, 7]
    assert list(rejects["column"]) == ["units", "ndc"]
    assert len(pd.read_csv(out)) + len(rejects) == len(df)


def test_check_missing_required_column_is_a_clear_error_without_traceback(tmp_path, sample_csv):
    pd.read_csv(sample_csv).drop(columns=["payer_type"]).to_csv(sample_csv, index=False)
    res = runner.invoke(app, ["check", str(sample_csv), "--output", str(tmp_path / "o.csv")])
    assert res.exit_code == 2
    assert "missing required column: payer_type" in res.output
    assert "Traceback" not in res.output


def test_rules_list_json_is_a_list_of_rule_objects(pack):
    res = runner.invoke(app, ["rules", "list", "--format", "json"])
    assert res.exit_code == 0
    rules = json.loads(res.output)
    assert [r["id"] for r in rules] == pack.ids
    assert {r["category"] for r in rules} == set(CATEGORIES)
    for r in rules:
        assert {"id", "category", "carc", "severity", "applies_to", "source"} <= set(r)


def test_rules_verify_prints_one_disagreement_per_line():
    res = runner.invoke(app, ["rules", "verify"])
    assert res.exit_code == 0
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("document_code")]
    assert sorted(ln.split("\t")[1] for ln in lines) == ["J2311", "J3000", "J3031", "J3246"]

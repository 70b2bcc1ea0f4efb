"""Every rule fires on a claim that breaks it and stays silent on the same claim made right."""

import pandas as pd
import pytest

from denial_model.rules import CATEGORIES, evaluate, load_pack
from denial_model.samples import DRUG_LINES, claim_for_rule, clean_claim, sample_table
from denial_model.scrub import check_frame
from denial_model.table import validate

PACK = load_pack()


def _hits(df, pack):
    v = validate(df)
    assert len(v.rejects) == 0, v.rejects.to_dict("records")
    return evaluate(v.lines, pack)


@pytest.mark.parametrize("rule_id", PACK.ids)
def test_rule_passes_clean_claim_and_fails_broken_claim(pack, rule_id):
    rule = pack.rule(rule_id)
    ok, broken = claim_for_rule(rule)
    j = pack.ids.index(rule_id)
    assert not _hits(ok, pack).hits[:, j].any()
    assert _hits(broken, pack).hits[:, j].any()


@pytest.mark.parametrize("drug", list(DRUG_LINES))
@pytest.mark.parametrize("payer_type", ["commercial", "medicaid", "medicare_advantage"])
def test_clean_claim_of_each_drug_policy_has_no_findings(pack, drug, payer_type):
    res = _hits(clean_claim(drug, payer_type), pack)
    assert not res.hits.any(), list(res.rule_hits)


@pytest.mark.parametrize(
    ("drug", "change", "expected"),
    [
        ("esketamine", {"hcpcs_code": "J3031"}, "esketamine.document_code"),
        ("ketamine", {"hcpcs_code": "J3000"}, "ketamine.document_code"),
        ("naltrexone", {"hcpcs_code": "J2311"}, "naltrexone.document_code"),
        ("anakinra", {"hcpcs_code": "J3246"}, "anakinra.document_code"),
        ("ketamine", {"drug_description": ""}, "unclassified.drug_description"),
    ],
)
def test_broken_claim_of_each_drug_policy_is_flagged(pack, drug, change, expected):
    claim = clean_claim(drug)
    for k, v in change.items():
        claim.loc[0, k] = v
    res = _hits(claim, pack)
    assert expected in res.rule_hits[0].split(";")


def test_j2311_after_its_termination_is_also_an_invalid_code(pack):
    claim = clean_claim("naltrexone", service_date=pd.Timestamp("2025-08-01").date())
    claim.loc[0, "hcpcs_code"] = "J2311"
    hits = _hits(claim, pack).rule_hits[0].split(";")
    assert {"naltrexone.document_code", "common.code_valid_on_date"} <= set(hits)


def test_drug_is_known_from_ndc_then_description_then_code(pack):
    claim = clean_claim("esketamine")
    claim.loc[0, ["hcpcs_code", "ndc", "drug_description"]] = ["J3031", "", "Spravato 56 mg"]
    res = _hits(claim, pack)
    assert res.drug[0] == "esketamine"
    claim.loc[0, ["drug_description"]] = [""]
    assert _hits(claim, pack).drug[0] == ""  # J3031 alone is fremanezumab: no esketamine policy


def test_sample_file_flags_exactly_the_broken_claims_with_their_categories(pack):
    sample = sample_table(pack)
    res = check_frame(sample, pack)
    cats = res.result.category_hits()
    cats["claim_id"] = res.checked["claim_id"].str.replace(r"-(first|earlier)$", "", regex=True)
    by_claim = cats.groupby("claim_id").any()
    for claim_id, row in by_claim.iterrows():
        flagged = {c for c in CATEGORIES if row[c]}
        if claim_id.startswith("CLEAN-"):
            assert flagged == set(), claim_id
        else:
            assert flagged == {claim_id.removeprefix("BROKEN-")}, (claim_id, flagged)
    assert {f"BROKEN-{c}" for c in CATEGORIES} <= set(by_claim.index)


def test_rule_hits_and_carcs_strings_follow_the_hit_matrix(pack):
    res = check_frame(sample_table(pack), pack)
    for hits, row in zip(res.result.rule_hits, res.result.hits, strict=True):
        expected = [pack.ids[j] for j in row.nonzero()[0]]
        assert (hits.split(";") if hits else []) == expected
    assert "CO-29" in ";".join(res.result.carcs)

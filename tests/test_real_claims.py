"""The rule pack on claims it did not write: a hand-written file of ordinary clean claims (every
drug and payer type, Medicare G-codes, saline carriers, two unclassified drugs on one day,
clinic settings, 2026 dates) draws no finding, and each error coders really make, applied to
one of those claims, is flagged with its category and CARC.

The expected units and codes were read by hand off the shipped CMS files (crosswalk rows for
65757030001, 00264580210 and 55513000204; the HCPCS descriptors of G2082/G2083, J0881, J3240),
not computed by the code under test.
"""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_model.cli import app
from denial_model.reference import descriptor_band_mg, descriptor_unit_mg
from denial_model.scrub import check_frame

CLEAN = Path(__file__).parent / "data" / "real_claims" / "clean.csv"


def _clean() -> pd.DataFrame:
    return pd.read_csv(CLEAN, dtype=str, keep_default_na=False)


def test_check_finds_nothing_on_realistic_clean_claims(tmp_path, pack):
    out = tmp_path / "checked.csv"
    res = CliRunner().invoke(app, ["check", str(CLEAN), "-o", str(out)])
    assert res.exit_code == 0, res.output
    checked = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(checked) == len(_clean())
    flagged = checked[checked["rule_hits"] != ""]
    assert flagged.empty, flagged[["claim_id", "line_number", "hcpcs_code", "rule_hits"]].to_dict("records")


def test_the_clean_file_covers_every_drug_and_payer_type():
    df = _clean()
    assert set(df["payer_type"]) == {"medicare", "medicare_advantage", "medicaid", "commercial"}
    assert {"G2082", "G2083", "S0013", "J2315", "J3490", "J3590", "J7050", "J0162"} <= set(df["hcpcs_code"])
    assert {"50", "53", "72", "24"} <= set(df["place_of_service"])
    noc = df[(df["hcpcs_code"] == "J3490")].groupby(["patient_id", "service_date"]).size()
    assert noc.max() == 2  # two unclassified drugs on one day


def _line(df: pd.DataFrame, claim: str, line: int) -> int:
    return int(df.index[(df["claim_id"] == claim) & (df["line_number"] == str(line))][0])


# (what a coder got wrong, claim, line, changes, rule expected, category, CARC)
ERRORS = [
    (
        "Vivitrol 380 mg billed as 38 units, no dose",
        "N07",
        1,
        {"units": "38"},
        "common.units_match_ndc",
        "CO-16",
    ),
    (
        "Spravato 84 mg kit billed per device",
        "E03",
        1,
        {"units": "3", "dose_mg": ""},
        "common.units_match_ndc",
        "CO-16",
    ),
    ("darbepoetin 25 mcg billed as 1 unit", "O15", 1, {"units": "1"}, "common.units_match_dose", "CO-16"),
    ("E/M without 25 beside 96372", "N06", 3, {"modifiers": ""}, "common.em_needs_modifier_25", "CO-97"),
    (
        "G2082 for an 84 mg session",
        "E01",
        1,
        {"hcpcs_code": "G2082"},
        "common.dose_matches_code_band",
        "CO-16",
    ),
    ("JW on a multiple-dose ketamine vial", "K10", 1, {"modifiers": "JW"}, "common.jw_multi_dose", "CO-4"),
    (
        "drug line at an inpatient stay",
        "A13",
        1,
        {"place_of_service": "21"},
        "common.inpatient_drug_line",
        "CO-58",
    ),
    ("ketamine under C9399 at an ASC", "K11", 1, {"hcpcs_code": "C9399"}, "ketamine.c9399", "CO-16"),
    (
        "Medicare claim a year and two days late",
        "N06",
        1,
        {"service_date": "2024-03-01", "submission_date": "2025-03-03"},
        "common.timely_filing",
        "CO-29",
    ),
    (
        "category header as diagnosis",
        "N09",
        1,
        {"diagnosis_codes": "F10"},
        "common.diagnosis_code_valid",
        "CO-146",
    ),
    (
        "anakinra billed to Medicare",
        "A13",
        1,
        {"payer_type": "medicare", "payer_id": "MCR-J15"},
        "anakinra.self_administered_medicare",
        "PR-96",
    ),
    (
        "oral drug under J3490",
        "K10",
        3,
        {"drug_description": "ondansetron 8 mg oral tablet"},
        "unclassified.oral_drug",
        "CO-16",
    ),
    (
        "compounded drug under J3490",
        "K10",
        3,
        {"drug_description": "compounded ketamine/lidocaine cream"},
        "unclassified.compounded",
        "CO-16",
    ),
    ("saline NDC under a drug code", "O16", 1, {"hcpcs_code": "J0881"}, "common.ndc_matches_code", "CO-16"),
    (
        "the same ketamine line twice",
        "K10",
        3,
        {"ndc": "67457010810", "drug_description": "ketamine HCl 100 mg/mL IV", "dose_mg": "50"},
        "common.duplicate_line",
        "CO-18",
    ),
]


@pytest.mark.parametrize(
    ("what", "claim", "line", "changes", "rule_id", "carc"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_a_real_error_is_flagged_with_its_category_and_carc(pack, what, claim, line, changes, rule_id, carc):
    df = _clean()
    i = _line(df, claim, line)
    claim_level = {"service_date", "submission_date", "payer_type", "payer_id"}
    for column, value in changes.items():
        df.loc[(df["claim_id"] == claim) if column in claim_level else [i], column] = value
    res = check_frame(df, pack)
    assert len(res.rejects) == 0, res.rejects.to_dict("records")
    hits = res.checked.loc[i, "rule_hits"].split(";")
    assert rule_id in hits, (what, hits)
    assert carc in res.checked.loc[i, "rule_carcs"].split(";"), (what, res.checked.loc[i, "rule_carcs"])
    expected_category = pack.rule(rule_id).category
    assert res.result.category_hits().loc[i, expected_category]


def test_a_medicare_claim_filed_on_the_anniversary_across_29_february_is_on_time(pack):
    df = _clean()
    i = _line(df, "E01", 1)
    assert (df.loc[i, "service_date"], df.loc[i, "submission_date"]) == (
        "2023-03-01",
        "2024-03-01",
    )  # 366 days
    assert "common.timely_filing" not in check_frame(df, pack).checked.loc[i, "rule_hits"]


def test_a_payers_own_filing_limit_overrides_its_payer_type(tmp_path, pack):
    import shutil

    from denial_model.rules import load_pack

    folder = tmp_path / "rules"
    shutil.copytree(pack.folder, folder)
    common = folder / "common.yaml"
    common.write_text(common.read_text().replace("payers: {}", 'payers: {AETNA-01: "180 days"}'))
    edited = load_pack(folder)
    df = _clean()
    late = df["claim_id"] == "N07"  # commercial: 90 days by default
    df.loc[late, "submission_date"] = "2026-06-01"  # 140 days after service
    by_default = check_frame(df, pack).checked.loc[late, "rule_hits"]
    by_payer = check_frame(df, edited).checked.loc[late, "rule_hits"]
    assert by_default.str.contains("common.timely_filing").all()
    assert not by_payer.str.contains("common.timely_filing").any()


def test_naltrexone_step_therapy_is_satisfied_by_either_record(pack):
    df = _clean()
    i = _line(df, "N07", 1)
    full = df.loc[i, "documentation"]
    for keep in ("prior_therapy_failure", "counseling_compliance"):
        drop = {"prior_therapy_failure", "counseling_compliance"} - {keep}
        df.loc[i, "documentation"] = ";".join(t for t in full.split(";") if t not in drop)
        assert "naltrexone.step_therapy" not in check_frame(df, pack).checked.loc[i, "rule_hits"]
    df.loc[i, "documentation"] = "medical_necessity;dose_and_route;administration_notes;lab_results"
    assert "naltrexone.step_therapy" in check_frame(df, pack).checked.loc[i, "rule_hits"]


@pytest.mark.parametrize(
    ("descriptor", "unit_mg"),
    [
        ("Injection, thyrotropin alpha, 0.9 mg, provided in 1.1 mg vial", 0.9),
        ("Injection, darbepoetin alfa, 1 microgram (non-esrd use)", 0.001),
        ("Mometasone furoate sinus implant, 10 micrograms (sinuva)", 0.01),
        ("Injection, aztreonam/avibactam, 7.5 mg/2.5 mg (10 mg)", 10.0),
        ("Injection, streptomycin, up to 1 gm", 1000.0),
        ("Injection, naltrexone, depot form, 1 mg", 1.0),
    ],
)
def test_a_codes_billing_unit_is_read_off_its_descriptor(descriptor, unit_mg):
    assert descriptor_unit_mg(descriptor) == pytest.approx(unit_mg)


def test_a_combination_without_a_stated_total_has_no_mg_unit():
    assert descriptor_unit_mg("Injection, ceftolozane 50 mg and tazobactam 25 mg") != descriptor_unit_mg(
        "Injection, ceftolozane 50 mg and tazobactam 25 mg"
    )  # NaN


def test_session_codes_have_a_dose_band_not_a_unit(ref):
    for code, band in (("G2082", (0.0, 56.0)), ("G2083", (56.0, float("inf")))):
        descriptor = ref.hcpcs.loc[code, "long_description"]
        assert descriptor_band_mg(descriptor) == band
        assert descriptor_unit_mg(descriptor) != descriptor_unit_mg(descriptor)  # NaN


def test_rules_verify_reports_codes_only_a_newer_file_prices_and_the_right_similar_code(ref, pack):
    from denial_model.rules.verify import verify

    found = verify(pack, ref)
    newer = {d.code for d in found if d.kind == "newer_code"}
    assert {"J0162", "J1837", "J2516", "J2596", "J3376", "J3379", "J7528", "J9256", "J9326"} == newer
    j0570 = next(d for d in found if d.kind == "similar_code" and d.code == "J0570")
    assert "J0592" in j0570.detail  # buprenorphine hydrochloride, not the implant
    assert not any(d.kind == "similar_code" and d.code in ("J3490", "J3590", "J9999", "C9399") for d in found)


def test_esketamine_billed_beside_the_session_code_that_includes_it_is_flagged(pack):
    df = _clean()
    df.loc[_line(df, "E03", 2), "hcpcs_code"] = "G2083"  # the session code on the same day
    res = check_frame(df, pack)
    i = _line(df, "E03", 1)
    assert "esketamine.session_code_bundled" in res.checked.loc[i, "rule_hits"].split(";")
    assert "CO-97" in res.checked.loc[i, "rule_carcs"].split(";")

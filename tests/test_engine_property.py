"""The vectorized engine agrees with a plain per-row evaluation on random claim tables."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from denial_model.rules import evaluate
from denial_model.table import DOCUMENTATION_TOKENS, validate
from tests.reference_evaluator import reference_hits

CODES = [
    "S0013",
    "J3031",
    "J3490",
    "J2315",
    "J2311",
    "J3590",
    "J3246",
    "J3000",
    "J1630",
    "J9998",
    "C9399",
    "J3262",
    "96372",
    "96365",
    "G2083",
    "G2082",
    "99214",
    "J7030",
    "J7050",
    "J0162",
]
NDCS = [
    "",
    "",
    "50458002803",
    "50458002800",
    "67457010810",
    "65757030001",
    "66658023407",
    "00143950125",
    "00264580210",
]
DESCS = [
    "",
    "ketamine 50 mg",
    "esketamine nasal",
    "Kineret 100 mg",
    "investigational drug",
    "vivitrol",
    "ondansetron oral tablet",
]
DX = ["F33.2", "F11.20", "M05.79", "M06.1", "I10", "F33.Z", "S52.501A", "G89.4", "F10.20"]
MODS = ["JW", "JZ", "25", "59", "GN", "RT", "11", "76"]
# around the JZ start (2023-07-01) and the J2311 end (2025-06-30), with gaps of 1-3 and 21-22
# days so the frequency rules (2 and 21 days) are exercised on both sides of their limits
# 2024-02-29 and 2023-03-01 put a leap day inside a one-year filing limit; 2026 dates reach
# codes that only the newer (2026 Q1) crosswalk prices
DATES = [
    (pd.Timestamp(base) + pd.Timedelta(days=d)).strftime("%Y-%m-%d")
    for base in ("2023-06-29", "2025-06-29")
    for d in (0, 2, 21)
] + ["2024-02-29", "2023-03-01", "2026-01-05"]

line = st.fixed_dictionaries(
    {
        "claim_id": st.sampled_from(["A", "B", "C", "D"]),
        "line_number": st.integers(1, 3),
        "patient_id": st.sampled_from(["P1", "P1", "P2"]),
        "provider_npi": st.just("1234567893"),
        "payer_id": st.sampled_from(["X", "Y"]),
        "payer_type": st.sampled_from(["medicare", "medicare_advantage", "medicaid", "commercial"]),
        "service_date": st.sampled_from(DATES),
        "lag": st.sampled_from([0, 5, 100, 365, 366, 400]),
        "place_of_service": st.sampled_from(["11", "12", "19", "22", "21", "24"]),
        "hcpcs_code": st.sampled_from(CODES),
        "modifiers": st.lists(st.sampled_from(MODS), max_size=3, unique=True).map(";".join),
        "units": st.sampled_from([1.0, 2.0, 84.0, 380.0, 400.0]),
        "billed_amount": st.just(100.0),
        "dose_mg": st.sampled_from([np.nan, 1.0, 50.0, 84.0, 100.0, 380.0, 150.0]),
        "ndc": st.sampled_from(NDCS),
        "ndc_quantity": st.sampled_from([np.nan, 0.5, 1.0, 3.0]),
        "ndc_unit": st.sampled_from(["", "UN", "ME", "ML"]),
        "drug_description": st.sampled_from(DESCS),
        "diagnosis_codes": st.lists(st.sampled_from(DX), min_size=1, max_size=2, unique=True).map(";".join),
        "prior_auth_number": st.sampled_from(["", "PA1"]),
        "documentation": st.one_of(
            st.lists(st.sampled_from(DOCUMENTATION_TOKENS), max_size=8, unique=True).map(";".join),
            st.just("unknown"),  # an ingested 837 line: documentation not known
        ),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, min_size=1, max_size=14))
def test_vectorized_engine_matches_per_row_reference(pack, ref, rows):
    df = pd.DataFrame(rows)
    df["submission_date"] = (
        pd.to_datetime(df["service_date"]) + pd.to_timedelta(df.pop("lag"), unit="D")
    ).dt.strftime("%Y-%m-%d")
    v = validate(df)
    assert len(v.rejects) == 0
    fast = evaluate(v.lines, pack, ref).hits
    slow = reference_hits(v.lines, pack, ref)
    diff = np.argwhere(fast != slow)
    assert not len(diff), [(int(i), pack.rules[j].id, bool(fast[i, j])) for i, j in diff[:5]]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, min_size=2, max_size=14), st.sampled_from(["B", "C", "D"]))
def test_earlier_lines_give_the_cross_line_rules_what_the_whole_table_gives(pack, ref, rows, split):
    """Scoring a chunk with the lines before it as `earlier` equals scoring the whole table
    (claims are not split, as the streaming scorer guarantees)."""
    df = pd.DataFrame(rows).sort_values("claim_id", kind="stable").reset_index(drop=True)
    df["submission_date"] = (
        pd.to_datetime(df["service_date"]) + pd.to_timedelta(df.pop("lag"), unit="D")
    ).dt.strftime("%Y-%m-%d")
    lines = validate(df).lines
    later = (lines["claim_id"].astype(str) >= split).to_numpy()
    whole = evaluate(lines, pack, ref).hits[later]
    parts = evaluate(lines[later].reset_index(drop=True), pack, ref, earlier=lines[~later]).hits
    diff = np.argwhere(whole != parts)
    assert not len(diff), [(int(i), pack.rules[j].id, bool(whole[i, j])) for i, j in diff[:5]]

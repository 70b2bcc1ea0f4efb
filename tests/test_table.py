"""Validation of the claim-line table: rejects name row, column and problem; nothing is lost."""

import pandas as pd
import pytest

from denial_model.errors import ClaimTableError
from denial_model.files import read_table, write_table
from denial_model.samples import clean_claim
from denial_model.table import REQUIRED, validate


def _raw(n_claims: int = 3) -> pd.DataFrame:
    parts = [clean_claim("naltrexone", claim_id=f"C{i}", patient_id=f"P{i}") for i in range(n_claims)]
    return pd.concat(parts, ignore_index=True).astype(str).replace("nan", "")


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("service_date", "2025-13-45", "not an ISO date"),
        ("submission_date", "yesterday", "not an ISO date"),
        ("units", "-3", "must be a number > 0"),
        ("units", "abc", "must be a number > 0"),
        ("billed_amount", "-1", ">= 0"),
        ("ndc", "12345678", "must be 11 digits"),
        ("payer_type", "tricare", "must be one of medicare"),
        ("provider_npi", "12345", "10 digits"),
        ("provider_npi", "\uff11" * 10, "10 digits"),  # full-width digits are not an NPI's
        ("hcpcs_code", "J\u0663\u0663\u0663\u0663", "5-character"),  # nor Arabic-Indic ones a code's
        ("hcpcs_code", "J31", "5-character"),
        ("modifiers", "JWX", "2-character modifiers"),
        ("diagnosis_codes", "", "is empty"),
        ("diagnosis_codes", "33.2", "not ICD-10-CM"),
        ("documentation", "medical_necessity;selfie", "'selfie'"),
        ("line_number", "0", "integer >= 1"),
        ("ndc_unit", "KG", "must be one of ME"),
        ("claim_id", "", "is empty"),
    ],
)
def test_bad_value_goes_to_rejects_naming_row_column_and_problem(column, value, words):
    raw = _raw()
    raw.loc[3, column] = value
    v = validate(raw)
    assert len(v.lines) + len(v.rejects) == len(raw)
    assert list(v.rejects["row"]) == [3]
    rej = v.rejects.iloc[0]
    assert column in rej["column"].split(",")
    assert words in rej["reason"]


def test_submission_before_service_is_rejected():
    raw = _raw()
    raw.loc[0, "submission_date"] = "2020-01-01"
    v = validate(raw)
    assert v.rejects.iloc[0]["reason"].startswith("submission_date is before service_date")


def test_several_problems_on_one_row_make_one_rejects_row():
    raw = _raw()
    raw.loc[2, ["units", "ndc"]] = ["0", "123"]
    v = validate(raw)
    assert len(v.rejects) == 1
    assert set(v.rejects.iloc[0]["column"].split(",")) == {"units", "ndc"}


@pytest.mark.parametrize("column", REQUIRED)
def test_missing_required_column_is_one_error_naming_it(column):
    with pytest.raises(ClaimTableError, match=f"missing required column: {column}"):
        validate(_raw().drop(columns=[column]))


def test_optional_columns_may_be_absent_and_extra_columns_pass_through():
    raw = _raw().drop(columns=["ndc", "documentation", "dose_mg"]).assign(my_note="keep me")
    v = validate(raw)
    assert len(v.rejects) == 0
    assert (v.lines["my_note"] == "keep me").all()


def test_normalization_of_codes_lists_and_dashed_ndc():
    raw = _raw(1)
    raw.loc[0, ["ndc", "modifiers", "diagnosis_codes", "payer_type", "hcpcs_code"]] = [
        "65757-0300-01",
        "jz, 59",
        "f1120;\u00a0F10.20",  # a no-break space (spreadsheets) separates like any space
        "Commercial",
        "j2315",
    ]
    v = validate(raw)
    row = v.lines.iloc[0]
    assert (row["ndc"], row["modifiers"], row["diagnosis_codes"]) == (
        "65757030001",
        "JZ;59",
        "F11.20;F10.20",
    )
    assert (row["payer_type"], row["hcpcs_code"]) == ("commercial", "J2315")


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_csv_and_parquet_round_trip_validate_the_same(tmp_path, suffix):
    raw = clean_claim("esketamine")
    path = tmp_path / f"claims{suffix}"
    write_table(raw, path)
    v = validate(read_table(path))
    assert len(v.rejects) == 0 and len(v.lines) == len(raw)
    assert v.lines["service_date"].dtype.kind == "M"


def test_unknown_file_format_is_a_clear_error(tmp_path):
    p = tmp_path / "claims.xlsx"
    p.write_text("x")
    with pytest.raises(ClaimTableError, match="unknown format"):
        read_table(p)


def test_validated_text_is_categorical_and_equal_to_normalized_strings():
    raw = _raw()
    raw.loc[0, "hcpcs_code"] = " j2315 "
    lines = validate(raw).lines
    assert isinstance(lines["hcpcs_code"].dtype, pd.CategoricalDtype)
    assert lines["hcpcs_code"].iloc[0] == "J2315"
    assert lines["hcpcs_code"].astype(str).tolist() == [c.strip().upper() for c in raw["hcpcs_code"]]


@pytest.mark.parametrize("fast_path", [True, False])
def test_categorical_from_factorized_codes_equals_pandas_from_codes(fast_path, monkeypatch):
    import numpy as np

    from denial_model import table
    from denial_model.table import _categorical

    def missing(*args):
        raise AttributeError("no internal fast path in this pandas")

    if not fast_path:
        monkeypatch.setattr(table, "_fast_categorical", missing)
    codes = np.array([2, 0, -1, 1, 2])
    cats = np.array(["b", "a", "c"], dtype=object)
    ours = _categorical(codes, cats)
    ref = pd.Categorical.from_codes(codes, categories=pd.Index(cats, dtype=object))
    assert ours.equals(ref) and list(ours.categories) == ["b", "a", "c"]


def test_concat_and_compact_keep_values_and_drop_unused_categories():
    from denial_model.table import compact_lines, concat_lines

    a = validate(_raw(2)).lines
    b = validate(_raw(3).assign(claim_id=lambda d: "X" + d["claim_id"])).lines
    both = concat_lines([a, b])
    assert both["claim_id"].astype(str).tolist() == [*a["claim_id"].astype(str), *b["claim_id"].astype(str)]
    assert both["units"].tolist() == [*a["units"], *b["units"]]
    small = compact_lines(both.iloc[:1])
    assert list(small["claim_id"].cat.categories) == [a["claim_id"].iloc[0]]
    assert small["claim_id"].iloc[0] == a["claim_id"].iloc[0]


@pytest.mark.parametrize(
    "values",
    [
        [True, False, True],
        ["True", "False", "True"],
        ["true", "false", "TRUE"],
        ["1", "0", "1"],
        [1, 0, 1],
        [1.0, 0.0, 1.0],
        ["yes", "no", "Y"],
    ],
)
def test_denied_labels_read_every_way_a_file_stores_yes_and_no(values):
    from denial_model.table import denied_labels

    assert denied_labels(pd.DataFrame({"denied": values})).tolist() == [True, False, True]


def test_a_label_that_is_not_yes_or_no_names_its_row_and_value():
    from denial_model.table import denied_labels

    with pytest.raises(ClaimTableError, match=r"row 1: column denied: 'maybe'"):
        denied_labels(pd.DataFrame({"denied": ["true", "maybe"]}))


def test_header_names_differing_in_case_or_spaces_are_the_spec_columns(tmp_path):
    raw = _raw().rename(columns={"claim_id": " Claim_ID ", "units": "UNITS"})
    v = validate(raw)
    assert len(v.rejects) == 0 and {"claim_id", "units"} <= set(v.lines.columns)
    write_table(raw, tmp_path / "c.csv")
    assert {"claim_id", "units"} <= set(read_table(tmp_path / "c.csv").columns)


def test_a_column_named_twice_is_refused_naming_it(tmp_path):
    path = tmp_path / "dup.csv"
    write_table(_raw(), path)
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0] + ",Units"] + [line + ",3" for line in text[1:]]) + "\n")
    with pytest.raises(ClaimTableError, match=r"dup\.csv: column 'units' appears twice"):
        read_table(path)


@pytest.mark.parametrize(
    "value",
    [
        "2025-03-04T00:00:00",
        "2025-03-04 00:00:00",
        "2025-03-04T00:00:00.000",
        "2025-03-04T00:00Z",
        "2025-03-04T00:00:00-05:00",
    ],
)
def test_date_times_at_midnight_are_dates(value):
    raw = _raw()
    raw["service_date"] = value
    v = validate(raw)
    assert len(v.rejects) == 0
    assert (v.lines["service_date"] == pd.Timestamp("2025-03-04")).all()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2025-03-04T13:45:00", "has a time of day"),
        ("9999-12-31", "years 1900-2262"),
        ("0001-01-01", "years 1900-2262"),
        ("2025-02-30", "is not an ISO date"),
        ("03/04/2025", "is not an ISO date"),
    ],
)
def test_dates_with_a_time_or_out_of_range_are_row_rejects_with_the_reason(value, reason):
    raw = _raw()
    raw.loc[0, "service_date"] = value
    v = validate(raw)
    assert list(v.rejects["row"]) == [0] and v.rejects.loc[0, "column"] == "service_date"
    assert reason in v.rejects.loc[0, "reason"] and len(v.lines) == len(raw) - 1


def test_timestamps_far_from_today_and_zone_aware_ones_are_row_rejects_not_crashes():
    raw = _raw()
    far = pd.Series(pd.array([pd.Timestamp("2025-03-04")] * len(raw)), dtype="datetime64[s]")
    far.iloc[0] = pd.Timestamp("1700-01-01").as_unit("s")
    raw["service_date"] = far.to_numpy()
    raw["submission_date"] = pd.to_datetime(["2025-03-10"] * len(raw)).tz_localize("America/New_York")
    v = validate(raw)
    assert list(v.rejects["column"]) == ["service_date"] + ["submission_date"] * (len(raw) - 1) or len(
        v.rejects
    )
    assert 0 in set(v.rejects["row"])
    assert v.accounted


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e308", "NaN"])
def test_non_finite_and_absurd_numbers_are_row_rejects(value):
    raw = _raw()
    raw["units"] = raw["units"].astype(object)
    raw.loc[0, "units"] = value
    v = validate(raw)
    assert list(v.rejects["row"]) == [0] and v.rejects.loc[0, "column"] == "units"


def test_a_huge_bad_value_is_quoted_short_in_the_reason():
    raw = _raw()
    raw.loc[0, "modifiers"] = ";".join(["ZZ"] * 5000)
    reason = validate(raw).rejects.loc[0, "reason"]
    assert len(reason) < 300 and "characters)" in reason


@pytest.mark.parametrize("form", ["frame", "json", "text", "arrow"])
def test_a_claim_frame_reads_the_validated_arrays_as_it_would_read_the_columns(form):
    """`Validated.claim_frame` reads the arrays the lines were built from instead of the
    frame's columns: every column's values and factor are the same either way."""
    import json

    import numpy as np
    import pyarrow as pa

    from denial_model.simulate import SimConfig, simulate
    from denial_model.table import INPUT_COLUMNS, ClaimFrame, frame_from_arrow

    base = simulate(SimConfig(lines=300, seed=4))[list(INPUT_COLUMNS)]
    df = {
        "frame": lambda: base,
        "json": lambda: pd.DataFrame(json.loads(base.to_json(orient="records", date_format="iso"))),
        "text": lambda: base.astype(str),
        "arrow": lambda: frame_from_arrow(pa.Table.from_pandas(base, preserve_index=False)),
    }[form]()
    v = validate(df, keep_extra=False)
    assert v.columns is not None
    read, given = ClaimFrame(v.lines), v.claim_frame()
    for col in v.lines.columns:
        for dtype in (None, float) if v.lines[col].dtype.kind in "fi" else (None,):
            a, b = read.values(col, dtype), given.values(col, dtype)
            assert a.dtype == b.dtype, col
            np.testing.assert_array_equal(a, b)
        (ca, ua), (cb, ub) = read.factor(col), given.factor(col)
        np.testing.assert_array_equal(ca, cb)
        assert ua.dtype == ub.dtype and pd.Series(ua).equals(pd.Series(ub)), col
    rejected = validate(pd.concat([df, df.head(1).assign(units="x")], ignore_index=True))
    assert rejected.columns is None  # a row rejected: the frame's own columns are read


def test_json_numbers_in_an_object_column_validate_as_the_same_numbers_as_a_float_column():
    """A service request's lines arrive as an object table: a column of numbers and nulls is
    read as floats at once, and gives what the float column gives; an integer too large for
    a float, or a boolean, is a row reject naming the column, never an error."""
    parts = [clean_claim("naltrexone", claim_id=f"C{i}", patient_id=f"P{i}") for i in range(3)]
    lines = pd.concat(parts, ignore_index=True)
    as_sent = lines.astype(object).where(lines.notna(), None)
    want, got = validate(lines), validate(as_sent)
    for c in ("units", "billed_amount", "dose_mg", "ndc_quantity", "line_number"):
        pd.testing.assert_series_equal(got.lines[c], want.lines[c])
    bad = as_sent.copy()
    bad.loc[1, "units"] = 10**400
    bad.loc[2, "billed_amount"] = True
    v = validate(bad)
    assert len(v.lines) + len(v.rejects) == len(bad)
    assert v.rejects.set_index("row")["column"].to_dict() == {1: "units", 2: "billed_amount"}

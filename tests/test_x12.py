"""X12 837P / 835 readers, read against independent references: pyx12's own X12 reader
splits the shipped files into the same segments; rows expected from the shipped files are
written out here by hand from reading their segments; a hand-written 837/835 pair pins the
join and the label definition; malformed files give one error naming file and segment."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_model.cli import app
from denial_model.errors import X12Error
from denial_model.table import validate
from denial_model.x12 import ingest
from denial_model.x12.claims import read_837
from denial_model.x12.remits import read_835
from denial_model.x12.segments import read_segments

SAMPLES = Path(__file__).parents[1] / "data" / "x12"


@pytest.mark.parametrize("path", sorted(SAMPLES.iterdir()), ids=lambda p: p.name)
def test_every_shipped_file_splits_into_the_segments_pyx12_reads(path):
    from pyx12.x12file import X12Reader

    theirs = [seg.format() for seg in X12Reader(str(path))]
    frame = read_segments(path).frame
    rest = frame["rest"].astype(object)
    ours = (frame["id"].astype(object) + np.where(rest != "", "*" + rest, "") + "~").tolist()
    inner = [s for s in theirs if s.split("*")[0] not in ("ISA", "GS", "ST", "SE", "GE", "IEA")]
    assert ours == inner
    reader = read_837 if path.suffix == ".837" else read_835
    assert len(reader([path])) > 0


def test_837_rows_are_the_segments_read_by_hand():
    """demo.drug.example10.3.837: one claim (CLM*CLMNO12345, POS 12 from CLM05, ICD-9 465.9
    from HI*BK:4659), six lines over 2004-02-01..07 (RD8: the first day), NDCs from LIN*N4,
    unlisted J3490 lines with their SV101-7 descriptions."""
    df = read_837([SAMPLES / "demo.drug.example10.3.837"])
    expected = pd.DataFrame(
        [
            ("1", "S9500", "7.00", "1400.00", "", "", "", ""),
            ("2", "J0696", "56.00", "682.50", "00004196501", "7.00", "UN", ""),
            ("3", "J7051", "28.00", "15.12", "63323024910", "14.00", "UN", ""),
            ("4", "J3490", "7.00", "67.69", "00338004938", "7.00", "UN", "Sod Chl 0.9%see NDC#"),
            ("5", "J3490", "14.00", "57.12", "08290033010", "14.00", "UN", "Sod Chl 0.9% see NDC#"),
            ("6", "J3490", "7.00", "10.50", "08290038005", "7.00", "UN", "Hep Lock see NDC#"),
        ],
        columns=[
            "line_number",
            "hcpcs_code",
            "units",
            "billed_amount",
            "ndc",
            "ndc_quantity",
            "ndc_unit",
            "drug_description",
        ],
    )
    pd.testing.assert_frame_equal(df[expected.columns], expected, check_dtype=False)
    first = df.iloc[0]
    assert first["claim_id"] == "CLMNO12345" and first["patient_id"] == "MBRID01234"
    assert (first["provider_npi"], first["payer_id"], first["payer_type"]) == (
        "1234567893",
        "PLANID12345",
        "commercial",
    )
    assert (first["service_date"], first["submission_date"], first["place_of_service"]) == (
        "2004-02-01",
        "2004-03-01",
        "12",
    )
    assert set(df["diagnosis_codes"]) == {"465.9"} and set(df["documentation"]) == {"unknown"}
    assert df["source"].tolist()[0] == "demo.drug.example10.3.837#23"  # the LX segment


def test_a_dependent_gets_a_patient_id_without_their_name():
    df = read_837([SAMPLES / "demo.example1.837"])
    assert df["patient_id"].str.startswith("JS00111223333/").all()
    assert not df["patient_id"].str.contains("SMITH|TED|1973", regex=True).any()
    assert df["diagnosis_codes"].tolist() == [
        "034.0",
        "034.0",
        "V73.89",
        "V73.89",
    ]  # SV107 pointers 1, 1, 2, 2


def test_835_rows_are_the_segments_read_by_hand():
    """secondary-payment.835: a claim paid without service lines (its CAS OA-23 and CLP
    amounts), then a claim with two SVC lines whose composites use '>' although the ISA
    declares ':' (read, and noted), the second with three adjustments in two CAS segments."""
    notes: list[str] = []
    df = read_835([SAMPLES / "secondary-payment.835"], notes)
    got = df[
        [
            "claim_id",
            "claim_status",
            "hcpcs_code",
            "modifiers",
            "billed_amount",
            "paid_amount",
            "service_date",
            "adjustments",
            "adjudication_date",
            "claim_level",
        ]
    ]
    expected = pd.DataFrame(
        [
            (
                "L0004828311",
                "2",
                "",
                "",
                "10323.64",
                "912.00",
                "2005-03-03",
                "OA-23:9411.64",
                "2005-04-12",
                True,
            ),
            (
                "0001000053",
                "2",
                "12345",
                "26",
                "166.50",
                "30.00",
                "2005-01-06",
                "OA-23:136.50",
                "2005-04-12",
                False,
            ),
            (
                "0001000053",
                "2",
                "66543",
                "26",
                "585.00",
                "280.00",
                "2005-01-06",
                "PR-1:150.00;PR-2:70.00;CO-42:85.00",
                "2005-04-12",
                False,
            ),
        ],
        columns=got.columns,
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert len(notes) == 2 and all("'>'" in n and "':'" in n for n in notes)


# -- a hand-written pair: the join and the labels ------------------------------------------------


def _interchange(kind: str, version: str, body: list[str]) -> str:
    """The test's own envelope: ISA/GS/ST ... SE/GE/IEA around `body`, SE01 counted here."""
    isa = (  # fixed width: 106 characters with the terminator
        "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       "
        "*250401*1200*^*00501*000000001*0*T*:"
    )
    gs = f"GS*{'HC' if kind == '837' else 'HP'}*S*R*20250401*1200*1*X*{version}"
    segs = [
        isa,
        gs,
        f"ST*{kind}*0001*{version}",
        *body,
        f"SE*{len(body) + 2}*0001",
        "GE*1*1",
        "IEA*1*000000001",
    ]
    return "~\n".join(segs) + "~\n"


_CLAIMS = [
    "BHT*0019*00*1*20250310*1200*CH", "NM1*41*2*CLINIC*****46*1", "NM1*40*2*PAYER*****46*2",
    "HL*1**20*1", "NM1*85*2*CLINIC*****XX*1234567893",
    "HL*2*1*22*0", "SBR*P*18*******CI", "NM1*IL*1*DOE*JANE****MI*M100", "NM1*PR*2*PAYER*****PI*P1",
    "CLM*CLMA*500***11:B:1*Y*A*Y*Y", "HI*ABK:F1020", "REF*G1*PA77",
    "LX*1", "SV1*HC:J2315*400*UN*380***1", "DTP*472*D8*20250304",
    "LIN**N4*65757030001", "CTP****1*UN", "REF*6R*A1",
    "LX*2", "SV1*HC:96372*100*UN*1***1", "DTP*472*D8*20250304", "REF*6R*A2",
    "CLM*CLMB*1000***11:B:1*Y*A*Y*Y", "HI*ABK:M0500",
    "LX*1", "SV1*HC:J1745*900*UN*10***1", "DTP*472*D8*20250304",
    "LX*2", "SV1*HC:96413*100*UN*1***1", "DTP*472*D8*20250304",
    "CLM*CLMC*50***11:B:1*Y*A*Y*Y", "HI*ABK:F1020",
    "LX*1", "SV1*HC:J3490:::::compounded*50*UN*1***1", "DTP*472*D8*20250305",
    "CLM*CLMD*70***11:B:1*Y*A*Y*Y", "HI*ABK:F1020",
    "LX*1", "SV1*HC:J2315*70*UN*380***1", "DTP*472*D8*20250306",
]  # fmt: skip
_REMITS = [
    "BPR*I*1020*C*CHK************20250401", "TRN*1*1*1", "DTM*405*20250401",
    "N1*PR*PAYER", "N1*PE*CLINIC*XX*1234567893",
    "LX*1",
    "CLP*CLMA*1*500*0**12*PCN1", "SVC*HC:J2315*400*0**380", "DTM*472*20250304", "CAS*CO*197*400", "REF*6R*A1",
    "SVC*HC:96372*100*0", "DTM*472*20250304", "CAS*PR*1*100", "REF*6R*A2",
    "CLP*CLMB*1*1000*100**12*PCN2", "SVC*HC:J1745*900*0**10", "DTM*472*20250304", "CAS*CO*50*900",
    "SVC*HC:96413*100*100", "DTM*472*20250304",
    "CLP*CLMB*22*-1000*-100**12*PCN2",
    "CLP*CLMB*1*1000*1020**12*PCN3", "SVC*HC:96413*100*120", "DTM*472*20250304",
    "SVC*HC:J1745*900*900**10", "DTM*472*20250304", "CAS*CO*45*0",
    "CLP*CLMD*4*70*0**12*PCN4", "CAS*CO*16*70",
    "CLP*CLMX*1*10*10**12*PCN5", "SVC*HC:J9999*10*10", "DTM*472*20250301",
]  # fmt: skip


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    claims, remits = tmp_path / "batch.837", tmp_path / "remits.835"
    claims.write_text(_interchange("837", "005010X222A1", _CLAIMS))
    remits.write_text(_interchange("835", "005010X221A1", _REMITS))
    return claims, remits


def test_remits_meet_their_lines_and_give_the_documented_labels(pair):
    res = ingest([pair[0]], [pair[1]])
    got = res.lines[["claim_id", "line_number", "denied", "carc_codes", "paid_amount"]]
    expected = pd.DataFrame(
        {
            "claim_id": ["CLMA", "CLMA", "CLMB", "CLMB", "CLMC", "CLMD"],
            "line_number": ["1", "2", "1", "2", "1", "1"],
            # CO-197 and nothing paid: denied; a zero paid for the deductible (PR-1) is not;
            # CLMB's reversal and corrected payment win over its first denial (CO-50), the
            # corrected remit's lines in another order; CLMC has no remit (pending); CLMD is
            # denied as a claim (CLP02 = 4) without service lines.
            "denied": pd.array([True, False, False, False, pd.NA, True], dtype="boolean"),
            "carc_codes": ["CO-197", "PR-1", "CO-45", "", "", "CO-16"],
            "paid_amount": [0.0, 0.0, 900.0, 120.0, float("nan"), 0.0],
        }
    )
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_dtype=False)
    assert res.lines.loc[0, "prior_auth_number"] == "PA77" and res.lines.loc[0, "diagnosis_codes"] == "F10.20"
    # the dose an 837 implies: one Vivitrol kit (a single-dose product of the pack) is 380 mg;
    # an NDC-less line, unknown
    assert res.lines.loc[0, "dose_mg"] == 380 and pd.isna(res.lines.loc[1, "dose_mg"])
    assert res.counts["claim lines pending (no remit yet)"] == 1
    assert res.counts["superseded remit lines (reversed, or a later adjudication of the line)"] == 3
    assert (
        res.rejects["claim_id"].tolist() == ["CLMX"] and "none of the 837 files" in res.rejects["reason"][0]
    )
    v = validate(res.lines)
    assert len(v.rejects) == 0, v.rejects.to_dict("records")  # what ingest writes, the table takes


def test_ingest_writes_a_history_train_reads_and_a_batch_check_reads(pair, tmp_path):
    runner = CliRunner()
    out = tmp_path / "history.parquet"
    res = runner.invoke(
        app, ["ingest", "--claims", str(pair[0]), "--remits", str(pair[1]), "--output", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "claim lines matched to a remit" in res.output and "orphan remit lines" in res.output
    history = pd.read_parquet(out)
    assert history["denied"].isna().sum() == 1 and len(pd.read_csv(tmp_path / "history.rejects.csv")) == 1
    batch = tmp_path / "batch.csv"
    res = runner.invoke(app, ["ingest", "--claims", str(pair[0]), "--output", str(batch)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["check", str(batch), "--output", str(tmp_path / "checked.csv")])
    assert res.exit_code == 0, res.output
    checked = pd.read_csv(tmp_path / "checked.csv", dtype=str, keep_default_na=False)
    assert len(checked) == 6
    # documentation is unknown on an 837: no rule finds a document missing
    assert not checked["rule_hits"].str.contains("documentation|medical_necessity", regex=True).any()


def _broken(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "edit", "words"),
    [
        ("truncated file", lambda t: t[: len(t) // 2], r"no IEA"),
        ("wrong separators", lambda t: t.replace("ISA*", "ISA|", 1), r"ISA segment has \d+ elements"),
        (
            "SE count that does not match",
            lambda t: re.sub(r"SE\*\d+\*", "SE*99*", t),
            r"segment \d+ \(SE\): SE01 says '99'",
        ),
        (
            "claim with no lines",
            lambda t: t.replace("LX*1~\nSV1*HC:J3490", "HL*3*1*22*0~\nSV1*HC:J3490", 1),
            r"segment \d+ \(CLM\): claim 'CLMC' has no service lines",
        ),
        (
            "unknown filing indicator",
            lambda t: t.replace("SBR*P*18*******CI", "SBR*P*18*******QQ"),
            r"segment \d+ \(CLM\): claim filing indicator SBR09 'QQ'",
        ),
        (
            "pointer to no diagnosis",
            lambda t: t.replace("SV1*HC:96372*100*UN*1***1", "SV1*HC:96372*100*UN*1***4"),
            r"segment \d+ \(LX\): diagnosis pointer '4'",
        ),
        ("a remit file as claims", None, r"835 transaction where an 837 was expected"),
        ("a claim table, not X12", lambda t: "claim_id,line_number\nC1,1\n", r"not an X12 file"),
        ("an empty file", lambda t: "", r"not an X12 file"),
        ("an unknown adjustment group", None, None),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_malformed_file_is_one_error_naming_file_and_segment(tmp_path, pair, case, edit, words):
    if words is None:  # a malformed 835: its remits are refused the same way
        src = _broken(tmp_path, "bad.835", pair[1].read_text().replace("CAS*CO*50*900", "CAS*XX*50*900"))
        with pytest.raises(X12Error, match=r"segment \d+ \(CAS\): CAS01 'XX'"):
            ingest([pair[0]], [src])
        res = CliRunner().invoke(
            app,
            [
                "ingest",
                "--claims",
                str(pair[0]),
                "--remits",
                str(src),
                "--output",
                str(tmp_path / "o.parquet"),
            ],
        )
        assert res.exit_code == 2 and "Traceback" not in res.output and not (tmp_path / "o.parquet").exists()
        return
    src = pair[1] if edit is None else _broken(tmp_path, "bad.837", edit(pair[0].read_text()))
    with pytest.raises(X12Error, match=words) as err:
        ingest([src])
    assert str(err.value).startswith(str(src))
    res = CliRunner().invoke(app, ["ingest", "--claims", str(src), "--output", str(tmp_path / "o.parquet")])
    assert res.exit_code == 2 and "Traceback" not in res.output and not (tmp_path / "o.parquet").exists()


# -- simulate -> X12 -> ingest ----------------------------------------------------------------

_CARRIED = [
    "claim_id", "patient_id", "provider_npi", "payer_id", "payer_type", "service_date", "submission_date",
    "place_of_service", "hcpcs_code", "modifiers", "units", "billed_amount", "ndc", "ndc_quantity",
    "ndc_unit", "drug_description", "diagnosis_codes", "prior_auth_number",
    "denied", "carc_codes", "paid_amount", "adjudication_date",
]  # fmt: skip


def _comparable(df: pd.DataFrame, line: pd.Series) -> pd.DataFrame:
    """Validated, in claim then `line` order, values as text with one spelling of missing."""
    lines = validate(df.assign(_line=line.to_numpy())).lines
    lines["adjudication_date"] = pd.to_datetime(lines["adjudication_date"]).dt.strftime("%Y-%m-%d")
    lines = lines.assign(claim_id=lines["claim_id"].astype(str)).sort_values(["claim_id", "_line"])
    return lines[_CARRIED].astype(object).fillna("").astype(str).reset_index(drop=True)


@pytest.fixture(scope="module")
def simulated_x12(tmp_path_factory):
    from denial_model.simulate import SimConfig, simulate
    from denial_model.x12.writers import write_835, write_837

    folder = tmp_path_factory.mktemp("x12")
    history = simulate(SimConfig(lines=4_000, seed=11))
    write_837(history, folder / "claims.837")
    write_835(history, folder / "remits.835")
    return history, folder


def test_a_simulated_history_comes_back_from_its_837_and_835(simulated_x12):
    """Every column an 837 or 835 carries, labels included; the line number is LX01, the
    line's place in its claim, and REF*6R (`<claim>-<line>`) says which line it was."""
    history, folder = simulated_x12
    res = ingest([folder / "claims.837"], [folder / "remits.835"])
    assert res.counts["claim lines matched to a remit"] == len(history) and len(res.rejects) == 0
    sent_as = res.lines["line_control_number"].str.rsplit("-", n=1).str[1].astype(int)
    got, want = _comparable(res.lines, sent_as), _comparable(history, history["line_number"])
    pd.testing.assert_frame_equal(got, want)
    position = res.lines.groupby("claim_id").cumcount() + 1
    assert (res.lines["line_number"].astype(int) == position).all()
    assert set(res.lines["documentation"]) == {"unknown"}  # not on an 837


def test_a_file_read_in_pieces_reads_as_a_whole(simulated_x12, monkeypatch):
    """Large files are read a piece at a time, cut after an SE; forced to tiny pieces, the
    rows are the same."""
    from denial_model.x12 import segments

    _, folder = simulated_x12
    whole = ingest([folder / "claims.837"], [folder / "remits.835"])
    monkeypatch.setattr(segments, "PIECE", 100_000)
    assert len(list(segments.iter_segments(folder / "claims.837"))) > 5  # the pieces were many
    pieces = ingest([folder / "claims.837"], [folder / "remits.835"])
    pd.testing.assert_frame_equal(pieces.lines, whole.lines)
    pd.testing.assert_frame_equal(pieces.rejects, whole.rejects)


@pytest.mark.parametrize("name", ["claims.837", "remits.835"])
def test_what_the_writers_write_is_valid_against_the_pyx12_hipaa_maps(simulated_x12, name):
    import io
    import json
    import logging

    import pyx12.params
    import pyx12.x12n_document

    _, folder = simulated_x12
    logging.disable(logging.CRITICAL)
    try:
        errors = io.StringIO()
        ok = pyx12.x12n_document.x12n_document(
            pyx12.params.params(), str(folder / name), io.StringIO(), None, fd_json=errors
        )
    finally:
        logging.disable(logging.NOTSET)
    found = re.findall(r'"err_str":\s*"([^"]*)"', errors.getvalue())
    assert ok and not found, found[:5]
    assert json.loads(errors.getvalue())  # the report was written: the map was found and walked

"""A shared bad-input corpus that every entry point passes: `check` and `score` on the CLI,
and the Python API under them.

For each case: no traceback; either exit 0 with rows in = rows processed + rows rejected,
or exit 2 with one message naming the problem; the same verdict from every entry point; no
partial or temporary file left behind. Rows in are counted with pandas / pyarrow directly,
not with the toolkit's own reader.
"""

import csv
import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from denial_model.cli import app
from denial_model.errors import DenialModelError
from denial_model.jobs import run_training
from denial_model.samples import DRUG_LINES, clean_claim
from denial_model.score import score_file
from denial_model.scrub import check_file
from denial_model.simulate import SimConfig, simulate
from denial_model.train import TrainConfig


def _claims() -> pd.DataFrame:
    """Eight clean claims (16 lines) of every drug, as text, the way a CSV export holds them."""
    parts = [
        clean_claim(drug, payer, claim_id=f"C{i}-{payer[:3]}", patient_id=f"P{i}{payer[:3]}")
        for i, drug in enumerate(DRUG_LINES)
        for payer in ("commercial", "medicaid")
    ]
    return pd.concat(parts, ignore_index=True).astype(str).replace("nan", "")


def _csv(df: pd.DataFrame, path: Path, **kw) -> Path:
    df.to_csv(path, index=False, **kw)
    return path


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "in.csv"
        path.write_bytes(data)
        return path

    return write


def _edit(column: str, value, rows=(0,), fmt: str = "csv") -> Callable[[Path], Path]:
    """The clean claims with `column` set to `value` on `rows`."""

    def write(folder: Path) -> Path:
        df = _claims()
        df[column] = df[column].astype(object)
        for r in rows:
            df.at[r, column] = value
        if fmt == "parquet":
            path = folder / "in.parquet"
            df.to_parquet(path, index=False)
            return path
        return _csv(df, folder / "in.csv")

    return write


def _frame(fn: Callable[[pd.DataFrame], pd.DataFrame], fmt: str = "csv") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        df = fn(_claims())
        if fmt == "parquet":
            path = folder / "in.parquet"
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
            return path
        return _csv(df, folder / "in.csv")

    return write


def _text(fn: Callable[[str], str], name: str = "in.csv") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_text(fn(_claims().to_csv(index=False)))
        return path

    return write


def _on_lines(text: str, edits: dict[int, Callable[[str], str]]) -> str:
    """The CSV text with line i (0 = header) passed through edits[i]."""
    lines = text.split("\n")
    return "\n".join(edits[i](x) if i in edits else x for i, x in enumerate(lines))


def _gz(folder: Path) -> Path:
    path = folder / "in.csv.gz"
    with gzip.open(path, "wb") as f:
        f.write(_claims().to_csv(index=False).encode())
    return path


def _truncated_parquet(folder: Path) -> Path:
    path = folder / "in.parquet"
    _claims().to_parquet(path, index=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _timestamps(tz: str | None) -> Callable[[Path], Path]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        for c in ("service_date", "submission_date"):
            stamps = pd.to_datetime(df[c])
            df[c] = stamps.dt.tz_localize(tz) if tz else stamps
        return df

    return _frame(fn, "parquet")


def _list_modifiers(df: pd.DataFrame) -> pd.DataFrame:
    df["modifiers"] = [[m] if m else [] for m in df["modifiers"]]
    return df


def _number_types(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("units", "billed_amount"):
        df[c] = pd.to_numeric(df[c])
    return df


# (case, writer, expected exit code, words the message or a reject must hold)
CASES = [
    ("empty file", _bytes(b""), 2, "empty file"),
    ("header only", _text(lambda t: t.splitlines()[0] + "\n"), 0, None),
    ("missing required column", _frame(lambda d: d.drop(columns=["payer_type"])), 2, "payer_type"),
    ("duplicated column", _text(lambda t: t.replace("units,", "units,Units,", 1)), 2, "appears twice"),
    (
        "case-shifted and spaced header",
        _frame(lambda d: d.rename(columns=lambda c: f" {c.upper()} ")),
        0,
        None,
    ),
    ("semicolon delimiter", _text(lambda t: t.replace(",", ";")), 2, "missing required column"),
    ("byte-order mark", _bytes(b"\xef\xbb\xbf" + _claims().to_csv(index=False).encode()), 0, None),
    ("CRLF line ends", _text(lambda t: t.replace("\n", "\r\n")), 0, None),
    ("gzip CSV", _gz, 0, None),
    ("quoted newline in a cell", _edit("drug_description", "ketamine\n100 mg/mL"), 0, None),
    (
        "non-UTF-8 byte",
        _bytes(_claims().to_csv(index=False).encode().replace(b"Vivitrol", b"Viv\xe9trol")),
        0,
        "not UTF-8",
    ),
    (
        "ragged rows",
        _text(lambda t: _on_lines(t, {2: lambda x: x + ",extra", 5: lambda x: x + ",x,y"})),
        0,
        "has 22",
    ),
    ("short row", _text(lambda t: _on_lines(t, {1: lambda x: "C9,1\n" + x})), 0, "has 2 fields"),
    ("every row ragged", _text(lambda t: t.replace("\n", ",x\n").replace(",x\n", "\n", 1)), 0, "has 22"),
    ("NUL byte in a cell", _edit("drug_description", "keta\x00mine"), 0, None),
    ("huge cell", _edit("drug_description", "x" * 200_000), 0, "longer than 10,000 characters"),
    ("cell over 4 MB", _edit("drug_description", "x" * (5 << 20), rows=(3,)), 0, "longer than 10,000"),
    ("long but allowed cell", _edit("drug_description", "ketamine " * 1_000), 0, None),
    ("NaN units", _edit("units", "NaN"), 0, "units"),
    ("inf units", _edit("units", "inf"), 0, "units"),
    ("negative units", _edit("units", "-3"), 0, "units"),
    ("1e308 amount", _edit("billed_amount", "1e308"), 0, "billed_amount"),
    ("impossible date", _edit("service_date", "2025-02-30"), 0, "service_date"),
    ("far-future date", _edit("service_date", "9999-12-31"), 0, "service_date"),
    ("date-time at midnight", _edit("service_date", "2025-03-04T00:00:00", rows=range(16)), 0, None),
    ("date-time with a time", _edit("service_date", "2025-03-04 13:45:00"), 0, "time of day"),
    ("US-style date", _edit("service_date", "03/04/2025"), 0, "service_date"),
    ("NDC with dashes", _edit("ndc", "65757-0300-01"), 0, None),
    ("8-digit NDC", _edit("ndc", "12345678"), 0, "ndc"),
    ("lower-case HCPCS", _edit("hcpcs_code", "j2315"), 0, None),
    ("malformed HCPCS", _edit("hcpcs_code", "J23"), 0, "hcpcs_code"),
    ("thousands of modifiers", _edit("modifiers", ";".join(["ZZ"] * 5000)), 0, "modifiers"),
    ("unknown payer type", _edit("payer_type", "self-pay"), 0, "payer_type"),
    ("unknown documentation token", _edit("documentation", "medical_necessity;vibes"), 0, "documentation"),
    ("submission before service", _edit("submission_date", "2025-01-01"), 0, "submission_date"),
    ("duplicated lines", _frame(lambda d: pd.concat([d, d.head(2)], ignore_index=True)), 0, None),
    ("every row bad", _edit("units", "-1", rows=range(16)), 0, "units"),
    ("truncated Parquet", _truncated_parquet, 2, "cannot read as parquet"),
    ("wrong-typed Parquet column", _edit("units", "abc", fmt="parquet"), 0, "units"),
    ("numeric Parquet columns", _frame(_number_types, "parquet"), 0, None),
    ("zone-aware Parquet timestamps", _timestamps("America/New_York"), 0, None),
    ("naive Parquet timestamps", _timestamps(None), 0, None),
    ("list-typed Parquet column", _frame(_list_modifiers, "parquet"), 0, None),
    ("unknown file format", _text(lambda t: t, name="in.xlsx"), 2, "unknown format"),
]


csv.field_size_limit(1 << 30)


def _rows_in(path: Path) -> int:
    """Data rows by the standard library's csv module (blank lines are not rows), whatever
    their field counts or bytes."""
    if path.suffix == ".parquet":
        return pq.read_metadata(path).num_rows
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8-sig", errors="replace") as f:
        return sum(1 for row in csv.reader(f) if row) - 1


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    run_training(
        simulate(SimConfig(lines=15_000, seed=2)), folder / "m.joblib", TrainConfig(max_iter=15), track=False
    )
    return folder / "m.joblib"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


@pytest.mark.parametrize(("case", "writer", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_every_entry_point_gives_the_same_clear_answer(tmp_path, model, case, writer, code, words):
    src = writer(tmp_path)
    runner = CliRunner()
    verdicts = {}
    for command in ("check", "score"):
        out = tmp_path / command
        out.mkdir()
        args = [command, str(src), "--output", str(out / "o.csv")]
        if command == "score":
            args += ["--model", str(model), "--no-tracking"]
        res = runner.invoke(app, args)
        assert "Traceback" not in res.output and res.exit_code in (0, 2), (command, res.output)
        assert _leftovers(out) == [], (command, _leftovers(out))
        verdicts[command] = res.exit_code
        if res.exit_code == 2:
            assert not (out / "o.csv").exists() and not (out / "o.rejects.csv").exists()
            assert len(res.output.strip().splitlines()) <= 3, res.output  # one message, not a dump
            if words:
                assert words in res.output, (command, res.output)
            continue
        processed = pd.read_csv(out / "o.csv", dtype=str, keep_default_na=False)
        rejects = pd.read_csv(out / "o.rejects.csv", dtype=str, keep_default_na=False)
        assert len(processed) + len(rejects) == _rows_in(src), (command, len(processed), len(rejects))
        if words:
            assert (
                rejects["reason"].str.contains(words, regex=False).any()
                or rejects["column"].str.contains(words, regex=False).any()
            ), (command, rejects.to_dict("records"))
        else:
            assert len(rejects) == 0, (command, rejects.to_dict("records"))
    assert verdicts == {"check": code, "score": code}, verdicts


@pytest.mark.parametrize(("case", "writer", "code", "words"), CASES[:12], ids=[c[0] for c in CASES[:12]])
def test_the_python_api_raises_only_denial_model_errors(tmp_path, model, case, writer, code, words):
    from denial_model.artifact import load_artifact

    src = writer(tmp_path)
    loaded = load_artifact(model)
    for run in (
        lambda: check_file(src, tmp_path / "c.parquet", tmp_path / "c.rejects.csv"),
        lambda: score_file(src, tmp_path / "s.parquet", loaded),
    ):
        try:
            run()
        except DenialModelError:
            assert code == 2
        else:
            assert code == 0


def test_the_corpus_has_at_least_thirty_cases_and_both_verdicts():
    assert len(CASES) >= 30
    assert {c[2] for c in CASES} == {0, 2}
    assert json.dumps([c[0] for c in CASES])  # case names are plain text


@pytest.mark.parametrize("block", [1 << 22, 300], ids=["one parser block", "a block a row"])
def test_unparseable_rows_keep_their_place_in_the_row_numbers(tmp_path, model, monkeypatch, block):
    """A row with the wrong field count or a stray byte is rejected at its own 0-based
    position, counted after a quoted newline, whatever the chunking and the parser's blocks;
    the rows around it keep theirs (the scored claim ids are the file's, in order)."""
    monkeypatch.setattr("denial_model.files.CSV_BLOCK_BYTES", block)
    claims = _claims()
    claims.at[0, "drug_description"] = "two\nlines"
    lines = claims.to_csv(index=False).encode().split(b"\n")
    # line 0 header, lines 1-2 row 0 (quoted newline), line 3 row 1, line 4 row 2, ...
    lines[3] += b",extra"
    lines[9] = lines[9].replace(b"C", b"C\xff", 1)  # row 7
    lines[17] += b",x,y"  # row 15
    src = tmp_path / "in.csv"
    src.write_bytes(b"\n".join(lines))
    expected_rejects = [1, 7, 15]
    for command, extra in (
        ("check", []),
        ("score", ["--model", str(model), "--no-tracking", "--chunk-lines", "3"]),
    ):
        out = tmp_path / f"{command}.csv"
        res = CliRunner().invoke(app, [command, str(src), "--output", str(out), *extra])
        assert res.exit_code == 0, res.output
        rejects = pd.read_csv(tmp_path / f"{command}.rejects.csv", dtype=str, keep_default_na=False)
        assert rejects["row"].astype(int).tolist() == expected_rejects, rejects.to_dict("records")
        assert rejects["column"].tolist() == ["(whole row)", "claim_id", "(whole row)"]
        assert "not UTF-8" in rejects["reason"][1] and "has 23 fields" in rejects["reason"][2]
        kept = pd.read_csv(out, dtype=str, keep_default_na=False)
        assert kept["claim_id"].tolist() == claims["claim_id"].drop(expected_rejects).tolist()
        assert "__read_problem__" not in kept.columns


def test_us_dates_are_read_only_when_a_date_format_says_so(tmp_path, model):
    """`03/04/2025` is a row reject by default; with `--date-format %m/%d/%Y` every entry point
    reads it as March 4 (ISO cells still read); a format without day, month and year is an
    option error before anything is read."""
    claims = _claims()
    us = pd.to_datetime(claims["service_date"]).dt.strftime("%m/%d/%Y")
    claims.loc[::2, "service_date"] = us[::2]
    src = _csv(claims, tmp_path / "us.csv")
    for command, extra in (("check", []), ("score", ["--model", str(model), "--no-tracking"])):
        plain = CliRunner().invoke(app, [command, str(src), "-o", str(tmp_path / f"{command}0.csv"), *extra])
        assert plain.exit_code == 0, plain.output
        assert len(pd.read_csv(tmp_path / f"{command}0.rejects.csv")) == len(claims[::2])
        args = [
            command,
            str(src),
            "-o",
            str(tmp_path / f"{command}1.csv"),
            *extra,
            "--date-format",
            "%m/%d/%Y",
        ]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        assert len(pd.read_csv(tmp_path / f"{command}1.rejects.csv")) == 0
        assert len(pd.read_csv(tmp_path / f"{command}1.csv")) == len(claims)
        out = tmp_path / f"{command}2.csv"
        bad = CliRunner().invoke(app, [command, str(src), "-o", str(out), *extra, "--date-format", "%m/%Y"])
        assert bad.exit_code == 2 and "'%m/%Y'" in bad.output and not out.exists(), bad.output

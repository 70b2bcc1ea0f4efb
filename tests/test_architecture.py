"""The package's shape: no import cycle, one seam per concern, one error hierarchy, one file layer."""

import ast
import gzip
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import denial_model
from denial_model.errors import ClaimTableError, DenialModelError
from denial_model.files import atomic_output, read_batches, read_table, table_format, write_table
from denial_model.samples import clean_claim
from denial_model.table import READ_PROBLEM

PACKAGE = Path(denial_model.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every denial_model module `path` imports, at module level or inside a function (but
    not under `if TYPE_CHECKING:`, which never runs)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for n in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules and n != "denial_model"}
    return found


def test_the_package_has_no_import_cycle_not_even_through_function_level_imports():
    modules = _modules()
    graph = {m: _imports(p, set(modules)) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if n.startswith(m + "."):  # a package importing its own submodules is not a cycle
                continue
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in PACKAGE.rglob("*.py")}


def test_only_the_scorer_names_the_pipelines_steps():
    users = sorted(name for name, text in _sources().items() if "named_steps" in text)
    assert users == ["scorer.py"]


def test_private_scikit_learn_is_touched_only_in_the_guarded_predictor_constructor():
    for name, text in _sources().items():
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sklearn"):
                private = any(part.startswith("_") for part in node.module.split("."))
                if private:
                    assert name == "predict.py", f"{name} imports {node.module}"
                    assert node.col_offset > 0, "the private import must sit inside the guarded constructor"


def test_only_tracking_and_the_mlflow_pyfunc_import_mlflow():
    users = set()
    for name, text in _sources().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found = any(a.name.split(".")[0] == "mlflow" for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found = (node.module or "").split(".")[0] == "mlflow"
            else:
                continue
            if found:
                users.add(name)
    assert users == {"tracking.py", "serve/pyfunc.py"}


def test_every_module_says_why_it_exists():
    for name, text in _sources().items():
        assert ast.get_docstring(ast.parse(text)), f"{name} has no module docstring"


def test_public_api_is_declared_and_every_name_resolves():
    assert denial_model.__all__ == sorted(denial_model.__all__)
    for name in denial_model.__all__:
        assert getattr(denial_model, name) is not None
    with pytest.raises(AttributeError):
        denial_model.no_such_thing  # noqa: B018
    submodules = {m.split(".")[1] for m in _modules() if m.count(".") >= 1}
    assert not set(denial_model.__all__) & submodules, "an export named like a submodule is shadowed by it"


def test_every_deliberate_error_is_a_denial_model_error():
    from denial_model.errors import ArtifactError, ConfigError, PackError

    for cls in (ClaimTableError, PackError, ArtifactError, ConfigError):
        assert issubclass(cls, DenialModelError)


# ----------------------------------------------------------------------------- the file layer


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.parquet", "parquet"),
        ("a.PQ", "parquet"),
        ("a.csv", "csv"),
        ("a.csv.gz", "csv.gz"),
        ("a.CSV.GZ", "csv.gz"),
    ],
)
def test_table_format_is_decided_by_the_file_name(name, fmt):
    assert table_format(name) == fmt


@pytest.mark.parametrize("name", ["a.xlsx", "a.json", "a.gz", "a"])
def test_unknown_formats_are_refused_naming_the_file(name):
    with pytest.raises(ClaimTableError, match=f"{re.escape(name)}: unknown format"):
        table_format(name)


def test_atomic_output_leaves_nothing_behind_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_every_reader_takes_csv_gzip_csv_with_a_bom_and_parquet_alike(tmp_path):
    raw = clean_claim("naltrexone")
    expected = read_table(_write(raw, tmp_path / "plain.csv"))
    gz = tmp_path / "claims.csv.gz"
    with gzip.open(gz, "wb") as f:
        f.write((tmp_path / "plain.csv").read_bytes())
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.csv").read_bytes().replace(b"\n", b"\r\n"))
    for path in (gz, bom):
        pd.testing.assert_frame_equal(read_table(path), expected)
        streamed = pd.concat([t.to_pandas() for t in read_batches(path, 1)], ignore_index=True)
        assert streamed.pop(READ_PROBLEM).isna().all()  # streamed batches say which rows were unreadable
        pd.testing.assert_frame_equal(streamed, expected)
    assert len(read_table(_write(raw, tmp_path / "claims.parquet"))) == len(raw)


def _write(df: pd.DataFrame, path: Path) -> Path:
    write_table(df, path)
    return path


def test_a_file_the_readers_cannot_use_is_refused_up_front_with_its_name(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ClaimTableError, match=r"empty\.csv: empty file"):
        read_batches(empty, 10)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(ClaimTableError, match=r"broken\.parquet: cannot read as parquet"):
        read_batches(broken, 10)
    with pytest.raises(ClaimTableError, match=r"missing\.csv: no such file"):
        read_table(tmp_path / "missing.csv")


# ----------------------------------------------------------------------------- the CLI's two kinds of failure


def test_cli_reports_bad_input_in_one_line_with_exit_2(tmp_path):
    from denial_model.cli import app

    res = CliRunner().invoke(app, ["check", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "o.csv")])
    assert res.exit_code == 2
    assert "nope.csv: no such file" in res.output and "Traceback" not in res.output


def test_cli_reports_a_full_disk_or_read_only_folder_in_one_line_with_exit_2(tmp_path, monkeypatch):
    import errno

    from denial_model import cli, scrub

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o.csv"))

    monkeypatch.setattr(scrub, "check_file", full)
    src = _write(clean_claim(), tmp_path / "c.csv")
    res = CliRunner().invoke(cli.app, ["check", str(src), "--output", str(tmp_path / "o.csv")])
    assert res.exit_code == 2
    assert "No space left on device" in res.output and "Traceback" not in res.output


def test_cli_reports_a_bug_as_internal_error_with_traceback_and_exit_1(tmp_path, monkeypatch):
    from denial_model import cli, scrub

    def bug(*args, **kwargs):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(scrub, "check_file", bug)
    src = _write(clean_claim(), tmp_path / "c.csv")
    res = CliRunner().invoke(cli.app, ["check", str(src), "--output", str(tmp_path / "o.csv")])
    assert res.exit_code == 1
    assert "internal error" in res.output and "Traceback" in res.output and "KeyError" in res.output

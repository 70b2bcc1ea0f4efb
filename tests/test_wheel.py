"""A non-editable install carries the rule pack and the reference data."""

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_lists_rules_from_another_directory(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("denial_model-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # dependencies come from this environment's site-packages; the package itself from the wheel
    site = Path(sysconfig.get_paths()["purelib"])
    target_site = next((env_dir / "lib").glob("python*/site-packages"))
    (target_site / "zz_deps.pth").write_text(str(site) + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import denial_model.resources as r; print(r.bundled_path('rules'))"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert str(env_dir) in where, where
    out = subprocess.run(
        [str(env_dir / "bin" / "denial-model"), "rules", "list", "--format", "json"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert '"common.timely_filing"' in out
    ver = subprocess.run(
        [str(env_dir / "bin" / "denial-model"), "rules", "verify"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "J3031" in ver

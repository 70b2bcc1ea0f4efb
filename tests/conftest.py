import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# pytest-xdist gives its workers the terminal's COLUMNS; the CLI's tables would wrap at that
# width there and not in a serial run. Tests read the CLI's output as a file would get it.
os.environ.pop("COLUMNS", None)

import pytest

from denial_model.reference import load_reference
from denial_model.rules import load_pack


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture(scope="session")
def ref():
    return load_reference()

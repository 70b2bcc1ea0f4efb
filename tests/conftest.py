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


@pytest.fixture(autouse=True)
def _tracking_uri_restored():
    """A test that calls `mlflow.set_tracking_uri` itself also exports the URI to the
    environment (MLflow does, for child processes): restored after each test, so that a later
    test's subprocess on the same worker does not track to a server that test stopped."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before

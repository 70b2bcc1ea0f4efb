import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pytest  # noqa: E402

from denial_model.reference import load_reference  # noqa: E402
from denial_model.rules import load_pack  # noqa: E402


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture(scope="session")
def ref():
    return load_reference()

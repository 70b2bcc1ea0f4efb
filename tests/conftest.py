import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pytest

from denial_model.reference import load_reference
from denial_model.rules import load_pack


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture(scope="session")
def ref():
    return load_reference()

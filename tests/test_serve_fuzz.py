"""Property-based fuzz of the service from its own OpenAPI schema: whatever a client sends,
the answer is never a 500, and a request the schema accepts loses no line (every line comes
back scored or rejected). Runs the app in process (the real-server behaviour is pinned in
test_serve.py); bodies are generated from the published request schemas."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from denial_model.artifact import load_artifact, save_artifact
from denial_model.serve.auth import new_key
from denial_model.serve.server import build_app

LEGACY = Path(__file__).parent / "data" / "legacy_artifact"
KEY, DIGEST = new_key()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        legacy = load_artifact(LEGACY / "model.joblib")
    manifest = save_artifact(folder / "model.joblib", legacy.model, legacy.thresholds, {}, "fuzz")
    (folder / "keys.txt").write_text(DIGEST + "\n")
    app = build_app(
        str(folder / "model.joblib"),
        api_keys=folder / "keys.txt",
        model_sha256=manifest["sha256"],
        max_lines=40,
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {KEY}"
        c.headers["Content-Type"] = "application/json"
        yield c


def _request_schema(client: TestClient, path: str) -> tuple[dict, dict]:
    """(the route's published request schema, the components its $refs point into)."""
    spec = client.get("/openapi.json").json()
    return spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"], spec


SCALARS = {
    "string": st.text(max_size=30) | st.sampled_from(["", "2025-03-04", "J2315", "F11.20", "  x  ", "1e3"]),
    "integer": st.integers(min_value=-(2**70), max_value=2**70),
    "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
    "boolean": st.booleans(),
    "null": st.none(),
}


def from_schema(schema: dict, spec: dict) -> st.SearchStrategy:
    """Bodies valid under a JSON schema, for the part of JSON Schema the service publishes
    ($ref, anyOf, object with properties/required/additionalProperties, array, scalars)."""
    if "$ref" in schema:
        node = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return st.deferred(lambda: from_schema(node, spec))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, spec) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, spec) for k, v in props.items() if k in required},
            optional={k: from_schema(v, spec) for k, v in props.items() if k not in required},
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), spec), max_size=schema.get("maxItems", 8))
    if kind in SCALARS:
        return SCALARS[kind]
    return st.one_of(list(SCALARS.values()))  # no type: any JSON scalar


def _accounted(body: dict, sent: int) -> None:
    done = body.get("lines_scored", body.get("lines_checked"))
    assert body["lines_in"] == sent == done + body["lines_rejected"]
    rows = sorted([r["row"] for r in body["results"]] + [r["row"] for r in body["rejects"]])
    assert rows == list(range(sent))


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.mark.parametrize("path", ["/v1/score", "/v1/check"])
def test_schema_valid_requests_are_answered_and_lose_no_line(client, path):
    @FUZZ
    @given(body=from_schema(*_request_schema(client, path)))
    def run(body):
        res = client.post(path, content=json.dumps(body))
        sent = len(body["lines"]) + len(body.get("history") or [])
        if sent > 40:
            assert res.status_code == 413
            return
        assert res.status_code == 200, res.text
        _accounted(res.json(), len(body["lines"]))

    run()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(body=JSON | st.fixed_dictionaries({"lines": st.lists(JSON, max_size=3)}))
def test_any_json_at_all_is_answered_without_a_server_error(client, body):
    for path in ("/v1/score", "/v1/check"):
        res = client.post(path, content=json.dumps(body))
        assert res.status_code in (200, 413, 422), res.text
        if res.status_code == 422:
            assert all("loc" in e and "msg" in e for e in res.json()["detail"])

"""One registration per check kind: parameters, look-back, check and the claim that breaks it."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from denial_model.rules import evaluate
from denial_model.rules.kinds import KINDS, CheckKind, Param, _group_ids_few, _group_ids_many
from denial_model.rules.pack import Rule
from denial_model.samples import claim_for_rule
from denial_model.table import validate


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_registered_kind_declares_check_breaker_parameters_and_lookback(name):
    k = KINDS[name]
    assert isinstance(k, CheckKind) and k.name == name
    assert callable(k.check) and callable(k.breaks)
    assert all(isinstance(p, Param) for p in k.params.values())
    assert k.lookback is None or isinstance(k.lookback(k.example), int)
    assert set(k.example) <= set(k.params)
    for key, param in k.params.items():
        if param.required:
            assert key in k.example, f"{name}: the example lacks required parameter {key}"
        if key in k.example:
            assert param.valid(k.example[key]), (
                f"{name}: example {key}={k.example[key]!r} is not {param.what}"
            )


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_passes_a_clean_claim_and_fires_on_the_claim_its_breaker_makes(name, pack):
    applies = {"drugs": ["naltrexone"]}
    if name == "excluded":  # an exclusion fires wherever it applies: scope it to one payer type
        applies["payer_types"] = ["medicare"]
    rule = Rule(
        id=f"test.{name}",
        category="documentation_missing",
        carc="CO-16",
        severity="deny",
        message="m",
        fix="f",
        source="test",
        kind=name,
        params=KINDS[name].example,
        applies_to=applies,
    )
    one = dataclasses.replace(pack, rules=(rule,))
    clean, broken = claim_for_rule(rule)
    for claim, fires in ((clean, False), (broken, True)):
        v = validate(claim)
        assert len(v.rejects) == 0, v.rejects.to_dict("records")
        assert evaluate(v.lines, one).hits[:, 0].any() == fires, (name, claim.to_dict("records"))


def test_every_kind_the_shipped_pack_uses_is_registered(pack):
    assert {r.kind for r in pack.rules} <= set(KINDS)


def test_cross_line_kinds_are_the_ones_that_compare_a_patients_lines():
    assert {n for n, k in KINDS.items() if k.cross_line} == {
        "max_per_day",
        "min_days_between_doses",
        "duplicate_line",
        "billed_with",
    }


def test_the_rule_pack_docs_list_every_kind_with_its_parameters():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "rule-pack.md").read_text()
    section = doc.split("## Check kinds", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| `")}
    assert set(rows) == set(KINDS)
    for name, k in KINDS.items():
        for param in k.params:
            assert f"`{param}`" in rows[name], (name, param)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 64).flatmap(
        lambda n: st.lists(
            st.one_of(
                st.lists(st.integers(-3, 3), min_size=n, max_size=n).map(lambda v: np.array(v, np.int64)),
                st.lists(st.sampled_from([0.0, -0.0, 1.5, 2.0, 1e9]), min_size=n, max_size=n).map(np.array),
                st.lists(st.sampled_from(["a", "b", "", 1, 1.0, True]), min_size=n, max_size=n).map(
                    lambda v: np.array(v, dtype=object)
                ),
                st.lists(st.booleans(), min_size=n, max_size=n).map(np.array),
            ),
            min_size=1,
            max_size=4,
        )
    )
)
def test_a_claims_few_lines_are_grouped_as_the_vectorized_path_groups_them(keys):
    """The dict path for a few lines numbers the key tuples exactly as the vectorized one."""
    np.testing.assert_array_equal(_group_ids_few(keys), _group_ids_many(keys))

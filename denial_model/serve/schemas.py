"""The service's request and response bodies, as the OpenAPI schema shows them.

A claim line is the claim-line table's row (docs/claim-lines.md) as a JSON object: the
required columns must be present, optional ones may be left out, any other key is a 422.
Values are JSON scalars of any kind (a claim system sends `"units": "2"` as often as
`"units": 2`); whether a value is *valid* is the claim-line contract's call, made by
`table.validate` line by line, so a bad value makes a reject, not a failed request.
Structure errors (not an object, a list where a value goes, an unknown column, a missing
required column) are the request's fault: 422 with the field path.

Lines are TypedDicts, so pydantic hands them over as plain dicts, which become one
DataFrame without a per-line model object.
"""

from __future__ import annotations

from typing import Any, NotRequired, Required, Union

from pydantic import BaseModel, ConfigDict, Field, create_model
from typing_extensions import TypedDict

from denial_model.groups import REASON_GROUPS
from denial_model.samples import clean_claim
from denial_model.scorer import GROUP_COLUMNS
from denial_model.table import INPUT_COLUMNS, REQUIRED

__all__ = [
    "CheckRequest",
    "CheckResponse",
    "ClaimLine",
    "ModelInfo",
    "ScoreRequest",
    "ScoreResponse",
    "example_lines",
]

Scalar = Union[str, int, float, bool, None]  # noqa: UP007 (a runtime union pydantic reads in order)


def example_lines() -> list[dict[str, Any]]:
    """A clean naltrexone claim (drug line + administration line) with its prior
    authorization number left out: the example a reader of /docs can send as it is."""
    claim = clean_claim("naltrexone", claim_id="CLM-1001", patient_id="PT-EXAMPLE")
    claim["prior_auth_number"] = ""
    records = claim[list(INPUT_COLUMNS)].to_dict(orient="records")
    return [{k: (None if v != v else v) for k, v in r.items()} for r in records]  # NaN -> null


ClaimLine = TypedDict(  # type: ignore[misc]
    "ClaimLine",
    {c: (Required[Scalar] if c in REQUIRED else NotRequired[Scalar]) for c in INPUT_COLUMNS},
)
ClaimLine.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"lines": example_lines()}]})

    lines: list[ClaimLine] = Field(description="Claim lines to score (the claim-line table's columns).")
    history: list[ClaimLine] | None = Field(
        default=None,
        description="Earlier lines of the same patients, read by the cross-line rules (not scored).",
    )


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"lines": example_lines()}]})

    lines: list[ClaimLine] = Field(description="Claim lines to check against the rule pack.")
    history: list[ClaimLine] | None = None


class Reject(BaseModel):
    row: int = Field(description="0-based position of the line in the request's `lines`.")
    claim_id: str | None
    line_number: str | None
    column: str
    reason: str


class ScoredLine(BaseModel):
    row: int
    claim_id: str | None
    line_number: str | None
    denial_probability: float = Field(description="Calibrated P(denied).")
    risk_tier: str = Field(description="low, medium or high (the model's stored thresholds).")
    rule_hits: str = Field(description="Rule ids that fire, ';'-separated.")
    reasons: str = Field(description="Why, ' | '-separated, most important first.")
    fixes: str = Field(description="What to change and the probability after the change, ' | '-separated.")
    dollars_at_risk: float = Field(description="denial_probability x billed_amount.")
    probability_after_fixes: float = Field(description="P(denied) with every fixable finding corrected.")
    reason_group: str = Field(
        description="The likeliest reason group if denied ('' for a low-risk line with no finding)."
    )
    owner_team: str = Field(description="The team that works the reason group ('' when unknown).")


# P(denied for each reason group), null where the line has no reason group (scorer.GROUP_COLUMNS)
ScoredLine = create_model(
    "ScoredLine",
    __base__=ScoredLine,
    **{
        c: (float | None, Field(None, description=f"P(denied) x P({g} | denied); null without a group."))
        for g, c in zip(REASON_GROUPS, GROUP_COLUMNS, strict=True)
    },
)


class ModelSummary(BaseModel):
    version: str
    sha256: str


class ScoreResponse(BaseModel):
    model: ModelSummary
    lines_in: int
    lines_scored: int
    lines_rejected: int
    results: list[ScoredLine]
    rejects: list[Reject]


class CheckedLine(BaseModel):
    row: int
    claim_id: str | None
    line_number: str | None
    rule_hits: str
    rule_carcs: str


class CheckResponse(BaseModel):
    rule_pack_sha256: str
    lines_in: int
    lines_checked: int
    lines_rejected: int
    results: list[CheckedLine]
    rejects: list[Reject]


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    ref: str
    version: str
    sha256: str
    trust: str
    trained_at: str | None
    denial_model_version: str | None
    sklearn_version: str | None
    rule_pack_sha256: str | None
    thresholds: dict[str, Any]
    metrics: dict[str, Any]
    loaded_at: str

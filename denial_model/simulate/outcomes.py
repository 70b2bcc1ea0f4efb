"""Stage 5, outcomes: what the payer decides, and the probability it decided with.

`p_true = 1 - (1 - base) (1 - hidden) prod(1 - strictness_c)` over the planted categories:
`base` is the payer's rate of denials no rule explains (shifted by the provider's hidden
quality), `hidden` a behaviour no rule names (one payer denies one specialty's drug lines;
in stress worlds also payers' preferences on attributes), `strictness_c` how often the payer
denies a line with that break (one payer starts enforcing prior authorization mid-period;
stress worlds add more changes). With `claim_coupling` (a stress world), a drug line's
claim-level causes become one event its claim's other lines share (`_Coupling`).
`denied ~ Bernoulli(p_true)`; the CARC comes from the cause drawn in proportion to its
hazard; `paid_amount` from the ASP payment limit.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from denial_model.errors import ConfigError
from denial_model.reference import Reference
from denial_model.rules.pack import CATEGORIES
from denial_model.simulate.claims import CAT_BIT
from denial_model.simulate.config import SimConfig
from denial_model.simulate.world import World

__all__ = ["BASE_CARCS", "CARC", "COUPLED", "outcomes"]

CARC = {
    "code_invalid": "CO-181",
    "code_drug_mismatch": "CO-16",
    "ndc_missing": "CO-16",
    "noc_information_missing": "CO-16",
    "noc_specific_code_exists": "CO-16",
    "units_dose_mismatch": "CO-16",
    "units_exceed_maximum": "CO-151",
    "wastage_modifier": "CO-4",
    "modifier_invalid": "CO-4",
    "diagnosis_not_supported": "CO-11",
    "off_label_use": "CO-50",
    "prior_auth_missing": "CO-197",
    "documentation_missing": "CO-16",
    "frequency_exceeded": "CO-119",
    "place_of_service_invalid": "CO-58",
    "not_covered": "CO-96",
    "timely_filing": "CO-29",
    "duplicate_line": "CO-18",
    "administration_missing": "CO-16",
}
# claim-level reasons: with `claim_coupling`, a drug line denied for one takes its claim with it
COUPLED = (
    "prior_auth_missing",
    "diagnosis_not_supported",
    "off_label_use",
    "not_covered",
    "documentation_missing",
)
# Denials no planted break explains draw their CARC from this mix (most are information requests).
BASE_CARCS = {"CO-16": 0.45, "CO-50": 0.2, "CO-197": 0.15, "CO-4": 0.1, "CO-45": 0.1}
# what a payer allows for codes the ASP file does not price
FEES = {
    "96372": 25.0,
    "96374": 40.0,
    "96365": 70.0,
    "99214": 120.0,
    "G2082": 650.0,
    "G2083": 900.0,
    "S0013": 11.0,
}


def outcomes(
    cfg: SimConfig, world: World, ref: Reference, df: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """The lines with `billed_amount`, the outcome columns, `p_true` and `planted_categories`
    (the bookkeeping columns dropped)."""
    n = len(df)
    payer = df["_payer"].to_numpy()
    prov = df["_prov"].to_numpy()
    planted = df["_planted"].to_numpy()
    bits = ((planted[:, None] >> np.arange(len(CATEGORIES))) & 1).astype(bool)
    strict = _strictness(cfg, world, df, payer)
    # off-label use is a property of the diagnosis, not a slip: the payer weighs it
    drug_detail = df["_drugline"].to_numpy() | (df["modifiers"].to_numpy() == "JW")  # and its JW line
    off_label = drug_detail & (
        (df["_drug"].to_numpy() == "anakinra") & (df["diagnosis_codes"].to_numpy() == "M06.1")
        | (
            (df["_drug"].to_numpy() == "ketamine")
            & df["diagnosis_codes"].str.match(r"F3[23]|G89|G90").to_numpy()
        )
    )
    bits[:, CATEGORIES.index("off_label_use")] |= off_label
    planted = planted | np.where(off_label, CAT_BIT["off_label_use"], 0)
    hazards = np.where(bits, strict, 0.0)
    base = world.payer_base[payer]
    base_logit = np.log(base / (1 - base)) + world.prov_base_logit[prov]
    base = 1 / (1 + np.exp(-base_logit))
    hb = cfg.hidden_behaviour
    hidden = np.zeros(n)
    if hb:
        m = (
            (world.payer_id[payer] == hb["payer"])
            & (world.prov_spec[prov] == hb["specialty"])
            & df["_drugline"].to_numpy()
        )
        hidden[m] = hb["rate"]
    if cfg.payer_preferences:
        hidden = 1 - (1 - hidden) * (1 - _preferences(cfg, world.payer_id[payer], df, drug_detail))
    causes_of = hazards
    if cfg.claim_coupling > 0:
        coupled = _Coupling(cfg.claim_coupling, df["claim_id"], hazards, drug_detail)
        keep_own = (1 - base) * (1 - hidden) * np.prod(1 - coupled.own_hazards, axis=1)
        p_true = 1 - keep_own * (1 - coupled.claim_part)
        denied = (rng.random(n) < 1 - keep_own) | (
            rng.random(coupled.n_claims)[coupled.claim] < coupled.claim_part
        )
        causes_of = coupled.cause_hazards
    else:
        keep = (1 - base) * (1 - hidden) * np.prod(1 - hazards, axis=1)
        p_true = 1 - keep
        denied = rng.random(n) < p_true
    # the driver: one of the causes, in proportion to its hazard
    causes = np.column_stack([base, hidden, causes_of])
    cum = np.cumsum(causes, axis=1)
    pick = (rng.random(n) * cum[:, -1])[:, None] < cum
    driver = np.argmax(pick, axis=1)
    base_carc = np.array(list(BASE_CARCS), dtype=object)[
        rng.choice(len(BASE_CARCS), n, p=np.array(list(BASE_CARCS.values())))
    ]
    cat_carc = np.array(["", "CO-45"] + [CARC[c] for c in CATEGORIES], dtype=object)
    carc = np.where(driver == 0, base_carc, cat_carc[driver]).astype(object)
    carc = np.where(denied, carc, "").astype(object)

    code = df["hcpcs_code"].to_numpy(dtype=object)
    units = df["units"].to_numpy(dtype=float)
    limit = ref.payment_limit().reindex(code).to_numpy(dtype=float)
    dose = df["dose_mg"].to_numpy(dtype=float)
    noc_price = np.where(df["_drug"].to_numpy() == "anakinra", 2.2, 0.9) * np.nan_to_num(dose, nan=50.0)
    fixed = pd.Series(FEES).reindex(code).to_numpy(dtype=float)
    allowed = np.where(
        ~np.isnan(limit),
        limit * units,
        np.where(code == "S0013", 11.0 * units, np.where(~np.isnan(fixed), fixed, noc_price)),
    )
    billed = np.round(allowed * rng.uniform(1.4, 2.0, n), 2)
    paid = np.where(denied, 0.0, np.round(allowed * 0.8, 2))
    adj = df["submission_date"].to_numpy() + rng.integers(10, 45, n).astype("timedelta64[D]")

    out = df.drop(columns=[c for c in df.columns if c.startswith("_")])
    out["billed_amount"] = billed
    out["denied"] = denied
    out["carc_codes"] = carc
    out["paid_amount"] = paid
    out["adjudication_date"] = adj
    out["p_true"] = p_true
    out["planted_categories"] = _mask_strings(planted)
    return out


def _strictness(cfg: SimConfig, world: World, df: pd.DataFrame, payer: np.ndarray) -> np.ndarray:
    """Each line's payer strictness per category, with the enforcement changes applied by
    service date (`enforcement_change`, then `policy_changes` in order)."""
    strict = world.payer_strict[payer].copy()
    svc = df["service_date"].to_numpy()
    changes = ([cfg.enforcement_change] if cfg.enforcement_change else []) + list(cfg.policy_changes)
    for ec in changes:
        m = world.payer_id[payer] == ec["payer"]
        after = svc >= np.datetime64(pd.Timestamp(ec["start"]))
        j = CATEGORIES.index(ec["category"])
        strict[m, j] = np.where(after[m], ec["after"], ec["before"])
    return strict


def _listed(values: pd.Series, item: str) -> np.ndarray:
    """Lines whose ';'-separated `values` hold `item`."""
    return values.str.contains(rf"(?:^|;){re.escape(item)}(?:;|$)", regex=True).to_numpy(dtype=bool)


def _preferences(
    cfg: SimConfig, payer_id: np.ndarray, df: pd.DataFrame, drug_detail: np.ndarray
) -> np.ndarray:
    """Hazard of the payers' preferences no rule names (`SimConfig.payer_preferences`)."""
    keep = np.ones(len(df))
    for pref in cfg.payer_preferences:
        m = drug_detail & (payer_id == pref["payer"])
        if "lacks_documentation" in pref:
            m &= ~_listed(df["documentation"], pref["lacks_documentation"])
        elif "modifier" in pref:
            m &= _listed(df["modifiers"], pref["modifier"])
        elif "diagnosis_prefix" in pref:
            m &= (
                df["diagnosis_codes"]
                .str.contains(rf"(?:^|;){re.escape(pref['diagnosis_prefix'])}", regex=True)
                .to_numpy(dtype=bool)
            )
        elif "place_of_service" in pref:
            m &= (df["place_of_service"] == pref["place_of_service"]).to_numpy()
        else:
            raise ConfigError(
                f"payer_preferences: {pref!r} names no condition (lacks_documentation, modifier, "
                "diagnosis_prefix or place_of_service)"
            )
        keep *= np.where(m, 1 - float(pref["rate"]), 1.0)
    return 1 - keep


class _Coupling:
    """Claim-level outcome coupling (`SimConfig.claim_coupling`).

    A drug line's claim-level hazards (the COUPLED categories) become one claim event: the
    drug line is denied by it when the claim's shared uniform falls below its own claim-level
    hazard, and every other line of the claim when it falls below `coupling` times the
    claim's largest. One shared uniform per claim makes the denials go together; `p_true`
    stays each line's exact marginal probability."""

    def __init__(self, coupling: float, claim_id: pd.Series, hazards: np.ndarray, drug_detail: np.ndarray):
        cc = [CATEGORIES.index(c) for c in COUPLED]
        self.claim, uniques = pd.factorize(claim_id)
        self.n_claims = len(uniques)
        own = np.where(drug_detail, 1 - np.prod(1 - hazards[:, cc], axis=1), 0.0)
        worst = np.zeros(self.n_claims)
        np.maximum.at(worst, self.claim, own)
        self.claim_part = np.where(drug_detail, own, coupling * worst[self.claim])
        self.own_hazards = hazards.copy()
        self.own_hazards[np.ix_(drug_detail, cc)] = 0.0
        # for the CARC only: a sibling line's claim-level causes are its drug line's
        self.cause_hazards = hazards.copy()
        for j in cc:
            top = np.zeros(self.n_claims)
            np.maximum.at(top, self.claim, np.where(drug_detail, hazards[:, j], 0.0))
            self.cause_hazards[:, j] = np.where(
                drug_detail, hazards[:, j], np.maximum(hazards[:, j], coupling * top[self.claim])
            )


def _mask_strings(mask: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(mask, return_inverse=True)
    names = np.array([";".join(c for c in CATEGORIES if u & CAT_BIT[c]) for u in uniq], dtype=object)
    return names[inv.ravel()]

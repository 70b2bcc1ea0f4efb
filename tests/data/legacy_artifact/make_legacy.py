"""Built with denial-model at commit dc8e0da (the layout before issue 10)."""

import sys

from denial_model.artifact import save_artifact
from denial_model.score import reference_profile
from denial_model.simulate import SimConfig, simulate
from denial_model.train import TrainConfig, train_model

h = simulate(SimConfig(lines=6000, seed=3, months=12))
res = train_model(h, TrainConfig(max_iter=15, test_months=2, calib_months=2))
feats = res.model.named_steps["features"]
x = feats.transform(res.splits.train)
ref = reference_profile(x, res.model.named_steps["classifier"].predict_proba(x)[:, 1])
save_artifact(
    sys.argv[1],
    res.model,
    res.thresholds,
    {"auroc": 0.0},
    "legacy-fixture",
    extra={"split": res.splits.bounds, "train_config": res.config.to_dict(), "drift_reference": ref},
)
lines = res.splits.test.head(40)
lines.to_parquet(sys.argv[2], index=False)
p = res.model.predict_proba(lines)[:, 1]
import json

open(sys.argv[3], "w").write(json.dumps([float(v) for v in p]))

"""Built with denial-model 0.7.0 at commit 38269f9 (every feature group of 0.7, expected included;
calibration chosen on the calibration months; a reason-group model)."""

import json
import sys

from denial_model.jobs import run_training
from denial_model.score import score_frame
from denial_model.artifact import load_artifact
from denial_model.simulate import SimConfig, simulate
from denial_model.table import INPUT_COLUMNS
from denial_model.train import TrainConfig

h = simulate(SimConfig(lines=8000, seed=3, months=12))
cfg = TrainConfig(max_iter=40, group_max_iter=20, test_months=2, calib_months=2)
run = run_training(h, sys.argv[1], cfg, track=False)
test = run.result.splits.test
lines = test.head(40)[list(INPUT_COLUMNS)]
lines.to_parquet(sys.argv[2], index=False)
scored, _ = score_frame(lines, load_artifact(sys.argv[1]))
expected = {c: scored[c].tolist() for c in ("denial_probability", "reason_group", "risk_tier")}
open(sys.argv[3], "w").write(json.dumps(expected))

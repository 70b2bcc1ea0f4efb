"""Fast, exact `predict_proba` of the fitted classifier step for batch scoring.

Public `predict_proba` of a HistGradientBoosting model with categorical features runs an
OrdinalEncoder over object columns and then walks every tree on float64 rows; on this
project's model that is about 12 us per line. The booster itself predicts on its own
uint8 bins (what it does for early stopping) several times faster. `BinnedPredictor` maps
the featurizer's category codes to the encoder's codes with a lookup table, bins every
column by the bin mapper's own thresholds (the rule hits by lookup, straight from the hit
matrix), sums the trees on the bins and applies the calibrator (isotonic or sigmoid).

It reads fitted attributes that scikit-learn does not promise to keep (`_preprocessor`,
`_bin_mapper`, `_predictors`, and the private OpenMP helper): this module is the one seam
where the toolkit touches scikit-learn internals. They are all read inside the guarded
constructor; `make_predictor` falls back to the public API with a warning when anything is
missing, and `denial_model.scorer.Scorer` checks the fast path against the public
`predict_proba` on sample claims before using it. scikit-learn is capped at the minor
releases the tests pass on (pyproject.toml).

Threads: the booster's tree walk runs an OpenMP region per call. A batch makes thousands of
small calls (the counterfactual re-scoring walks a few trees on a few rows at a time); each
region on two threads waits for both, and on a machine where another process holds a core
that wait is a scheduler time slice. Calls on fewer than `PARALLEL_ROWS` rows therefore run
on one thread, and only the large calls use OpenMP's threads. A few rows (a claim sent to
the service) do not call the booster's walk at all: `leaf_values` walks them through every
tree at once on the trees' nodes flattened into arrays, bit for bit what the booster's walk
gives (tested), where a call per tree would cost more than the walking.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from threadpoolctl import threadpool_limits

from denial_model.features.claim import FeatureColumns
from denial_model.memo import by_identity

__all__ = ["BinnedGroups", "BinnedPredictor", "PublicPredictor", "make_predictor"]

PARALLEL_ROWS = 50_000
# Up to this many rows the trees are walked all at once in NumPy (`leaf_values`): a call of
# scikit-learn's walk costs about 8 us a tree, NumPy's about 0.4 us a (row, tree) pair more
# than scikit-learn's own, so the two meet near 20 rows
WALK_ROWS = 16
# category lookups kept per predictor (a fitted featurizer needs one per categorical column)
MAX_LOOKUPS = 256


class _Binned:
    """A fitted booster's own binning of a `ClaimFeatures` frame (shared by both predictors)."""

    def _bind(self, hgb: HistGradientBoostingClassifier) -> None:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads  # private: guarded here

        self.hgb = hgb
        names = list(hgb.feature_names_in_)
        is_cat = np.asarray(hgb.is_categorical_, dtype=bool)
        self.cat_cols = [names[i] for i in np.flatnonzero(is_cat)]
        # the encoder's output comes first in the booster's matrix, then the other columns
        if list(np.flatnonzero(hgb._is_categorical_remapped)) != list(range(len(self.cat_cols))):
            raise TypeError("unexpected preprocessed column order")
        self.columns = [*self.cat_cols, *(names[i] for i in np.flatnonzero(~is_cat))]
        self.position = {c: i for i, c in enumerate(self.columns)}
        enc = hgb._preprocessor.named_transformers_["encoder"]
        self.encoder_categories = [np.asarray(c, dtype=object) for c in enc.categories_]
        self.lookups: dict = {}  # `_codes` per categories object (memo.by_identity)
        self.plans: dict = {}  # `_plan` per tuple of binary feature names
        mapper = hgb._bin_mapper
        self.missing_bin = mapper.missing_values_bin_idx_
        self.thresholds = [np.asarray(t, dtype=np.float64) for t in mapper.bin_thresholds_]
        self.zero_bins = np.array([np.searchsorted(t, 0.0) for t in self.thresholds], dtype=np.uint8)
        self.one_bins = np.array([np.searchsorted(t, 1.0) for t in self.thresholds], dtype=np.uint8)
        self.n_threads = _openmp_effective_n_threads()
        # iteration -> one tree per class (one tree for a binary booster)
        self.iterations = [list(trees) for trees in hgb._predictors]
        self.flat_trees = [tree for trees in self.iterations for tree in trees]  # iteration, then class
        self._flatten(self.flat_trees)
        # column -> the trees with a split on it: only those can change when it changes
        self.trees_using: dict[int, list[int]] = {}
        for t, trees in enumerate(self.iterations):
            for tree in trees:
                split = tree.nodes["feature_idx"][tree.nodes["is_leaf"] == 0]
                for j in np.unique(split):
                    used = self.trees_using.setdefault(int(j), [])
                    if not used or used[-1] != t:
                        used.append(t)
        self.used = [k for k in range(len(self.columns)) if k in self.trees_using]  # in column order
        self.unused = [k for k in range(len(self.columns)) if k not in self.trees_using]

    def _flatten(self, trees: list) -> None:
        """Every tree's nodes in flat arrays, so a few rows walk all the trees at once
        (`leaf_values`): each node's child for "left" and "right" (a leaf is its own child,
        so rows that reached one stay there) and, for each of the 256 bins, whether a row
        with that bin goes left: the threshold of a numeric split, the bitset of a
        categorical one, the missing bin's own side, all decided here once."""
        nodes = [t.nodes for t in trees]
        sizes = np.array([len(n) for n in nodes], dtype=np.int64)
        self.roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        flat = np.concatenate(nodes)
        offset = np.repeat(self.roots, sizes)
        bitsets = [np.asarray(t.binned_left_cat_bitsets, dtype=np.uint32).reshape(-1, 8) for t in trees]
        first_bitset = np.concatenate([[1], 1 + np.cumsum([len(b) for b in bitsets])[:-1]]).astype(np.int64)
        self.tree_of = {id(t): i for i, t in enumerate(trees)}
        self.node_value = flat["value"].astype(np.float64)
        self.node_leaf = flat["is_leaf"].astype(bool)
        leaf = np.flatnonzero(self.node_leaf)
        self.node_feature = np.where(self.node_leaf, 0, flat["feature_idx"].astype(np.int64))
        self.node_child = np.stack([flat["right"].astype(np.int64), flat["left"].astype(np.int64)], axis=1)
        self.node_child += offset[:, None]
        self.node_child[leaf] = leaf[:, None]
        # row 0: a dummy for the splits that are not categorical
        stacked = np.concatenate([np.zeros((1, 8), np.uint32), *bitsets])
        categorical = flat["is_categorical"].astype(bool)
        bitset_of = flat["bitset_idx"].astype(np.int64) + np.repeat(first_bitset, sizes)
        node_bitset = np.where(categorical, bitset_of, 0)
        b = np.arange(256)
        in_set = (stacked[node_bitset][:, b >> 5] >> (b & 31)) & 1
        left = np.where(
            categorical[:, None],
            in_set.astype(bool),
            b[None, :] <= flat["bin_threshold"].astype(np.int64)[:, None],
        )
        left[:, self.missing_bin] = flat["missing_go_to_left"].astype(bool)
        self.node_left_of_bin = left.astype(np.uint8)  # (nodes, 256): 1 = left (child column 1)
        self.depth = int(flat["depth"].max(initial=0)) + 1

    def _tree_roots(self, trees: list) -> np.ndarray:
        """The root node of each of `trees` (all of them, in order: `roots` as it is)."""
        if trees is self.flat_trees or (len(trees) == len(self.flat_trees) and trees == self.flat_trees):
            return self.roots
        return self.roots[[self.tree_of[id(t)] for t in trees]]

    def leaf_values(self, Xb: np.ndarray, trees: list) -> np.ndarray:
        """(rows, trees): each tree's value for each binned row, as `predict_binned` gives it.
        Few rows walk every tree at once, a level a step (a few NumPy operations instead of a
        call per tree, which for a claim is most of the cost); many rows walk tree by tree
        in scikit-learn's own code."""
        if Xb.shape[0] > WALK_ROWS:
            threads = self._threads(len(Xb))
            cols = [t.predict_binned(Xb, self.missing_bin, threads) for t in trees]
            return np.column_stack(cols) if cols else np.zeros((len(Xb), 0))
        node = np.broadcast_to(self._tree_roots(trees), (len(Xb), len(trees))).copy()
        row = np.arange(len(Xb))[:, None]
        for _ in range(self.depth):
            if self.node_leaf[node].all():
                break
            node = self.node_child[node, self.node_left_of_bin[node, Xb[row, self.node_feature[node]]]]
        return self.node_value[node]

    def _codes(self, k: int, col: pd.Series | pd.Categorical) -> np.ndarray:
        """Category codes of the featurizer -> the encoder's codes (NaN: missing or unseen).
        The lookup is built once per categories object (the fitted featurizer's dtype gives
        the same one every call; kept in the entry, so its identity is not reused)."""
        cat = col.array if isinstance(col, pd.Series) else col  # `.cat` builds a Series per attribute
        cats = cat.categories

        def build() -> np.ndarray:
            pos = pd.Index(self.encoder_categories[k]).get_indexer(cats.astype(object))
            return np.append(np.where(pos >= 0, pos, np.nan), np.nan)  # last: code -1

        return by_identity(self.lookups, cats, self.cat_cols[k], build, MAX_LOOKUPS)[cat.codes]

    def _bins(self, k: int, x: np.ndarray) -> np.ndarray:
        """The bin mapper's rule for one column: thresholds[i-1] < x <= thresholds[i] -> i."""
        b = np.searchsorted(self.thresholds[k], x, side="left").astype(np.uint8)
        b[np.isnan(x)] = self.missing_bin
        return b

    def prepare(
        self, X: pd.DataFrame | FeatureColumns, binary: tuple[list[str], np.ndarray] | None = None
    ) -> np.ndarray:
        """The booster's uint8 bins of `X` (a feature frame, or `FeatureColumns`), one row per
        line, in Fortran order: every column is written whole and contiguous (row-major
        writes of 200 columns cost more than the tree walk, which reads either order).

        `binary`: (feature names, bool matrix) of 0/1 features already at hand as a matrix
        (the rule hits): they are binned by lookup instead of being read back from `X`."""
        rows = X.n if isinstance(X, FeatureColumns) else len(X)
        out = np.empty((rows, len(self.columns)), dtype=np.uint8, order="F")
        pos, lo, hi, block, wanted = self._plan(None if binary is None else binary[0])
        if binary is not None:
            values = binary[1]
            if block:
                dest = out[:, pos[0] : pos[0] + len(pos)]  # the rule columns are one block: write in place
                if not lo.any() and (hi == 1).all():  # bins 0 and 1: the hits as they are
                    src = values.view(np.uint8) if values.dtype == bool else values
                    np.copyto(dest, src, casting="unsafe")
                else:
                    np.multiply(values, hi - lo, out=dest, casting="unsafe")
                    if lo.any():
                        dest += lo
            else:
                out[:, pos] = np.where(values, hi, lo)
        out[:, self.unused] = 0  # no tree splits on them: their bins cannot matter
        for k in (k for k in wanted if k < len(self.cat_cols)):
            out[:, k] = self._bins(k, self._codes(k, X[self.columns[k]]))
        numeric = [k for k in wanted if k >= len(self.cat_cols)]
        if isinstance(X, FeatureColumns):
            for k in numeric:
                out[:, k] = self._bins(k, np.asarray(X[self.columns[k]], dtype=np.float64))
        elif numeric:  # read out of the frame as one float matrix: a column at a time costs more
            values = X[[self.columns[k] for k in numeric]].to_numpy(dtype=np.float64)
            for j, k in enumerate(numeric):
                out[:, k] = self._bins(k, values[:, j])
        return out

    def _plan(self, names) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, list[int]]:
        """For `prepare` given the binary features `names` (or None): their columns, their
        bins for 0 and 1, whether the columns are one block, and the used columns left to
        read from `X`. Built once per names object (a rule pack's ids: the same tuple every
        call; a list is planned every time), kept with it so its identity is not reused."""

        def build() -> tuple:
            pos = np.array([self.position[f] for f in names or ()], dtype=np.int64)
            block = bool(len(pos)) and np.array_equal(pos, np.arange(pos[0], pos[0] + len(pos)))
            done = set(names or ())
            wanted = [k for k in self.used if self.columns[k] not in done]
            return pos, self.zero_bins[pos], self.one_bins[pos], block, wanted

        if names is None or isinstance(names, tuple):  # a list could change: planned every time
            return by_identity(self.plans, names, "plan", build, MAX_LOOKUPS)
        return build()

    def _threads(self, rows: int) -> int:
        return self.n_threads if rows >= PARALLEL_ROWS else 1


class BinnedPredictor(_Binned):
    """P(denied) for a feature frame of `ClaimFeatures`, equal to the public path."""

    def __init__(self, classifier: CalibratedClassifierCV):
        if not isinstance(classifier, CalibratedClassifierCV) or len(classifier.calibrated_classifiers_) != 1:
            raise TypeError("expected a CalibratedClassifierCV fitted on a frozen booster")
        cc = classifier.calibrated_classifiers_[0]
        hgb = getattr(cc.estimator, "estimator", cc.estimator)  # unwrap FrozenEstimator
        if not isinstance(hgb, HistGradientBoostingClassifier) or hgb.n_trees_per_iteration_ != 1:
            raise TypeError("expected a binary HistGradientBoostingClassifier")
        if not (
            (cc.method == "isotonic" and isinstance(cc.calibrators[0], IsotonicRegression))
            or (cc.method == "sigmoid" and type(cc.calibrators[0]).__name__ == "_SigmoidCalibration")
        ):
            raise TypeError(f"expected isotonic or sigmoid calibration, got {cc.method!r}")
        if list(classifier.classes_) != [False, True] or list(hgb.classes_) != [False, True]:
            raise TypeError("expected classes [False, True]")
        self._bind(hgb)
        self.calibrator = cc.calibrators[0]
        self.trees = [tree for (tree,) in self.iterations]

    # The scoring interface (shared with PublicPredictor): prepare once, score the prepared
    # rows (raw, then calibrate), and score subsets with one feature set to 0 (counterfactuals).

    def raw(self, Xb: np.ndarray) -> np.ndarray:
        """The booster's raw score (log-odds) of binned rows."""
        raw = np.full(len(Xb), float(self.hgb._baseline_prediction.ravel()[0]))
        if len(Xb) > WALK_ROWS:  # a batch: tree by tree, without a (rows, trees) matrix
            threads = self._threads(len(Xb))
            for tree in self.trees:
                raw += tree.predict_binned(Xb, self.missing_bin, threads)
            return raw
        values = self.leaf_values(Xb, self.trees)
        for t in range(values.shape[1]):  # in order: the sums the loop above gives
            raw += values[:, t]
        return raw

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        p = self.calibrator.predict(raw)
        p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0
        return p

    def proba(self, Xb: np.ndarray) -> np.ndarray:
        return self.calibrate(self.raw(Xb))

    def proba_zeroed(self, Xb: np.ndarray, raw: np.ndarray, rows: np.ndarray, feature: str) -> np.ndarray:
        """P(denied) of `rows` with `feature` set to 0, given the rows' raw scores.

        Only the trees that split on the feature can change: they are walked on the row as it
        is and as corrected, and the difference moves the raw score (the rest are not walked
        again). A feature most trees use is re-scored whole."""
        j = self.position[feature]
        trees = self.trees_using.get(j, [])
        if not trees:
            return self.calibrate(raw[rows])
        fixed = Xb[rows]
        fixed[:, j] = self.zero_bins[j]
        if 2 * len(trees) >= len(self.trees):
            return self.proba(fixed)
        orig = Xb[rows]
        after = raw[rows].copy()
        walked = [self.trees[t] for t in trees]
        now, before = self.leaf_values(fixed, walked), self.leaf_values(orig, walked)
        for t in range(len(walked)):
            after += now[:, t]
            after -= before[:, t]
        return self.calibrate(after)

    def raw_permuted(self, Xb: np.ndarray, raw: np.ndarray, feature: str, order: np.ndarray) -> np.ndarray:
        """Raw scores of the rows with `feature`'s values taken from rows `order` (a
        permutation: permutation importance), given their raw scores: only the trees that
        split on the feature are walked again, on the rows as they are and as moved."""
        j = self.position[feature]
        trees = self.trees_using.get(j, [])
        out = raw.copy()
        if not trees:
            return out
        moved = Xb.copy(order="F")
        moved[:, j] = Xb[order, j]
        threads = self._threads(len(Xb))
        for t in trees:
            out += self.trees[t].predict_binned(moved, self.missing_bin, threads)
            out -= self.trees[t].predict_binned(Xb, self.missing_bin, threads)
        return out

    def proba_zeroed_pairs(self, Xb: np.ndarray, rows: np.ndarray, features: list[str]) -> np.ndarray:
        """P(denied) of each (row, feature) pair with that feature set to 0: the pairs'
        rows stacked and walked through every tree once (few pairs: fewer, larger calls)."""
        fixed = Xb[rows]
        cols = np.array([self.position[f] for f in features], dtype=np.int64)
        fixed[np.arange(len(rows)), cols] = self.zero_bins[cols]
        return self.proba(fixed)

    def proba_zeroed_sets(self, Xb: np.ndarray, rows: np.ndarray, features: list[str]) -> np.ndarray:
        """P(denied) of each distinct row of `rows` (sorted) with all of its (row, feature)
        pairs' features set to 0 at once: every fix of a line together."""
        lines, inverse = np.unique(rows, return_inverse=True)
        fixed = Xb[lines]
        cols = np.array([self.position[f] for f in features], dtype=np.int64)
        fixed[inverse, cols] = self.zero_bins[cols]
        return self.proba(fixed)

    def __call__(self, X: pd.DataFrame) -> np.ndarray:
        return self.proba(self.prepare(X))


class BinnedGroups(_Binned):
    """P(reason group | denied) of the calibrated multiclass group booster
    (`train.fit_reason_groups`) on its own bins, equal to its public `predict_proba`: the
    raw score of each class summed over the trees, each class's sigmoid calibrator, the rows
    normalized (as `CalibratedClassifierCV` does for several classes)."""

    def __init__(self, classifier: CalibratedClassifierCV):
        if not isinstance(classifier, CalibratedClassifierCV) or len(classifier.calibrated_classifiers_) != 1:
            raise TypeError("expected a CalibratedClassifierCV fitted on a frozen booster")
        cc = classifier.calibrated_classifiers_[0]
        hgb = getattr(cc.estimator, "estimator", cc.estimator)
        if not isinstance(hgb, HistGradientBoostingClassifier) or hgb.n_trees_per_iteration_ < 3:
            raise TypeError("expected a multiclass HistGradientBoostingClassifier")
        if cc.method != "sigmoid" or len(cc.calibrators) != hgb.n_trees_per_iteration_:
            raise TypeError("expected one sigmoid calibrator per class")
        self._bind(hgb)
        self.calibrators = list(cc.calibrators)
        self.columns_of = np.searchsorted(np.asarray(cc.classes), np.asarray(hgb.classes_))
        self.n_classes = len(cc.classes)

    def proba(self, Xb: np.ndarray, threads: int | None = None) -> np.ndarray:
        """`threads`: OpenMP threads of the tree walk (default: by the number of rows)."""
        raw = np.tile(np.asarray(self.hgb._baseline_prediction, dtype=float).ravel(), (len(Xb), 1))
        threads = threads or self._threads(len(Xb))
        if len(Xb) <= WALK_ROWS:
            values = self.leaf_values(Xb, self.flat_trees).reshape(len(Xb), len(self.iterations), -1)
            for t in range(values.shape[1]):  # in order, as the loop below adds them
                raw += values[:, t, :]
        else:
            for trees in self.iterations:
                for k, tree in enumerate(trees):
                    raw[:, k] += tree.predict_binned(Xb, self.missing_bin, threads)
        proba = np.zeros((len(Xb), self.n_classes))
        for k, calibrator in enumerate(self.calibrators):
            proba[:, self.columns_of[k]] = calibrator.predict(raw[:, k])
        total = proba.sum(axis=1, keepdims=True)
        proba = np.divide(proba, total, out=np.full_like(proba, 1 / self.n_classes), where=total != 0)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba


class PublicPredictor:
    """The same interface over public `predict_proba` (any fitted classifier step)."""

    def __init__(self, classifier):
        self.classifier = classifier

    def prepare(self, X: pd.DataFrame, binary: tuple[list[str], np.ndarray] | None = None) -> pd.DataFrame:
        """`X` with the `binary` features added as 0/1 columns, in the classifier's order."""
        if isinstance(X, FeatureColumns):
            X = X.frame()
        if binary is None:
            return X
        names, values = binary
        full = pd.concat([pd.DataFrame(values.astype(np.float32), columns=names), X], axis=1)
        order = getattr(self.classifier, "feature_names_in_", None)
        return full[list(order)] if order is not None else full

    def raw(self, X: pd.DataFrame) -> np.ndarray:
        if len(X) >= PARALLEL_ROWS:
            return self.classifier.predict_proba(X)[:, 1]
        with threadpool_limits(1, user_api="openmp"):  # see the module docstring: small calls, one thread
            return self.classifier.predict_proba(X)[:, 1]

    @staticmethod
    def calibrate(raw: np.ndarray) -> np.ndarray:
        return raw

    def proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.raw(X)

    def proba_zeroed(self, X: pd.DataFrame, raw: np.ndarray, rows: np.ndarray, feature: str) -> np.ndarray:
        fixed = X.iloc[rows].reset_index(drop=True)
        fixed[feature] = np.zeros(len(fixed), dtype=fixed[feature].dtype)
        return self.proba(fixed)

    def raw_permuted(self, X: pd.DataFrame, raw: np.ndarray, feature: str, order: np.ndarray) -> np.ndarray:
        moved = X.copy()
        moved[feature] = X[feature].array.take(order)
        return self.raw(moved)

    def proba_zeroed_pairs(self, X: pd.DataFrame, rows: np.ndarray, features: list[str]) -> np.ndarray:
        fixed = X.iloc[rows].reset_index(drop=True)
        names = np.asarray(features, dtype=object)
        for f in pd.unique(names):
            at = np.flatnonzero(names == f)
            fixed.loc[at, f] = np.zeros(len(at), dtype=fixed[f].dtype)
        return self.proba(fixed)

    def proba_zeroed_sets(self, X: pd.DataFrame, rows: np.ndarray, features: list[str]) -> np.ndarray:
        lines, inverse = np.unique(rows, return_inverse=True)
        fixed = X.iloc[lines].reset_index(drop=True)
        names = np.asarray(features, dtype=object)
        for f in pd.unique(names):
            at = np.unique(inverse[names == f])
            fixed.loc[at, f] = np.zeros(len(at), dtype=fixed[f].dtype)
        return self.proba(fixed)

    def __call__(self, X: pd.DataFrame) -> np.ndarray:
        return self.proba(X)


def make_predictor(classifier) -> BinnedPredictor | PublicPredictor:
    """The binned path when the fitted classifier allows it, else public `predict_proba`
    (with a warning: results are the same, scoring is several times slower)."""
    try:
        return BinnedPredictor(classifier)
    except (TypeError, AttributeError, KeyError, IndexError, ImportError, ValueError) as exc:
        warnings.warn(
            f"fast binned prediction unavailable ({type(exc).__name__}: {exc}); scoring with the public "
            "predict_proba (same results, several times slower)",
            RuntimeWarning,
            stacklevel=2,
        )
        return PublicPredictor(classifier)

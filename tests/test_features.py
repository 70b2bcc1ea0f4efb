"""RuleFeaturizer follows scikit-learn's estimator conventions."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone

from denial_model.features import RuleFeaturizer
from denial_model.samples import sample_table


def test_fit_transform_gives_one_column_per_rule_named_by_id(pack):
    X = sample_table(pack)
    f = RuleFeaturizer().fit(X)
    out = f.transform(X)
    assert list(out.columns) == pack.ids == list(f.get_feature_names_out())
    assert out.shape == (len(X), len(pack.rules))
    assert set(np.unique(out.to_numpy())) <= {0.0, 1.0}
    assert out.to_numpy().sum() > 0


def test_clone_and_pickle_keep_the_pack_and_the_output(pack):
    X = sample_table(pack)
    f = RuleFeaturizer().fit(X)
    restored = pickle.loads(pickle.dumps(f))
    assert restored.pack_sha256_ == pack.sha256
    assert restored.transform(X).equals(f.transform(X))
    assert clone(f).get_params() == {"pack_dir": None}


def test_transform_refuses_bad_rows_naming_row_and_column(pack):
    X = sample_table(pack).astype(str)
    X.loc[4, "units"] = "-1"
    with pytest.raises(ValueError, match=r"row 4 .*column units"):
        RuleFeaturizer().fit(X.iloc[:2]).transform(X)

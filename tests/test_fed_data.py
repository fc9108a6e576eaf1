"""gradkit.fed.data: CIC-IDS2017 cleaning, labels, synthetic flows, Dirichlet partition, scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradkit.fed.data import (
    CLASSES,
    FEATURES,
    RAW_LABELS,
    StandardScaler,
    clean_frame,
    client_split,
    dirichlet_partition,
    load_cicids2017,
    make_synthetic_frame,
    map_labels,
    signed_log1p,
    synthetic_flows,
)

HEADER = [" " + f if f != "Flow Bytes/s" else f for f in FEATURES]
HEADER[FEATURES.index("Fwd Header Length.1")] = " Fwd Header Length"  # as in the real files
HEADER.append(" Label")


def _row(value: float, label: str, constant: float = 7.0) -> list[str]:
    vals = [value + j for j in range(len(FEATURES))]
    vals[FEATURES.index("Bwd PSH Flags")] = constant
    return [repr(float(v)) for v in vals] + [label]


def _write_csv(path: Path, rows: list[list[str]], encoding: str = "cp1252") -> Path:
    text = ",".join(HEADER) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def raw_csv(tmp_path: Path) -> Path:
    """Every raw label once, plus an inf row, a -inf row, a NaN row and a duplicated row."""
    rows = [_row(10.0 * i, label) for i, label in enumerate(RAW_LABELS)]
    bad_inf = _row(1000.0, "BENIGN")
    bad_inf[FEATURES.index("Flow Bytes/s")] = "Infinity"
    bad_ninf = _row(2000.0, "DDoS")
    bad_ninf[FEATURES.index("Flow Packets/s")] = "-inf"
    bad_nan = _row(3000.0, "Bot")
    bad_nan[3] = ""
    rows += [bad_inf, bad_ninf, bad_nan, rows[0], rows[5]]
    return _write_csv(tmp_path / "Tuesday.csv", rows)


def test_cleaning_steps_in_order(raw_csv: Path) -> None:
    data = load_cicids2017(raw_csv)
    # 15 clean + 3 non-finite + 2 duplicates
    assert data.stats["rows_in"] == 20
    assert data.stats["rows_nonfinite"] == 3
    assert data.stats["rows_duplicate"] == 2
    assert data.stats["rows_out"] == 15 == len(data.y) == len(data.X)
    # stripped names, duplicate dropped, constant column dropped
    assert "Fwd Header Length.1" not in data.feature_names
    assert "Fwd Header Length" in data.feature_names
    assert data.dropped_columns == ("Bwd PSH Flags",)
    assert len(data.feature_names) == 78 - 2
    assert all(n == n.strip() for n in data.feature_names)
    assert np.isfinite(data.X).all() and data.X.dtype == np.float32
    # the 15 raw labels land in all 8 classes, in RAW_LABELS order
    expected = [CLASSES.index(c) for c in RAW_LABELS.values()]
    assert data.y.tolist() == expected
    assert set(data.y.tolist()) == set(range(8))


def test_loader_accepts_file_list_and_directory(raw_csv: Path, tmp_path: Path) -> None:
    second = _write_csv(tmp_path / "Wednesday.csv", [_row(5000.0, "PortScan"), _row(0.0, "BENIGN")])
    single = load_cicids2017(raw_csv)
    both = load_cicids2017([raw_csv, second], chunksize=4, dtype=np.float64)
    directory = load_cicids2017(tmp_path)
    # the second file's BENIGN row duplicates the first file's: removed across files
    assert both.stats["rows_duplicate"] == single.stats["rows_duplicate"] + 1
    assert len(both.y) == len(single.y) + 1 and both.X.dtype == np.float64
    np.testing.assert_array_equal(directory.y, both.y)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_cicids2017(tmp_path / "nope.csv")


def test_label_normalisation_variants() -> None:
    variants = [
        "Web Attack \x96 Brute Force",  # cp1252 byte read as latin-1
        "Web Attack \ufffd XSS",  # read as utf-8 with replacement
        "Web Attack - Sql Injection",
        " web attack  sql injection ",
        "DoS slowloris",
        "Heartbleed",
        "BENIGN",
    ]
    assert map_labels(variants).tolist() == [5, 5, 5, 5, 1, 7, 0]
    with pytest.raises(ValueError, match=r"unknown CIC-IDS2017 label\(s\) 'Zeus', 'foo'"):
        map_labels(["BENIGN", "Zeus", "foo", "Zeus"])


def test_unknown_label_in_file_raises(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "x.csv", [_row(1.0, "BENIGN"), _row(2.0, "Mirai")])
    with pytest.raises(ValueError, match="Mirai"):
        load_cicids2017(path)


def test_clean_frame_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no 'Label' column"):
        clean_frame(pd.DataFrame({" a": [1.0]}))
    with pytest.raises(ValueError, match="non-numeric"):
        clean_frame(pd.DataFrame({" a": ["x"], " Label": ["BENIGN"]}))


def test_synthetic_frame_schema_and_determinism() -> None:
    frame = make_synthetic_frame(3000, seed=3)
    assert [c.strip() for c in frame.columns] == [*FEATURES, "Label"]
    assert any(c.startswith(" ") for c in frame.columns)
    assert set(frame[" Label"]) <= set(RAW_LABELS)
    pd.testing.assert_frame_equal(frame, make_synthetic_frame(3000, seed=3))
    assert not frame.equals(make_synthetic_frame(3000, seed=4))
    data = clean_frame(frame)
    assert data.stats["rows_nonfinite"] > 0 and data.stats["rows_duplicate"] > 0
    assert data.stats["columns_constant"] == 8
    shares = data.class_counts() / len(data.y)
    assert 0.75 < shares[0] < 0.85  # BENIGN dominates
    assert shares[7] < 0.01 and shares[6] < 0.02 and shares[5] < 0.02  # tiny classes
    with pytest.raises(ValueError, match="unknown class"):
        make_synthetic_frame(10, class_weights={"Mirai": 1.0})


def test_synthetic_is_learnable_but_not_trivial() -> None:
    data = synthetic_flows(6000, seed=0)
    c = client_split(data.X, data.y, np.arange(len(data.y)), seed=0)
    # nearest class mean in the scaled space: well above the majority rate, below perfect
    means = np.stack([c.X_train[c.y_train == k].mean(0) for k in range(8)])
    pred = ((c.X_test[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    majority = (c.y_test == 0).mean()
    acc = (pred == c.y_test).mean()
    balanced = np.mean([(pred[c.y_test == k] == k).mean() for k in np.unique(c.y_test)])
    assert balanced > 0.5 and acc < 0.999, (acc, balanced, majority)


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_dirichlet_is_a_partition(alpha: float) -> None:
    y = np.random.default_rng(0).choice(
        8, size=4000, p=[0.6, 0.2, 0.1, 0.04, 0.03, 0.01, 0.01, 0.01]
    )
    parts = dirichlet_partition(y, 10, alpha, seed=1, min_size=20)
    assert len(parts) == 10 and min(len(p) for p in parts) >= 20
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(len(y)))  # disjoint and complete
    again = dirichlet_partition(y, 10, alpha, seed=1, min_size=20)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_dirichlet_skew_shrinks_with_alpha() -> None:
    y = np.repeat(np.arange(8), 500)
    glob = np.bincount(y, minlength=8) / len(y)

    def skew(alpha: float) -> float:
        tv = []
        for seed in range(3):
            for p in dirichlet_partition(y, 10, alpha, seed=seed, min_size=5):
                dist = np.bincount(y[p], minlength=8) / len(p)
                tv.append(0.5 * np.abs(dist - glob).sum())
        return float(np.mean(tv))

    s = [skew(a) for a in (0.05, 0.5, 5.0, 500.0)]
    assert s[0] > s[1] > s[2] > s[3] and s[3] < 0.05 and s[0] > 0.5, s


def test_dirichlet_errors() -> None:
    y = np.zeros(50, dtype=int)
    with pytest.raises(ValueError, match="alpha must be"):
        dirichlet_partition(y, 2, 0.0)
    with pytest.raises(ValueError, match="exceeds the 50 samples"):
        dirichlet_partition(y, 10, 1.0, min_size=6)
    with pytest.raises(ValueError, match="no Dirichlet"):
        dirichlet_partition(np.arange(40) % 2, 4, 0.01, seed=0, min_size=10, max_tries=3)


def test_scaler_fitted_on_train_split_only() -> None:
    rng = np.random.default_rng(0)
    X = rng.lognormal(size=(200, 3)).astype(np.float32)
    y = np.zeros(200, dtype=np.int64)
    idx = np.arange(50, 150)
    c = client_split(X, y, idx, test_fraction=0.25, seed=7)
    assert len(c.y_train) == 75 and len(c.y_test) == 25
    # the train split is standardised exactly; the test split with the *train* statistics
    np.testing.assert_allclose(c.X_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(c.X_train.std(0), 1.0, atol=1e-4)
    assert np.abs(c.X_test.mean(0)).max() > 1e-3
    # recompute from the raw training rows: no test row and no other client's row is used
    order = np.random.default_rng(7).permutation(idx)
    train_rows = order[25:]
    ref = StandardScaler().fit(signed_log1p(X[train_rows]))
    np.testing.assert_allclose(c.scaler.mean_, ref.mean_)
    np.testing.assert_allclose(c.X_test, ref.transform(signed_log1p(X[order[:25]])), rtol=1e-6)
    # changing a test row (or a row of another client) leaves the scaler unchanged
    X2 = X.copy()
    X2[order[:25]] *= 100.0
    X2[:50] = 1e6
    c2 = client_split(X2, y, idx, test_fraction=0.25, seed=7)
    np.testing.assert_array_equal(c2.scaler.mean_, c.scaler.mean_)
    np.testing.assert_array_equal(c2.X_train, c.X_train)


def test_scaler_constant_feature_and_errors() -> None:
    s = StandardScaler().fit(np.array([[1.0, 2.0], [1.0, 4.0]]))
    np.testing.assert_array_equal(s.transform(np.array([[1.0, 3.0]])), [[0.0, 0.0]])
    with pytest.raises(ValueError, match="not fitted"):
        StandardScaler().transform(np.ones((1, 1)))
    with pytest.raises(ValueError, match="test_fraction"):
        client_split(np.ones((4, 1)), np.zeros(4), np.arange(4), test_fraction=1.0)

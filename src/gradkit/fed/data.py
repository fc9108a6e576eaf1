"""CIC-IDS2017 flows: a loader for the MachineLearningCVE CSVs, a synthetic stand-in with the
same schema, a non-IID Dirichlet partition, and per-client scaling fitted on training data only.

Cleaning (:func:`clean_frame`), in this order (community practice for CIC-IDS2017; the
EdgeDetect paper's exact recipe is not public, see ``docs/fed.md``):

1. strip whitespace from the column names (the real files have leading spaces: ``" Label"``);
2. drop the duplicated ``Fwd Header Length.1`` column (pandas' name for the second
   ``Fwd Header Length`` in the header);
3. replace ±inf by NaN (``Flow Bytes/s`` and ``Flow Packets/s`` are ``Infinity`` for flows of
   zero duration), then drop every row with a NaN;
4. drop duplicate rows (features *and* label);
5. drop constant (zero-variance) feature columns;
6. map the 15 raw labels to the 8 classes of :data:`CLASSES` (an unknown label raises
   ``ValueError`` naming it). Raw labels are normalised first, so ``"Web Attack – Brute Force"``
   read with any encoding (the files hold a cp1252 en dash, byte 0x96) matches.

Scaling is *not* part of the cleaning: it is fitted per client on that client's training split
(:func:`client_split`), after a stateless signed ``log1p`` that tames the heavy tails. Fitting a
scaler on all data would leak the test split's statistics and other clients' data into each
client.

Example:
    >>> frame = make_synthetic_frame(500, seed=0)
    >>> data = clean_frame(frame)
    >>> data.X.shape[1] < 78, data.class_names[0]
    (True, 'BENIGN')
    >>> parts = dirichlet_partition(data.y, num_clients=4, alpha=0.5, seed=0, min_size=10)
    >>> sorted(int(i) for p in parts for i in p) == list(range(len(data.y)))
    True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradkit.fed.partition import (
    ClientData,
    StandardScaler,
    client_split,
    dirichlet_partition,
    signed_log1p,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CLASSES",
    "FEATURES",
    "LABEL_COLUMN",
    "RAW_LABELS",
    "ClientData",
    "FlowData",
    "StandardScaler",
    "clean_frame",
    "client_split",
    "dirichlet_partition",
    "load_cicids2017",
    "make_synthetic_frame",
    "map_labels",
    "normalize_label",
    "signed_log1p",
    "synthetic_flows",
]

#: The 8 classes, in label-index order.
CLASSES: tuple[str, ...] = (
    "BENIGN",
    "DoS",
    "DDoS",
    "PortScan",
    "Brute Force",
    "Web Attack",
    "Bot",
    "Infiltration",
)

#: The 78 feature columns of the MachineLearningCVE CSVs, stripped, in file order (the 55th is
#: the duplicate ``Fwd Header Length.1`` that cleaning drops). In the files most names carry a
#: leading space.
FEATURES: tuple[str, ...] = (
    "Destination Port", "Flow Duration", "Total Fwd Packets", "Total Backward Packets",
    "Total Length of Fwd Packets", "Total Length of Bwd Packets", "Fwd Packet Length Max",
    "Fwd Packet Length Min", "Fwd Packet Length Mean", "Fwd Packet Length Std",
    "Bwd Packet Length Max", "Bwd Packet Length Min", "Bwd Packet Length Mean",
    "Bwd Packet Length Std", "Flow Bytes/s", "Flow Packets/s", "Flow IAT Mean", "Flow IAT Std",
    "Flow IAT Max", "Flow IAT Min", "Fwd IAT Total", "Fwd IAT Mean", "Fwd IAT Std",
    "Fwd IAT Max", "Fwd IAT Min", "Bwd IAT Total", "Bwd IAT Mean", "Bwd IAT Std", "Bwd IAT Max",
    "Bwd IAT Min", "Fwd PSH Flags", "Bwd PSH Flags", "Fwd URG Flags", "Bwd URG Flags",
    "Fwd Header Length", "Bwd Header Length", "Fwd Packets/s", "Bwd Packets/s",
    "Min Packet Length", "Max Packet Length", "Packet Length Mean", "Packet Length Std",
    "Packet Length Variance", "FIN Flag Count", "SYN Flag Count", "RST Flag Count",
    "PSH Flag Count", "ACK Flag Count", "URG Flag Count", "CWE Flag Count", "ECE Flag Count",
    "Down/Up Ratio", "Average Packet Size", "Avg Fwd Segment Size", "Avg Bwd Segment Size",
    "Fwd Header Length.1", "Fwd Avg Bytes/Bulk", "Fwd Avg Packets/Bulk", "Fwd Avg Bulk Rate",
    "Bwd Avg Bytes/Bulk", "Bwd Avg Packets/Bulk", "Bwd Avg Bulk Rate", "Subflow Fwd Packets",
    "Subflow Fwd Bytes", "Subflow Bwd Packets", "Subflow Bwd Bytes", "Init_Win_bytes_forward",
    "Init_Win_bytes_backward", "act_data_pkt_fwd", "min_seg_size_forward", "Active Mean",
    "Active Std", "Active Max", "Active Min", "Idle Mean", "Idle Std", "Idle Max", "Idle Min",
)  # fmt: skip

LABEL_COLUMN = "Label"
DUPLICATE_COLUMN = "Fwd Header Length.1"

#: Raw label (as in the files, with the cp1252 en dash decoded) → class.
RAW_LABELS: dict[str, str] = {
    "BENIGN": "BENIGN",
    "DoS Hulk": "DoS",
    "DoS GoldenEye": "DoS",
    "DoS slowloris": "DoS",
    "DoS Slowhttptest": "DoS",
    "DDoS": "DDoS",
    "PortScan": "PortScan",
    "FTP-Patator": "Brute Force",
    "SSH-Patator": "Brute Force",
    "Web Attack – Brute Force": "Web Attack",
    "Web Attack – XSS": "Web Attack",
    "Web Attack – Sql Injection": "Web Attack",
    "Bot": "Bot",
    "Infiltration": "Infiltration",
    "Heartbleed": "Infiltration",
}

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalize_label(label: object) -> str:
    """Normalise a raw CIC-IDS2017 label for matching.

    Behaviour: lower case, every run of non-alphanumerics (spaces, dashes, the cp1252 en dash
    ``\x96``, the replacement character ``\ufffd``) becomes one space, then stripped, so the
    same label matches whatever encoding the CSV was read with.

    Args:
        label: a raw label (any object; ``str`` is applied).

    Returns:
        The normalised string.

    Example:
        >>> from gradkit.fed.data import normalize_label
        >>> normalize_label("Web Attack \x96 Brute Force")
        'web attack brute force'
    """
    return _NON_ALNUM.sub(" ", str(label).lower()).strip()


_NORMALIZED: dict[str, int] = {
    normalize_label(raw): CLASSES.index(cls) for raw, cls in RAW_LABELS.items()
}
# Spellings seen in other copies of the dataset.
_NORMALIZED.update(
    {normalize_label(c): i for i, c in enumerate(CLASSES)}
    | {"web attack sql injection": 5, "web attack sqli": 5, "infilteration": 7}
)


def map_labels(labels: Iterable[object]) -> np.ndarray:
    """Raw labels → class indices into :data:`CLASSES` (``int64``).

    Behaviour: the 15 raw labels of MachineLearningCVE (and spellings seen in other copies of
    the data set) map to the 8 classes of :data:`CLASSES` (DoS Hulk/GoldenEye/slowloris/
    Slowhttptest → DoS, FTP/SSH-Patator → Brute Force, Infiltration and Heartbleed →
    Infiltration, ...), a grouping common in the CIC-IDS2017 literature (the EdgeDetect paper's exact grouping is not public; see ``docs/fed.md``).

    Args:
        labels: raw label strings.

    Returns:
        ``[n]`` ``int64`` class indices.

    Raises:
        ValueError: some labels are unknown; the message lists them (up to 10).

    Example:
        >>> from gradkit.fed.data import CLASSES, map_labels
        >>> [CLASSES[i] for i in map_labels(["BENIGN", "DoS Hulk", "SSH-Patator"])]
        ['BENIGN', 'DoS', 'Brute Force']
    """
    values = list(labels)
    uniques = {v: _NORMALIZED.get(normalize_label(v)) for v in dict.fromkeys(values)}
    unknown = [repr(v) for v, idx in uniques.items() if idx is None]
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise ValueError(
            f"unknown CIC-IDS2017 label(s) {', '.join(unknown[:10])}{more}; known labels: "
            f"{', '.join(RAW_LABELS)}"
        )
    return np.fromiter((uniques[v] for v in values), dtype=np.int64, count=len(values))


@dataclass(frozen=True)
class FlowData:
    """Cleaned flows: features, class indices, and what cleaning removed.

    Returned by :func:`clean_frame`, :func:`load_cicids2017` and :func:`synthetic_flows`.

    Attributes:
        X: features, ``[n, f]`` (float32 unless asked otherwise).
        y: class indices into :attr:`class_names`, ``[n]`` int64.
        feature_names: the ``f`` kept feature columns.
        class_names: :data:`CLASSES`.
        stats: rows or columns removed at each cleaning step (``rows_in``, ``rows_nonfinite``,
            ``rows_duplicate``, ``rows_out``, ``columns_constant`` (a count)), for the report.
        dropped_columns: the constant columns that were removed.

    Example:
        >>> from gradkit.fed.data import synthetic_flows
        >>> data = synthetic_flows(300, seed=0)
        >>> int(data.class_counts().sum()) == len(data.y) == data.stats["rows_out"]
        True
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] = CLASSES
    stats: Mapping[str, int] = field(default_factory=dict)
    dropped_columns: tuple[str, ...] = ()

    def class_counts(self) -> np.ndarray:
        """Number of flows per class, ``[len(class_names)]`` (int64)."""
        return np.bincount(self.y, minlength=len(self.class_names))


def _strip_and_drop_duplicate(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.rename(columns=lambda c: str(c).strip())
    names = list(frame.columns)
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate column names after stripping whitespace: {dupes}")
    if LABEL_COLUMN not in frame.columns:
        raise ValueError(f"no {LABEL_COLUMN!r} column; columns are {names[:5]}...")
    return frame.drop(columns=[DUPLICATE_COLUMN], errors="ignore")


def _drop_nonfinite(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    features = frame.columns.drop(LABEL_COLUMN)
    values = frame[features].to_numpy()
    bad = ~np.isfinite(values).all(axis=1) | frame[LABEL_COLUMN].isna().to_numpy()
    return frame.loc[~bad], int(bad.sum())


def clean_frame(frame: pd.DataFrame, *, dtype: Any = np.float32) -> FlowData:
    """Clean a raw MachineLearningCVE frame into :class:`FlowData`.

    Behaviour, in this order (community practice for CIC-IDS2017; the EdgeDetect paper's
    exact recipe is not public): strip whitespace from the column names; drop the duplicated
    ``Fwd Header Length.1`` column; replace ±inf by NaN and drop every row with a NaN; drop
    duplicate rows (features *and* label); drop constant feature columns; map the raw labels
    to :data:`CLASSES` (:func:`map_labels`). No scaling: that is fitted per client
    (:func:`gradkit.fed.partition.client_split`).

    Paper: the data set is Sharafaldin, Lashkari, Ghorbani, *Toward Generating a New
    Intrusion Detection Dataset and Intrusion Traffic Characterization*, ICISSP 2018 (no arXiv
    id). Reference implementation: none; the steps are those of most public CIC-IDS2017
    notebooks. Deviations: none known; the EdgeDetect paper (arXiv:2604.14663) does not give
    its exact cleaning.

    Args:
        frame: the raw columns (78 features, possibly with leading spaces, and ``Label``).
        dtype: float dtype of :attr:`FlowData.X`.

    Returns:
        The cleaned :class:`FlowData`; ``stats`` counts what each step removed.

    Raises:
        ValueError: no ``Label`` column, a non-numeric feature column, or unknown labels.

    Example:
        >>> from gradkit.fed.data import clean_frame, make_synthetic_frame
        >>> frame = make_synthetic_frame(500, seed=0)             # dirty: inf, NaN, duplicates
        >>> data = clean_frame(frame)
        >>> data.stats["rows_in"] - data.stats["rows_out"] > 0, len(data.dropped_columns)
        (True, 8)
    """
    frame = _strip_and_drop_duplicate(frame)
    features = [c for c in frame.columns if c != LABEL_COLUMN]
    rows_in = len(frame)
    import pandas as pd

    nonnumeric = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    if nonnumeric:
        raise ValueError(f"non-numeric feature column(s): {nonnumeric[:5]}")
    frame, nonfinite = _drop_nonfinite(frame)  # ±inf → NaN → dropped, in one pass
    before = len(frame)
    frame = frame.drop_duplicates()
    duplicates = before - len(frame)
    values = frame[features].to_numpy(dtype=dtype, copy=True)
    constant = (
        np.zeros(len(features), dtype=bool)
        if len(values) == 0
        else (values == values[:1]).all(axis=0)
    )
    y = map_labels(frame[LABEL_COLUMN].to_numpy())
    kept = tuple(f for f, c in zip(features, constant, strict=True) if not c)
    return FlowData(
        X=np.ascontiguousarray(values[:, ~constant]),
        y=y,
        feature_names=kept,
        stats={
            "rows_in": rows_in,
            "rows_nonfinite": nonfinite,
            "rows_duplicate": duplicates,
            "rows_out": len(y),
            "columns_constant": int(constant.sum()),
        },
        dropped_columns=tuple(f for f, c in zip(features, constant, strict=True) if c),
    )


def _csv_files(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.csv"))
            if not found:
                raise FileNotFoundError(f"no *.csv files in directory {str(p)!r}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or directory: {str(p)!r}")
    if not files:
        raise ValueError("no CSV files given")
    return files


def load_cicids2017(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    dtype: Any = np.float32,
    chunksize: int = 250_000,
    encoding: str = "latin-1",
) -> FlowData:
    """Read and clean CIC-IDS2017 MachineLearningCVE CSVs (a file, a list, or a directory).

    Behaviour: files are read in chunks with every feature column typed ``dtype`` and the
    label as a category, and rows with ±inf/NaN are dropped per chunk, so the full 2.8 M-flow
    data set needs about ``rows × 78 × itemsize`` bytes (0.9 GB at float32) plus one chunk.
    Then the remaining steps of :func:`clean_frame` run on all files together (duplicates are
    removed across files). The data set is not shipped or downloaded; get it from the
    Canadian Institute for Cybersecurity. Example: ``load_cicids2017("MachineLearningCVE/")``
    (not run here: it needs the files); :func:`synthetic_flows` is the stand-in with the same
    schema.

    Args:
        paths: a CSV file, a directory of CSVs, or a list of either.
        dtype: float dtype of the features. Duplicate detection compares these values: at
            float32, flows that differ only below float32 resolution (e.g. durations above
            2^24 µs that differ by less than 8 µs) count as duplicates; pass ``np.float64`` for
            exact parity with a pandas float64 pipeline (twice the memory).
        chunksize: rows per chunk.
        encoding: the files are cp1252-ish; latin-1 decodes every byte, and label
            normalisation makes the en dash irrelevant.

    Returns:
        The cleaned :class:`FlowData` of all files.

    Raises:
        FileNotFoundError: a path does not exist, or a directory holds no CSV.
        ValueError: files with different columns, no ``Label`` column, unknown labels, or
            ``chunksize < 1``.
    """
    import pandas as pd

    if chunksize < 1:
        raise ValueError(f"chunksize must be >= 1, got {chunksize}")
    parts: list[pd.DataFrame] = []
    header: list[str] | None = None
    rows_in = nonfinite = 0
    for path in _csv_files(paths):
        names = list(pd.read_csv(path, nrows=0, encoding=encoding).columns)
        stripped = [str(c).strip() for c in names]
        if header is None:
            header = stripped
        elif stripped != header:
            raise ValueError(f"{str(path)!r} has different columns from the first file")
        label = names[stripped.index(LABEL_COLUMN)] if LABEL_COLUMN in stripped else None
        if label is None:
            raise ValueError(f"{str(path)!r} has no {LABEL_COLUMN!r} column")
        types: dict[str, Any] = {c: dtype for c in names if c != label}
        types[label] = "category"
        for chunk in pd.read_csv(
            path, dtype=types, chunksize=chunksize, encoding=encoding, low_memory=True
        ):
            chunk = _strip_and_drop_duplicate(chunk)
            rows_in += len(chunk)
            chunk, bad = _drop_nonfinite(chunk)
            nonfinite += bad
            chunk[LABEL_COLUMN] = chunk[LABEL_COLUMN].astype(str)
            parts.append(chunk)
    frame = pd.concat(parts, ignore_index=True)
    del parts
    data = clean_frame(frame, dtype=dtype)
    stats = dict(data.stats, rows_in=rows_in, rows_nonfinite=nonfinite)
    return FlowData(
        data.X, data.y, data.feature_names, data.class_names, stats, data.dropped_columns
    )


# -- synthetic flows ------------------------------------------------------------------------------

#: Default class shares of the synthetic data (BENIGN dominates, as in the real set after
#: cleaning; Infiltration/Heartbleed, Web Attack and Bot are tiny).
DEFAULT_CLASS_WEIGHTS: dict[str, float] = {
    "BENIGN": 0.80,
    "DoS": 0.08,
    "DDoS": 0.05,
    "PortScan": 0.04,
    "Brute Force": 0.015,
    "Web Attack": 0.006,
    "Bot": 0.007,
    "Infiltration": 0.002,
}

# Share of each raw label within its class (roughly as in the real files).
_RAW_SHARES: dict[str, float] = {
    "DoS Hulk": 0.75,
    "DoS GoldenEye": 0.05,
    "DoS slowloris": 0.1,
    "DoS Slowhttptest": 0.1,
    "FTP-Patator": 0.55,
    "SSH-Patator": 0.45,
    "Web Attack – Brute Force": 0.7,
    "Web Attack – XSS": 0.25,
    "Web Attack – Sql Injection": 0.05,
    "Infiltration": 0.85,
    "Heartbleed": 0.15,
}

# Columns that are (almost) always zero in the real data; the generator makes them exactly
# zero so that cleaning drops them, as it does for the real files.
_ZERO_COLUMNS = (
    "Bwd PSH Flags", "Bwd URG Flags", "CWE Flag Count", "Fwd Avg Bytes/Bulk",
    "Fwd Avg Packets/Bulk", "Fwd Avg Bulk Rate", "Bwd Avg Bytes/Bulk", "Bwd Avg Packets/Bulk",
)  # fmt: skip

_LATENT = 12


def make_synthetic_frame(
    n_samples: int,
    seed: int = 0,
    *,
    class_weights: Mapping[str, float] | None = None,
    separation: float = 2.0,
    dirty: bool = True,
) -> pd.DataFrame:
    """A synthetic raw frame in the MachineLearningCVE schema, deterministic per ``seed``.

    Behaviour: the frame has the real files' quirks (leading spaces in column names, the
    duplicated ``Fwd Header Length`` column, the 15 raw label strings). Each class has a mean
    in a 12-dim latent space (norm ``separation`` apart on average); a flow draws a latent
    ``z ~ N(mu_class, I)`` and its 70 non-zero features are heavy-tailed positive values
    ``exp(a_j + s_j · w_jᵀ z)`` (port-like and flag-like columns are rounded), so classes
    overlap and a linear model on the raw values does poorly while an MLP on ``log1p``
    features learns. The 8 always-zero columns of the real data are zero here too. With
    ``dirty``, about 0.3 % of rows get an ``inf`` rate, 0.2 % a NaN and 1 % are exact
    duplicates (cleaning removes them). The feature model is fixed (seed 2017) and only the
    sampling depends on ``seed``, so frames with different seeds come from the same
    distribution. This is gradkit's stand-in for the real data (not shipped); it is not
    from a paper and its accuracies are not comparable with published CIC-IDS2017 numbers.

    Args:
        n_samples: number of flows before the dirty duplicates are appended (≥ 1).
        seed: seed of the sampling.
        class_weights: class → share (default: BENIGN 80 %, the attack classes the rest,
            Infiltration 0.2 %).
        separation: average distance between class means in the latent space.
        dirty: add the inf, NaN and duplicate rows.

    Returns:
        A pandas ``DataFrame`` with 79 columns (78 features and `` Label``).

    Raises:
        ValueError: ``n_samples < 1``, unknown classes or invalid weights in ``class_weights``.

    Example:
        >>> from gradkit.fed.data import make_synthetic_frame
        >>> frame = make_synthetic_frame(200, seed=0, dirty=False)
        >>> frame.shape, frame.columns[-1]
        ((200, 79), ' Label')
    """
    import pandas as pd

    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    weights = dict(DEFAULT_CLASS_WEIGHTS if class_weights is None else class_weights)
    unknown = sorted(set(weights) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown class(es) in class_weights: {unknown}")
    w = np.array([float(weights.get(c, 0.0)) for c in CLASSES])
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"class_weights must be non-negative and not all zero, got {weights}")
    model = np.random.default_rng(2017)
    means = model.normal(0.0, separation / np.sqrt(_LATENT), size=(len(CLASSES), _LATENT))
    scales = np.exp(model.uniform(-0.7, 0.7, size=(len(CLASSES), _LATENT)))
    active = [f for f in FEATURES if f not in _ZERO_COLUMNS and f != DUPLICATE_COLUMN]
    quad = model.normal(0.0, 1.0, size=(_LATENT, len(active))) / _LATENT
    proj = model.normal(0.0, 1.0, size=(_LATENT, len(active))) / np.sqrt(_LATENT)
    offset = model.uniform(0.0, 8.0, size=len(active))
    spread = model.uniform(0.3, 1.5, size=len(active))

    rng = np.random.default_rng(seed)
    cls = rng.choice(len(CLASSES), size=n_samples, p=w / w.sum())
    z = means[cls] + scales[cls] * rng.normal(size=(n_samples, _LATENT))
    values = np.exp(offset + spread * (z @ proj + (z * z) @ quad))
    table = dict(zip(active, values.T, strict=True))
    for name in ("Destination Port", "Total Fwd Packets", "Total Backward Packets"):
        table[name] = np.round(table[name])
    for name in ("Fwd PSH Flags", "Fwd URG Flags", "FIN Flag Count", "SYN Flag Count"):
        table[name] = (table[name] > np.median(table[name])).astype(float)
    for name in _ZERO_COLUMNS:
        table[name] = np.zeros(n_samples)
    table[DUPLICATE_COLUMN] = table["Fwd Header Length"]
    labels = np.empty(n_samples, dtype=object)
    for k, c in enumerate(CLASSES):
        raws = [r for r, rc in RAW_LABELS.items() if rc == c]
        idx = np.flatnonzero(cls == k)
        if len(raws) == 1:
            labels[idx] = raws[0]
        else:
            p = np.array([_RAW_SHARES[r] for r in raws])
            labels[idx] = np.array(raws, dtype=object)[
                rng.choice(len(raws), len(idx), p=p / p.sum())
            ]
    columns = {(" " + f if i % 5 else f): table[f] for i, f in enumerate(FEATURES)}
    frame = pd.DataFrame(columns)
    frame[" " + LABEL_COLUMN] = labels
    if dirty and n_samples >= 10:
        rows = rng.permutation(n_samples)
        n_inf, n_nan, n_dup = (max(1, int(n_samples * f)) for f in (0.003, 0.002, 0.01))
        frame.iloc[rows[:n_inf], 14] = np.inf  # " Flow Bytes/s" at position 14
        frame.iloc[rows[n_inf : n_inf + n_nan], 15] = np.nan
        dup = frame.iloc[rows[-n_dup:]]
        frame = pd.concat([frame, dup], ignore_index=True)
    return frame


def synthetic_flows(n_samples: int, seed: int = 0, **kwargs: Any) -> FlowData:
    """:func:`make_synthetic_frame` cleaned by :func:`clean_frame`: the built-in default data.

    Args:
        n_samples: flows to generate (cleaning removes a few).
        seed: seed of the sampling.
        **kwargs: ``dtype`` for :func:`clean_frame`; the rest for :func:`make_synthetic_frame`.

    Returns:
        The cleaned :class:`FlowData`.

    Example:
        >>> from gradkit.fed.data import CLASSES, synthetic_flows
        >>> data = synthetic_flows(1000, seed=0)
        >>> CLASSES[int(data.class_counts().argmax())], data.X.dtype
        ('BENIGN', dtype('float32'))
    """
    dtype = kwargs.pop("dtype", np.float32)
    return clean_frame(make_synthetic_frame(n_samples, seed, **kwargs), dtype=dtype)

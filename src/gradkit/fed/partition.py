r"""Non-IID partition of a labelled data set across clients, and per-client scaling fitted on
each client's training split only (numpy; no Flower or pandas needed).

* :func:`dirichlet_partition`: label skew by a per-class Dirichlet draw over clients;
* :func:`client_split`: one client's shuffled train/test split, :func:`signed_log1p` then a
  :class:`StandardScaler` fitted on the training split alone;
* :class:`ClientData`: the result.

Fitting a scaler on all data would leak the test split's statistics and other clients' data
into each client; here nothing crosses a client boundary. The names are also importable from
:mod:`gradkit.fed.data`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClientData", "StandardScaler", "client_split", "dirichlet_partition", "signed_log1p"]


def dirichlet_partition(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    seed: int = 0,
    *,
    min_size: int = 10,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    r"""Split sample indices across ``num_clients`` with Dirichlet(``alpha``) label skew.

    Math: for every class :math:`c`, client proportions
    :math:`p_c \sim \operatorname{Dir}(\alpha\,\mathbf 1_K)` split that class's shuffled indices
    into contiguous chunks of sizes :math:`\lfloor\text{cumsum}(p_c)\,n_c\rfloor`; the whole
    draw is repeated until every client holds at least ``min_size`` samples. Small
    :math:`\alpha` gives each client few classes; large :math:`\alpha` is close to IID.

    Paper: Hsu, Qi, Brown, *Measuring the Effects of Non-Identical Data Distribution for
    Federated Visual Classification*, arXiv:1909.06335 (2019); the retry-until-``min_size``
    recipe is NIID-Bench's (Li et al., *Federated Learning on Non-IID Data Silos*,
    arXiv:2102.02079; code Xtra-Computing/NIID-Bench) and FedLab's. Reference implementation:
    NIID-Bench's ``partition_data(..., "noniid-labeldir")``, which also caps a client's share
    of a class at :math:`N/K`. Deviations: no such cap; ``max_tries`` bounds the retries
    instead of looping forever.

    Args:
        labels: ``[n]`` class labels.
        num_clients: number of clients :math:`K` (≥ 1).
        alpha: Dirichlet concentration (> 0).
        seed: seed of the draws (deterministic per seed).
        min_size: the fewest samples any client may hold.
        max_tries: how many draws to try before giving up.

    Returns:
        ``num_clients`` sorted index arrays, disjoint, covering every index.

    Raises:
        ValueError: bad arguments, or no draw in ``max_tries`` gives every client
            ``min_size`` samples (lower ``min_size`` or raise ``alpha``).

    Example:
        >>> import numpy as np
        >>> from gradkit.fed.partition import dirichlet_partition
        >>> labels = np.repeat(np.arange(4), 50)
        >>> parts = dirichlet_partition(labels, num_clients=5, alpha=0.3, seed=0, min_size=5)
        >>> sorted(int(i) for p in parts for i in p) == list(range(200))
        True
        >>> min(len(p) for p in parts) >= 5
        True
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if not (alpha > 0 and np.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive finite number, got {alpha}")
    if min_size < 0 or num_clients * min_size > len(labels):
        raise ValueError(
            f"min_size={min_size} × num_clients={num_clients} exceeds the {len(labels)} samples"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_size:
            return out
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) draw in {max_tries} tries gave every one of "
        f"{num_clients} clients >= {min_size} samples; lower min_size or raise alpha"
    )


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x)·log1p(|x|)``: a stateless squashing of heavy-tailed flow features.

    Behaviour: monotone, odd, about the identity near 0 and logarithmic for large ``|x|``, so
    byte and packet rates spanning many orders of magnitude become comparable before
    standardisation. Being stateless, it needs no fitting and cannot leak statistics. Common
    practice for network-flow features; no paper.

    Args:
        x: any array.

    Returns:
        An array of the same shape.

    Example:
        >>> import numpy as np
        >>> from gradkit.fed.partition import signed_log1p
        >>> signed_log1p(np.array([-(np.e - 1), 0.0, np.e ** 2 - 1])).round(6)
        array([-1.,  0.,  2.])
    """
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class StandardScaler:
    """Per-feature standardisation, scikit-learn style.

    Behaviour: ``fit`` stores the per-feature mean and population std (``fit`` returns
    ``self``; fitted attributes end in ``_``); ``transform`` returns
    ``(X - mean_) / scale_`` as float32. A constant feature gets scale 1 (no division by
    zero). It matches ``sklearn.preprocessing.StandardScaler`` with its defaults (up to the
    float32 output), without the scikit-learn dependency.

    Attributes:
        mean_: the per-feature means (``None`` before ``fit``).
        scale_: the per-feature population standard deviations, 1 where constant.

    Example:
        >>> import numpy as np
        >>> from gradkit.fed.partition import StandardScaler
        >>> scaler = StandardScaler().fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
        >>> scaler.transform(np.array([[2.0, 5.0], [3.0, 6.0]]))
        array([[0., 0.],
               [1., 1.]], dtype=float32)
    """

    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> StandardScaler:
        """Fit on ``X`` ``[n, f]`` (n ≥ 1) and return ``self``.

        Raises:
            ValueError: ``X`` is not a non-empty 2-D array.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"fit needs a non-empty 2-D array, got shape {X.shape}")
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean_) / scale_`` as float32.

        Raises:
            ValueError: the scaler is not fitted.
        """
        if self.mean_ is None or self.scale_ is None:
            raise ValueError("StandardScaler is not fitted; call fit first")
        return ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_).astype(np.float32)


@dataclass(frozen=True)
class ClientData:
    """One client's data: train/test splits, transformed with the client's own scaler.

    Attributes:
        X_train: the training features, ``signed_log1p`` then standardised, float32.
        y_train: the training labels.
        X_test: the test features, transformed with the same (training-split) scaler.
        y_test: the test labels.
        scaler: the :class:`StandardScaler` fitted on ``signed_log1p(X_train_raw)``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    scaler: StandardScaler


def client_split(
    X: np.ndarray,
    y: np.ndarray,
    indices: np.ndarray,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ClientData:
    """One client's train/test split, scaled with statistics of its training split only.

    Behaviour: shuffle ``indices`` (deterministic per ``seed``), split off ``test_fraction``
    as the test set (at least one sample on each side), apply :func:`signed_log1p`, fit a
    :class:`StandardScaler` on the training split alone and transform both splits with it.
    Fitting on all data, as some federated-IDS papers do, would leak the test split and other
    clients' data into each client; this is a deliberate deviation from such pipelines.

    Args:
        X: all features ``[n, f]`` (raw, as cleaned).
        y: all labels ``[n]``.
        indices: this client's sample indices (from :func:`dirichlet_partition`).
        test_fraction: share of the client's samples held out, in (0, 1).
        seed: seed of the shuffle.

    Returns:
        The client's :class:`ClientData`.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1) or fewer than 2 indices.

    Example:
        >>> import numpy as np
        >>> from gradkit.fed.partition import client_split
        >>> X = np.arange(20, dtype=np.float64).reshape(10, 2)
        >>> data = client_split(X, np.arange(10) % 2, np.arange(10), test_fraction=0.3, seed=0)
        >>> data.X_train.shape, data.X_test.shape
        ((7, 2), (3, 2))
        >>> np.allclose(data.X_train.mean(axis=0), 0.0, atol=1e-6)   # scaled on train only
        True
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    indices = np.asarray(indices)
    if len(indices) < 2:
        raise ValueError(f"a client needs >= 2 samples to split, got {len(indices)}")
    order = np.random.default_rng(seed).permutation(indices)
    n_test = min(max(1, round(len(order) * test_fraction)), len(order) - 1)
    test, train = order[:n_test], order[n_test:]
    raw_train, raw_test = signed_log1p(X[train]), signed_log1p(X[test])
    scaler = StandardScaler().fit(raw_train)
    return ClientData(
        scaler.transform(raw_train), y[train], scaler.transform(raw_test), y[test], scaler
    )

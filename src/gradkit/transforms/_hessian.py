r"""Hessian-vector products and diagonal-Hessian estimators (used by Sophia and the diagnostics).

Liu, Li, Hall, Liang, Ma. *Sophia: A Scalable Stochastic Second-order Optimizer for Language
Model Pre-training.* ICLR 2024. arXiv:2305.14342 (Section 2.3, Algorithms 1–2).

For a scalar loss :math:`L(\theta)` with Hessian :math:`H`:

* :func:`hessian_vector_product`: :math:`Hv` by double back-propagation (Pearlmutter's trick),
  :math:`Hv = \nabla_\theta \langle \nabla_\theta L, v\rangle`.
* :func:`hutchinson_diagonal`: the Hutchinson estimate :math:`\hat h = u \odot (Hu)` with
  :math:`u \sim \mathcal N(0, I)` (the paper) or Rademacher; :math:`\mathbb E[\hat h] =
  \operatorname{diag}(H)` for both. It can be negative where :math:`H` is indefinite.
* :func:`gnb_gradient` / :func:`gnb_diagonal`: the Gauss–Newton–Bartlett estimator for a
  softmax cross-entropy loss. Labels :math:`\hat y_b` are **sampled from the model's own
  predictive distribution** :math:`\operatorname{softmax}(\text{logits}_b)` (sampling the data
  labels instead would give the empirical Fisher, a different and biased quantity), then

  .. math::

      \hat g = \nabla_\theta \frac1B \sum_{b=1}^B \operatorname{CE}(\text{logits}_b, \hat y_b),
      \qquad \hat h = B\,\hat g \odot \hat g,

  where :math:`B` is the number of label positions (examples, or tokens for a language model:
  ``logits.numel() // logits.shape[-1]``). :math:`\mathbb E[\hat h]` is the diagonal of the
  Gauss–Newton matrix :math:`\frac1B\sum_b J_b^\top(\operatorname{diag}(p_b) - p_b p_b^\top)J_b`
  of the mean loss (the test suite checks this on a softmax regression).

Official-code conventions (Liuhong99/Sophia @a7e1572, ``train_sophiag.py``): the labels are
drawn with ``Categorical(logits=logits).sample()``, the loss is the *mean* cross-entropy over
all ``B × T`` tokens, ``loss.backward()`` leaves :math:`\hat g` in ``p.grad``, the gradient is
clipped to norm 1.0, and ``SophiaG.update_hessian`` stores :math:`\hat g\odot\hat g`
**without** the factor :math:`B`: the step multiplies it back through ``rho * bs * h``. That is
why :class:`gradkit.optim.SophiaG` takes :func:`gnb_gradient` (:math:`\hat g`), while
:class:`gradkit.optim.SophiaH` takes a diagonal in the paper's units (:func:`gnb_diagonal` or
:func:`hutchinson_diagonal`).

None of these functions touches ``p.grad``: they call :func:`torch.autograd.grad`. Entries
of the returned lists are ``None`` for params the loss does not depend on.

Example:
    >>> import torch
    >>> from gradkit.transforms import hessian_vector_product, hutchinson_diagonal
    >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> def loss():
    ...     return 3 * w[0] ** 2 + w[0] * w[1]                 # H = [[6, 1], [1, 0]]
    >>> [float(hessian_vector_product(loss(), [w], [e])[0][i]) for i, e in enumerate(torch.eye(2))]
    [6.0, 0.0]
    >>> est = hutchinson_diagonal(loss(), [w], n_samples=200, distribution="rademacher",
    ...                           generator=torch.Generator().manual_seed(0))[0]
    >>> torch.allclose(est, torch.tensor([6.0, 0.0]), atol=0.3)   # unbiased: 6 ± 1, 0 ± 1
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "gnb_diagonal",
    "gnb_gradient",
    "hessian_vector_product",
    "hutchinson_diagonal",
    "sample_labels",
]

DISTRIBUTIONS = ("gaussian", "rademacher")


def _check_loss(loss: torch.Tensor, what: str) -> None:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{what}: loss must be a Tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"{what}: loss must be a scalar, got shape {tuple(loss.shape)}")
    if not loss.requires_grad:
        raise ValueError(f"{what}: loss does not require grad (computed under torch.no_grad?)")


def _check_params(params: Sequence[torch.Tensor], what: str) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        raise TypeError(f"{what}: params must be a sequence of tensors, not a Tensor")
    params = list(params)
    for index, param in enumerate(params):
        if not isinstance(param, torch.Tensor):
            raise TypeError(f"{what}: params[{index}] is a {type(param).__name__}, not a Tensor")
    return params


def _grads_with_graph(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """First derivatives with their graph (``create_graph=True``); ``None`` where unused."""
    differentiable = [index for index, param in enumerate(params) if param.requires_grad]
    grads: list[torch.Tensor | None] = [None] * len(params)
    if not differentiable:
        return grads
    found = torch.autograd.grad(
        loss,
        [params[index] for index in differentiable],
        create_graph=True,
        allow_unused=True,
    )
    for index, grad in zip(differentiable, found, strict=True):
        grads[index] = grad
    return grads


def _hvp_from_grads(
    grads: Sequence[torch.Tensor | None],
    params: list[torch.Tensor],
    vectors: Sequence[torch.Tensor | None],
    *,
    retain_graph: bool,
) -> list[torch.Tensor | None]:
    """``H v`` from first derivatives that carry a graph. A gradient without a graph (constant
    in the params, e.g. of a linear term) contributes a zero Hessian block."""
    outputs, inputs, positions = [], [], []
    for index, (grad, vector) in enumerate(zip(grads, vectors, strict=True)):
        if grad is None or vector is None:
            continue
        if grad.requires_grad:
            outputs.append(grad)
            inputs.append(vector)
        positions.append(index)
    products: list[torch.Tensor | None] = [None] * len(params)
    for index in positions:
        products[index] = torch.zeros_like(params[index])
    if outputs:
        wanted = [index for index in range(len(params)) if params[index].requires_grad]
        found = torch.autograd.grad(
            outputs,
            [params[index] for index in wanted],
            grad_outputs=inputs,
            retain_graph=retain_graph,
            allow_unused=True,
        )
        for index, product in zip(wanted, found, strict=True):
            if product is not None:
                products[index] = product.detach()
    return products


def hessian_vector_product(
    loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    vectors: Sequence[torch.Tensor],
    *,
    retain_graph: bool = False,
) -> list[torch.Tensor]:
    r""":math:`Hv` for the Hessian :math:`H` of the scalar ``loss`` with respect to ``params``.

    Math: Pearlmutter's trick, :math:`Hv = \nabla_\theta \langle \nabla_\theta L, v\rangle`:
    one backward pass with ``create_graph=True`` for :math:`\nabla_\theta L`, then a second one
    through :math:`\langle\nabla_\theta L, v\rangle`. The Hessian is never formed; the cost is
    about two backward passes. Exact up to floating point.

    Paper: Pearlmutter, *Fast Exact Multiplication by the Hessian*, Neural Computation 1994;
    used by Sophia (Liu et al., ICLR 2024, arXiv:2305.14342) for its Hutchinson estimator.
    Reference implementation: ``torch.autograd.functional.hvp`` computes the same product;
    this version works on a list of params and never touches ``p.grad``. Deviations: none.

    Args:
        loss: a scalar with its autograd graph (no backward run on it yet, or run with
            ``retain_graph=True``).
        params: the tensors :math:`\theta` (leaf tensors that require grad).
        vectors: :math:`v`, one tensor per param with the param's shape.
        retain_graph: keep ``loss``'s graph for further products.

    Returns:
        One tensor per param (zeros where the loss does not depend on it), detached.

    Raises:
        ValueError: ``vectors`` does not match ``params`` in length or shapes, or ``loss`` is
            not a differentiable scalar.
        TypeError: ``loss`` is not a tensor, or ``params`` is a bare tensor.

    Example:
        >>> import torch
        >>> from gradkit.transforms import hessian_vector_product
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> loss = (w[0] ** 2) * 3 + w[0] * w[1]          # H = [[6, 1], [1, 0]]
        >>> hessian_vector_product(loss, [w], [torch.tensor([1.0, 0.0])])
        [tensor([6., 1.])]
    """
    what = "hessian_vector_product"
    _check_loss(loss, what)
    params = _check_params(params, what)
    vectors = list(vectors)
    if len(vectors) != len(params):
        raise ValueError(f"{what}: got {len(vectors)} vectors for {len(params)} params")
    for index, (vector, param) in enumerate(zip(vectors, params, strict=True)):
        if not isinstance(vector, torch.Tensor) or vector.shape != param.shape:
            shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector)
            raise ValueError(
                f"{what}: vectors[{index}] has shape {shape}, param has {tuple(param.shape)}"
            )
    grads = _grads_with_graph(loss, params)
    products = _hvp_from_grads(
        grads, params, [v.to(p.dtype) for v, p in zip(vectors, params, strict=True)],
        retain_graph=retain_graph,
    )  # fmt: skip
    return [
        torch.zeros_like(param) if product is None else product
        for product, param in zip(products, params, strict=True)
    ]


def _probe(
    like: torch.Tensor, distribution: str, generator: torch.Generator | None
) -> torch.Tensor:
    if distribution == "gaussian":
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    signs = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
    return signs.to(like.dtype) * 2.0 - 1.0


def hutchinson_from_grads(
    grads: Sequence[torch.Tensor | None],
    params: Sequence[torch.Tensor],
    *,
    n_samples: int = 1,
    distribution: str = "gaussian",
    generator: torch.Generator | None = None,
) -> list[torch.Tensor | None]:
    r""":func:`hutchinson_diagonal` from first derivatives that carry their graph.

    Behaviour: the same estimate :math:`\frac1S\sum_s u_s\odot(Hu_s)`, but starting from
    gradients already computed with their graph (as left in ``p.grad`` by
    ``loss.backward(create_graph=True)``, which is how ``pytorch_optimizer.SophiaH`` and
    :func:`gradkit.optim.sophia_refresh` obtain them), so no first backward pass is repeated.

    Args:
        grads: first derivatives with their graph, one per param (``None`` where unused).
        params: the tensors the derivatives were taken with respect to.
        n_samples: number :math:`S` of probe vectors.
        distribution: ``"gaussian"`` or ``"rademacher"``.
        generator: random generator for the probes.

    Returns:
        One detached estimate per param (``None`` where ``grads`` has ``None``).

    Raises:
        ValueError: ``n_samples`` is not an int ≥ 1, or ``distribution`` is unknown.

    Example:
        >>> import torch
        >>> from gradkit.transforms._hessian import hutchinson_from_grads
        >>> w = torch.tensor([1.0, 1.0], requires_grad=True)
        >>> (g,) = torch.autograd.grad(3.0 * (w ** 2).sum(), [w], create_graph=True)
        >>> hutchinson_from_grads([g], [w], distribution="rademacher")   # H = 6 I
        [tensor([6., 6.])]
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"Invalid n_samples: {n_samples!r} (must be an int >= 1)")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Invalid distribution: {distribution!r} (must be one of {', '.join(DISTRIBUTIONS)})"
        )
    params = list(params)
    estimates: list[torch.Tensor | None] = [None] * len(params)
    for sample in range(n_samples):
        probes: list[torch.Tensor | None] = [
            None if grad is None else _probe(param, distribution, generator)
            for grad, param in zip(grads, params, strict=True)
        ]
        products = _hvp_from_grads(grads, params, probes, retain_graph=sample < n_samples - 1)
        for index, (probe, product) in enumerate(zip(probes, products, strict=True)):
            if probe is None or product is None:
                continue
            term = probe * product / n_samples
            current = estimates[index]
            estimates[index] = term if current is None else current + term
    return estimates


def hutchinson_diagonal(
    loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    n_samples: int = 1,
    distribution: str = "gaussian",
    generator: torch.Generator | None = None,
) -> list[torch.Tensor | None]:
    r"""Hutchinson estimate of the Hessian diagonal, :math:`\hat h = \frac1S\sum_s u_s \odot
    (H u_s)`.

    Math: for a probe :math:`u` with independent zero-mean unit-variance entries,
    :math:`\mathbb E[u \odot Hu]_i = \sum_j H_{ij}\mathbb E[u_iu_j] = H_{ii}`, so the estimate is
    unbiased for :math:`\operatorname{diag}(H)`. Each probe costs one Hessian-vector product
    (:func:`hessian_vector_product`). The estimate can be negative where :math:`H` is
    indefinite; SophiaH guards against that in its step.

    Paper: Hutchinson, *A stochastic estimator of the trace of the influence matrix*, 1989;
    used as Sophia-H's estimator (Liu et al., ICLR 2024, arXiv:2305.14342, Algorithm 1).
    Reference implementation: ``pytorch_optimizer==4.1.0`` ``SophiaH`` (no official SophiaH
    exists); the Gaussian default and one sample per refresh follow it. Deviations: none; the
    ``"rademacher"`` option (AdaHessian's choice, lower variance) is an addition.

    Args:
        loss: a scalar with its autograd graph.
        params: the tensors the Hessian is taken with respect to.
        n_samples: number :math:`S` of probe vectors (default 1, as in the paper).
        distribution: ``"gaussian"`` (:math:`u \sim \mathcal N(0, I)`, the paper's choice and
            ``pytorch_optimizer.SophiaH``'s default) or ``"rademacher"`` (±1 entries; lower
            variance: the :math:`u_i^2` factor is exactly 1).
        generator: random generator for the probes (the global one when ``None``).

    Returns:
        One detached estimate per param (``None`` where the loss does not depend on it). The
        estimate is unbiased for :math:`\operatorname{diag}(H)` and may be negative.

    Raises:
        ValueError: ``loss`` is not a differentiable scalar, ``n_samples`` is not an int ≥ 1,
            or ``distribution`` is unknown.

    Example:
        >>> import torch
        >>> from gradkit.transforms import hutchinson_diagonal
        >>> w = torch.tensor([1.0, 1.0], requires_grad=True)
        >>> loss = 2.0 * w[0] ** 2 + 0.5 * w[1] ** 2      # diag(H) = (4, 1), H diagonal
        >>> hutchinson_diagonal(loss, [w], distribution="rademacher")   # exact for diagonal H
        [tensor([4., 1.])]
    """
    what = "hutchinson_diagonal"
    _check_loss(loss, what)
    params = _check_params(params, what)
    grads = _grads_with_graph(loss, params)
    return hutchinson_from_grads(
        grads, params, n_samples=n_samples, distribution=distribution, generator=generator
    )


def sample_labels(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""One label per position drawn from ``softmax(logits)`` over the last dimension.

    Math: :math:`\hat y_b \sim \operatorname{Categorical}(\operatorname{softmax}(\text{logits}_b))`
    for every position :math:`b` (every example, or every token of a language model). These
    are the labels of the Gauss–Newton–Bartlett estimator (:func:`gnb_gradient`): sampling from
    the model's own distribution, not the data's, is what makes it an estimate of the
    Gauss–Newton diagonal rather than of the empirical Fisher.

    Paper: Sophia, arXiv:2305.14342 (Algorithm 2). Reference implementation: the official
    ``train_sophiag.py`` (Liuhong99/Sophia @a7e1572) draws
    ``Categorical(logits=logits).sample()``; this uses ``torch.multinomial`` on the softmax
    (the same distribution, different random stream). Deviations: half-precision logits are
    converted to float32 before the softmax.

    Args:
        logits: ``(..., classes)``.
        generator: random generator for the draws (the global one when ``None``).

    Returns:
        An ``int64`` tensor of shape ``logits.shape[:-1]`` (no gradient flows through it).

    Raises:
        TypeError: ``logits`` is not a tensor.
        ValueError: ``logits`` has no class dimension.

    Example:
        >>> import torch
        >>> from gradkit.transforms import sample_labels
        >>> logits = torch.tensor([[0.0, 50.0, 0.0], [50.0, 0.0, 0.0]])   # near one-hot
        >>> sample_labels(logits, generator=torch.Generator().manual_seed(0))
        tensor([1, 0])
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a Tensor, got {type(logits).__name__}")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a non-empty class dimension, got {tuple(logits.shape)}")
    flat = logits.detach().reshape(-1, logits.shape[-1])
    probs = torch.softmax(
        flat.to(torch.float32 if flat.dtype in (torch.float16, torch.bfloat16) else flat.dtype),
        dim=-1,
    )
    if flat.shape[0] == 0:
        return torch.zeros(logits.shape[:-1], dtype=torch.int64, device=logits.device)
    labels = torch.multinomial(probs, 1, generator=generator)
    return labels.reshape(logits.shape[:-1])


def _gnb(
    logits: torch.Tensor,
    params: Sequence[torch.Tensor],
    generator: torch.Generator | None,
    what: str,
) -> tuple[list[torch.Tensor | None], int, torch.Tensor]:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{what}: logits must be a Tensor, got {type(logits).__name__}")
    if logits.ndim < 2:
        raise ValueError(
            f"{what}: logits must have shape (..., classes) with at least one batch dimension, "
            f"got {tuple(logits.shape)}"
        )
    if not logits.requires_grad:
        raise ValueError(f"{what}: logits do not require grad (computed under torch.no_grad?)")
    params = _check_params(params, what)
    classes = logits.shape[-1]
    batch = logits.numel() // classes if classes else 0
    if batch == 0:
        raise ValueError(f"{what}: logits have no label positions (shape {tuple(logits.shape)})")
    labels = sample_labels(logits, generator)
    loss = F.cross_entropy(logits.reshape(batch, classes), labels.reshape(batch))
    wanted = [index for index, param in enumerate(params) if param.requires_grad]
    grads: list[torch.Tensor | None] = [None] * len(params)
    if wanted:
        found = torch.autograd.grad(loss, [params[index] for index in wanted], allow_unused=True)
        for index, grad in zip(wanted, found, strict=True):
            grads[index] = grad
    return grads, batch, loss.detach()


def gnb_gradient(
    logits: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor | None], int, torch.Tensor]:
    r"""The sampled-label gradient :math:`\hat g` of the Gauss–Newton–Bartlett estimator.

    Math: with labels :math:`\hat y_b` drawn by :func:`sample_labels`,
    :math:`\hat g = \nabla_\theta \frac1B\sum_{b=1}^B \operatorname{CE}(\text{logits}_b, \hat y_b)`
    over the :math:`B` label positions. :math:`B\,\hat g\odot\hat g` is an unbiased estimate of
    the Gauss–Newton diagonal of the mean cross-entropy (:func:`gnb_diagonal`).

    Paper: Sophia-G, Liu et al., ICLR 2024, arXiv:2305.14342 (Algorithm 2). Reference
    implementation: the official ``train_sophiag.py`` (Liuhong99/Sophia @a7e1572), whose
    ``SophiaG.update_hessian`` stores :math:`\hat g\odot\hat g` without the factor :math:`B`
    and multiplies it back in the step through ``rho * bs * h``; that is why
    :class:`gradkit.optim.SophiaG` takes this :math:`\hat g` (and ``bs`` = the returned
    ``n``). Deviations: the gradient is returned instead of being left in ``p.grad``
    (``p.grad`` is never touched); clipping it (the official code clips to norm 1.0) is left
    to the caller (``sophia_refresh(max_grad_norm=...)`` does it).

    Args:
        logits: model outputs of shape ``(..., classes)`` with their graph, e.g. ``(B, V)`` or a
            language model's ``(B, T, V)``; every position is one loss term.
        params: the tensors to differentiate with respect to.
        generator: random generator for the label draws.

    Returns:
        ``(grads, n, loss)``: :math:`\hat g` per param (``None`` where unused), the number
        :math:`n` of label positions averaged in the loss (what SophiaG's ``bs`` must equal),
        and the detached sampled-label loss. The graph of ``logits`` is freed.

    Raises:
        TypeError: ``logits`` is not a tensor, or ``params`` is a bare tensor.
        ValueError: ``logits`` has no batch dimension, no label positions, or no graph.

    Example:
        >>> import torch
        >>> from gradkit.transforms import gnb_gradient
        >>> model = torch.nn.Linear(4, 3)
        >>> x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
        >>> grads, n, loss = gnb_gradient(model(x), list(model.parameters()),
        ...                               generator=torch.Generator().manual_seed(1))
        >>> n, [tuple(g.shape) for g in grads]
        (8, [(3, 4), (3,)])
        >>> model.weight.grad is None                     # .grad untouched
        True
    """
    return _gnb(logits, params, generator, "gnb_gradient")


def gnb_diagonal(
    logits: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor | None]:
    r"""The Gauss–Newton–Bartlett diagonal estimate :math:`\hat h = B\,\hat g\odot\hat g`.

    Math: with :math:`\hat g` from :func:`gnb_gradient` over :math:`B` label positions,
    :math:`\mathbb E[B\,\hat g\odot\hat g]` is the diagonal of the Gauss–Newton matrix
    :math:`\frac1B\sum_b J_b^\top(\operatorname{diag}(p_b) - p_b p_b^\top)J_b` of the mean
    cross-entropy (checked by the tests on a softmax regression). It is never negative.

    Paper: Sophia, arXiv:2305.14342 (Algorithm 2, in the paper's units). Reference
    implementation: the official code stores the estimate without the factor :math:`B` (see
    :func:`gnb_gradient`); this function returns it in the paper's units, which is what
    :class:`gradkit.optim.SophiaH` expects. Deviations: none.

    Args:
        logits: model outputs ``(..., classes)`` with their graph.
        params: the tensors to differentiate with respect to.
        generator: random generator for the label draws.

    Returns:
        One detached estimate per param (``None`` where the loss does not depend on it).

    Raises:
        TypeError: as :func:`gnb_gradient`.
        ValueError: as :func:`gnb_gradient`.

    Example:
        >>> import torch
        >>> from gradkit.transforms import gnb_diagonal
        >>> w = torch.zeros(2, 3, requires_grad=True)        # uniform predictions
        >>> logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]]) @ w
        >>> (h,) = gnb_diagonal(logits, [w], generator=torch.Generator().manual_seed(0))
        >>> h.shape, bool((h >= 0).all())
        (torch.Size([2, 3]), True)
    """
    grads, batch, _ = _gnb(logits, params, generator, "gnb_diagonal")
    return [None if grad is None else grad * grad * batch for grad in grads]

"""GradNorm: adaptive loss weights by gradient normalisation (Chen et al., ICML 2018).

GradNorm is a *loss-weighting* method, not a Jacobian → vector aggregator: it keeps one weight
per task, returns the weighted loss ``Σ w_i L_i`` for the usual ``backward()``, and moves the
weights so that each task's gradient norm on a shared layer ``W`` tracks a target set by how
fast that task trains. The math lives in two pure functions (:func:`gradnorm_targets`,
:func:`gradnorm_loss`); :class:`GradNorm` holds the weights, their optimizer and ``L_i(0)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from gradkit import _validation as check

__all__ = ["VARIANTS", "WEIGHT_OPTIMIZERS", "GradNorm", "gradnorm_loss", "gradnorm_targets"]

#: ``variant=`` values: the paper's Algorithm 1, or LibMTL's ``weighting/GradNorm.py``.
VARIANTS = ("paper", "libmtl")
#: ``optimizer=`` values for the weights' own optimizer.
WEIGHT_OPTIMIZERS = ("adam", "sgd")


def gradnorm_targets(
    weighted_norms: torch.Tensor, loss_ratios: torch.Tensor, alpha: float
) -> torch.Tensor:
    r"""The target norms :math:`\bar G\, r_i^\alpha`, detached (treated as constants).

    Args:
        weighted_norms: :math:`G_i = \|\nabla_W (w_i L_i)\|`, shape ``[T]``.
        loss_ratios: :math:`\tilde L_i = L_i(t) / L_i(0)`, shape ``[T]``, ``>= 0``.
        alpha: the asymmetry :math:`\alpha \ge 0`.

    Returns:
        :math:`\bar G\, r_i^\alpha` with :math:`\bar G = \operatorname{mean}_i G_i` and
        :math:`r_i = \tilde L_i / \operatorname{mean}_j \tilde L_j` (the relative inverse
        training rate: a task whose loss fell less, i.e. trains slower, has a larger
        :math:`r_i` and, for :math:`\alpha > 0`, a larger target).
    """
    g = weighted_norms.detach()
    r = loss_ratios.detach() / loss_ratios.detach().mean()
    return g.mean() * r.pow(alpha)


def gradnorm_loss(
    weights: torch.Tensor, grad_norms: torch.Tensor, loss_ratios: torch.Tensor, alpha: float
) -> torch.Tensor:
    r""":math:`L_\mathrm{grad} = \sum_i |G_i - [\bar G\, r_i^\alpha]_\mathrm{const}|`, with
    :math:`G_i = w_i n_i`, differentiable w.r.t. ``weights`` only through :math:`G_i`.

    Its gradient is :math:`\partial L_\mathrm{grad}/\partial w_i =
    \operatorname{sign}(w_i n_i - \bar G r_i^\alpha)\, n_i` (the target is a constant).

    Args:
        weights: the loss weights :math:`w_i > 0`, shape ``[T]``.
        grad_norms: the unweighted norms :math:`n_i = \|\nabla_W L_i\|`, shape ``[T]``.
        loss_ratios: :math:`L_i(t)/L_i(0)`, shape ``[T]``.
        alpha: the asymmetry :math:`\alpha \ge 0`.

    Returns:
        The scalar :math:`L_\mathrm{grad}`.
    """
    g = weights * grad_norms.detach()
    return (g - gradnorm_targets(g, loss_ratios, alpha)).abs().sum()


def _as_losses(losses: Any, num_tasks: int) -> list[torch.Tensor]:
    if isinstance(losses, torch.Tensor):
        if losses.dim() != 1:
            raise ValueError(
                f"Invalid losses for GradNorm: a Tensor of shape {tuple(losses.shape)} "
                "(give a 1-D tensor or a sequence of scalar tensors, one per task)"
            )
        out = list(losses.unbind(0))
    elif isinstance(losses, Sequence):
        out = list(losses)
    else:
        raise TypeError(
            f"Invalid losses for GradNorm: expected a sequence of scalar Tensors, "
            f"got {type(losses).__name__}"
        )
    if len(out) != num_tasks:
        raise ValueError(
            f"Invalid losses for GradNorm: got {len(out)} losses, expected num_tasks={num_tasks}"
        )
    for i, loss in enumerate(out):
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"Invalid losses[{i}]: expected a Tensor, got {type(loss).__name__}")
        if loss.numel() != 1 or not loss.is_floating_point():
            raise ValueError(
                f"Invalid losses[{i}]: shape {tuple(loss.shape)}, dtype {loss.dtype} "
                "(each task loss must be a real floating scalar)"
            )
        if not bool(torch.isfinite(loss.detach()).all()):
            raise ValueError(
                f"Non-finite loss of task {i} (losses[{i}] = {float(loss.detach().reshape(()))}); "
                "the GradNorm weights were not changed"
            )
        if not loss.requires_grad:
            raise ValueError(f"Invalid losses[{i}]: it does not require grad (no graph to W)")
    return out


def _as_params(shared: Any) -> list[torch.Tensor]:
    params = [shared] if isinstance(shared, torch.Tensor) else None
    if params is None:
        if not isinstance(shared, Iterable):
            raise TypeError(
                "Invalid shared for GradNorm: expected a Tensor or an iterable of Tensors "
                f"(the last shared layer's params), got {type(shared).__name__}"
            )
        params = list(shared)
    if not params:
        raise ValueError("Invalid shared for GradNorm: empty (need the last shared layer W)")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"Invalid shared[{i}]: expected a Tensor, got {type(p).__name__}")
        if not p.requires_grad:
            raise ValueError(f"Invalid shared[{i}]: the tensor does not require grad")
    return params


def _as_numbers(name: str, values: Any, num_tasks: int) -> torch.Tensor:
    """``T`` finite real numbers (a sequence or a 1-D tensor) as a float64 CPU tensor."""
    try:
        t = torch.as_tensor(values, dtype=torch.float64).detach().cpu().clone()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"Invalid {name} for GradNorm: {values!r} (expected numbers)") from None
    if t.dim() != 1 or t.numel() != num_tasks:
        raise ValueError(f"Invalid {name} for GradNorm: shape {tuple(t.shape)}, not ({num_tasks},)")
    bad = [i for i, v in enumerate(t.tolist()) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"Non-finite {name} of task(s) {bad} ({t.tolist()}); weights unchanged")
    return t


class GradNorm:
    r"""GradNorm (Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for
    Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018, arXiv:1711.02257).

    **Paper form** (``variant="paper"``, Algorithm 1). Weights :math:`w_i(0) = 1`;
    :math:`W` is a shared layer (the paper: the *last* shared layer's weights). Each step ``t``:

    .. math::
        n_i = \|\nabla_W L_i(t)\|_2,\qquad G_i = \|\nabla_W (w_i L_i)\|_2 = w_i n_i,
        \qquad \bar G = \operatorname{mean}_i G_i,

        \tilde L_i = L_i(t)/L_i(0),\qquad r_i = \tilde L_i / \operatorname{mean}_j \tilde L_j,

        L_\mathrm{grad} = \sum_i \bigl|G_i - [\bar G\, r_i^\alpha]_\mathrm{const}\bigr|,
        \qquad \frac{\partial L_\mathrm{grad}}{\partial w_i}
            = \operatorname{sign}(G_i - \bar G r_i^\alpha)\, n_i,

        w \leftarrow \mathrm{opt}(w, \nabla_w L_\mathrm{grad}),\qquad
        w_i \leftarrow T\, w_i / \textstyle\sum_j w_j.

    The network gets :math:`\nabla_\theta \sum_i w_i(t) L_i(t)` (the weights *before* the
    update, detached; the returned loss). :math:`L_i(0)` is the loss of the first ``step``
    (or ``initial_losses``, e.g. :math:`\log C` for a ``C``-class cross-entropy, which the
    paper suggests when :math:`L_i(0)` depends strongly on the initialisation [recalled]).
    With :math:`\alpha = 0` the fixed point is :math:`w_i n_i = \bar G`, i.e.
    :math:`w_i \propto 1/n_i`; :math:`\alpha > 0` gives a task that trains slower
    (larger :math:`\tilde L_i`) a larger target norm, hence a larger weight.

    **LibMTL form** (``variant="libmtl"``, ``LibMTL/weighting/GradNorm.py``, GitHub):
    :math:`w = T \operatorname{softmax}(s)`, :math:`s(0) = 0` (so :math:`\sum w = T` by
    construction, no renormalisation); :math:`L_\mathrm{grad}` as above is minimised over
    :math:`s` (:math:`\partial L/\partial s_j = T p_j (g_j - \sum_i p_i g_i)` with
    :math:`p = \operatorname{softmax}(s)`, :math:`g_i = \partial L/\partial w_i`); during
    **epoch 0** the weights are not used nor updated and ``step`` returns the plain sum
    :math:`\sum_i L_i`; :math:`L_i(0)` is task ``i``'s mean loss over epoch 0 (weighted by
    ``batch_size`` like LibMTL's loss meter), fixed when :meth:`end_epoch` is first called.

    **Choices and deviations** (checked against LibMTL's GitHub code, ``weighting/GradNorm.py``
    at daa780e, ``abstract_weighting.py``, ``trainer.py``, ``loss.py``; the paper's own code is
    not public, so the paper form follows Algorithm 1 as restated in the spec):

    * ``W`` is what you pass as ``shared``: the paper uses the last shared layer; LibMTL
      uses *all* shared params (pass them all for parity). Several tensors count as one
      vector (norm of the concatenation, as LibMTL).
    * The weights have their own optimizer: ``optimizer="adam"`` (default) or ``"sgd"``,
      with ``lr``. The paper says only "update :math:`w_i` using
      :math:`\nabla_{w_i} L_\mathrm{grad}`" [its optimizer and learning rate for ``w``
      are a GAP]; LibMTL registers :math:`s` as an ``nn.Parameter`` of the model, so it is
      stepped by the network's optimizer with the network's lr (``optimizer="adam"``,
      ``lr=<network lr>`` reproduces that for Adam). One stored LibMTL revision (2d842d6)
      builds ``loss_scale`` as a plain tensor that no optimizer holds, so its weights never
      move; gradkit follows the ``nn.Parameter`` revision.
    * ``min_weight`` (paper form only): weights are clamped at it before renormalising. The
      paper leaves a weight pushed to :math:`\le 0` undefined (a negative weight would make
      the network ascend that task's loss); it acts only in that case.
    * In LibMTL a task-specific head receives its *unweighted* gradient
      :math:`\nabla L_i` (only the shared params are reset to :math:`\sum w_i g_i`); here
      the returned loss :math:`\sum w_i L_i` gives heads :math:`w_i \nabla L_i`, as the
      paper's :math:`\nabla_\theta L(t)`.
    * α: default 1.5 = LibMTL's default; 1.5 is the paper's NYUv2 value (corroborated by the
      Nash-MTL authors in AvivNavon/nash-mtl issue #4, not read in the paper here); 0.12 for
      the paper's synthetic toy is [recalled, GAP].
    * Losses must be finite; :math:`L_i(0)` must be ``> 0`` and :math:`L_i(t) \ge 0`
      (the ratio and :math:`r^\alpha` are otherwise undefined), else ``ValueError``.

    Args:
        num_tasks: ``T >= 2``.
        alpha: the asymmetry :math:`\alpha \ge 0` (default 1.5).
        lr: the weights' learning rate (default 0.025, a gradkit choice).
        optimizer: ``"adam"`` (default) or ``"sgd"`` (plain gradient step), for the weights.
        variant: ``"paper"`` (default) or ``"libmtl"`` (see above).
        initial_losses: ``L_i(0)`` (``T`` positive numbers) instead of the first step's
            losses (paper form only).
        min_weight: floor of a weight before renormalisation (paper form; default 1e-6).

    Raises:
        ValueError: ``num_tasks < 2``, negative or non-finite ``alpha``, ``lr <= 0``, an
            unknown ``variant``/``optimizer``, bad ``initial_losses``.
        TypeError: arguments of the wrong type.

    Example:
        >>> import torch
        >>> from gradkit.mtl._gradnorm import GradNorm
        >>> _ = torch.manual_seed(0)
        >>> trunk = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
        ...                             torch.nn.Linear(8, 8), torch.nn.ReLU())
        >>> heads = torch.nn.ModuleList([torch.nn.Linear(8, 1) for _ in range(2)])
        >>> params = [*trunk.parameters(), *heads.parameters()]
        >>> opt = torch.optim.SGD(params, lr=0.01)
        >>> gradnorm = GradNorm(num_tasks=2, alpha=0.5, lr=0.05)
        >>> x, y = torch.randn(32, 4), torch.randn(32, 2) * torch.tensor([1.0, 10.0])
        >>> for _ in range(20):
        ...     z = trunk(x)
        ...     losses = [((heads[i](z).squeeze(1) - y[:, i]) ** 2).mean() for i in range(2)]
        ...     opt.zero_grad()
        ...     loss = gradnorm.step(losses, trunk[2].weight)  # W: the last shared layer
        ...     loss.backward()
        ...     opt.step()
        >>> round(float(gradnorm.weights.sum()), 6)  # renormalised: sum(w) = T
        2.0
        >>> bool(gradnorm.weights[1] < gradnorm.weights[0])  # the larger-scale task: smaller w
        True
    """

    def __init__(
        self,
        num_tasks: int,
        alpha: float = 1.5,
        lr: float = 0.025,
        *,
        optimizer: str = "adam",
        variant: str = "paper",
        initial_losses: Sequence[float] | torch.Tensor | None = None,
        min_weight: float = 1e-6,
    ) -> None:
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int):
            raise TypeError(
                f"Invalid num_tasks: {num_tasks!r} (expected an int, got {type(num_tasks).__name__})"
            )
        if num_tasks < 2:
            raise ValueError(f"Invalid num_tasks: {num_tasks} (GradNorm needs T >= 2 tasks)")
        check.nonnegative("alpha", alpha)
        check.positive("lr", lr)
        check.one_of(*VARIANTS)("variant", variant)
        check.one_of(*WEIGHT_OPTIMIZERS)("optimizer", optimizer)
        check.nonnegative("min_weight", min_weight)
        if float(min_weight) >= 1.0:
            raise ValueError(f"Invalid min_weight: {min_weight!r} (must be < 1)")
        self.num_tasks = num_tasks
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.optimizer_name = optimizer
        self.variant = variant
        self.min_weight = float(min_weight)
        self._given_initial = (
            None if initial_losses is None else self._check_initial(initial_losses)
        )
        self.reset()

    def _check_initial(self, values: Any) -> torch.Tensor:
        if self.variant == "libmtl":
            raise ValueError(
                "Invalid initial_losses: variant='libmtl' takes L_i(0) from epoch 0's mean loss"
            )
        try:
            t = torch.as_tensor(values, dtype=torch.float64).detach().clone().reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"Invalid initial_losses: {values!r} (expected {self.num_tasks} real numbers)"
            ) from None
        if t.numel() != self.num_tasks:
            raise ValueError(
                f"Invalid initial_losses: {t.numel()} values, expected num_tasks={self.num_tasks}"
            )
        bad = [i for i, v in enumerate(t.tolist()) if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(
                f"Invalid initial_losses: entries {bad} are not finite and > 0 "
                f"({t.tolist()}); the loss ratio L_i(t)/L_i(0) needs L_i(0) > 0"
            )
        return t

    def reset(self) -> None:
        """Start over: weights 1, no ``L_i(0)``, step and epoch 0, a fresh weight optimizer."""
        self._param = torch.zeros(self.num_tasks, dtype=torch.float64, requires_grad=True)
        if self.variant == "paper":
            with torch.no_grad():
                self._param.fill_(1.0)
        if self.optimizer_name == "adam":
            self._opt: torch.optim.Optimizer = torch.optim.Adam([self._param], lr=self.lr)
        else:
            self._opt = torch.optim.SGD([self._param], lr=self.lr)
        self.initial_losses: torch.Tensor | None = (
            None if self._given_initial is None else self._given_initial.clone()
        )
        self.num_steps = 0
        self.epoch = 0
        self._epoch0_sum = torch.zeros(self.num_tasks, dtype=torch.float64)
        self._epoch0_count = 0.0
        #: Diagnostics of the last update (not saved): ``n_i``, targets, ``L_grad``.
        self.last_grad_norms: torch.Tensor | None = None
        self.last_targets: torch.Tensor | None = None
        self.last_gradnorm_loss: float | None = None

    def _weights_of(self, param: torch.Tensor) -> torch.Tensor:
        if self.variant == "libmtl":
            return self.num_tasks * torch.softmax(param, dim=0)
        return param

    @property
    def weights(self) -> torch.Tensor:
        """The current loss weights ``w`` (float64, detached; ``sum(w) == T``)."""
        with torch.no_grad():
            return self._weights_of(self._param).detach().clone()

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments (shown by ``repr``)."""
        return {
            "num_tasks": self.num_tasks,
            "alpha": self.alpha,
            "lr": self.lr,
            "optimizer": self.optimizer_name,
            "variant": self.variant,
            "min_weight": self.min_weight,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"GradNorm({args})"

    def step(
        self,
        losses: Sequence[torch.Tensor] | torch.Tensor,
        shared: torch.Tensor | Iterable[torch.Tensor],
        *,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        r"""One GradNorm step: update the weights, return :math:`\sum_i w_i(t) L_i(t)`.

        Computes :math:`n_i = \|\nabla_W L_i\|` (one ``torch.autograd.grad`` per task w.r.t.
        ``shared`` only, the graph retained), takes one optimizer step on
        :math:`L_\mathrm{grad}` and renormalises. The returned loss uses the weights
        *before* this update (detached), so ``loss.backward()`` then trains the network
        exactly as the paper's :math:`\nabla_\theta L(t)`. LibMTL form, epoch 0: returns
        :math:`\sum_i L_i`, records the losses for :math:`L_i(0)`, changes no weight.

        Args:
            losses: ``T`` scalar task losses (a sequence or a 1-D tensor) with their graph.
            shared: ``W``, a Tensor or an iterable of Tensors that every loss depends on.
            batch_size: weight of this step in LibMTL's epoch-0 mean (default 1).

        Returns:
            The weighted loss (a scalar in the losses' dtype) to call ``backward()`` on.

        Raises:
            ValueError: wrong number of losses, a non-finite loss (names the task), a loss
                that does not reach ``W``, a negative loss or non-positive ``L_i(0)``.
            TypeError: arguments of the wrong type.
        """
        loss_list = _as_losses(losses, self.num_tasks)
        params = _as_params(shared)
        values = torch.stack([loss.detach().reshape(()).double().cpu() for loss in loss_list])
        if self._epoch0(values, batch_size):
            return torch.stack([loss.reshape(()) for loss in loss_list]).sum()
        self._check_values(values)
        used = self._update(values, self._grad_norms(loss_list, params))
        return torch.stack(
            [
                w.to(device=loss.device, dtype=loss.dtype) * loss.reshape(())
                for w, loss in zip(used, loss_list, strict=True)
            ]
        ).sum()

    def update(
        self,
        losses: Sequence[float] | torch.Tensor,
        grad_norms: Sequence[float] | torch.Tensor,
        *,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        r"""The weight update of :meth:`step` from numbers: the loss values :math:`L_i(t)`
        and their gradient norms :math:`n_i = \|\nabla_W L_i(t)\|`, both given (no autograd).

        For a loop that has the task gradients already (a Jacobian, a closed form): it then
        trains the network on :math:`\sum_i w_i(t) \nabla L_i` with the returned ``w(t)``.
        ``step(losses, W)`` equals ``update(values, norms)`` followed by that weighted sum.

        Args:
            losses: ``T`` finite loss values (numbers or a 1-D tensor).
            grad_norms: ``T`` finite gradient norms ``>= 0`` on the shared layer ``W``.
            batch_size: weight of this step in LibMTL's epoch-0 mean (default 1).

        Returns:
            ``w(t)``, the weights *before* this update (float64, ``[T]``; ones in LibMTL's
            epoch 0, where the losses are only recorded).

        Raises:
            ValueError: wrong length, non-finite values, a negative norm or loss, a
                non-positive ``L_i(0)``; the state is then unchanged.
            TypeError: arguments of the wrong type.
        """
        values = _as_numbers("losses", losses, self.num_tasks)
        norms = _as_numbers("grad_norms", grad_norms, self.num_tasks)
        negative = [i for i, v in enumerate(norms.tolist()) if v < 0]
        if negative:
            raise ValueError(
                f"Invalid grad_norms for GradNorm: entries {negative} are negative "
                f"({norms.tolist()}); a norm is >= 0"
            )
        if self._epoch0(values, batch_size):
            return torch.ones(self.num_tasks, dtype=torch.float64)
        self._check_values(values)
        return self._update(values, norms)

    def _epoch0(self, values: torch.Tensor, batch_size: int | None) -> bool:
        """LibMTL form, epoch 0: record the losses for ``L_i(0)`` and return ``True``."""
        if batch_size is not None:
            check.positive_int("batch_size", batch_size)
        if not (self.variant == "libmtl" and self.epoch == 0):
            return False
        weight = 1.0 if batch_size is None else float(batch_size)
        self._epoch0_sum += weight * values
        self._epoch0_count += weight
        self.num_steps += 1
        return True

    def _check_values(self, values: torch.Tensor) -> None:
        negative = [i for i, v in enumerate(values.tolist()) if v < 0]
        if negative:
            raise ValueError(
                f"Invalid losses for GradNorm: task(s) {negative} have a negative loss "
                f"({values.tolist()}); the ratio L_i(t)/L_i(0) must be >= 0"
            )
        if self.initial_losses is None:
            bad = [i for i, v in enumerate(values.tolist()) if v <= 0]
            if bad:
                raise ValueError(
                    f"Invalid losses for GradNorm: task(s) {bad} have loss 0 at the first step, "
                    "so L_i(t)/L_i(0) is undefined; pass initial_losses="
                )

    def _update(self, values: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """One optimizer step on ``L_grad`` (inputs validated); returns the weights used."""
        if self.initial_losses is None:
            self.initial_losses = values.clone()
        used = self.weights
        ratios = values / self.initial_losses
        self._opt.zero_grad(set_to_none=True)
        weights = self._weights_of(self._param)
        grad_loss = gradnorm_loss(weights, norms, ratios, self.alpha)
        grad_loss.backward()
        self._opt.step()
        if self.variant == "paper":
            with torch.no_grad():
                self._param.clamp_(min=self.min_weight)
                self._param.mul_(self.num_tasks / self._param.sum())
        self.last_grad_norms = norms
        self.last_targets = gradnorm_targets(used * norms, ratios, self.alpha)
        self.last_gradnorm_loss = float(grad_loss.detach())
        self.num_steps += 1
        return used

    @staticmethod
    def _grad_norms(losses: list[torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
        norms = []
        for i, loss in enumerate(losses):
            grads = torch.autograd.grad(
                loss.reshape(()), params, retain_graph=True, allow_unused=True
            )
            parts = [g.detach().double().reshape(-1) for g in grads if g is not None]
            if not parts:
                raise ValueError(
                    f"Invalid losses[{i}]: task {i}'s loss does not depend on the shared layer W "
                    "given to GradNorm (its gradient norm there is undefined)"
                )
            norm = float(torch.linalg.vector_norm(torch.cat(parts)))
            if not math.isfinite(norm):
                raise ValueError(
                    f"Non-finite gradient (NaN or ±inf) of task {i} w.r.t. W; "
                    "the GradNorm weights were not changed"
                )
            norms.append(norm)
        return torch.tensor(norms, dtype=torch.float64)

    def end_epoch(self) -> None:
        """Mark the end of an epoch. LibMTL form: the first call fixes ``L_i(0)`` as epoch 0's
        mean losses (``ValueError`` if no step was taken); later ``step`` calls use GradNorm.
        Paper form: only counts epochs."""
        if self.variant == "libmtl" and self.epoch == 0:
            if self._epoch0_count == 0:
                raise ValueError("GradNorm.end_epoch: no step was taken in epoch 0")
            mean = self._epoch0_sum / self._epoch0_count
            bad = [i for i, v in enumerate(mean.tolist()) if not v > 0]
            if bad:
                raise ValueError(
                    f"GradNorm.end_epoch: task(s) {bad} have mean epoch-0 loss <= 0 "
                    f"({mean.tolist()}); L_i(t)/L_i(0) is undefined"
                )
            self.initial_losses = mean
        self.epoch += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (tensors and plain numbers only, so it loads with
        ``torch.load(weights_only=True)``): the weights (or LibMTL's logits), the weight
        optimizer's state, ``L_i(0)``, the step and epoch counters, epoch 0's loss sums."""
        return {
            "variant": self.variant,
            "num_tasks": self.num_tasks,
            "optimizer_name": self.optimizer_name,
            "param": self._param.detach().clone(),
            "optimizer": self._opt.state_dict(),
            "initial_losses": None if self.initial_losses is None else self.initial_losses.clone(),
            "num_steps": self.num_steps,
            "epoch": self.epoch,
            "epoch0_sum": self._epoch0_sum.clone(),
            "epoch0_count": self._epoch0_count,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (validated: same variant and ``T``)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                "Invalid state_dict for GradNorm: expected a mapping, "
                f"got {type(state_dict).__name__}"
            )
        keys = {
            "variant",
            "num_tasks",
            "optimizer_name",
            "param",
            "optimizer",
            "initial_losses",
            "num_steps",
        }
        keys |= {"epoch", "epoch0_sum", "epoch0_count"}
        missing = keys - set(state_dict)
        if missing:
            raise ValueError(f"Invalid state_dict for GradNorm: missing keys {sorted(missing)}")
        saved = tuple(state_dict[k] for k in ("variant", "num_tasks", "optimizer_name"))
        if saved != (self.variant, self.num_tasks, self.optimizer_name):
            raise ValueError(
                "Invalid state_dict for GradNorm: saved for (variant, num_tasks, optimizer) = "
                f"{saved!r}; this instance has "
                f"{(self.variant, self.num_tasks, self.optimizer_name)!r}"
            )
        param = state_dict["param"]
        shape = (self.num_tasks,)
        for key in ("param", "epoch0_sum"):
            value = state_dict[key]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                raise ValueError(
                    f"Invalid state_dict for GradNorm: {key!r} must be a {shape} Tensor"
                )
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"Invalid state_dict for GradNorm: {key!r} is not finite")
        initial = state_dict["initial_losses"]
        if initial is not None:
            if not isinstance(initial, torch.Tensor) or tuple(initial.shape) != shape:
                raise ValueError(
                    f"Invalid state_dict for GradNorm: 'initial_losses' must be None or a "
                    f"{shape} Tensor"
                )
            if not bool((initial > 0).all()) or not bool(torch.isfinite(initial).all()):
                raise ValueError(
                    "Invalid state_dict for GradNorm: 'initial_losses' must be finite and > 0"
                )
        with torch.no_grad():
            self._param.copy_(param)
        self._opt.load_state_dict(state_dict["optimizer"])
        self.initial_losses = None if initial is None else initial.double().clone()
        self.num_steps = int(state_dict["num_steps"])
        self.epoch = int(state_dict["epoch"])
        self._epoch0_sum = state_dict["epoch0_sum"].double().clone()
        self._epoch0_count = float(state_dict["epoch0_count"])

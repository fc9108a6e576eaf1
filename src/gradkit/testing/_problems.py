"""Small deterministic problems that the conformance checks optimise."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["TinyConvNet"]


class TinyConvNet:
    """conv(2→3, 3×3) → tanh → linear(48→4), with a trailing zero-size param.

    The loss at step ``t`` uses one of three fixed batches, so gradients change from step to
    step. Params (in order): conv weight, conv bias, linear weight (non-contiguous when
    ``contiguous=False``), linear bias, and an empty ``(0,)`` param that enters the loss with
    a zero-size gradient.
    """

    def __init__(
        self, dtype: torch.dtype = torch.float64, *, contiguous: bool = True, seed: int = 0
    ):
        gen = torch.Generator().manual_seed(seed)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen, dtype=dtype)

        conv_w = randn(3, 2, 3, 3) * 0.3
        conv_b = randn(3) * 0.1
        lin_w = randn(48, 4).t() * 0.2 if not contiguous else randn(4, 48) * 0.2
        lin_b = randn(4) * 0.1
        scale = torch.tensor(0.1, dtype=dtype)
        empty = torch.zeros(0, dtype=dtype)
        self.params = [t.requires_grad_() for t in (conv_w, conv_b, lin_w, lin_b, scale, empty)]
        self.batches = [(randn(8, 2, 6, 6), randn(8, 4)) for _ in range(3)]

    def clone_params(self) -> list[torch.Tensor]:
        """Independent leaf copies with the same values and strides."""
        copies = []
        for param in self.params:
            copy = torch.empty_strided(param.shape, param.stride(), dtype=param.dtype)
            copy.copy_(param.detach())
            copies.append(copy.requires_grad_())
        return copies

    def loss(self, params: list[torch.Tensor], step: int) -> torch.Tensor:
        """The loss of ``params`` on batch ``step % 3``."""
        conv_w, conv_b, lin_w, lin_b, scale, empty = params
        x, y = self.batches[step % len(self.batches)]
        hidden = torch.tanh(F.conv2d(x, conv_w, conv_b)).flatten(1)
        out = hidden @ lin_w.t() + lin_b + scale
        return F.mse_loss(out, y) + empty.sum()

    def loss_fn(self, params: list[torch.Tensor], step: int) -> Callable[[], torch.Tensor]:
        """A zero-argument function returning the loss of batch ``step % 3`` with its graph
        (no backward, ``.grad`` untouched): what a ``hessian_refresh`` hook receives."""
        return lambda: self.loss(params, step)

    def closure(self, params: list[torch.Tensor], step: int) -> Callable[[], torch.Tensor]:
        """A ``step(closure)``-style closure: zero grads, loss, backward, return loss."""

        def closure() -> torch.Tensor:
            for param in params:
                param.grad = None
            loss = self.loss(params, step)
            loss.backward()
            return loss

        return closure

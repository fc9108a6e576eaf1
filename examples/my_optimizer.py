# my_optimizer.py: your optimizer beside the built-in ones (module:Class in --optimizers)
import torch


class SignSGD(torch.optim.Optimizer):
    """signSGD with momentum (Bernstein et al., 2018): m = beta*m + g; p -= lr * sign(m)."""

    def __init__(self, params, lr=1e-3, beta=0.9):
        super().__init__(params, {"lr": lr, "beta": beta})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                m.mul_(group["beta"]).add_(p.grad)
                p.add_(m.sign(), alpha=-group["lr"])
        return loss

# quadratic_task.py: the Task contract without make_task (a class is a factory too):
#   gradkit bench --task quadratic_task:Quadratic --optimizers sgd,adam
import torch

from gradkit.bench.tasks import Outcome, Task


class Quadratic(Task):
    name = "quadratic"
    description = "f(x) = ½‖x − 1‖² from x = 0 in 10-D"
    loss_name = "f(x)"
    deterministic = True  # the same numbers for every seed: run once
    optimum = 0.0

    def default_steps(self, smoke):
        return 5 if smoke else 50

    def hyperparams(self, method):
        # untuned runs (--trials 0) use these; a tuning trial's draws win over them
        return {"lr": 0.1, "momentum": 0.0}

    def run(self, method, seed, steps, smoke):
        x = torch.nn.Parameter(torch.zeros(10))
        optimizer, used = method.build([x], self.hyperparams(method))
        curve = []
        for _ in range(steps):
            optimizer.zero_grad()
            loss = 0.5 * (x - 1).pow(2).sum()
            curve.append(loss.item())
            loss.backward()
            optimizer.step()
        final = 0.5 * (x.detach() - 1).pow(2).sum().item()
        return Outcome(final, [*curve, final]), used

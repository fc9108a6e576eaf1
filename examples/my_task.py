# my_task.py: your model and data in `gradkit bench --task my_task:make_task`
import torch
from torch.utils.data import DataLoader, TensorDataset

from gradkit import bench


def make_task():  # called with no arguments; returns the task
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    y = (x[:, :4].sum(1) > x[:, 4:].sum(1)).long()  # two classes
    train = DataLoader(TensorDataset(x[:500], y[:500]), batch_size=50, shuffle=True)
    x_val, y_val = x[500:], y[500:]  # held out: the tuner reads its loss, so no test set here

    def model():  # a fresh model for every run
        return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

    def evaluate(m):  # after training, in eval mode, under no_grad
        logits = m(x_val)
        return {
            "loss": torch.nn.functional.cross_entropy(logits, y_val).item(),
            "accuracy": (logits.argmax(1) == y_val).float().mean().item(),
        }

    return bench.make_task(
        "my_mlp", model, train, torch.nn.functional.cross_entropy, steps=200, eval_fn=evaluate
    )

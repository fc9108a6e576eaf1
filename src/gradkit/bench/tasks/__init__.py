"""Benchmark tasks: the diffGrad 1-D functions, Rosenbrock and a BatchNorm CNN on digits."""

from gradkit.bench.tasks.base import Outcome, Task
from gradkit.bench.tasks.digits import DigitsCNNTask
from gradkit.bench.tasks.functions1d import FunctionTask
from gradkit.bench.tasks.rosenbrock import RosenbrockTask

__all__ = ["DigitsCNNTask", "FunctionTask", "Outcome", "RosenbrockTask", "Task"]

"""Multi-task gradient aggregation.

* :class:`Aggregator` — base class: ``aggregator(jacobian [K, P]) -> update [P]``;
* :class:`Mean`, :class:`Sum` — linear scalarisation;
* :class:`PCGrad`, :class:`CAGrad`, :class:`MGDA` — the classic conflict-resolving baselines;
* :class:`SAMGS` — similarity-aware momentum gradient surgery (stateful);
* :class:`GCond` — gradient conductor: accumulate over batches, then resolve (stateful);
* :class:`GradNorm` — GradNorm loss weighting (Chen et al., ICML 2018): task weights adapted
  from gradient norms on a shared layer (stateful; a loss weighting, not an aggregator);
* :func:`mtl_backward` — per-task gradients of the shared params, aggregated into ``.grad``.

Example::

    optimizer.zero_grad()
    mtl_backward([loss1, loss2], encoder.parameters(), Mean(), task_params=[head1, head2])
    optimizer.step()
"""

from gradkit.mtl._backward import mtl_backward
from gradkit.mtl._base import Aggregator
from gradkit.mtl._cagrad import CAGrad
from gradkit.mtl._gcond import GCond
from gradkit.mtl._gradnorm import GradNorm, gradnorm_loss, gradnorm_targets
from gradkit.mtl._linear import Mean, Sum
from gradkit.mtl._mgda import MGDA
from gradkit.mtl._pcgrad import PCGrad
from gradkit.mtl._samgs import SAMGS

__all__ = [
    "MGDA",
    "SAMGS",
    "Aggregator",
    "CAGrad",
    "GCond",
    "GradNorm",
    "Mean",
    "PCGrad",
    "Sum",
    "gradnorm_loss",
    "gradnorm_targets",
    "mtl_backward",
]

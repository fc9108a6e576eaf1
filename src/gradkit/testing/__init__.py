"""Public test utilities: certify an optimizer or an aggregator against gradkit's conformance
suites.

* :func:`check_optimizer` / :func:`conformance_checks` — the ``torch.optim`` conventions;
* :func:`check_aggregator` / :func:`aggregator_checks` — what a multi-task aggregator
  (Jacobian ``[K, P]`` → update ``[P]``) must do, and the claims in its registry entry;
* :func:`state_bytes`, :func:`reachable_tensors` — memory accounting of optimizer state.

>>> import torch
>>> from gradkit.testing import check_optimizer
>>> check_optimizer(torch.optim.Adam, lr=0.05, supported_impls=(),
...                 supports_complex=True, validates_group_overrides=False)
>>> from gradkit.mtl import Mean
>>> from gradkit.testing import check_aggregator
>>> check_aggregator(Mean)
"""

from gradkit.testing._aggregator import aggregator_checks, check_aggregator
from gradkit.testing._conformance import check_optimizer, conformance_checks
from gradkit.testing._memory import reachable_tensors, state_bytes

__all__ = [
    "aggregator_checks",
    "check_aggregator",
    "check_optimizer",
    "conformance_checks",
    "reachable_tensors",
    "state_bytes",
]

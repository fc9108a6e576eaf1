"""gradkit optimizers: ``torch.optim`` drop-ins, each a thin shell over a functional update.

Every optimizer supports param groups, ``state_dict``/``load_state_dict``, closures, LR
schedulers, ``maximize``, a 0-d tensor ``lr``, ``foreach`` (the default) and ``fused=True``
(a ``torch.compile``'d single-graph step), and a non-finite-gradient policy (``nonfinite``).

Matrix optimizers (:class:`SWAN`, :class:`SinkGD`, :class:`ARO`) update ≥2-D weights with a
matrix rule and the rest with AdamW inside the same optimizer; :func:`matrix_param_groups`
builds the two groups from a model.
"""

from gradkit.optim._adabelief import AdaBelief
from gradkit.optim._adamp import SGDP, AdamP
from gradkit.optim._aro import ARO
from gradkit.optim._base import GradkitOptimizer, NonFiniteGradientError
from gradkit.optim._diffgrad import DiffGrad
from gradkit.optim._param_groups import matrix_param_groups
from gradkit.optim._sinkgd import SinkGD
from gradkit.optim._sophia import SophiaG, SophiaH
from gradkit.optim._sophia_refresh import sophia_refresh
from gradkit.optim._swan import SWAN

__all__ = [
    "ARO",
    "SGDP",
    "SWAN",
    "AdaBelief",
    "AdamP",
    "DiffGrad",
    "GradkitOptimizer",
    "NonFiniteGradientError",
    "SinkGD",
    "SophiaG",
    "SophiaH",
    "matrix_param_groups",
    "sophia_refresh",
]

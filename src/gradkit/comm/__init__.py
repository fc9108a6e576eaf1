"""Communication-efficient and secure aggregation of gradient updates.

1-bit compression (EdgeDetect smartification / scaled sign), a checked wire frame, error
feedback, server-side aggregation and packed Paillier secure aggregation. See docs/comm.md for
the byte formats and the threat model.

Client side:

* :func:`client_payload` — update tensors → :class:`ClientPayload` (bytes + accounting);
* :func:`binarize`, :func:`reconstruct`, :func:`sign_disagreement`, :class:`BinaryUpdate`;
* :func:`encode_frame` / :func:`decode_frame` — the plaintext wire frame;
* :class:`ErrorFeedback` — per-client residual, ``state_dict`` round trip;
* :func:`encrypt_update` — the encrypted frame (needs ``pip install 'gradkit[he]'``).

Server side:

* :func:`aggregate` — plaintext frames → :class:`AggregateResult` (``"majority"`` or ``"mean"``);
* :func:`majority_vote`, :func:`mean_reconstruction` — the same on decoded updates;
* :class:`SecureAggregator` — encrypted frames → encrypted aggregate bytes (public key only).

Key holder: :class:`KeyHolder` — generates the key pair, decrypts only aggregates; an aggregate
that honest clients cannot produce raises :class:`InvalidAggregateError`.

DDP training: :func:`sign_compress_hook` with :class:`SignCompressionState` — a
``DistributedDataParallel.register_comm_hook`` hook sending 1-bit signs with error feedback.

``phe``/``gmpy2`` are imported lazily: ``import gradkit.comm`` works without the ``he`` extra.
"""

from gradkit.comm._aggregate import (
    AggregateResult,
    aggregate,
    majority_vote,
    mean_reconstruction,
)
from gradkit.comm._binarize import BinaryUpdate, binarize, reconstruct, sign_disagreement
from gradkit.comm._ddp_hook import SignCompressionState, sign_compress_hook
from gradkit.comm._error_feedback import ErrorFeedback
from gradkit.comm._frame import decode_frame, encode_frame, plain_frame_size
from gradkit.comm._paillier import (
    MIN_KEY_BITS,
    InvalidAggregateError,
    KeyHolder,
    PackingPlan,
    SecureAggregator,
    encrypt_update,
    encrypted_frame_info,
    load_public_key,
    public_key_bytes,
)
from gradkit.comm._payload import ClientPayload, client_payload

__all__ = [
    "MIN_KEY_BITS",
    "AggregateResult",
    "BinaryUpdate",
    "ClientPayload",
    "ErrorFeedback",
    "InvalidAggregateError",
    "KeyHolder",
    "PackingPlan",
    "SecureAggregator",
    "SignCompressionState",
    "aggregate",
    "binarize",
    "client_payload",
    "decode_frame",
    "encode_frame",
    "encrypt_update",
    "encrypted_frame_info",
    "load_public_key",
    "majority_vote",
    "mean_reconstruction",
    "plain_frame_size",
    "public_key_bytes",
    "reconstruct",
    "sign_compress_hook",
    "sign_disagreement",
]

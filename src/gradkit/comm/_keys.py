"""Paillier keys: the lazy ``phe`` import, the key-size check, and the public key's wire format.

``phe``/``gmpy2`` are imported only when a key is used, so ``import gradkit.comm`` works without
the ``he`` extra.
"""

from __future__ import annotations

import hashlib
import struct
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from gradkit.comm._frame import Reader, check_end

__all__ = ["MIN_KEY_BITS", "load_public_key", "public_key_bytes"]

#: Smallest accepted Paillier modulus, in bits.
MIN_KEY_BITS = 2048

_HE_HINT = "pip install 'gradkit[he]'"
_PK_MAGIC = b"GKPK"
_PK_HEADER = struct.Struct("<4sBI")


def _phe() -> ModuleType:
    """Import ``phe.paillier`` lazily, with a clear message when the extra is missing."""
    try:
        import phe.util
        from phe import paillier
    except ImportError as err:  # pragma: no cover - the he extra is installed in CI
        raise ImportError(
            f"gradkit.comm secure aggregation needs python-paillier (phe) and gmpy2: {_HE_HINT}"
        ) from err
    if not phe.util.HAVE_GMP:  # pragma: no cover - gmpy2 is installed in CI
        warnings.warn(
            f"gmpy2 is not installed: Paillier runs about 8x slower ({_HE_HINT})",
            RuntimeWarning,
            stacklevel=3,
        )
    return paillier


def _big_int() -> Callable[[int], Any]:
    """``gmpy2.mpz`` when available (products mod n² about 3x faster than Python ints)."""
    try:
        from gmpy2 import mpz
    except ImportError:  # pragma: no cover - gmpy2 is installed in CI
        return int
    return mpz


def _modulus(public_key: Any, who: str) -> int:
    n = getattr(public_key, "n", None)
    if not isinstance(n, int) or isinstance(n, bool) or n <= 1:
        raise TypeError(
            f"Invalid public key for {who}: expected a phe PaillierPublicKey (an object with an "
            f"int attribute n), got {type(public_key).__name__}"
        )
    if n.bit_length() < MIN_KEY_BITS:
        raise ValueError(
            f"Invalid public key for {who}: {n.bit_length()}-bit modulus (must be >= {MIN_KEY_BITS} bits)"
        )
    if n % 2 == 0:
        raise ValueError(
            f"Invalid public key for {who}: the modulus is even (a Paillier modulus is the "
            "product of two odd primes)"
        )
    return n


def _fingerprint(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes((n.bit_length() + 7) // 8, "big")).digest()[:8]


def _ciphertext_bytes(n: int) -> int:
    return (2 * n.bit_length() + 7) // 8


def public_key_bytes(public_key: Any) -> bytes:
    """Serialise a public key: ``b"GKPK"``, ``version u8 = 1``, ``length L u32`` (LE), then ``n``
    as ``L`` big-endian bytes (``g = n + 1`` is implied, as in phe).

    Example:
        >>> from phe import paillier
        >>> from gradkit.comm import load_public_key, public_key_bytes
        >>> key = paillier.PaillierPublicKey((1 << 2047) + 1)  # any 2048-bit modulus, for show
        >>> data = public_key_bytes(key)
        >>> data[:4], len(data), load_public_key(data).n == key.n
        (b'GKPK', 265, True)
    """
    n = _modulus(public_key, "public_key_bytes")
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return _PK_HEADER.pack(_PK_MAGIC, 1, len(body)) + body


def load_public_key(data: bytes) -> Any:
    """Parse :func:`public_key_bytes` into a ``phe.paillier.PaillierPublicKey``.

    Raises:
        ValueError: wrong magic or version, trailing bytes, or a modulus under
            :data:`MIN_KEY_BITS` bits.

    Example:
        >>> from phe import paillier
        >>> from gradkit.comm import load_public_key, public_key_bytes
        >>> n = (1 << 2047) + 1  # any 2048-bit modulus, for show
        >>> load_public_key(public_key_bytes(paillier.PaillierPublicKey(n))).n == n
        True
    """
    paillier = _phe()
    reader = Reader(data, "public key")
    magic, version, length = reader.unpack(_PK_HEADER, "public key header")
    if bytes(magic) != _PK_MAGIC:
        raise ValueError(
            f"Not a gradkit public key: magic {bytes(magic)!r} (expected {_PK_MAGIC!r})"
        )
    if version != 1:
        raise ValueError(f"Unsupported public key version {version}")
    n = int.from_bytes(reader.take(length, "modulus"), "big")
    check_end(reader)
    public_key = paillier.PaillierPublicKey(n)
    _modulus(public_key, "load_public_key")
    return public_key

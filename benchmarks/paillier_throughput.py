"""Throughput and wire cost of gradkit.comm: the plaintext 1-bit frame and packed Paillier votes.

For N = 10, 20 and 100 clients and a 2048-bit key: coordinates per second per client for
encryption (``encrypt_update``), server aggregation (``SecureAggregator.aggregate``, ciphertext
products) and decryption (``KeyHolder.decrypt_aggregate``), and the bits per coordinate actually
sent, against float32 (32 bits) — the honest encrypted-vs-float32 ratio, ciphertext expansion
included. Also the plaintext frame: binarise, encode and decode rates, and its bits/coordinate.

Usage::

    python benchmarks/paillier_throughput.py            # d = 50,000 coordinates per client
    python benchmarks/paillier_throughput.py --smoke    # d = 3,000, a few seconds

Timings use 1 thread and are noisy on shared machines: the load average is printed with them,
and client encryption is also given per second of process CPU time, which other load inflates less.
The server-aggregation timing combines N copies of one client's frame (the cost is the same as
for N distinct frames; encrypting 100 distinct clients would dominate the run) and is reported as
N·d / (time to combine all N frames): client coordinates per second of server time. The server's
time per round grows linearly with N (one 4096-bit modular product per ciphertext per client).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import phe.util
import torch

from gradkit.comm import (
    KeyHolder,
    SecureAggregator,
    binarize,
    decode_frame,
    encode_frame,
    encrypt_update,
    encrypted_frame_info,
)


@dataclass
class SecureRow:
    num_clients: int
    coords: int
    slot_bits: int
    slots_per_ciphertext: int
    ciphertexts: int
    encrypt_coords_per_s: float
    encrypt_coords_per_cpu_s: float  # d / process CPU time: less sensitive to other load
    aggregate_coords_per_s: float  # N·d client coordinates / time to combine the N frames
    decrypt_coords_per_s: float
    wire_bits_per_coord: float
    plaintext_bits_per_coord: float


@dataclass
class PlainRow:
    coords: int
    binarize_mcoords_per_s: float
    encode_mcoords_per_s: float
    decode_mcoords_per_s: float
    bits_per_coord: float


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def gather_plain(coords: int, repeats: int = 3) -> PlainRow:
    update = [torch.randn(coords, generator=torch.Generator().manual_seed(0))]
    binary = binarize(update)
    frame = encode_frame(binary)
    t_bin = _best(lambda: binarize(update), repeats)
    t_enc = _best(lambda: encode_frame(binary), repeats)
    t_dec = _best(lambda: decode_frame(frame), repeats)
    return PlainRow(
        coords=coords,
        binarize_mcoords_per_s=coords / t_bin / 1e6,
        encode_mcoords_per_s=coords / t_enc / 1e6,
        decode_mcoords_per_s=coords / t_dec / 1e6,
        bits_per_coord=8 * len(frame) / coords,
    )


def gather_secure(holder: KeyHolder, num_clients: int, coords: int) -> SecureRow:
    gen = torch.Generator().manual_seed(num_clients)
    binary = binarize([torch.randn(coords, generator=gen)])
    plain_bits = 8 * len(encode_frame(binary)) / coords
    start, cpu_start = time.perf_counter(), time.process_time()
    frame = encrypt_update(binary, holder.public_key, num_clients=num_clients)
    t_enc, cpu_enc = time.perf_counter() - start, time.process_time() - cpu_start
    server = SecureAggregator(holder.public_key)
    start = time.perf_counter()
    agg = server.aggregate([frame] * num_clients)
    t_agg = time.perf_counter() - start
    start = time.perf_counter()
    result = holder.decrypt_aggregate(agg)
    t_dec = time.perf_counter() - start
    expected = binary.bits.long() * num_clients
    if not torch.equal(result.plus_counts, expected):
        raise RuntimeError("decrypted vote counts differ from the plaintext sum")
    info = encrypted_frame_info(frame)
    return SecureRow(
        num_clients=num_clients,
        coords=coords,
        slot_bits=info["slot_bits"],
        slots_per_ciphertext=info["slots_per_ciphertext"],
        ciphertexts=info["vote_ciphertexts"],
        encrypt_coords_per_s=coords / t_enc,
        encrypt_coords_per_cpu_s=coords / cpu_enc,
        aggregate_coords_per_s=num_clients * coords / t_agg,
        decrypt_coords_per_s=coords / t_dec,
        wire_bits_per_coord=8 * len(frame) / coords,
        plaintext_bits_per_coord=plain_bits,
    )


def render(plain: PlainRow, rows: list[SecureRow], key_bits: int) -> str:
    lines = [
        f"plaintext frame, d = {plain.coords:,}: binarize {plain.binarize_mcoords_per_s:.1f} M coord/s, "
        f"encode {plain.encode_mcoords_per_s:.1f} M coord/s, decode {plain.decode_mcoords_per_s:.1f} "
        f"M coord/s; {plain.bits_per_coord:.3f} bits/coord ({32 / plain.bits_per_coord:.1f}x smaller "
        "than float32)",
        "",
        f"packed Paillier, {key_bits}-bit key (client and key holder: d / time; server: N*d / time "
        "to combine the N frames, i.e. per client payload):",
        "| N | d | slot bits | slots/ct | cts/client | client encrypt coord/s (wall / CPU) "
        "| server coord/s "
        "| decrypt coord/s | wire bits/coord | vs float32 | plaintext bits/coord |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.num_clients} | {r.coords:,} | {r.slot_bits} | {r.slots_per_ciphertext} | "
            f"{r.ciphertexts} | {r.encrypt_coords_per_s:,.0f} / {r.encrypt_coords_per_cpu_s:,.0f} | "
            f"{r.aggregate_coords_per_s:,.0f} | "
            f"{r.decrypt_coords_per_s:,.0f} | {r.wire_bits_per_coord:.2f} | "
            f"{32 / r.wire_bits_per_coord:.2f}x | {r.plaintext_bits_per_coord:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--coords", type=int, default=None, help="coordinates per client")
    parser.add_argument("--clients", default="10,20,100", help="comma-separated N values")
    parser.add_argument("--key-bits", type=int, default=2048)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    coords = args.coords or (3_000 if args.smoke else 50_000)
    plain_coords = 200_000 if args.smoke else 10_000_000
    print(
        f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, 1 torch thread, "
        f"gmpy2 {'yes' if phe.util.HAVE_GMP else 'NO (8x slower)'}"
    )
    start = time.perf_counter()
    holder = KeyHolder(args.key_bits)
    print(f"key generation ({args.key_bits} bits): {time.perf_counter() - start:.2f} s")
    plain = gather_plain(plain_coords, repeats=2 if args.smoke else 3)
    rows = [gather_secure(holder, int(n), coords) for n in args.clients.split(",")]
    print(render(plain, rows, holder.key_bits))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

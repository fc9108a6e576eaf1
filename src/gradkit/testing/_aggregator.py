"""The aggregator conformance suite: what every multi-task aggregator (Jacobian ``[K, P]`` →
update ``[P]``) must do, as executable checks.

Each check is a plain function ``check_xxx(spec) -> None`` that raises ``AssertionError`` with a
message saying what broke. A claim in the :class:`~gradkit.registry.AggregatorSpec`
(``permutation_invariant``, ``non_conflicting``, ``stateful``, ``seeded``, ``min_tasks``) turns
on the check of that claim; :func:`aggregator_checks` lists the checks for one entry and
:func:`check_aggregator` runs them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import torch

from gradkit._specs import AggregatorSpec, ErrorInput
from gradkit.testing._harness import expect_error, run_named_checks, save_load

__all__ = [
    "aggregator_checks",
    "check_aggregator",
    "check_deterministic",
    "check_error_inputs",
    "check_non_conflicting",
    "check_nonfinite_rows",
    "check_permutation_invariant",
    "check_shape_and_dtype",
    "check_single_task",
    "check_state_dict",
    "check_zero_jacobian",
]

DTYPES = (torch.float32, torch.float64)
#: Numbers of shared parameters the shape check uses.
WIDTHS = (1, 7, 33)
#: Calls per run: stateful aggregators see a sequence of Jacobians.
STEPS = 4


# ---------------------------------------------------------------------------- helpers
def _configs(spec: AggregatorSpec) -> list[dict[str, Any]]:
    return [dict(config) for config in spec.configs] or [{}]


def _build(spec: AggregatorSpec, config: Mapping[str, Any], seed: int = 0) -> Any:
    """A fresh aggregator; a seeded method gets ``generator=torch.Generator().manual_seed(seed)``."""
    kwargs = dict(config)
    if spec.seeded and "generator" not in kwargs:
        kwargs["generator"] = torch.Generator().manual_seed(seed)
    return spec.cls(**kwargs)


def _task_counts(spec: AggregatorSpec, at_least: int = 1) -> list[int]:
    """Numbers of tasks to test: ``min_tasks`` and a few more, all ``>= at_least``."""
    low = max(spec.min_tasks, at_least)
    return sorted({low, max(low, 2), max(low, 3), max(low, 5)})


def _jacobians(
    k: int, p: int, dtype: torch.dtype, seed: int, steps: int = STEPS
) -> list[torch.Tensor]:
    """``steps`` random ``K × P`` Jacobians; row norms spread over two decades, so that tasks
    differ in scale as well as direction (random normal rows conflict often)."""
    gen = torch.Generator().manual_seed(1000 * seed + 10 * k + p)
    out = []
    for _ in range(steps):
        scale = torch.logspace(-1, 1, k, dtype=torch.float64)[torch.randperm(k, generator=gen)]
        jac = torch.randn(k, p, generator=gen, dtype=torch.float64) * scale[:, None]
        out.append(jac.to(dtype))
    return out


def _call(spec: AggregatorSpec, aggregator: Any, jacobian: torch.Tensor, what: str) -> torch.Tensor:
    """``aggregator(jacobian)``, checked: a finite tensor of shape ``[P]`` in the Jacobian's dtype
    and device, and the Jacobian left unchanged."""
    before = jacobian.clone()
    out = aggregator(jacobian)
    where = f"{spec.name} ({what}, jacobian {tuple(jacobian.shape)} {jacobian.dtype})"
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"{where}: returned {type(out).__name__}, expected a Tensor")
    if tuple(out.shape) != (jacobian.shape[1],):
        raise AssertionError(
            f"{where}: returned shape {tuple(out.shape)}, expected ({jacobian.shape[1]},)"
        )
    if out.dtype != jacobian.dtype or out.device != jacobian.device:
        raise AssertionError(
            f"{where}: returned {out.dtype} on {out.device}, expected {jacobian.dtype} on "
            f"{jacobian.device}"
        )
    if not bool(torch.isfinite(out).all()):
        raise AssertionError(f"{where}: returned non-finite values {out.tolist()}")
    if not torch.equal(jacobian, before):
        raise AssertionError(f"{where}: modified its input jacobian")
    return out


def _build_and_call(spec: AggregatorSpec, config: Mapping[str, Any], jacobian: torch.Tensor) -> Any:
    return _build(spec, config)(jacobian)


def _run(
    spec: AggregatorSpec, aggregator: Any, jacobians: Sequence[torch.Tensor], what: str
) -> list[torch.Tensor]:
    return [_call(spec, aggregator, jac, f"{what}, call {i}") for i, jac in enumerate(jacobians)]


def _assert_equal_runs(
    actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor], what: str
) -> None:
    for i, (a, b) in enumerate(zip(actual, expected, strict=True)):
        if a.dtype != b.dtype or not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item()
            raise AssertionError(f"{what}: call {i} is not bit-identical (max abs diff {diff:.3g})")


def _state_dict(spec: AggregatorSpec, aggregator: Any) -> dict[str, Any]:
    method = getattr(aggregator, "state_dict", None)
    if not callable(method):
        raise AssertionError(f"{spec.name}: {type(aggregator).__name__} has no state_dict()")
    state = method()
    if not isinstance(state, dict):
        raise AssertionError(f"{spec.name}: state_dict() returned {type(state).__name__}")
    return state


def _same_state(a: Any, b: Any, where: str) -> None:
    """Nested equality of two state dicts (tensors bit-identical, same dtype)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        ):
            raise AssertionError(f"{where}: differs ({a!r} vs {b!r})")
    elif isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            raise AssertionError(f"{where}: keys differ: {sorted(a)} vs {sorted(b)}")
        for key in a:
            _same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            raise AssertionError(f"{where}: lengths differ: {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_state(x, y, f"{where}[{i}]")
    elif a != b:
        raise AssertionError(f"{where}: {a!r} != {b!r}")


def _cases(spec: AggregatorSpec, at_least: int = 1) -> Iterator[tuple[dict[str, Any], int]]:
    for config in _configs(spec):
        for k in _task_counts(spec, at_least):
            yield config, k


# ---------------------------------------------------------------------------- the checks
def check_shape_and_dtype(spec: AggregatorSpec) -> None:
    """For float32 and float64, several ``K >= min_tasks`` and ``P``: a run of calls returns a
    finite ``[P]`` tensor in the Jacobian's dtype and device and leaves the Jacobian unchanged;
    ``repr`` names the class."""
    for config, k in _cases(spec):
        for dtype in DTYPES:
            for p in WIDTHS:
                aggregator = _build(spec, config)
                _run(spec, aggregator, _jacobians(k, p, dtype, seed=0), f"{config}")
    aggregator = _build(spec, _configs(spec)[0])
    text = repr(aggregator)
    if type(aggregator).__name__ not in text:
        raise AssertionError(f"{spec.name}: repr does not name the class: {text}")


def check_permutation_invariant(spec: AggregatorSpec) -> None:
    """Where claimed: permuting the tasks (rows) does not change the output, over a run of
    calls (a stateful aggregator's state is permuted along), in float64 to ``rtol=1e-5``."""
    if not spec.permutation_invariant:
        return
    for config, k in _cases(spec, at_least=2):
        for seed in range(3):
            perm = torch.randperm(k, generator=torch.Generator().manual_seed(seed))
            if torch.equal(perm, torch.arange(k)):
                perm = perm.roll(1)
            jacobians = _jacobians(k, 7, torch.float64, seed)
            plain = _run(spec, _build(spec, config, seed), jacobians, f"{config}")
            permuted = _run(
                spec, _build(spec, config, seed), [j[perm] for j in jacobians], f"{config}"
            )
            for step, (a, b) in enumerate(zip(permuted, plain, strict=True)):
                scale = float(jacobians[step].abs().max()) * k
                try:
                    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9 * scale)
                except AssertionError as error:
                    raise AssertionError(
                        f"{spec.name} {config} claims permutation invariance, but rows "
                        f"{perm.tolist()} change call {step} (K={k}): {error}"
                    ) from None


def _conflicting(k: int, p: int, seed: int) -> torch.Tensor:
    """A Jacobian whose first two tasks directly oppose each other (plus random tasks)."""
    gen = torch.Generator().manual_seed(seed)
    jac = torch.randn(k, p, generator=gen, dtype=torch.float64)
    jac[1] = -0.5 * jac[0] + 0.1 * torch.randn(p, generator=gen, dtype=torch.float64)
    return jac


def check_non_conflicting(spec: AggregatorSpec) -> None:
    """Where claimed: the output ``d`` has ``⟨g_k, d⟩ >= -1e-9·‖g_k‖‖d‖`` for every task ``k``
    (no task's loss goes up to first order), on random and strongly conflicting Jacobians."""
    if not spec.non_conflicting:
        return
    for config, k in _cases(spec, at_least=2):
        for seed in range(4):
            cases = [*_jacobians(k, 7, torch.float64, seed, steps=2), _conflicting(k, 7, seed)]
            aggregator = _build(spec, config, seed)
            for jac in cases:
                d = _call(spec, aggregator, jac, f"{config}")
                inner = jac @ d
                tol = 1e-9 * jac.norm(dim=1) * d.norm()
                bad = (inner < -tol).nonzero().flatten().tolist()
                if bad:
                    raise AssertionError(
                        f"{spec.name} {config} claims to be non-conflicting, but the update "
                        f"conflicts with task(s) {bad}: <g_k, d> = {inner.tolist()} (K={k})"
                    )


def check_zero_jacobian(spec: AggregatorSpec) -> None:
    """A zero Jacobian gives a zero update (on a fresh aggregator); a zero row among non-zero
    ones gives a finite update, and later calls stay finite (no NaN left in the state)."""
    for config, k in _cases(spec):
        for dtype in DTYPES:
            zero = torch.zeros(k, 5, dtype=dtype)
            out = _call(spec, _build(spec, config), zero, f"{config}, zero jacobian")
            if not torch.equal(out, torch.zeros_like(out)):
                raise AssertionError(
                    f"{spec.name} {config}: a zero jacobian (K={k}) gave {out.tolist()}, not 0"
                )
            if k < 2:
                continue
            aggregator = _build(spec, config)
            jacobians = _jacobians(k, 5, dtype, seed=1)
            jacobians[0][0] = 0.0
            _run(spec, aggregator, jacobians, f"{config}, task 0 has a zero gradient")


def check_single_task(spec: AggregatorSpec) -> None:
    """With ``min_tasks <= 1``: one task's gradient ``g`` gives ``d = a·g`` with ``a > 0`` (no
    conflict, nothing to resolve). With ``min_tasks > 1``: ``min_tasks - 1`` tasks raise a
    ``ValueError`` naming that count."""
    for config in _configs(spec):
        if spec.min_tasks > 1:
            k = spec.min_tasks - 1
            jac = _jacobians(k, 4, torch.float64, seed=0)[0]
            expect_error(
                ErrorInput({}, ValueError, rf"(?i)task.*\b{k}\b|\b{k}\b.*task"),
                functools.partial(_build_and_call, spec, config, jac),
                f"{spec.name} {config} with {k} task(s) (min_tasks={spec.min_tasks})",
            )
            continue
        for dtype in DTYPES:
            for seed in range(3):
                g = _jacobians(1, 6, dtype, seed)[0]
                d = _call(spec, _build(spec, config, seed), g, f"{config}, one task").double()
                g64 = g[0].double()
                a = float(d @ g64 / (g64 @ g64))
                residual = float((d - a * g64).norm())
                # 1e-6 in float64: a method may compute in float32 internally (GCond's buffers)
                eps = 1e-5 if dtype == torch.float32 else 1e-6
                if not a > 0 or residual > eps * float(d.norm()):
                    raise AssertionError(
                        f"{spec.name} {config}: one task (K=1, {dtype}) gave d = a·g + r with "
                        f"a = {a:.6g}, ‖r‖ = {residual:.3g}; expected a > 0 and r = 0"
                    )


def check_nonfinite_rows(spec: AggregatorSpec) -> None:
    """NaN, +inf or -inf in some rows raises ``ValueError`` naming those rows; a stateful
    aggregator's state is left as it was (its next output matches a twin that never saw the
    bad Jacobian)."""
    k = max(spec.min_tasks, 4)
    for config in _configs(spec):
        for rows, values in (([1, 3], (float("nan"), float("inf"))), ([0], (float("-inf"),))):
            good = _jacobians(k, 5, torch.float64, seed=2, steps=2)
            bad = good[0].clone()
            for row, value in zip(rows, values, strict=True):
                bad[row, row % 5] = value
            aggregator, twin = _build(spec, config), _build(spec, config)
            _call(spec, aggregator, good[0], f"{config}")
            _call(spec, twin, good[0], f"{config}")
            named = "".join(rf"(?=.*\b{row}\b)" for row in rows)
            expect_error(
                ErrorInput({}, ValueError, rf"(?is){named}.*(nan|inf|finite)"),
                functools.partial(aggregator, bad),
                f"{spec.name} {config}: non-finite rows {rows}",
            )
            _assert_equal_runs(
                [_call(spec, aggregator, good[1], f"{config}")],
                [_call(spec, twin, good[1], f"{config}")],
                f"{spec.name} {config}: the call after a rejected non-finite jacobian",
            )


def check_deterministic(spec: AggregatorSpec) -> None:
    """Two fresh aggregators built alike give bit-identical runs, whatever the global RNG's
    state. For a seeded method (``generator=``): different generator seeds give different
    outputs somewhere (the generator is honoured, not the global RNG)."""
    k = max(spec.min_tasks, 4)
    for config in _configs(spec):
        jacobians = _jacobians(k, 5, torch.float64, seed=3, steps=6)
        runs = []
        for global_seed in (1, 2):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(global_seed)
                runs.append(_run(spec, _build(spec, config, seed=7), jacobians, f"{config}"))
        _assert_equal_runs(
            runs[1],
            runs[0],
            f"{spec.name} {config}: two runs with the same seed (global RNG reseeded between)",
        )
        if spec.seeded:
            outputs = [
                _run(spec, _build(spec, config, seed=seed), jacobians, f"{config}")
                for seed in range(5)
            ]
            if all(
                torch.equal(a, b)
                for run in outputs[1:]
                for a, b in zip(run, outputs[0], strict=True)
            ):
                raise AssertionError(
                    f"{spec.name} {config} claims to be seeded, but five generator seeds give "
                    "the same outputs (is generator= ignored?)"
                )


def check_state_dict(spec: AggregatorSpec) -> None:
    """``state_dict`` survives ``torch.save`` → ``torch.load(weights_only=True)``. Stateful:
    the state is non-empty after a call; an aggregator that loads it after 1 or 2 calls
    continues bit-identically to the uninterrupted run and reports the same state. Stateless:
    the state is empty and the same Jacobian gives the same output on every call."""
    k = max(spec.min_tasks, 3)
    for config in _configs(spec):
        jacobians = _jacobians(k, 6, torch.float64, seed=4, steps=STEPS)
        if not spec.stateful:
            aggregator = _build(spec, config)
            first = _call(spec, aggregator, jacobians[0], f"{config}")
            _run(spec, aggregator, jacobians[1:], f"{config}")
            state = _state_dict(spec, aggregator)
            if state:
                raise AssertionError(
                    f"{spec.name} {config} claims to be stateless, but state_dict() has keys "
                    f"{sorted(state)}"
                )
            save_load(state)
            if not spec.seeded:
                again = _call(spec, aggregator, jacobians[0], f"{config}")
                _assert_equal_runs(
                    [again],
                    [first],
                    f"{spec.name} {config} claims to be stateless, but the same jacobian "
                    "after other calls",
                )
            continue
        reference = _build(spec, config)
        expected = _run(spec, reference, jacobians, f"{config}")
        if not _state_dict(spec, reference):
            raise AssertionError(
                f"{spec.name} {config} claims to be stateful, but state_dict() is empty"
            )
        for split in (1, 2):
            first = _build(spec, config)
            _run(spec, first, jacobians[:split], f"{config}")
            saved = save_load(_state_dict(spec, first))
            resumed = _build(spec, config)
            resumed.load_state_dict(saved)
            _same_state(
                _state_dict(spec, resumed),
                _state_dict(spec, first),
                f"{spec.name} {config}: state after load_state_dict",
            )
            _assert_equal_runs(
                _run(spec, resumed, jacobians[split:], f"{config}, resumed"),
                expected[split:],
                f"{spec.name} {config}: resumed after {split} call(s) vs the uninterrupted run",
            )


def check_error_inputs(spec: AggregatorSpec) -> None:
    """Every registered invalid constructor call raises its error with the expected message."""
    for error in spec.error_inputs:
        expect_error(
            error, functools.partial(spec.cls, **error.kwargs), f"{spec.name}{error.kwargs}"
        )


# ---------------------------------------------------------------------------- entry points
_CHECKS: tuple[tuple[str, Callable[[AggregatorSpec], None]], ...] = (
    ("shape_and_dtype", check_shape_and_dtype),
    ("permutation_invariant", check_permutation_invariant),
    ("non_conflicting", check_non_conflicting),
    ("zero_jacobian", check_zero_jacobian),
    ("single_task", check_single_task),
    ("nonfinite_rows", check_nonfinite_rows),
    ("deterministic", check_deterministic),
    ("state_dict", check_state_dict),
    ("error_inputs", check_error_inputs),
)


def aggregator_checks(spec: AggregatorSpec) -> list[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for ``spec``; each ``check()`` raises ``AssertionError`` on failure.

    Checks of a claim the spec does not make (``permutation_invariant=False``, ...) pass
    trivially; they are listed anyway so that every aggregator has the same check names.
    """
    return [(name, functools.partial(check, spec)) for name, check in _CHECKS]


def check_aggregator(
    aggregator: AggregatorSpec | Callable[..., Any],
    *,
    name: str | None = None,
    configs: Sequence[dict[str, Any]] = ({},),
    permutation_invariant: bool = True,
    non_conflicting: bool = False,
    stateful: bool = False,
    seeded: bool = False,
    min_tasks: int = 1,
    error_inputs: Sequence[ErrorInput] = (),
) -> None:
    r"""Run the gradkit conformance suite on a multi-task aggregator; raise ``AssertionError``
    on the first failure, naming the check.

    An aggregator maps a Jacobian ``G`` (``K × P``, row ``k`` = task ``k``'s gradient) to one
    update ``d`` (``P``). The suite checks:

    * ``shape_and_dtype``: ``d`` is a finite ``[P]`` tensor in ``G``'s dtype (float32 and
      float64; several ``K >= min_tasks`` and ``P``); ``G`` is not modified;
    * ``permutation_invariant`` (if claimed): ``d(G[π]) = d(G)`` for a task permutation ``π``;
    * ``non_conflicting`` (if claimed): :math:`\langle g_k, d\rangle \ge -10^{-9}\|g_k\|\|d\|`;
    * ``zero_jacobian``: ``d(0) = 0``; a zero task row gives a finite ``d``;
    * ``single_task``: ``d(g) = a·g`` with ``a > 0`` for ``K = 1``, or, when
      ``min_tasks > 1``, a ``ValueError`` naming the number of tasks;
    * ``nonfinite_rows``: NaN/±inf rows raise ``ValueError`` naming the rows, state untouched;
    * ``deterministic``: same seed, same output (bit-identical), whatever the global RNG; a
      seeded method's ``generator=`` is honoured;
    * ``state_dict``: a ``torch.save``/``torch.load(weights_only=True)`` round trip resumes
      bit-identically (stateful), or the state is empty and calls are pure (stateless);
    * ``error_inputs``: the given constructor calls raise the given errors.

    Args:
        aggregator: an :class:`~gradkit.registry.AggregatorSpec` (then the other arguments are
            ignored), or a factory: a class or function called with a configuration's keyword
            arguments (plus ``generator=`` when ``seeded``) that returns a fresh aggregator, an
            object with ``__call__(jacobian)``, ``state_dict()`` and ``load_state_dict()``
            (e.g. a :class:`gradkit.mtl.Aggregator` subclass).
        name: the name used in messages (default: the factory's ``__name__``).
        configs: keyword-argument sets to test; the first is the default.
        permutation_invariant / non_conflicting / stateful / seeded: the method's claims.
        min_tasks: fewest tasks the method accepts.
        error_inputs: constructor calls that must raise.

    Raises:
        AssertionError: ``check 'name' failed: ...`` for the first failing check.

    Example:
        >>> import torch
        >>> from gradkit.mtl import Aggregator
        >>> from gradkit.testing import check_aggregator
        >>> class UpperMean(Aggregator):
        ...     def _aggregate(self, jacobian):
        ...         norms = jacobian.norm(dim=1, keepdim=True).clamp_min(1.0)
        ...         return (jacobian / norms).mean(dim=0)
        >>> check_aggregator(UpperMean)
        >>> from gradkit import registry
        >>> check_aggregator(registry.get("aggregator", "mgda"))
    """
    if isinstance(aggregator, AggregatorSpec):
        spec = aggregator
    else:
        if not callable(aggregator):
            raise TypeError(
                "check_aggregator expects an AggregatorSpec or a factory (a class or function "
                f"returning an aggregator), got {type(aggregator).__name__}"
            )
        claims: dict[str, Any] = {
            "permutation_invariant": permutation_invariant,
            "non_conflicting": non_conflicting,
            "stateful": stateful,
            "seeded": seeded,
            "min_tasks": min_tasks,
        }
        spec = AggregatorSpec(
            name=str(name or getattr(aggregator, "__name__", type(aggregator).__name__)),
            cls=cast(type, aggregator),
            paper="",
            summary="",
            configs=list(configs),
            error_inputs=list(error_inputs),
            **claims,
        )
    run_named_checks(aggregator_checks(spec), other_errors=True)

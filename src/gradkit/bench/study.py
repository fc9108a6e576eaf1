"""The study database of a bench run: every tuning trial and evaluation run in Optuna storage.

A run's work is a set of *slots*, stored as Optuna trials:

* one **tuning study** per ``(task, method)``, ``suite:task:method:tune``, whose ``budget``
  slots are enqueued up front; a worker pops a waiting slot, lets the sampler draw its
  hyper-parameters, trains, and tells the objective;
* one **evaluation study** per ``(task, method, variant)``, ``suite:task:method:eval:variant``,
  with one slot per evaluation seed (user attribute ``seed``).

Each finished slot keeps its :class:`~gradkit.bench.results.Record` (user attribute
``record``), so the report is assembled from the storage alone, whichever worker ran what.

Workers share a study through any SQLAlchemy URL (``--storage``), the way Optuna's
distributed mode works. The schema, the studies and their slots are created **once, under a
file lock** (``<db>.lock`` beside a SQLite file): two workers that both created a fresh
SQLite study raced on the schema (``UNIQUE constraint failed: alembic_version.version_num``)
and one of them died. For a server URL (PostgreSQL, MySQL) there is no local file to lock;
the database serialises the schema creation itself.

Slots are never lost: a slot whose worker was interrupted (Ctrl-C, SIGTERM) is marked failed
and a fresh slot replaces it; a slot left *running* by a worker that died on this machine
(its process is gone) is failed and replaced the same way. Slots are never duplicated:
popping a waiting trial is atomic in Optuna's RDB storage, and the top-up that replaces lost
slots runs under the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradkit.bench.errors import BenchConfigError

__all__ = [
    "DB_NAME",
    "MEMORY_URL",
    "SlotStudy",
    "StudyStore",
    "memory_store",
    "open_store",
    "study_name",
]

#: The SQLite file of the default storage, inside the report folder.
DB_NAME = "study.db"

#: The name of the study holding the run's settings (user attributes only, no trials).
RUN_STUDY = "gradkit-run"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is in the bench extra
        raise ImportError(
            "gradkit bench needs optuna for its tuning protocol and study database; "
            "install gradkit[bench]"
        ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def study_name(suite: str, task: str, method: str, phase: str, variant: str = "") -> str:
    """``suite:task:method:phase`` (plus ``:variant`` for an evaluation study of a variant)."""
    name = f"{suite}:{task}:{method}:{phase}"
    return f"{name}:{variant}" if variant else name


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(worker: str) -> bool:
    """Whether the worker ``host:pid`` is alive; ``True`` when it runs on another host (it
    cannot be checked from here)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URL (``None`` for other URLs)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix) :]
    if not path or path == ":memory:":
        return None
    return Path(path)


def _check_url(url: str) -> None:
    """Refuse a URL SQLAlchemy cannot parse or has no driver for, naming it."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as exc:
        raise BenchConfigError(
            f"--storage {url!r} is not a usable SQLAlchemy database URL ({exc}); for example "
            "sqlite:////abs/path/study.db or postgresql://user@host/db"
        ) from None
    except ImportError as exc:
        raise BenchConfigError(
            f"--storage {url!r}: the database driver is not installed ({exc})"
        ) from None


@dataclass
class StudyStore:
    """An open storage plus the lock that guards creating studies and topping up slots."""

    url: str
    storage: Any
    lock_path: Path | None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's file lock (a no-op for server URLs)."""
        if self.lock_path is None:
            yield
            return
        import fcntl

        with open(self.lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def study_names(self) -> list[str]:
        """Names of every study in the storage."""
        return [s.study_name for s in self.storage.get_all_studies()]

    def save_run(self, meta: Mapping[str, Any]) -> None:
        """Store the run's settings and task descriptions (``gradkit report`` reads them)."""
        optuna = _optuna()
        study = optuna.create_study(storage=self.storage, study_name=RUN_STUDY, load_if_exists=True)
        for key, value in meta.items():
            study.set_user_attr(key, json.loads(json.dumps(value)))

    def load_run(self) -> dict[str, Any] | None:
        """What :meth:`save_run` stored, or ``None``."""
        if RUN_STUDY not in self.study_names():
            return None
        optuna = _optuna()
        return dict(optuna.load_study(storage=self.storage, study_name=RUN_STUDY).user_attrs)


#: The ``url`` of an in-memory store.
MEMORY_URL = "memory"


def memory_store() -> StudyStore:
    """A store that lives in this process only (``Suite.run`` without a database)."""
    optuna = _optuna()
    return StudyStore(MEMORY_URL, optuna.storages.InMemoryStorage(), None)


def open_store(url: str) -> StudyStore:
    """Open (creating the schema under the lock where needed) the storage at ``url``.

    Raises:
        BenchConfigError: an unusable URL, or a database that cannot be opened.
    """
    _check_url(url)
    optuna = _optuna()
    path = _sqlite_path(url)
    lock = None
    if path is not None:
        if not path.parent.is_dir():
            raise BenchConfigError(
                f"--storage {url!r}: the folder {str(path.parent)!r} does not exist"
            )
        lock = path.with_name(path.name + ".lock")
    store = StudyStore(url, None, lock)
    engine = {"connect_args": {"timeout": 120}} if path is not None else {}
    with store.locked():
        try:
            store.storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except Exception as exc:
            raise BenchConfigError(f"cannot open the study storage {url!r}: {exc}") from exc
        if path is not None:
            _fast_sqlite(store.storage)
    return store


def _fast_sqlite(storage: Any) -> None:
    """Write-ahead logging and ``synchronous=NORMAL`` on every SQLite connection: a slot's
    few commits then cost milliseconds instead of an fsync each (about 0.2 s per slot on
    this machine's disk before). WAL is safe for several processes on one machine; a crash
    may lose the last commits, which the slots' top-up then runs again."""
    from sqlalchemy import event

    engine = storage.engine

    def on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener reconnect with it


class SlotStudy:
    """One tuning or evaluation study and its slots.

    Args:
        store: the open storage.
        name: the study name (:func:`study_name`).
        config: what defines the study (suite, task, method, budget, seeds, steps, search
            space...); stored at creation and compared on every later open.
        direction: ``"minimize"`` or ``"maximize"``.
    """

    def __init__(
        self, store: StudyStore, name: str, config: Mapping[str, Any], direction: str
    ) -> None:
        optuna = _optuna()
        self.store, self.name = store, name
        self.config = json.loads(json.dumps(config))
        self.study = optuna.create_study(
            storage=store.storage, study_name=name, direction=direction, load_if_exists=True
        )
        stored = self.study.user_attrs.get("config")
        if stored is None:
            self.study.set_user_attr("config", self.config)
        elif stored != self.config:
            raise BenchConfigError(_mismatch(name, stored, self.config))

    @classmethod
    def existing(cls, store: StudyStore, name: str) -> SlotStudy | None:
        """The study ``name`` if the storage holds it (its stored configuration is taken as it
        is, not checked); ``None`` otherwise. For reading results back."""
        if name not in store.study_names():
            return None
        optuna = _optuna()
        study = cls.__new__(cls)
        study.store, study.name = store, name
        study.study = optuna.load_study(storage=store.storage, study_name=name)
        study.config = study.study.user_attrs.get("config", {})
        return study

    # -- slots -----------------------------------------------------------------------------
    def _trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def fail_dead(self) -> int:
        """Fail running slots whose worker process is gone (on this host); returns how many."""
        optuna = _optuna()
        n = 0
        for t in self._trials():
            worker = t.user_attrs.get("worker")
            if t.state == optuna.trial.TrialState.RUNNING and worker and not _process_alive(worker):
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                n += 1
        return n

    def top_up(self, slots: Sequence[Mapping[str, Any]]) -> None:
        """Make sure every wanted slot (user attributes, e.g. ``{"slot": 3}``) is finished,
        waiting or running; enqueue the missing ones. Call under :meth:`StudyStore.locked`."""
        optuna = _optuna()
        state = optuna.trial.TrialState
        live = {state.COMPLETE, state.PRUNED, state.WAITING, state.RUNNING}
        self.fail_dead()
        have = {
            t.user_attrs["slot_key"]
            for t in self._trials()
            if t.state in live and "slot_key" in t.user_attrs
        }
        for attrs in slots:
            key = json.dumps(dict(attrs), sort_keys=True)
            if key in have:
                continue
            self.study.enqueue_trial({}, user_attrs={**attrs, "slot_key": key})

    def ask(self, sampler: Any | None = None) -> Any | None:
        """Pop a waiting slot (``None`` when none is left); it is marked with this worker."""
        optuna = _optuna()
        waiting = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if not waiting:
            return None
        if sampler is not None:
            self.study.sampler = sampler
        trial = self.study.ask()
        if "slot_key" not in trial.user_attrs:
            # another worker popped the last waiting slot first: give the fresh trial back
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        trial.set_user_attr("worker", _worker_id())
        return trial

    def finished(self) -> list[Any]:
        """Finished slots (complete or pruned), in trial order."""
        optuna = _optuna()
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        return [t for t in self._trials() if t.state in done and "slot_key" in t.user_attrs]

    def pending(self) -> int:
        """Slots waiting or running."""
        optuna = _optuna()
        live = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
        return sum(t.state in live for t in self._trials())


def _mismatch(name: str, stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    """The error for a study created by a different configuration, naming each difference."""
    diffs = [
        f"{key}: stored {stored.get(key)!r}, now {wanted.get(key)!r}"
        for key in sorted(set(stored) | set(wanted))
        if stored.get(key) != wanted.get(key)
    ]
    return (
        f"the study database already holds study {name!r} from a different configuration "
        f"({'; '.join(diffs)}); refusing to mix them. Re-run with the original settings to "
        "resume, or choose a new --out (or --storage), or pass --overwrite to start afresh"
    )

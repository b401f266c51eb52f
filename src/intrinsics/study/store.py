"""The study store: one SQLite database per output folder, every measurement and run a row.

Resume semantics (why the columns look the way they do):

* a run is *claimed* in one transaction (status ``running``, the worker's pid, its process start time
  and a fresh claim token) and *finished* in another that only succeeds while that claim is still the
  current one, so a run can never be recorded twice;
* when a study starts again, ``running`` rows whose worker process is gone are put back to ``pending``
  and redone; ``done`` rows are never touched;
* each run has a unique ``run_key`` built from its identity (dataset, model, N, seed and a hash of the
  rest of its configuration), so expanding the same grid twice inserts nothing new.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import DataError, IntrinsicsError
from ..jsonio import dumps

__all__ = ["Store", "StoreError", "STORE_NAME", "RUN_STATUSES", "process_start_time", "worker_alive"]

STORE_NAME = "study.sqlite"
RUN_STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset   TEXT NOT NULL,
    quantity  TEXT NOT NULL CHECK (quantity IN ('d_data', 'K_F', 'd_repr')),
    run_key   TEXT NOT NULL DEFAULT '',
    value     REAL,
    ci_lo     REAL,
    ci_hi     REAL,
    details   TEXT NOT NULL DEFAULT '{}',
    created   REAL NOT NULL,
    UNIQUE (dataset, quantity, run_key)
);
CREATE TABLE IF NOT EXISTS runs (
    run_key       TEXT PRIMARY KEY,
    dataset       TEXT NOT NULL,
    domain        TEXT NOT NULL,
    model         TEXT NOT NULL,
    N             INTEGER NOT NULL,
    seed          INTEGER NOT NULL,
    config        TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'done', 'failed')),
    claim         TEXT,
    pid           INTEGER,
    pid_start     TEXT,
    host          TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    started       REAL,
    finished      REAL,
    curves        TEXT,
    test_loss     REAL,
    test_acc      REAL,
    test_loss_last REAL,
    test_acc_last REAL,
    val_loss      REAL,
    best_val_epoch INTEGER,
    loss_at       TEXT,
    train_loss    REAL,
    train_acc     REAL,
    attacks       TEXT,
    timings       TEXT,
    checkpoint    TEXT,
    code_version  TEXT,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""

# Columns a finished run may set, and whether they hold JSON.
_RESULT_COLUMNS = {
    "curves": True,
    "test_loss": False,
    "test_acc": False,
    "test_loss_last": False,
    "test_acc_last": False,
    "val_loss": False,
    "best_val_epoch": False,
    "loss_at": False,
    "train_loss": False,
    "train_acc": False,
    "attacks": True,
    "timings": True,
    "checkpoint": False,
    "code_version": False,
}
_JSON_COLUMNS = ("config", "curves", "attacks", "timings")


def process_start_time(pid: int) -> str | None:
    """Start time of process ``pid`` (Linux clock ticks since boot), or None if unknown.

    Stored beside the pid so that a recycled pid is not mistaken for the worker that claimed a run.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after its closing parenthesis are fixed.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def worker_alive(pid: int | None, pid_start: str | None, host: str | None) -> bool:
    """Whether the worker that claimed a run is still running (on this host)."""
    if pid is None:
        return False
    if host is not None and host != socket.gethostname():
        # A worker on another machine cannot be checked from here; assume it lives.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if pid_start is not None:
        now = process_start_time(pid)
        if now is not None and now != pid_start:
            return False
        if now is None and os.path.isdir("/proc"):
            return False
    # A zombie (killed, not yet reaped) still answers kill(0) but does no work.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
    except OSError:
        pass
    return True


# Version 1 (before the one run pipeline) stored attack results as {"fgsm": {"<eps>":
# {"accuracy" or "acc", ...}}}; version 2 stores the one attack shape of intrinsics.learn.pipeline,
# {"fgsm": [{"eps", "accuracy", "loss", "accuracy_drop", "loss_increase"}, ...]}. Version 3 adds the
# columns of validation-based selection (test_loss_last, test_acc_last, val_loss, best_val_epoch,
# loss_at); runs finished before it reported the last epoch's loss, and say so.
SCHEMA_VERSION = 3
_V3_COLUMNS = {"test_loss_last": "REAL", "test_acc_last": "REAL", "val_loss": "REAL", "best_val_epoch": "INTEGER",
               "loss_at": "TEXT"}


def _create(cur: sqlite3.Cursor) -> None:
    """The tables, made where missing, and the schema brought up to date."""
    for stmt in _SCHEMA.split(";"):
        if stmt.strip():
            cur.execute(stmt)
    _migrate(cur)


def _migrate(cur: sqlite3.Cursor) -> None:
    """Bring an older store to :data:`SCHEMA_VERSION` inside the opening transaction (idempotent)."""
    row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = 1 if row is None else int(json.loads(row["value"]))
    if version >= SCHEMA_VERSION:
        return
    if version < 2:
        rows = cur.execute("SELECT run_key, attacks, test_acc, test_loss FROM runs WHERE attacks IS NOT NULL").fetchall()
        for r in rows:
            attacks = one_attack_shape(json.loads(r["attacks"]), r["test_acc"], r["test_loss"])
            cur.execute("UPDATE runs SET attacks = ? WHERE run_key = ?", (_dumps(attacks), r["run_key"]))
    have = {c["name"] for c in cur.execute("PRAGMA table_info(runs)").fetchall()}
    for name, kind in _V3_COLUMNS.items():
        if name not in have:
            cur.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    cur.execute("UPDATE runs SET test_loss_last = test_loss, test_acc_last = test_acc, loss_at = 'last' "
                "WHERE status = 'done' AND loss_at IS NULL")
    cur.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (_dumps(SCHEMA_VERSION),))


def one_attack_shape(attacks: Mapping[str, Any], test_acc: float | None = None,
                     test_loss: float | None = None) -> dict[str, Any]:
    """Attack results of a version-1 store in the one shape (rows sorted by ε); rows already in it are kept.

    A row without ``accuracy_drop`` / ``loss_increase`` gets them from the clean result (or the run's
    test accuracy and loss when no clean result was stored).
    """
    clean = attacks.get("clean") or {}
    ref_acc, ref_loss = clean.get("accuracy", test_acc), clean.get("loss", test_loss)
    out = dict(attacks)
    for name in ("fgsm", "pgd"):
        by_eps = attacks.get(name)
        if not isinstance(by_eps, Mapping):
            continue
        rows = []
        for eps, r in sorted(by_eps.items(), key=lambda kv: float(kv[0])):
            acc, loss = r.get("accuracy", r.get("acc")), r.get("loss")
            drop = r.get("accuracy_drop", None if acc is None or ref_acc is None else ref_acc - acc)
            rise = r.get("loss_increase", None if loss is None or ref_loss is None else loss - ref_loss)
            rows.append({"eps": float(eps), "accuracy": acc, "loss": loss, "accuracy_drop": drop, "loss_increase": rise})
        out[name] = rows
    return out


class StoreError(IntrinsicsError):
    """A study store that cannot be used as it is (damaged, not ours, missing)."""


def _disk_full(exc: BaseException) -> bool:
    return "disk is full" in str(exc) or getattr(exc, "errno", None) == 28


def _check_integrity(conn: sqlite3.Connection) -> None:
    """SQLite's quick check (it reads every page once): a cut or overwritten file fails here, at open,
    rather than in the middle of a study."""
    result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if result != "ok":
        raise sqlite3.DatabaseError(result)


def _dumps(value: Any) -> str:
    return dumps(value, sort_keys=True)


class Store:
    """SQLite store of one study (``DIR/study.sqlite``).

    Parameters
    ----------
    path : str or Path
        The database file, or a folder (the database is ``folder/study.sqlite``).
    timeout : float
        Seconds a writer waits for another process's transaction.

    Examples
    --------
    >>> store = Store(tmp_path)                                      # doctest: +SKIP
    >>> store.add_runs([{"run_key": "a", "dataset": "d", "domain": "natural",
    ...                  "model": "smallcnn", "N": 100, "seed": 0, "config": {}}])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0, read_only: bool = False) -> None:
        path = Path(path)
        if path.suffix not in (".sqlite", ".db", ".sqlite3"):
            if not read_only:
                path.mkdir(parents=True, exist_ok=True)
            path = path / STORE_NAME
        elif not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.read_only = read_only
        if path.is_dir():
            raise StoreError(f"{path} is a folder, not a study store; move it aside (mv {path} {path}.folder) "
                             "or give another study folder")
        try:
            self._conn = self._connect_read_only(timeout) if read_only else self._connect(timeout)
        except sqlite3.DatabaseError as exc:
            if _disk_full(exc) or not path.exists() or "unable to open" in str(exc):
                raise
            raise StoreError(
                f"{path.name} in {path.parent} is not a valid intrinsics store ({exc}); move it aside to start "
                f"over (mv {path} {path}.broken), or restore it from a copy"
            ) from None

    def _connect(self, timeout: float) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so every write is one transaction.
        conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        _check_integrity(conn)
        with self.transaction() as cur:
            _create(cur)
        return conn

    def _connect_read_only(self, timeout: float) -> sqlite3.Connection:
        """Open for reading only: nothing is written, so a study on read-only media or in a shared
        folder can be inspected. An older schema is migrated in a private in-memory copy."""
        if not self.path.is_file():
            raise StoreError(f"no study store at {self.path}; check the folder")
        uri = self.path.resolve().as_uri()
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists():
            # A writer is (or was, until killed) at work: read through its write-ahead log, read-only.
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:  # the log's index (-shm) cannot be made here: a read-only folder
                conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout, isolation_level=None)
        else:
            # No connection is open (the last one removes the log): read the file as it is, creating nothing
            # beside it (SQLite would otherwise make a -wal and -shm file even for a read-only connection).
            conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        _check_integrity(conn)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            # A study that has just begun: its writer made the file (an SQLite database with no tables)
            # and has not yet written the tables. Read as the empty store it is about to be (no runs
            # yet), not as a damaged one; a file that is not a database was refused above.
            conn.close()
            self._conn = conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.row_factory = sqlite3.Row
            with self.transaction() as cur:
                _create(cur)
            return conn
        if not {"meta", "runs", "measurements"} <= tables:
            raise sqlite3.DatabaseError(f"tables {', '.join(sorted(tables)) or 'none'} instead of meta, runs, "
                                        "measurements")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(json.loads(row["value"])) < SCHEMA_VERSION:
            memory = sqlite3.connect(":memory:", isolation_level=None)
            conn.backup(memory)
            conn.close()
            memory.row_factory = sqlite3.Row
            self._conn = conn = memory
            with self.transaction() as cur:
                _migrate(cur)
        return conn

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error)."""
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")

    # -- meta -------------------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key``."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, _dumps(value)),
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # -- measurements -----------------------------------------------------------------------------

    def put_measurement(
        self,
        dataset: str,
        quantity: str,
        value: float | None,
        ci95: tuple[float, float] | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        run_key: str = "",
    ) -> None:
        """Insert or replace one measurement (``quantity`` is d_data, K_F or d_repr)."""
        if quantity not in ("d_data", "K_F", "d_repr"):
            raise DataError(f"unknown quantity {quantity!r}: use 'd_data', 'K_F' or 'd_repr'")
        lo, hi = (None, None) if ci95 is None else (float(ci95[0]), float(ci95[1]))
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO measurements (dataset, quantity, run_key, value, ci_lo, ci_hi, details,"
                " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(dataset, quantity, run_key) DO UPDATE SET value = excluded.value,"
                " ci_lo = excluded.ci_lo, ci_hi = excluded.ci_hi, details = excluded.details,"
                " created = excluded.created",
                (
                    dataset,
                    quantity,
                    run_key,
                    None if value is None else float(value),
                    lo,
                    hi,
                    _dumps(dict(details or {})),
                    time.time(),
                ),
            )

    def measurement(self, dataset: str, quantity: str, *, run_key: str = "") -> dict[str, Any] | None:
        """One measurement as a dict, or None if not measured yet."""
        row = self._conn.execute(
            "SELECT * FROM measurements WHERE dataset = ? AND quantity = ? AND run_key = ?",
            (dataset, quantity, run_key),
        ).fetchone()
        return None if row is None else self._measurement_dict(row)

    def measurements(self, quantity: str | None = None) -> list[dict[str, Any]]:
        """All measurements (of one quantity, if given), ordered by dataset."""
        if quantity is None:
            rows = self._conn.execute("SELECT * FROM measurements ORDER BY dataset, quantity, run_key")
        else:
            rows = self._conn.execute(
                "SELECT * FROM measurements WHERE quantity = ? ORDER BY dataset, run_key", (quantity,)
            )
        return [self._measurement_dict(r) for r in rows]

    @staticmethod
    def _measurement_dict(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["details"] = json.loads(out["details"])
        return out

    # -- runs -------------------------------------------------------------------------------------

    def add_runs(self, runs: Iterable[Mapping[str, Any]]) -> int:
        """Insert runs not yet in the store (by ``run_key``); returns how many were new."""
        n_new = 0
        with self.transaction() as cur:
            for r in runs:
                cur.execute(
                    "INSERT OR IGNORE INTO runs (run_key, dataset, domain, model, N, seed, config)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        r["run_key"],
                        r["dataset"],
                        r["domain"],
                        r["model"],
                        int(r["N"]),
                        int(r["seed"]),
                        _dumps(r.get("config", {})),
                    ),
                )
                n_new += cur.rowcount
        return n_new

    def recover(self, *, every: bool = False) -> list[str]:
        """Put ``running`` rows whose worker is gone back to ``pending``; returns their run keys.

        ``every=True`` puts back every ``running`` row, also those claimed on another host (whose
        worker cannot be checked from here): what a study process holding the folder lock does, since
        no other study process can then own one (a driver killed on one node of a cluster and started
        again on another)."""
        reset = []
        with self.transaction() as cur:
            rows = cur.execute(
                "SELECT run_key, pid, pid_start, host FROM runs WHERE status = 'running'"
            ).fetchall()
            for row in rows:
                if every or not worker_alive(row["pid"], row["pid_start"], row["host"]):
                    cur.execute(
                        "UPDATE runs SET status = 'pending', claim = NULL, pid = NULL,"
                        " pid_start = NULL, host = NULL, started = NULL WHERE run_key = ?",
                        (row["run_key"],),
                    )
                    reset.append(row["run_key"])
        return reset

    def retry_failed(self) -> int:
        """Put ``failed`` runs back to ``pending`` (for ``study run --retry-failed``)."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = 'pending', error = NULL, claim = NULL WHERE status = 'failed'"
            )
            return cur.rowcount

    def claim(self, run_keys: Iterable[str] | None = None) -> dict[str, Any] | None:
        """Claim the next pending run for this process; None when nothing is left.

        Parameters
        ----------
        run_keys : iterable of str, optional
            Only claim among these runs (the current grid); default: any pending run.
        """
        pid = os.getpid()
        token = uuid.uuid4().hex
        with self.transaction() as cur:
            if run_keys is None:
                row = cur.execute(
                    "SELECT run_key FROM runs WHERE status = 'pending' ORDER BY rowid LIMIT 1"
                ).fetchone()
            else:
                keys = list(run_keys)
                row = None
                for i in range(0, len(keys), 500):
                    chunk = keys[i : i + 500]
                    row = cur.execute(
                        "SELECT run_key FROM runs WHERE status = 'pending' AND run_key IN "
                        f"({','.join('?' * len(chunk))}) ORDER BY rowid LIMIT 1",
                        chunk,
                    ).fetchone()
                    if row is not None:
                        break
            if row is None:
                return None
            cur.execute(
                "UPDATE runs SET status = 'running', claim = ?, pid = ?, pid_start = ?, host = ?,"
                " started = ?, attempts = attempts + 1 WHERE run_key = ? AND status = 'pending'",
                (
                    token,
                    pid,
                    process_start_time(pid),
                    socket.gethostname(),
                    time.time(),
                    row["run_key"],
                ),
            )
            full = cur.execute("SELECT * FROM runs WHERE run_key = ?", (row["run_key"],)).fetchone()
        return self._run_dict(full)

    def finish(self, run: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        """Record a claimed run as done, in one transaction.

        Returns False (and writes nothing) if the claim is no longer current, e.g. the study was
        restarted and the run handed to another worker; so no run is ever recorded twice.
        """
        unknown = set(result) - set(_RESULT_COLUMNS) - {"d_repr"}
        if unknown:
            raise DataError(f"unknown run result fields {sorted(unknown)}; use {sorted(_RESULT_COLUMNS)}")
        cols = [c for c in _RESULT_COLUMNS if c in result]
        values = [_dumps(result[c]) if _RESULT_COLUMNS[c] else result[c] for c in cols]
        values = [float(v) if hasattr(v, "item") and not isinstance(v, str) else v for v in values]
        sets = "".join(f", {c} = ?" for c in cols)
        with self.transaction() as cur:
            cur.execute(
                f"UPDATE runs SET status = 'done', finished = ?, error = NULL{sets}"
                " WHERE run_key = ? AND claim = ? AND status = 'running'",
                (time.time(), *values, run["run_key"], run["claim"]),
            )
            if cur.rowcount != 1:
                return False
            for d_repr in result.get("d_repr", ()) or ():
                # d_repr rows are keyed by run and layer so a redone run replaces, never duplicates.
                layer = d_repr.get("layer", "penultimate")
                cur.execute(
                    "INSERT INTO measurements (dataset, quantity, run_key, value, ci_lo, ci_hi,"
                    " details, created) VALUES (?, 'd_repr', ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(dataset, quantity, run_key) DO UPDATE SET value = excluded.value,"
                    " ci_lo = excluded.ci_lo, ci_hi = excluded.ci_hi, details = excluded.details",
                    (
                        run["dataset"],
                        f"{run['run_key']}#{layer}",
                        d_repr.get("value"),
                        (d_repr.get("ci95") or (None, None))[0],
                        (d_repr.get("ci95") or (None, None))[1],
                        _dumps({**d_repr, "run_key": run["run_key"]}),
                        time.time(),
                    ),
                )
        return True

    def fail(self, run: Mapping[str, Any], error: str) -> bool:
        """Record a claimed run as failed with its error text (only if the claim is current)."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = 'failed', finished = ?, error = ?"
                " WHERE run_key = ? AND claim = ? AND status = 'running'",
                (time.time(), str(error)[:20000], run["run_key"], run["claim"]),
            )
            return cur.rowcount == 1

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """All runs (with one status, if given) as dicts, JSON columns decoded."""
        if status is None:
            rows = self._conn.execute("SELECT * FROM runs ORDER BY rowid")
        else:
            rows = self._conn.execute("SELECT * FROM runs WHERE status = ? ORDER BY rowid", (status,))
        return [self._run_dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of runs per status, plus ``total``; ``stale`` counts the runs marked running whose
        worker is gone (a killed study: they are redone by the next ``study run``), not in ``running``."""
        out = {s: 0 for s in RUN_STATUSES} | {"stale": 0}
        for row in self._conn.execute("SELECT status, COUNT(*) AS n FROM runs GROUP BY status"):
            out[row["status"]] = int(row["n"])
        for row in self._conn.execute("SELECT pid, pid_start, host FROM runs WHERE status = 'running'"):
            if not worker_alive(row["pid"], row["pid_start"], row["host"]):
                out["running"] -= 1
                out["stale"] += 1
        out["total"] = sum(out[s] for s in RUN_STATUSES) + out["stale"]
        return out

    @staticmethod
    def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for c in _JSON_COLUMNS:
            if out.get(c) is not None:
                out[c] = json.loads(out[c])
        return out

    # -- export -----------------------------------------------------------------------------------

    def export(self, out_dir: str | os.PathLike[str], *, parquet: bool | None = None,
               wide: bool = False) -> list[Path]:
        """Write ``runs.csv`` and ``measurements.csv`` (and ``.parquet`` of each); returns the paths.

        Nested fields (config, curves, attacks, timings, details) are written as JSON text; the
        attack results and config are also flattened into columns so pandas users can filter on
        them directly.

        Parameters
        ----------
        out_dir : path
            Folder to write into (created if needed).
        parquet : bool, optional
            Also write Parquet (pyarrow). Default: when pyarrow can be imported; True: required
            (error if it cannot); False: CSV only.
        wide : bool
            Also write ``runs_wide.csv`` / ``.parquet``: one row per finished run with its losses,
            accuracies, d_data, K_F (with intervals), d_repr and robustness
            (:func:`intrinsics.study.tables.wide_table`). ``study export`` writes it.
        """
        if parquet is not False:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                if parquet:
                    raise DataError(
                        "Parquet export needs pyarrow; run 'pip install pyarrow' or export CSV only"
                    ) from None
                parquet = False
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tables: dict[str, tuple[list[dict[str, Any]], Mapping[str, str]]] = {
            "runs": (_flatten_runs(self.runs()), {}),
            "measurements": (_flatten_measurements(self), {}),
        }
        if wide:
            from .tables import WIDE_COLUMNS, wide_table  # the join lives beside the fits that read it

            tables["runs_wide"] = (wide_table(self), WIDE_COLUMNS)
        written = []
        for name, (rows, types) in tables.items():
            path = out_dir / f"{name}.csv"
            _write_csv(path, rows, list(types))
            written.append(path)
        if parquet is not False:
            for name, (rows, types) in tables.items():
                path = out_dir / f"{name}.parquet"
                _write_parquet(path, rows, types)
                written.append(path)
        return written


def _flatten_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in runs:
        row = {k: v for k, v in r.items() if k not in _JSON_COLUMNS and k != "claim"}
        for k, v in (r.get("config") or {}).items():
            if not isinstance(v, (dict, list)):
                row[f"config.{k}"] = v
        for k, v in _flat_items(r.get("attacks") or {}, "attack"):
            row[k] = v
        for k, v in _flat_items(r.get("timings") or {}, "time"):
            row[k] = v
        for c in _JSON_COLUMNS:
            row[f"{c}_json"] = None if r.get(c) is None else _dumps(r[c])
        out.append(row)
    return out


def _flat_items(obj: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """``(dotted.name, value)`` of every scalar in nested dicts; rows of the one attack shape
    (lists of ``{"eps", ...}``) are keyed by their ε: ``attack.fgsm.0.03.accuracy``. Other lists are
    left to the JSON column."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat_items(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        if obj and all(isinstance(v, dict) and "eps" in v for v in obj):
            for v in obj:
                eps = v["eps"]
                key = repr(float(eps)) if isinstance(eps, (int, float)) else str(eps)
                yield from _flat_items({k: x for k, x in v.items() if k != "eps"}, f"{prefix}.{key}")
    else:
        yield prefix, obj


def _flatten_measurements(store: Store) -> list[dict[str, Any]]:
    out = []
    for m in store.measurements():
        row = {k: v for k, v in m.items() if k != "details"}
        row["details_json"] = _dumps(m["details"])
        out.append(row)
    return out


def _fields(rows: list[dict[str, Any]], first: Iterable[str] = ()) -> list[str]:
    """Column names: ``first`` in order, then every other key in the order the rows first use it."""
    return list(dict.fromkeys([*first, *(k for r in rows for k in r)]))


def _write_csv(path: Path, rows: list[dict[str, Any]], first: Iterable[str] = ()) -> None:
    """Rows as CSV; a missing or None value is an empty cell (what pandas reads as NaN)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=_fields(rows, first))
        writer.writeheader()
        writer.writerows(rows)


def _write_parquet(path: Path, rows: list[dict[str, Any]], types: Mapping[str, str]) -> None:
    """Rows as Parquet, columns typed by ``types`` (pyarrow type names) or inferred.

    A column given a type keeps it even when every value is missing (an all-empty ``val_loss`` reads
    as float NaN, not as an untyped column); an inferred column that mixes kinds (a config value that
    is a number in one run and text in another) is written as text, as the CSV has it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {}
    for name in _fields(rows, types):
        values = [r.get(name) for r in rows]
        if name in types:
            columns[name] = pa.array(values, type=pa.type_for_alias(types[name]))
            continue
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    pq.write_table(pa.table(columns), path)

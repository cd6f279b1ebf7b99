"""The one background helper of the app: the GUI thread never waits on disk, database or GPU.

Three lanes, one object (`Workers`, one per application, owned by the main window):

* **database** — a single serial thread that owns the open `engine.store.Store`. Every database read
  and every tag edit goes through `workers.db(fn, *args)`; `fn(store, *args)` runs there, in
  submission order, so a read submitted after a write sees it. `open_project(dir)` opens (or
  switches) the store on that same thread.
* **pool** — a thread pool for decoding and other CPU work that needs no database:
  `workers.pool(fn, *args)` runs `fn(*args)`.
* **jobs** — long work with progress and cancel (intake, demo data, training, batch tagging):
  `workers.start_job(title, fn, *args)` runs `fn(store, *args, progress=..., should_stop=...)` and
  returns a `Job` whose signals report progress and the outcome. Jobs with `gpu=True` run one at a
  time on their own lane; other jobs on an I/O lane, so adding a folder never waits for training.
  A feature that runs one job at a time (training, review, batch tagging) holds an
  `app.jobs.JobSlot`, which wires a job once: progress, outcome, cancel, busy state, stale results.

Results come back on the GUI thread through Qt signals and are handed to the `on_done(result)` /
`on_error(exc)` callables given at submission. Stale results are dropped:

* a request submitted with `key="x"` supersedes every earlier request with the same key: if the
  earlier one has not started it is skipped, if it has, its result is discarded;
* `cancel(request_id)` drops one request the same way;
* `open_project` starts a new *generation*: results of requests submitted for the previous project
  are discarded (writes already queued still run against the store they were meant for).

Errors with no `on_error` go to the `error` signal (the main window shows `UserError` messages in a
dialog, anything else as an unexpected error with its details), never as a raw traceback.

Example::

    workers.db(gallery_query.query_ids, spec, key="gallery", on_done=model.set_ids)
    job = workers.start_job("Adding folder", intake.scan_folder, folder, on_done=report)
    job.progress.connect(bar.set)   # (done, total)
    job.cancel()
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from app.gui_gc import collect_on_the_gui_thread
from app.progress_clock import StageClock
from engine.errors import UserError

log = logging.getLogger(__name__)

Callback = Callable[[Any], None] | None
_STOP = object()


class Job(QObject):
    """A long-running piece of work on a job lane. Lives on the GUI thread; its signals are safe to
    connect to widgets. `progress(done, total)` is throttled to at most ~20 updates per second."""

    progress = Signal(int, int)        # done, total
    finished = Signal(object)          # the job function's return value
    failed = Signal(object)            # the exception (UserError: show its message)
    cancelled = Signal()               # the job stopped because cancel() was asked
    ended = Signal()                   # after finished / failed / cancelled, always

    def __init__(self, job_id: int, title: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.title = title
        self.done = 0
        self.total = 0
        self.clock = StageClock()          # the one time-left estimate (status bar, panels)
        self._stop = threading.Event()
        self._last_emit = 0.0

    # -- called from the job's thread ------------------------------------------------------------
    def should_stop(self) -> bool:
        """True once cancel() was asked; pass to engine calls as `should_stop`."""
        return self._stop.is_set()

    def report(self, done: int, total: int) -> None:
        """The `progress(done, total)` callable handed to the job function."""
        now = time.monotonic()
        if done >= total or now - self._last_emit >= 0.05:
            self._last_emit = now
            self.progress.emit(int(done), int(total))

    # -- GUI thread ------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop; it ends at its next `should_stop()` check."""
        self._stop.set()


class _Relay(QObject):
    """Carries results from worker threads to the GUI thread (queued connection)."""

    result = Signal(int, object)              # request id, _Outcome
    job_result = Signal(object, str, object)  # job, 'finished' | 'failed' | 'cancelled', value


class _Outcome:
    """A request's result (`ok`) or its exception."""

    __slots__ = ("ok", "value")

    def __init__(self, ok: bool, value: object) -> None:
        self.ok = ok
        self.value = value


class _Task(QRunnable):
    def __init__(self, body: Callable[[], None]) -> None:
        super().__init__()
        self._body = body
        self.setAutoDelete(True)

    def run(self) -> None:
        self._body()


class Workers(QObject):
    """The app's background helper: a serial database thread, a decoding pool and job lanes."""

    error = Signal(object)             # an exception no on_error handled
    project_opened = Signal(object)    # the Store, after open_project() succeeded
    jobs_changed = Signal()            # a job started or ended; see running_jobs()

    def __init__(self, pool_threads: int | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        collect_on_the_gui_thread()     # never on a worker thread: see app.gui_gc
        self.store = None              # the open engine.store.Store (set on the GUI thread)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._callbacks: dict[int, tuple[Callback, Callback, int]] = {}
        self._latest_by_key: dict[str, int] = {}
        self._key_of: dict[int, str] = {}
        self._dropped: set[int] = set()
        self._generation = 0
        self._jobs: dict[int, Job] = {}
        self._relay = _Relay()
        self._relay.result.connect(self._deliver)
        self._relay.job_result.connect(self._deliver_job)
        self._db_queue: queue.Queue = queue.Queue()
        self._db_store = None          # the store as seen by the database thread
        self._db_thread = threading.Thread(target=self._db_loop, name="mlic-db", daemon=True)
        self._db_thread.start()
        self._pool = QThreadPool(self)
        if pool_threads:
            self._pool.setMaxThreadCount(pool_threads)
        self._gpu_lane = QThreadPool(self)
        self._gpu_lane.setMaxThreadCount(1)
        self._io_lane = QThreadPool(self)
        self._io_lane.setMaxThreadCount(1)
        self._closed = False

    # ---------------------------------------------------------------------------------------------
    # Project
    def open_project(self, project_dir: Path | str | None, on_done: Callback = None,
                     on_error: Callback = None, db_url: str | None = None) -> int:
        """Close the current store (after the writes queued for it) and open `project_dir` (with
        `db_url`: a database such as a team's PostgreSQL, its models in `project_dir`) on the
        database thread. Results of earlier requests are dropped from now on. `on_done(store)`."""
        self._generation += 1
        self.store = None

        def _open(_old_store):
            from engine.store import Store
            if self._db_store is not None:
                self._db_store.close()
                self._db_store = None
            self._db_store = Store.open(project_dir, db_url=db_url)
            return self._db_store

        def _opened(store):
            self.store = store
            self.project_opened.emit(store)
            if on_done is not None:
                on_done(store)

        return self._submit_db(_open, (), {}, _opened, on_error, None, allow_no_store=True)

    # ---------------------------------------------------------------------------------------------
    # Requests
    def db(self, fn: Callable[..., Any], *args: Any, on_done: Callback = None,
           on_error: Callback = None, key: str | None = None, **kwargs: Any) -> int:
        """Run `fn(store, *args, **kwargs)` on the serial database thread. Returns a request id.

        Writes must not use `key` (a superseded request may be skipped); reads usually should.
        """
        return self._submit_db(fn, args, kwargs, on_done, on_error, key)

    def pool(self, fn: Callable[..., Any], *args: Any, on_done: Callback = None,
             on_error: Callback = None, key: str | None = None, priority: int = 0,
             **kwargs: Any) -> int:
        """Run `fn(*args, **kwargs)` on the thread pool (decoding, CPU work; no database).
        Higher `priority` runs first among queued requests. Returns a request id."""
        request_id = self._register(on_done, on_error, key)

        def body() -> None:
            if self._is_dropped(request_id):
                self._relay.result.emit(request_id, _Outcome(False, _Skipped()))
                return
            self._run_and_relay(request_id, lambda: fn(*args, **kwargs))

        self._pool.start(_Task(body), priority)
        return request_id

    def cancel(self, request_id: int) -> None:
        """Drop one request: skipped if not started, its result discarded otherwise."""
        with self._lock:
            if request_id in self._callbacks:
                self._dropped.add(request_id)

    def is_current(self, request_id: int) -> bool:
        """Whether the request's result would still be delivered."""
        with self._lock:
            return request_id in self._callbacks and request_id not in self._dropped

    # ---------------------------------------------------------------------------------------------
    # Jobs
    def start_job(self, title: str, fn: Callable[..., Any], *args: Any, gpu: bool = False,
                  on_done: Callback = None, on_error: Callback = None,
                  on_progress: Callable[[int, int], None] | None = None, **kwargs: Any) -> Job:
        """Run `fn(store, *args, progress=job.report, should_stop=job.should_stop, **kwargs)` on
        a job lane. `gpu=True` jobs (training, tagging, review) run one at a time on their own lane.
        A feature that runs one job at a time uses an `app.jobs.JobSlot` instead of this. The job's `finished` / `failed` /
        `cancelled` signals fire on the GUI thread; `on_done(result)` and `on_error(exc)` too.
        A job that returns after `cancel()` counts as cancelled."""
        job = Job(next(self._ids), title)
        job.progress.connect(lambda done, total: _remember_progress(job, done, total))  # first
        if on_done is not None:
            job.finished.connect(on_done)
        if on_error is not None:
            job.failed.connect(on_error)
        else:
            job.failed.connect(self.error.emit)
        if on_progress is not None:
            job.progress.connect(on_progress)
        store = self.store
        if store is None:
            raise UserError("No project is open yet.")

        def body() -> None:
            try:
                result = fn(store, *args, progress=job.report, should_stop=job.should_stop,
                            **kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported to the GUI, never swallowed
                _log_unexpected(exc)
                self._relay.job_result.emit(job, "failed", exc)
                return
            outcome = "cancelled" if job.should_stop() else "finished"
            self._relay.job_result.emit(job, outcome, result)

        self._jobs[job.job_id] = job
        (self._gpu_lane if gpu else self._io_lane).start(_Task(body))
        self.jobs_changed.emit()
        return job

    @property
    def generation(self) -> int:
        """Counts open_project() calls: a result made under another generation is stale."""
        return self._generation

    def running_jobs(self) -> list[Job]:
        return list(self._jobs.values())

    # ---------------------------------------------------------------------------------------------
    # Shutdown
    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel jobs, drop pending results, let queued writes finish, close the store."""
        if self._closed:
            return
        self._closed = True
        for job in self._jobs.values():
            job.cancel()
        with self._lock:
            self._dropped.update(self._callbacks)
        self._pool.clear()
        self._db_queue.put(_STOP)
        self._db_thread.join(timeout)
        self._pool.waitForDone(int(timeout * 1000))
        self._io_lane.waitForDone(int(timeout * 1000))
        self._gpu_lane.waitForDone(int(timeout * 1000))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the database queue is empty (tests and shutdown only, never the GUI)."""
        done = threading.Event()
        self._db_queue.put((None, lambda: done.set(), None))
        return done.wait(timeout)

    # ---------------------------------------------------------------------------------------------
    # Internals
    def _register(self, on_done: Callback, on_error: Callback, key: str | None) -> int:
        request_id = next(self._ids)
        with self._lock:
            self._callbacks[request_id] = (on_done, on_error, self._generation)
            if key is not None:
                previous = self._latest_by_key.get(key)
                if previous is not None:
                    self._dropped.add(previous)
                self._latest_by_key[key] = request_id
                self._key_of[request_id] = key
        return request_id

    def _is_dropped(self, request_id: int) -> bool:
        with self._lock:
            return request_id in self._dropped

    def _submit_db(self, fn, args, kwargs, on_done, on_error, key, allow_no_store=False) -> int:
        if self._closed:
            # The window is closing: late timers may still ask for reads; nothing runs any more.
            log.log(logging.WARNING if key is None else logging.DEBUG,
                    "request after shutdown ignored: %s", getattr(fn, "__name__", fn))
            return -1
        request_id = self._register(on_done, on_error, key)

        def call():
            store = self._db_store
            if store is None and not allow_no_store:
                raise UserError("No project is open yet.")
            return fn(store, *args, **kwargs)

        self._db_queue.put((request_id, call, key))
        return request_id

    def _db_loop(self) -> None:
        while True:
            item = self._db_queue.get()
            if item is _STOP:
                if self._db_store is not None:
                    self._db_store.close()
                return
            request_id, call, _key = item
            if request_id is None:        # wait_idle marker
                call()
                continue
            if self._is_dropped(request_id) and _key is not None:
                self._relay.result.emit(request_id, _Outcome(False, _Skipped()))
                continue
            self._run_and_relay(request_id, call)

    def _run_and_relay(self, request_id: int, call: Callable[[], Any]) -> None:
        try:
            value = call()
        except BaseException as exc:  # noqa: BLE001 - reported to the GUI, never swallowed
            _log_unexpected(exc)
            self._relay.result.emit(request_id, _Outcome(False, exc))
            return
        self._relay.result.emit(request_id, _Outcome(True, value))

    @Slot(int, object)
    def _deliver(self, request_id: int, outcome: _Outcome) -> None:
        ok, value = outcome.ok, outcome.value
        with self._lock:
            on_done, on_error, generation = self._callbacks.pop(request_id, (None, None, -1))
            dropped = request_id in self._dropped
            self._dropped.discard(request_id)
            key = self._key_of.pop(request_id, None)
            if key is not None and self._latest_by_key.get(key) == request_id:
                del self._latest_by_key[key]
        if dropped or generation != self._generation or isinstance(value, _Skipped):
            return
        if ok:
            if on_done is not None:
                on_done(value)
        elif on_error is not None:
            on_error(value)
        else:
            self.error.emit(value)

    @Slot(object, str, object)
    def _deliver_job(self, job: Job, outcome: str, value: object) -> None:
        self._jobs.pop(job.job_id, None)
        if outcome == "finished":
            job.finished.emit(value)
        elif outcome == "cancelled":
            job.cancelled.emit()
        else:
            job.failed.emit(value)
        job.ended.emit()
        self.jobs_changed.emit()


class _Skipped:
    """Marker result of a request that was dropped before it ran."""


def _remember_progress(job: Job, done: int, total: int) -> None:
    job.done, job.total = done, total
    job.clock.update(done, total)


def _log_unexpected(exc: BaseException) -> None:
    if not isinstance(exc, UserError):
        log.error("background task failed:\n%s",
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def describe_error(exc: BaseException) -> tuple[str, str | None]:
    """(one-line message for a dialog, details or None) for an exception from a worker."""
    if isinstance(exc, UserError):
        return str(exc), None
    from engine.cli.failures import failure_message

    machine = failure_message(exc)          # a busy, full or damaged database: a sentence
    if machine is not None:
        return machine, None
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"Something went wrong: {type(exc).__name__}: {exc}", details

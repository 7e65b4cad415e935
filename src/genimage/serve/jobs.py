"""Jobs: a bounded queue, one worker thread, progress per step, cancel between steps.

:class:`JobQueue` takes checked :class:`~genimage.serve.studio.Work` and runs it on a single
worker thread, one job at a time (on a small CPU box two generations would only share the
same cores; on a GPU its memory). A job is ``queued``, ``running``, then exactly one of
``done``, ``failed`` (with a reason) or ``cancelled``; :meth:`Job._end` is the only way to end
it and refuses a second ending, so no job is lost or run twice. The step callback reports
progress and is where a running job stops: on cancel, on the per-job caps (wall time, network
evaluations) and at shutdown it raises :class:`~genimage.serve.studio.Stop`, which unwinds the
sampler between two steps. Finished jobs are kept in a bounded store (oldest dropped first).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from genimage.errors import GenimageError
from genimage.serve.studio import Made, Stop, Work

TERMINAL = ("done", "failed", "cancelled")
log = logging.getLogger("genimage.serve")


class QueueFull(GenimageError):
    """The queue holds its limit of waiting jobs (HTTP 429)."""

    def __init__(self, size: int, retry_after: int) -> None:
        super().__init__(f"the job queue is full ({size} waiting): try again in about {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(GenimageError):
    """The service is stopping and takes no new jobs (HTTP 503)."""


@dataclass
class Job:
    """One accepted request and what became of it.

    Attributes:
        id: Unguessable id (``GET /api/jobs/{id}``).
        kind: ``generate``, ``edit`` or ``replay``.
        work: What it runs.
        state: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        step, total: Sampler steps taken and expected.
        reason: Why it failed or was cancelled.
        results: The images, once done.
        version: Bumped on every change (server-sent events watch it).
    """

    id: str
    kind: str
    work: Work | None
    number: int
    state: str = "queued"
    step: int = 0
    total: int = 1
    reason: str | None = None
    results: list[Made] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    version: int = 0
    cancel_requested: bool = False
    ended: threading.Event = field(default_factory=threading.Event)
    watchers: list = field(default_factory=list)  # (event loop, asyncio.Event) pairs woken on change

    def touch(self) -> None:
        """Note a change and wake the server-sent event streams and waiting requests."""
        self.version += 1
        for loop, event in list(self.watchers):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed
                pass

    @property
    def progress(self) -> float:
        return 1.0 if self.state == "done" else min(self.step / max(self.total, 1), 1.0)

    def _end(self, state: str, reason: str | None = None, results: list[Made] | None = None) -> None:
        if self.ended.is_set():
            raise RuntimeError(f"job {self.id} ended twice")  # a bug, never a user error
        self.state, self.reason = state, reason
        if results is not None:
            self.results = results
        self.finished = time.time()
        self.work = None  # drop the tensors (inputs, pipeline reference) of a finished job
        self.ended.set()
        self.touch()

    def to_json(self, position: int | None = None, images: bool = True) -> dict[str, Any]:
        """The job as ``GET /api/jobs/{id}`` shows it."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "model": self.model, "state": self.state,
                               "position": position, "step": self.step, "total": self.total,
                               "progress": round(self.progress, 4), "reason": self.reason,
                               "warnings": list(self.warnings)}
        if self.started is not None:
            out["seconds"] = round((self.finished or time.time()) - self.started, 3)
        if self.state == "done":
            out["images"] = [{**(m.to_json() if images else {"seed": m.seed, "record": m.record}),
                              "url": f"/api/jobs/{self.id}/images/{k}.png"} for k, m in enumerate(self.results)]
        return out


class JobQueue:
    """Bounded FIFO of jobs run by one worker thread.

    Args:
        queue_size: Most jobs waiting (the running one not counted); more get :class:`QueueFull`.
        keep: Finished jobs kept for lookup.
        max_seconds: Wall time after which a running job fails.
        max_nfe: Network evaluations after which a running job fails (counted from the
            sampler's step reports; also checked before the job is accepted).
    """

    def __init__(self, queue_size: int = 32, keep: int = 256, max_seconds: float = 300.0,
                 max_nfe: int = 2000) -> None:
        self.queue_size = queue_size
        self.keep = keep
        self.max_seconds = max_seconds
        self.max_nfe = max_nfe
        self._cv = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._running: Job | None = None
        self._closed = False
        self._numbers = itertools.count()
        self._seconds_per_job = 1.0  # running mean, for Retry-After
        self.ended_count = {state: 0 for state in TERMINAL}
        self._thread = threading.Thread(target=self._worker, name="genimage-jobs", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------- clients
    def submit(self, work: Work) -> Job:
        """Queue ``work``; returns its job at once.

        Raises:
            QueueFull: When ``queue_size`` jobs are already waiting.
            ShuttingDown: After :meth:`close`.
        """
        with self._cv:
            if self._closed:
                raise ShuttingDown("the service is shutting down and takes no new jobs")
            if len(self._waiting) >= self.queue_size:
                retry = max(1, round(self._seconds_per_job * (len(self._waiting) + 1)))
                raise QueueFull(len(self._waiting), min(retry, 3600))
            job = Job(secrets.token_urlsafe(12), work.kind, work, next(self._numbers), total=work.steps,
                      model=work.model)
            self._waiting.append(job)
            self._jobs[job.id] = job
            self._forget_old()
            self._cv.notify_all()
            return job

    def get(self, job_id: str) -> Job | None:
        with self._cv:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """Jobs ahead of a queued one (the running one included); ``None`` once it runs."""
        with self._cv:
            if job.state != "queued":
                return None
            ahead = next((i for i, j in enumerate(self._waiting) if j is job), len(self._waiting))
            return ahead + (self._running is not None)

    def cancel(self, job: Job, reason: str = "cancelled by the client") -> bool:
        """Cancel a queued job at once or ask a running one to stop at its next step; returns
        ``False`` for a job that already ended."""
        with self._cv:
            if job.state == "queued":
                self._waiting.remove(job)
                self._finish(job, "cancelled", reason)
                return True
            if job.state == "running":
                job.cancel_requested = True
                job.reason = reason
                return True
            return False

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, cancel the waiting ones and stop the running one at its next step;
        waits up to ``timeout`` seconds for the worker."""
        with self._cv:
            self._closed = True
            while self._waiting:
                self._finish(self._waiting.popleft(), "cancelled", "the service is shutting down")
            if self._running is not None:
                self._running.cancel_requested = True
                self._running.reason = "the service is shutting down"
            self._cv.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def reopen(self) -> None:
        """Take jobs again after :meth:`close` (an app whose lifespan starts anew, as test
        clients do), with a fresh worker thread once the old one has finished."""
        with self._cv:
            if not self._closed:
                return
        self._thread.join()
        with self._cv:
            if not self._closed or self._thread.is_alive():
                return
            self._closed = False
            self._thread = threading.Thread(target=self._worker, name="genimage-jobs", daemon=True)
            self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, Any]:
        with self._cv:
            return {"waiting": len(self._waiting), "running": self._running is not None,
                    "queue_size": self.queue_size, "ended": dict(self.ended_count)}

    # ----------------------------------------------------------------------------- worker
    def _finish(self, job: Job, state: str, reason: str | None = None, results: list[Made] | None = None) -> None:
        job._end(state, reason, results)  # under self._cv
        self.ended_count[state] += 1
        self._cv.notify_all()

    def _forget_old(self) -> None:
        excess = len(self._jobs) - self.keep
        for job_id in [k for k, j in self._jobs.items() if j.state in TERMINAL][:max(excess, 0)]:
            del self._jobs[job_id]

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if not self._waiting:
                    return
                job = self._waiting.popleft()
                job.state, job.started = "running", time.time()
                job.touch()
                self._running = job
            state, reason, results = self._run(job)
            with self._cv:
                self._running = None
                self._finish(job, state, reason, results)
                elapsed = (job.finished or time.time()) - (job.started or time.time())
                self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * elapsed
                self._forget_old()

    def _run(self, job: Job) -> tuple[str, str | None, list[Made] | None]:
        work = job.work
        assert work is not None
        deadline = time.monotonic() + self.max_seconds
        spent = {"nfe": 0, "last": 0}

        def step(info: dict) -> None:
            nfe = int(info.get("nfe", 0))  # per sampler call: count increments across calls
            spent["nfe"] += nfe - spent["last"] if nfe > spent["last"] else nfe
            spent["last"] = nfe
            job.step = min(job.step + 1, job.total)
            job.touch()
            if job.cancel_requested:
                raise Stop("cancelled", job.reason or "cancelled")
            if time.monotonic() > deadline:
                raise Stop("failed", f"the job ran longer than this service's {self.max_seconds:g} s limit; "
                                     "lower steps or n")
            if spent["nfe"] > self.max_nfe:
                raise Stop("failed", f"the job needed more than this service's {self.max_nfe} network "
                                     "evaluations; lower steps, resample or n")

        try:
            if job.cancel_requested:
                raise Stop("cancelled", job.reason or "cancelled")
            results = work.run(step)
            job.warnings = list(work.warnings)
            return "done", None, results
        except Stop as stop:
            return stop.state, stop.reason, None
        except GenimageError as e:
            return "failed", str(e), None
        except Exception as e:  # noqa: BLE001 - a job ends, whatever went wrong
            log.exception("job %s failed", job.id)
            return "failed", f"internal error ({type(e).__name__}); see the server's log", None

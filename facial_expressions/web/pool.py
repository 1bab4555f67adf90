"""A bounded pool of analysis processes, so that load turns into quick 503s instead of a long queue.

``workers`` processes each load the model and dlib's models once, at start-up
(:mod:`.worker`); at most ``workers + queue`` requests are admitted at a time, and one more is
refused at once with :class:`.errors.Busy` (503, ``Retry-After``). Every admitted request has a
time budget that covers waiting for a worker and the analysis: past it the answer is 503, and a
worker still busy with the request is killed and replaced, so one pathological image cannot
hold a worker. Workers are forked from the server's fork server (:mod:`.processes`), never
from the server itself (it has threads by then): a replacement starts in a fraction of a second.

The waiting happens in threads (one per admitted request, ``workers + queue`` at most), so a
request whose client goes away still returns its worker to the pool.
"""

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common.errors import FacialExpressionError

from . import processes
from .errors import ApiError, Busy

log = logging.getLogger("facial_expressions.web")

#: Seconds a new worker may take to load its models.
START_TIMEOUT = 180


class WorkerStartError(FacialExpressionError):
    """An analysis process could not start (its models did not load)."""


class _Worker:
    """One analysis process and the pipe to it."""

    def __init__(self, context, model_path):
        from .worker import serve_forever

        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve_forever, args=(child, model_path), name="fer-analysis",
                                       daemon=True)
        try:
            self.process.start()
        except (EOFError, OSError) as exc:   # the fork server could not start, or went away
            self.conn.close()
            raise WorkerStartError(f"an analysis process could not be started ({type(exc).__name__}: {exc})") \
                from None
        finally:
            child.close()

    def wait_ready(self, timeout=START_TIMEOUT):
        try:
            if not self.conn.poll(timeout):
                raise WorkerStartError(f"an analysis process did not load its models within {timeout} s")
            message = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerStartError(f"an analysis process died while starting (exit code {self.process.exitcode})")
        if message[0] != "ready":
            raise WorkerStartError(f"an analysis process could not start: {message[1]}")

    def call(self, job, timeout):
        """The worker's answer, or TimeoutError after ``timeout`` s (EOFError: the process died)."""
        self.conn.send(job)
        if not self.conn.poll(max(timeout, 0.0)):
            raise TimeoutError
        return self.conn.recv()

    def stop(self, kill=False):
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class AnalysisPool:
    """``await pool.run(job)`` -> the worker's result dict; raises :class:`.errors.ApiError`."""

    def __init__(self, workers, queue_size, budget, model_path=None):
        self.workers, self.queue_size, self.budget, self.model_path = workers, queue_size, budget, model_path
        self._context = processes.context()
        self._idle = queue.Queue()
        self._all = []
        self._lock = threading.Lock()
        self._admitted = 0
        self._threads = ThreadPoolExecutor(max_workers=workers + queue_size, thread_name_prefix="fer-wait")
        self.closed = False

    def start(self):
        """Start every worker and wait until each has loaded its models (WorkerStartError otherwise)."""
        started = self._all
        try:
            for _ in range(self.workers):
                started.append(_Worker(self._context, self.model_path))
            for worker in started:
                worker.wait_ready()
        except WorkerStartError:
            self.close()
            raise
        for worker in started:
            self._idle.put(worker)
        return self

    @property
    def capacity(self):
        return self.workers + self.queue_size

    def stats(self):
        with self._lock:
            admitted = self._admitted
        return {"workers": self.workers, "queue": self.queue_size, "admitted": admitted,
                "busy": min(admitted, self.workers), "waiting": max(0, admitted - self.workers)}

    async def run(self, job):
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy(f"the server is busy: all {self.workers} analysis workers are in use and "
                           f"{self.queue_size} requests are waiting; try again in a moment")
            self._admitted += 1
        deadline = time.monotonic() + self.budget
        try:
            future = self._threads.submit(self._serve, job, deadline)
        except RuntimeError:  # shutting down
            self._leave()
            raise Busy("the server is shutting down") from None
        return await asyncio.wrap_future(future)

    def _leave(self):
        with self._lock:
            self._admitted -= 1

    def _serve(self, job, deadline):
        try:
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise Busy(f"no analysis worker became free within the time budget ({self.budget:g} s)") from None
            try:
                answer = worker.call(job, deadline - time.monotonic())
            except TimeoutError:
                self._replace(worker, "over the time budget")
                raise Busy(f"the analysis took longer than the time budget ({self.budget:g} s)") from None
            except (EOFError, OSError) as exc:
                self._replace(worker, f"died ({exc or type(exc).__name__})")
                raise ApiError(500, "the analysis process failed on this image") from None
            self._idle.put(worker)
        finally:
            self._leave()
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "refused":
            raise ApiError(answer[1], answer[2])
        log.error("analysis failed: %s", answer[1])
        raise ApiError(500, "the analysis failed on this image (a bug: the server's log says more)")

    def _replace(self, worker, why):
        """Kill ``worker`` and start another in the background; the pool is one short meanwhile."""
        log.warning("analysis process %s %s: replacing it", worker.process.pid, why)
        threading.Thread(target=self._restart, args=(worker,), daemon=True, name="fer-restart").start()

    def _restart(self, old):
        old.stop(kill=True)
        while not self.closed:
            try:
                new = _Worker(self._context, self.model_path)
            except WorkerStartError as exc:
                log.error("%s; trying again", exc)
                time.sleep(1)
                continue
            with self._lock:
                self._all = [w for w in self._all if w is not old] + [new]
            try:
                new.wait_ready()
            except WorkerStartError as exc:
                log.error("%s; trying again", exc)
                new.stop(kill=True)
                time.sleep(1)
                continue
            if self.closed:
                new.stop()
            else:
                self._idle.put(new)
            return

    def close(self):
        self.closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.stop()

"""Start a service's ASGI app with uvicorn: `python3 -m analyticbot_common.serve`.

The image sets APP_MODULE (module:attribute) and APP_PORT, so all three services share one exec-form CMD and
one Dockerfile. The app is imported here rather than by uvicorn so that a settings error ends the process
with one line and exit code 2 instead of a traceback; a failed startup (lifespan) exits with uvicorn's 3.

Several server processes where the CPU limit allows (workers.py): this process binds the port, imports the
app once and forks them, each a uvicorn server on the shared socket (the kernel spreads connections). Not
uvicorn's own `workers`: its supervisor restarts a worker that fails at startup for ever, where the service
must exit 3; here the first worker to fail stops the others and its exit code is the service's, and the
restart policy decides. SIGTERM reaches every worker, and each drains its requests as a single process does."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any

import uvicorn

from . import health, workers
from .coalesce import CoalescingHttpToolsProtocol
from .logs import configure_logging
from .settings import SettingsError

log = logging.getLogger("analyticbot.serve")


def import_app(target: str) -> Any:  # whatever `module:attribute` names: an ASGI app by contract
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "app")


def _shared_directory(processes: int) -> str | None:
    """Before the app (and prometheus_client) is imported: a directory the workers share, where counters and
    histograms live in files every worker writes and /metrics adds up (prometheus_client's multiprocess mode)
    and where the health monitors' status signal is. None, with a warning, where no temporary directory is
    writable (a read-only root without its tmpfs): one process then serves."""
    try:
        shared = tempfile.mkdtemp(prefix="workers-")
    except OSError as exc:
        log.warning("no writable temporary directory for %d workers' metrics (%s): serving with one process",
                    processes, exc.strerror or exc)  # fmt: skip
        return None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    os.environ[health.SHARED_DIR_VARIABLE] = shared
    return shared


def main() -> int:
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    target = os.environ.get("APP_MODULE")
    if not target:
        log.error("APP_MODULE is not set (module:attribute of the ASGI app)")
        return 2
    try:
        processes = workers.count()
    except workers.WorkersError as exc:
        log.error("%s", exc)
        return 2
    # One process, or several sharing a directory (None: one, whatever was asked).
    shared = _shared_directory(processes) if processes > 1 else None
    try:
        app = import_app(target)
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    config = uvicorn.Config(
        app,
        host=os.environ.get("APP_HOST", "0.0.0.0"),
        port=int(os.environ.get("APP_PORT", "8000")),
        # Behind nginx: X-Forwarded-* are believed from the proxy's address only (compose sets it);
        # unset, from nobody but loopback, so a client can never claim another address.
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        # Access lines would carry query strings; the services log what matters themselves.
        access_log=False,
        server_header=False,
        # Our handler (configure_logging) is the only one: uvicorn's records propagate to it and are scrubbed.
        log_config=None,
        # A failing startup must stop the process, never run on without its lifespan.
        lifespan="on",
        # httptools with a response's head and body in one send (coalesce.py).
        http=CoalescingHttpToolsProtocol,
    )
    if shared is None:
        server = uvicorn.Server(config)
        server.run()  # raises SystemExit(3) itself when startup fails
        return 0 if server.started else 1
    try:
        return supervise(config, processes)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _run_worker(config: uvicorn.Config, listener: socket.socket, worker: workers.Worker) -> int:
    """In a forked process: serve on the shared socket until told to stop; the exit code to end with."""
    # The supervisor's handlers are not this process's: uvicorn installs its own while it serves, and
    # afterwards re-raises the signal it caught, which must then end this process. Then the signals
    # the supervisor held back while forking are let through.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    workers.become(worker)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener])
    except SystemExit as exc:  # uvicorn's 3 for a failed startup
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("worker %d of %d failed", worker.index, worker.of)
        return 1
    return 0 if server.started else 1


def supervise(config: uvicorn.Config, processes: int) -> int:
    """Fork `processes` workers on one listening socket and wait for them. On SIGTERM or SIGINT each is told
    to stop (and drains); if one ends by itself, the others are stopped and the service exits with its code."""
    listener = config.bind_socket()  # exits 3 when the port is taken, as a single server would
    children: dict[int, int] = {}
    stopping = False

    def stop_all(signum: int, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    # Held back while forking: a stop that arrives now is acted on once every worker exists and the
    # handlers are in place (in a container this is PID 1, which ignores a signal it has no handler for).
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for index in range(processes):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _run_worker(config, listener, workers.Worker(index, processes))
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index
    log.info("serving with %d worker processes (sized from the CPU limit unless APP_WORKERS says)", processes)
    listener.close()  # the workers hold it
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    exit_code = 0
    while children:
        pid, status = os.wait()  # a signal handler runs, then the wait resumes (PEP 475)
        worker = children.pop(pid, None)
        if worker is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping and code in (0, -signal.SIGTERM, -signal.SIGINT):
            continue  # told to stop, and it did
        if exit_code == 0:
            # A worker that failed (3: its startup) or ended unasked: the service is broken as a whole.
            exit_code = code if code > 0 else 1
            log.error("worker %d exited with %s: stopping the service", worker, code)
        stop_all(signal.SIGTERM)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

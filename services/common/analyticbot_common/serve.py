"""Start a service's ASGI app with uvicorn: `python3 -m analyticbot_common.serve`.

The image sets APP_MODULE (module:attribute) and APP_PORT, so all three services share one exec-form CMD and
one Dockerfile. The app is imported here rather than by uvicorn so that a settings error ends the process
with one line and exit code 2 instead of a traceback; a failed startup (lifespan) exits with uvicorn's 3."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import uvicorn

from .logs import configure_logging
from .settings import SettingsError

log = logging.getLogger("analyticbot.serve")


def import_app(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "app")


def main() -> int:
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    target = os.environ.get("APP_MODULE")
    if not target:
        log.error("APP_MODULE is not set (module:attribute of the ASGI app)")
        return 2
    try:
        app = import_app(target)
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
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
    )
    server = uvicorn.Server(config)
    server.run()  # raises SystemExit(3) itself when startup fails
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())

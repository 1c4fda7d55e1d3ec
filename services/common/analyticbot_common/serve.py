"""Start a service's ASGI app with uvicorn: `python3 -m analyticbot_common.serve`.

The image sets APP_MODULE (module:attribute) and APP_PORT, so all three services
share one exec-form CMD and one Dockerfile."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        os.environ["APP_MODULE"],
        host=os.environ.get("APP_HOST", "0.0.0.0"),
        port=int(os.environ.get("APP_PORT", "8000")),
        # Behind nginx: trust X-Forwarded-* from the proxy network only.
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "*"),
        # Access lines would carry query strings; the services log what matters themselves.
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()

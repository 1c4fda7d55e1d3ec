"""The security audit: CIS Docker Benchmark v1.6 checks (our own `AB-` ones where CIS has
none) over plain data — a merged compose file, `docker inspect` dicts, Dockerfile text,
hadolint's JSON — and the configured exceptions. Pure functions: the task loads inputs."""

from .containers import *  # noqa: F403 (the package is the API; its modules are how it is kept small)
from .dockerfiles import *  # noqa: F403
from .report import *  # noqa: F403

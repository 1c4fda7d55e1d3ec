"""Where things live in the repository, resolved once from this file's location."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = REPO_ROOT / "services"
COMPOSE_DIR = REPO_ROOT / "compose"
NGINX_DIR = REPO_ROOT / "nginx"
SECRETS_DIR = REPO_ROOT / "secrets"
# What this checkout remembers between runs (builds, releases, the Swarm lab, rendered stacks); ignored by git.
STATE_DIR = REPO_ROOT / ".state"
# Build inputs made on the host (wheelhouses); ignored by git, sent in the build context.
CACHE_DIR = REPO_ROOT / ".cache"
WHEELS_DIR = CACHE_DIR / "wheels"

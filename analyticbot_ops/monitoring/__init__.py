"""The monitoring overlay: Prometheus, Alertmanager and the exporters (compose/docker-compose.monitoring.yml),
their configuration and alert rules (compose/monitoring/), and what the `monitoring.*` tasks ask of them."""

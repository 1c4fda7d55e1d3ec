"""Code shared by the AnalyticBot services: health, metrics, settings, logging, the probe and the server."""

__version__ = "0.1.0"

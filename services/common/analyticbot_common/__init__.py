"""Code shared by the AnalyticBot services: health, metrics, settings and the probe."""

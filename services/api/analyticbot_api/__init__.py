"""The AnalyticBot API service."""

"""AnalyticBot Ops: the logic behind every Invoke task, testable without Invoke."""

__version__ = "0.1.0"

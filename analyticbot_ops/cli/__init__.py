"""Invoke tasks, one module per concern; tasks.py assembles them into one flat namespace.

Each task is a few lines: parse options, call the package, print the result."""

"""Scalability load-testing harness for machine-learning model services."""

__version__ = "0.1.0"

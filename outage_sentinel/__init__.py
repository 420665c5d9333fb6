"""Outage Sentinel: outage alerting for electricity distribution networks."""

__version__ = "0.1.0"

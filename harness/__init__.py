"""Dropout research harness: trains dropout networks, samples their subnetworks, compares the
ensemble with weight-scaled inference and measures co-adaptation."""

__version__ = "0.1.0"

"""Glioscope inference worker."""

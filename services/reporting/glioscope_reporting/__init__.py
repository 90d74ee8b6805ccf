"""Glioscope reporting service: report drafts, key images and PDFs."""

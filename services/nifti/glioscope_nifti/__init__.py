"""Glioscope NIfTI service: the BIDS dataset on disk and DICOM -> NIfTI conversion."""

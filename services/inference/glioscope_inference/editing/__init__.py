"""Edited tumour masks saved as new DICOM-SEG versions (the worker side of
POST /api/studies/{uid}/segmentation/versions)."""

"""Segmentation versions: the model's DICOM-SEG (version 1) and clinicians' edited masks saved as
new DICOM-SEG series by the inference worker (`inference.editing.run`)."""

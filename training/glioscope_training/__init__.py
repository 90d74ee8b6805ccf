"""Glioscope training: synthetic BraTS-like data, a compact 3-D U-Net, ONNX export, evaluation.

`glioscope_training.synth` imports without torch (numpy, scipy, nilearn only).
"""

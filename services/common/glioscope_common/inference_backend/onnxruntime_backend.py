"""onnxruntime in-process: the embedded default (`GLIOSCOPE_INFERENCE_URL=onnxruntime`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_ONNX_DTYPES: dict[str, type[np.floating]] = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxRuntimeBackend:
    """onnxruntime on the CPU (CPUExecutionProvider, all graph optimisations)."""

    # One patch at a time in-process: a 160³ patch's activations take hundreds of MB; batching
    # buys no speed on a CPU and would double the worker's peak memory.
    preferred_batch_size = 1

    def __init__(
        self,
        model_path: str | Path,
        threads: int | None = None,
        *,
        input_name: str = "image",
        output_name: str = "logits",
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Without the arena, activation buffers go back to the system after each patch.
        options.enable_cpu_mem_arena = False
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = input_name if input_name in inputs else inputs[0]
        self.output_name = output_name if output_name in outputs else outputs[0]
        input_type = next(i.type for i in self.session.get_inputs() if i.name == self.input_name)
        if input_type not in _ONNX_DTYPES:
            raise ValueError(f"{path}: input {self.input_name} is {input_type}; float or float16 expected")
        self.input_dtype = _ONNX_DTYPES[input_type]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        return self.session.run([self.output_name], {self.input_name: batch})[0].astype(np.float32, copy=False)

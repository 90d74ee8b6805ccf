"""Move test-time mirroring and the softmax into the ONNX graph of a model folder.

    python -m glioscope_training.mirror_graph --model model_repository/glioscope_unet --folder 3 --version 0.5.0

A model whose metadata asks for `flip_axes` costs the worker one more sliding-window pass per axis:
every patch travels to Triton and back once per pass (65 MB each way for a 160³ patch in float32).
This rewrites the ONNX file so that one request runs the network on the patch as it is and mirrored
along each axis, mirrors those outputs back, and returns the average of their softmax probabilities:
nnU-Net's per-patch mirroring, with half the traffic for one axis. Where the sliding window's
starts are mirror-symmetric (on the BraTS grid they are; a rounded start or an odd padding can move
one by a voxel) the result equals the earlier whole-volume mirrored pass, the Gaussian weight being
symmetric.

The metadata then says `output_type: "probabilities"` (the worker applies no activation),
`graph_flip_axes` (what the graph mirrors; for the model card) and no `flip_axes`; the Triton
configs get the new output name. The rewritten file is checked against the original with
onnxruntime on a random patch before anything is written.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUTPUT_NAME = "probabilities"
TOLERANCE = 1e-5  # max |probability difference| between the rewritten graph and the separate passes
_INT64_MIN = np.iinfo(np.int64).min


def _opset(model: onnx.ModelProto) -> int:
    return max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def _copy_nodes(graph: onnx.GraphProto, prefix: str, graph_input: str, fed_by: str) -> list[onnx.NodeProto]:
    """The graph's nodes with every intermediate tensor renamed under `prefix` and the graph input
    replaced by `fed_by`; weights (initializers) stay shared."""
    shared = {i.name for i in graph.initializer}

    def rename(name: str) -> str:
        if name == "" or name in shared:
            return name
        return fed_by if name == graph_input else prefix + name

    nodes = []
    for index, node in enumerate(graph.node):
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"node {node.name or node.op_type} has a subgraph; only plain graphs can be mirrored")
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [prefix + n for n in node.output]
        copy.name = prefix + (node.name or f"{node.op_type}_{index}")
        nodes.append(copy)
    return nodes


def mirror_in_graph(
    model: onnx.ModelProto, flip_axes: Sequence[int], output_name: str = OUTPUT_NAME
) -> onnx.ModelProto:
    """A model [N, C, X, Y, Z] -> [N, L, X, Y, Z] softmax probabilities averaged over the network's
    pass on the input and one pass per axis of `flip_axes` (0, 1, 2 = X, Y, Z) on the mirrored input,
    mirrored back. `model` must output logits over axis 1."""
    axes = [int(a) for a in flip_axes]
    if not axes or len(set(axes)) != len(axes) or not set(axes) <= {0, 1, 2}:
        raise ValueError(f"flip_axes must be distinct axes from 0, 1, 2, got {list(flip_axes)}")
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError("the model must have one input and one output")
    opset = _opset(model)
    if opset < 13:
        raise ValueError(f"opset {opset}: 13 or later needed")
    graph_input, logits = graph.input[0].name, graph.output[0]
    elem_type = logits.type.tensor_type.elem_type
    if elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise ValueError("the model's output must be float or float16")

    constants = [
        numpy_helper.from_array(np.array([-1], np.int64), "mirror/start"),
        numpy_helper.from_array(np.array([_INT64_MIN], np.int64), "mirror/end"),
        numpy_helper.from_array(np.array([-1], np.int64), "mirror/step"),
        numpy_helper.from_array(np.array([1], np.int64), "mirror/channel_axis"),
        numpy_helper.from_array(np.array(1.0 / (1 + len(axes)), np.float32), "mirror/mean_factor"),
        numpy_helper.from_array(np.zeros(5, np.int64), "mirror/zeros5"),
        numpy_helper.from_array(np.ones(5, np.int64), "mirror/ones5"),
        numpy_helper.from_array(np.array(0.0, np.float32), "mirror/zero"),
    ]
    for axis in axes:
        constants.append(numpy_helper.from_array(np.array([2 + axis], np.int64), f"mirror/axis{axis}"))

    def flip(source: str, target: str, axis: int) -> onnx.NodeProto:
        return helper.make_node(
            "Slice", [source, "mirror/start", "mirror/end", f"mirror/axis{axis}", "mirror/step"], [target],
            name=f"mirror/{target}",
        )

    def softmax(source: str, target: str) -> list[onnx.NodeProto]:
        # Elementwise over the channel axis: onnxruntime's Softmax on axis 1 of a 5-D tensor
        # transposes and took 0.4 s for a 160³ patch against 0.05 s for these five nodes.
        nodes = []
        if elem_type == TensorProto.FLOAT16:
            nodes.append(helper.make_node("Cast", [source], [target + "/float"], to=TensorProto.FLOAT))
            source = target + "/float"
        if opset >= 18:
            nodes.append(helper.make_node("ReduceMax", [source, "mirror/channel_axis"], [target + "/max"], keepdims=1))
        else:
            nodes.append(helper.make_node("ReduceMax", [source], [target + "/max"], axes=[1], keepdims=1))
        nodes += [
            helper.make_node("Sub", [source, target + "/max"], [target + "/shifted"]),
            helper.make_node("Exp", [target + "/shifted"], [target + "/exp"]),
            helper.make_node("ReduceSum", [target + "/exp", "mirror/channel_axis"], [target + "/sum"], keepdims=1),
            helper.make_node("Div", [target + "/exp", target + "/sum"], [target]),
        ]
        return nodes

    nodes = _copy_nodes(graph, "pass0/", graph_input, graph_input)
    nodes += softmax("pass0/" + logits.name, "pass0/probabilities")
    passes = ["pass0/probabilities"]
    input_type = graph.input[0].type.tensor_type.elem_type
    for n, axis in enumerate(axes, start=1):
        prefix = f"pass{n}/"
        nodes.append(flip(graph_input, prefix + "flipped", axis))
        # Orders the passes: the input of this pass waits for the previous pass's output (plus one of
        # its values times zero). As independent branches onnxruntime held more activations at once:
        # +577 MB for a 160³ patch against +422 MB (docs/performance.md, sixth session).
        nodes += [
            helper.make_node("Slice", [passes[-1], "mirror/zeros5", "mirror/ones5"], [prefix + "after"]),
            helper.make_node("Mul", [prefix + "after", "mirror/zero"], [prefix + "zero"]),
        ]
        if input_type != TensorProto.FLOAT:
            nodes.append(helper.make_node("Cast", [prefix + "zero"], [prefix + "zero_cast"], to=input_type))
        zero = prefix + "zero" if input_type == TensorProto.FLOAT else prefix + "zero_cast"
        nodes.append(helper.make_node("Add", [prefix + "flipped", zero], [prefix + "input"]))
        nodes += _copy_nodes(graph, prefix, graph_input, prefix + "input")
        nodes += softmax(prefix + logits.name, prefix + "mirrored_probabilities")
        nodes.append(flip(prefix + "mirrored_probabilities", prefix + "probabilities", axis))
        passes.append(prefix + "probabilities")
    nodes.append(helper.make_node("Sum", passes, ["mirror/sum"]))
    mean = output_name if elem_type == TensorProto.FLOAT else "mirror/mean"
    nodes.append(helper.make_node("Mul", ["mirror/sum", "mirror/mean_factor"], [mean]))
    if elem_type == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", [mean], [output_name], to=TensorProto.FLOAT16))

    output = onnx.ValueInfoProto()
    output.CopyFrom(logits)
    output.name = output_name
    new_graph = helper.make_graph(
        nodes, graph.name, list(graph.input), [output], [*graph.initializer, *constants],
        doc_string=f"{graph.doc_string}\nTest-time mirroring along {axes} and softmax inside (glioscope_training.mirror_graph)",
    )
    fused = helper.make_model(new_graph, opset_imports=list(model.opset_import), producer_name="glioscope mirror_graph")
    fused.ir_version = model.ir_version
    onnx.checker.check_model(fused)
    return fused


def reference_probabilities(session, image: np.ndarray, flip_axes: Sequence[int]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What the worker computed with separate passes: softmax of each pass, mirrored back, averaged."""
    name = session.get_inputs()[0].name

    def probabilities(x: np.ndarray) -> np.ndarray:
        logits = session.run(None, {name: np.ascontiguousarray(x)})[0].astype(np.float32)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    total = probabilities(image)
    for axis in flip_axes:
        total += np.flip(probabilities(np.flip(image, 2 + axis)), 2 + axis)
    return total / (1 + len(flip_axes))


def check(original: Path, fused: onnx.ModelProto, flip_axes: Sequence[int], seed: int = 0) -> float:
    """Max |difference| between the rewritten graph and the separate passes on a random patch."""
    import onnxruntime as ort

    plain = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    rewritten = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = plain.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    image = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    expected = reference_probabilities(plain, image, flip_axes)
    got = rewritten.run(None, {inp.name: image})[0].astype(np.float32)
    return float(np.max(np.abs(expected - got)))


def rename_triton_output(config_text: str, old: str, new: str) -> str:
    """The Triton config with output `old` renamed `new` (inside the `output [...]` block only)."""
    block = re.search(r"\boutput\s*\[", config_text)
    if block is None:
        raise ValueError("no output block in the Triton config")
    depth, end = 1, block.end()
    while depth:  # the block's closing bracket (dims lists nest inside it)
        if end >= len(config_text):
            raise ValueError("unbalanced output block in the Triton config")
        depth += {"[": 1, "]": -1}.get(config_text[end], 0)
        end += 1
    end -= 1
    head, body, tail = config_text[: block.end()], config_text[block.end() : end + 1], config_text[end + 1 :]
    renamed, count = re.subn(r'name:\s*"%s"' % re.escape(old), f'name: "{new}"', body)
    if count != 1:
        raise ValueError(f"output {old!r} not found in the Triton config")
    return head + renamed + tail


def convert(model_dir: Path, version: str | None = None, folder: str = "") -> dict:
    """Rewrite version folder `folder` of `model_dir` (a Triton model folder; "": one metadata.json at
    its root) in place; returns the new metadata. `onnx_file` is relative to `model_dir`."""
    meta_path = model_dir / folder / "metadata.json"
    meta = json.loads(meta_path.read_text())
    flip_axes = [int(a) for a in meta.get("flip_axes", [])]
    if meta.get("output_type", "softmax") != "softmax" or not flip_axes:
        raise SystemExit(
            f"{model_dir}: output_type {meta.get('output_type')!r}, flip_axes {flip_axes}: "
            "only a softmax model with flip_axes can be rewritten (already done?)"
        )
    onnx_path = model_dir / meta.get("onnx_file", "1/model.onnx")
    original = onnx.load(str(onnx_path))
    old_output = original.graph.output[0].name
    fused = mirror_in_graph(original, flip_axes)
    difference = check(onnx_path, fused, flip_axes)
    if difference > TOLERANCE:
        raise SystemExit(f"the rewritten graph differs from separate passes by {difference:.2e} > {TOLERANCE}")

    configs = [p for p in [model_dir / "config.pbtxt", *sorted((model_dir / "configs").glob("*.pbtxt"))] if p.exists()]
    new_configs = {p: rename_triton_output(p.read_text(), old_output, OUTPUT_NAME) for p in configs}
    meta = {
        **meta,
        "output_name": OUTPUT_NAME,
        "output_type": "probabilities",
        "flip_axes": [],
        "graph_flip_axes": flip_axes,
    }
    if version:
        meta["version"] = meta["algorithm_version"] = version
    with tempfile.NamedTemporaryFile(dir=onnx_path.parent, suffix=".onnx", delete=False) as tmp:
        tmp.write(fused.SerializeToString())
    Path(tmp.name).replace(onnx_path)
    for path, text in new_configs.items():
        path.write_text(text)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"rewrote {onnx_path} (mirroring along {flip_axes} and softmax inside; max |diff| {difference:.1e}), "
          f"{len(configs)} Triton config(s) and {meta_path}")
    return meta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="model_repository/glioscope_unet", help="the model folder (metadata.json, configs)")
    ap.add_argument("--folder", default="", help="the version folder (1, 2, ...) whose metadata.json and ONNX file to rewrite")
    ap.add_argument("--version", default=None, help="new model version (metadata version and algorithm_version)")
    args = ap.parse_args(argv)
    convert(Path(args.model), args.version, args.folder)


if __name__ == "__main__":
    main()

"""A small interpreter of TensorFlow.js graph models (``model.json`` + ``.bin``) in PyTorch.

A tfjs *graph model* (``"format": "graph-model"``) holds a TensorFlow ``GraphDef`` as JSON
(``modelTopology.node``: name, op, inputs, attributes) and a weights manifest (the format
:func:`twinshot.faces.weights.read_weight_groups` reads) whose tensors are the graph's
``Const`` nodes. :func:`read_graph_model` reads both once (at conversion time);
:func:`write_graph` stores the nodes, reduced to the attributes the interpreter uses, in the
header of a safetensors file beside the tensors, and :func:`load_graph` builds a
:class:`TfjsGraph` from it at run time.

:class:`TfjsGraph` runs the nodes in topological order on NHWC tensors, as TensorFlow does;
convolutions see a ``permute`` view (channels-last memory, so no copy) and TensorFlow's
"SAME" padding (the odd pixel after). Supported ops (:data:`OPS`): the fused convolutions
the tfjs converter emits (``_FusedConv2D``, ``FusedDepthwiseConv2dNative`` with ``BiasAdd``
and ``Relu``/``Relu6``/``Prelu``), their plain forms, element-wise arithmetic, ``Pad``,
``MatMul``, ``Reshape``, ``Squeeze``, ``Sum``/``Mean`` and ``ConcatV2``; anything else is
refused when the graph is built, with the op's name.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from twinshot.errors import TwinshotError
from twinshot.faces.ops import pad_same
from twinshot.faces.weights import StoredTensor, load_stored, read_weight_groups, write_packaged

#: Attributes kept from the GraphDef (the rest, e.g. ``T``, ``data_format`` NHWC, are implied).
_ATTRS = ("strides", "padding", "dilations", "fused_ops", "squeeze_dims", "keep_dims", "transpose_a", "transpose_b",
          "shape", "epsilon", "num_args")


def _attr_value(v: dict[str, Any]) -> Any:
    """A GraphDef attribute value as plain JSON (strings base64-decoded, ints as ints)."""
    if "list" in v:
        lst = v["list"]
        if "s" in lst:
            return [base64.b64decode(s).decode() for s in lst["s"]]
        return [int(i) for i in lst.get("i", [])]
    if "s" in v:
        return base64.b64decode(v["s"]).decode()
    if "i" in v:
        return int(v["i"])
    if "b" in v:
        return bool(v["b"])
    if "f" in v:
        return float(v["f"])
    if "shape" in v:
        return [int(d.get("size", -1)) for d in v["shape"].get("dim", [])]
    return None


def read_graph_model(model_json: str | Path) -> tuple[list[dict[str, Any]], dict[str, StoredTensor]]:
    """Read a tfjs graph model: its non-constant nodes (``{"name", "op", "inputs",
    "attrs"}``, GraphDef order) and its constant tensors (TensorFlow layout).

    Raises:
        TwinshotError: not a graph model, a constant with inline data (unsupported), or
            weights that do not match the manifest.
    """
    model_json = Path(model_json)
    meta = json.loads(model_json.read_text())
    if meta.get("format") != "graph-model":
        raise TwinshotError(f"{model_json}: not a tfjs graph model (format {meta.get('format')!r})")
    tensors = read_weight_groups(meta["weightsManifest"], model_json.parent, str(model_json))
    nodes = []
    for n in meta["modelTopology"]["node"]:
        if n["op"] == "Const":
            if n["name"] not in tensors:
                raise TwinshotError(f"{model_json}: constant {n['name']} is not in the weights manifest")
            continue
        attrs = {k: _attr_value(v) for k, v in n.get("attr", {}).items() if k in _ATTRS}
        nodes.append({"name": n["name"], "op": n["op"], "inputs": list(n.get("input", [])), "attrs": attrs})
    return nodes, tensors


def write_graph(nodes: list[dict[str, Any]], tensors: dict[str, StoredTensor], output: str, path: str | Path) -> None:
    """Store a graph (nodes in the header, constants as tensors) as one safetensors file."""
    write_packaged(tensors, path, {"graph": json.dumps(nodes, separators=(",", ":")), "output": output})


def load_graph(path: str | Path) -> "TfjsGraph":
    """The :class:`TfjsGraph` stored by :func:`write_graph` in ``path``."""
    path = Path(path)
    if not path.is_file():
        raise TwinshotError(f"{path}: the packaged graph is missing")
    with safe_open(str(path), "np") as f:
        header = f.metadata() or {}
    if "graph" not in header:
        raise TwinshotError(f"{path}: no graph in its header (not written by write_graph)")
    consts = {name: torch.from_numpy(np.ascontiguousarray(t.dequantize())) for name, t in load_stored(path).items()}
    return TfjsGraph(json.loads(header["graph"]), consts, header["output"])


def _conv(x: torch.Tensor, w: torch.Tensor, attrs: dict[str, Any], groups: int) -> torch.Tensor:
    """NHWC ``x`` through a torch-layout filter ``w`` with TensorFlow's strides/padding."""
    s = attrs.get("strides", [1, 1, 1, 1])
    d = attrs.get("dilations", [1, 1, 1, 1])
    if s[1] != s[2] or d[1] != d[2] or d[1] != 1:
        raise TwinshotError(f"unsupported conv strides {s} / dilations {d}")
    xc = x.permute(0, 3, 1, 2)
    if attrs.get("padding", "VALID") == "SAME":
        if w.shape[-1] != w.shape[-2]:
            raise TwinshotError(f"unsupported non-square filter {tuple(w.shape)} with SAME padding")
        xc = pad_same(xc, w.shape[-1], s[1])
    elif attrs.get("padding") != "VALID":
        raise TwinshotError(f"unsupported padding {attrs.get('padding')!r}")
    return F.conv2d(xc, w, None, s[1], 0, 1, groups).permute(0, 2, 3, 1)


_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul, "RealDiv": torch.div,
    "Maximum": torch.maximum, "Minimum": torch.minimum,
}
_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": F.relu, "Relu6": F.relu6, "Abs": torch.abs, "Square": torch.square, "Rsqrt": torch.rsqrt,
    "Sqrt": torch.sqrt, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Identity": lambda t: t,
    "Softmax": lambda t: torch.softmax(t, -1),
}
#: The ops :class:`TfjsGraph` runs.
OPS = frozenset({"Placeholder", "_FusedConv2D", "FusedDepthwiseConv2dNative", "Conv2D", "DepthwiseConv2dNative",
                 "BiasAdd", "Pad", "_Prelu", "MatMul", "_FusedMatMul", "Reshape", "Squeeze", "Sum", "Mean", "ConcatV2",
                 *_BINARY, *_UNARY})


def _fuse_prelu(order: list[dict[str, Any]], consts: dict[str, torch.Tensor], output: str) -> list[dict[str, Any]]:
    """Replace the PReLU that TensorFlow graphs spell out element-wise,
    ``Add(Relu(x) or x, Mul(Sub(x, Abs(x)), alpha))``, by one ``_Prelu`` node computing
    ``x if x >= 0 else x * k`` (``k = 2 alpha``, or ``1 + 2 alpha`` when the first term is
    ``x`` itself). The result is the same in float32, bit for bit, where ``x >= 0`` or the
    first term is ``Relu(x)`` (``x - |x|`` is ``2x`` exactly); it saves four passes over the
    tensor. ``k`` is added to ``consts`` as ``<alpha>#prelu``."""
    by_name = {n["name"]: n for n in order}
    consumers: dict[str, int] = {}
    for n in order:
        for i in n["inputs"]:
            consumers[i] = consumers.get(i, 0) + 1

    def node(ref: str, op: str) -> dict[str, Any] | None:
        n = by_name.get(ref)
        return n if n is not None and n["op"] == op else None

    replaced: dict[str, dict[str, Any]] = {}
    dropped: set[str] = set()
    for n in order:
        if n["op"] not in ("Add", "AddV2") or len(n["inputs"]) != 2:
            continue
        first, second = n["inputs"]
        mul = node(second, "Mul")
        sub = node(mul["inputs"][0], "Sub") if mul else None
        absn = node(sub["inputs"][1], "Abs") if sub else None
        if not (mul and sub and absn) or mul["inputs"][1] not in consts:
            continue
        x = sub["inputs"][0]
        if absn["inputs"][0] != x:
            continue
        relu = node(first, "Relu")
        if relu is not None and relu["inputs"][0] == x:
            k = 2 * consts[mul["inputs"][1]]
            inner = [relu["name"], mul["name"], sub["name"], absn["name"]]
        elif first == x:
            k = 1 + 2 * consts[mul["inputs"][1]]
            inner = [mul["name"], sub["name"], absn["name"]]
        else:
            continue
        # the intermediate nodes must feed nothing else (Relu, Mul, Sub: one consumer; Abs: the Sub)
        if any(consumers.get(m, 0) != 1 or m == output for m in inner):
            continue
        kname = mul["inputs"][1] + "#prelu"
        consts[kname] = k
        replaced[n["name"]] = {"name": n["name"], "op": "_Prelu", "inputs": [x, kname], "attrs": {}}
        dropped.update(inner)
    return [replaced.get(n["name"], n) for n in order if n["name"] not in dropped]


class TfjsGraph(nn.Module):
    """A tfjs graph model as a torch module: ``(B, H, W, C)`` NHWC in (the single
    ``Placeholder``), the ``output`` node's tensor out.

    Args:
        nodes: the non-constant nodes of :func:`read_graph_model`.
        consts: the constants by node name (TensorFlow layout); conv filters are converted
            to torch layout once here.
        output: the name of the node to return.
    """

    def __init__(self, nodes: list[dict[str, Any]], consts: dict[str, torch.Tensor], output: str) -> None:
        super().__init__()
        by_name = {n["name"]: n for n in nodes}
        unknown = sorted({n["op"] for n in nodes} - OPS)
        if unknown:
            raise TwinshotError(f"tfjs graph: unsupported op(s) {', '.join(unknown)}")
        inputs = [n["name"] for n in nodes if n["op"] == "Placeholder"]
        if len(inputs) != 1:
            raise TwinshotError(f"tfjs graph: expected one Placeholder input, found {len(inputs)}")
        if output not in by_name:
            raise TwinshotError(f"tfjs graph: no node named {output!r}")
        self.input_name, self.output = inputs[0], output
        self.order: list[dict[str, Any]] = []
        state: dict[str, int] = {}

        def visit(name: str) -> None:  # depth-first topological sort from the output
            stack = [(name, False)]
            while stack:
                cur, done = stack.pop()
                if cur in consts or state.get(cur) == 2:
                    continue
                if done:
                    state[cur] = 2
                    self.order.append(by_name[cur])
                    continue
                if cur not in by_name:
                    raise TwinshotError(f"tfjs graph: input {cur!r} is neither a node nor a constant")
                state[cur] = 1
                stack.append((cur, True))
                for i in reversed(by_name[cur]["inputs"]):
                    src = i.split(":")[0].lstrip("^")
                    if state.get(src) != 2 and src not in consts:
                        stack.append((src, False))

        visit(output)
        consts = dict(consts)
        self.order = _fuse_prelu(self.order, consts, output)
        #: for each step, the computed tensors no later node reads (dropped then, to bound memory)
        last_use: dict[str, int] = {}
        for k, n in enumerate(self.order):
            for i in n["inputs"]:
                last_use[i.split(":")[0]] = k
        self._free: list[list[str]] = [[] for _ in self.order]
        for name, k in last_use.items():
            if name in by_name and name != output:
                self._free[k].append(name)
        self._slots: dict[str, str] = {}
        used = {i.split(":")[0] for n in self.order for i in n["inputs"]}
        for k, name in enumerate(sorted(c for c in consts if c in used)):
            self._slots[name] = f"c{k}"
            self.register_buffer(f"c{k}", self._prepare(name, consts[name], nodes))

    @staticmethod
    def _prepare(name: str, t: torch.Tensor, nodes: list[dict[str, Any]]) -> torch.Tensor:
        """Conv filters in torch layout; everything else as stored."""
        for n in nodes:
            if len(n["inputs"]) > 1 and n["inputs"][1] == name:
                if n["op"] in ("_FusedConv2D", "Conv2D"):
                    return t.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
                if n["op"] in ("FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
                    kh, kw, c, m = t.shape
                    return t.permute(2, 3, 0, 1).reshape(c * m, 1, kh, kw).contiguous()  # (kh, kw, C, M) -> (C*M, 1, kh, kw)
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> the output node's tensor (e.g. ``(B, D)`` embeddings)."""
        env: dict[str, torch.Tensor] = {self.input_name: x}

        def get(ref: str) -> torch.Tensor:
            name = ref.split(":")[0]
            slot = self._slots.get(name)
            return getattr(self, slot) if slot is not None else env[name]

        for step, n in enumerate(self.order):
            op, a, ins = n["op"], n["attrs"], n["inputs"]
            if op == "Placeholder":
                continue
            if op in _BINARY:
                y = _BINARY[op](get(ins[0]), get(ins[1]))
            elif op in _UNARY:
                y = _UNARY[op](get(ins[0]))
            elif op in ("_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
                w = get(ins[1])
                h = get(ins[0])
                groups = h.shape[3] if "Depthwise" in op else 1
                y = _conv(h, w, a, groups)
                y = self._fused(y, a.get("fused_ops", []), [get(i) for i in ins[2:]], n["name"])
            elif op == "_Prelu":  # see _fuse_prelu
                h = get(ins[0])
                y = torch.where(h >= 0, h, h * get(ins[1]))
            elif op == "_FusedMatMul":
                y = self._matmul(get(ins[0]), get(ins[1]), a)
                y = self._fused(y, a.get("fused_ops", []), [get(i) for i in ins[2:]], n["name"])
            elif op == "MatMul":
                y = self._matmul(get(ins[0]), get(ins[1]), a)
            elif op == "BiasAdd":
                y = get(ins[0]) + get(ins[1])
            elif op == "Pad":
                p = [int(v) for v in get(ins[1]).flatten().tolist()]
                y = F.pad(get(ins[0]), [v for i in reversed(range(len(p) // 2)) for v in (p[2 * i], p[2 * i + 1])])
            elif op == "Reshape":
                y = get(ins[0]).reshape([int(v) for v in get(ins[1]).tolist()])
            elif op == "Squeeze":
                y = get(ins[0])
                for dim in sorted(a.get("squeeze_dims") or [i for i, s in enumerate(y.shape) if s == 1], reverse=True):
                    y = y.squeeze(dim)
            elif op in ("Sum", "Mean"):
                dims = [int(v) for v in get(ins[1]).flatten().tolist()]
                fn = torch.sum if op == "Sum" else torch.mean
                y = fn(get(ins[0]), dim=dims, keepdim=bool(a.get("keep_dims", False)))
            elif op == "ConcatV2":
                y = torch.cat([get(i) for i in ins[:-1]], int(get(ins[-1])))
            else:  # pragma: no cover - refused in __init__
                raise TwinshotError(f"tfjs graph: unsupported op {op}")
            env[n["name"]] = y
            for name in self._free[step]:
                env.pop(name, None)
        return env[self.output]

    def extra_repr(self) -> str:
        return f"{len(self.order)} nodes, input {self.input_name!r}, output {self.output!r}"

    @staticmethod
    def _matmul(x: torch.Tensor, w: torch.Tensor, a: dict[str, Any]) -> torch.Tensor:
        if a.get("transpose_a"):
            x = x.transpose(-1, -2)
        if a.get("transpose_b"):
            w = w.transpose(-1, -2)
        return x @ w

    @staticmethod
    def _fused(y: torch.Tensor, ops: list[str], args: list[torch.Tensor], name: str) -> torch.Tensor:
        """The fused ops of a tfjs ``_Fused*`` node: ``BiasAdd`` then an activation."""
        k = 0
        for op in ops:
            if op == "BiasAdd":
                y, k = y + args[k], k + 1
            elif op == "Relu":
                y = F.relu(y)
            elif op == "Relu6":
                y = F.relu6(y)
            elif op == "Prelu":
                y, k = torch.where(y >= 0, y, y * args[k]), k + 1
            else:
                raise TwinshotError(f"tfjs graph: {name}: unsupported fused op {op}")
        return y

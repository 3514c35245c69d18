"""Experiment helper (docs/applications.md, faces: "dlib's float weights"): a reader of dlib's
DNN serialisation (``dlib::serialize(net, out)``, the ``.dat`` files of dlib-models), for the
layer types of dlib's ResNet face descriptor, and the mapping of its weights onto
``face-resnet`` (:meth:`twinshot.faces.resnet.FaceResNet.load_tensors`). Not part of the
package: dlib's float weights did not beat face-api's uint8 ones on LFW, so they do not ship.

dlib writes a network from the loss layer inwards: ``add_loss_layer`` (its version, the loss's
details, then its subnetwork); each wrapper (``add_layer`` version 2, the input-level
``add_layer`` version 3, ``add_tag_layer`` and ``add_skip_layer`` version 1) writes its
version *then* its subnetwork, so the file holds the loss, a run of wrapper versions (outer
to inner), the input layer, and then, from the input outwards, each layer's details with the
wrapper's state after it (3 bools, the cached tensors; version 3 adds ``grad_final`` and the
sample expansion factor). Primitives (``dlib/serialize.h``):

* integers: one byte ``n | 0x80 if negative`` then ``n`` little-endian magnitude bytes;
* floats and doubles: the integers ``mantissa`` and ``exponent`` (value ``m * 2**e``);
* strings: the length, then the bytes; bools: the byte ``'0'`` or ``'1'``;
* a tensor: version 2, ``num_samples, k, nr, nc``, then raw little-endian float32 values;
  an alias tensor (a view into the layer's one ``params`` tensor): version 1 and 4 sizes.

:func:`read_dlib_net` returns the layers in forward order (input first) as :class:`DlibLayer`
records: ``con_`` params hold the filters ``(out, in, kh, kw)`` then the biases; ``affine_``
gamma then beta; ``fc_`` weights ``(in, out)`` (``x @ w``), then the biases if any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twinshot.errors import TwinshotError

#: the details record of each layer type: the fields after its name, in order (``t``: tensor,
#: ``a``: alias tensor, ``i``: integer, ``f``: float, ``b``: bool).
RECORDS = {
    "input_rgb_image_sized": ("avg_red:f", "avg_green:f", "avg_blue:f", "nr:i", "nc:i"),
    "con_4": ("params:t", "num_filters:i", "nr:i", "nc:i", "stride_y:i", "stride_x:i", "padding_y:i", "padding_x:i",
              "filters:a", "biases:a", "lr_mult:f", "wd_mult:f", "bias_lr_mult:f", "bias_wd_mult:f"),
    "affine_": ("params:t", "gamma:a", "beta:a", "mode:i"),
    "relu_": (),
    "add_prev_": (),
    "max_pool_2": ("nr:i", "nc:i", "stride_y:i", "stride_x:i", "padding_y:i", "padding_x:i"),
    "avg_pool_2": ("nr:i", "nc:i", "stride_y:i", "stride_x:i", "padding_y:i", "padding_x:i"),
    "fc_2": ("num_outputs:i", "num_inputs:i", "params:t", "weights:a", "biases:a", "bias_mode:i",
             "lr_mult:f", "wd_mult:f", "bias_lr_mult:f", "bias_wd_mult:f"),
    "loss_metric_2": ("margin:f", "dist_thresh:f"),
}


@dataclass(frozen=True)
class DlibLayer:
    """One layer's details: ``kind`` (the record name, e.g. ``"con_4"``) and its ``fields``
    (integers, floats, ``(n, k, nr, nc)`` tuples for alias tensors, float32 arrays for tensors)."""

    kind: str
    fields: dict = field(default_factory=dict)

    def view(self, alias: str) -> np.ndarray:
        """The slice of ``params`` an alias tensor names, shaped ``(n, k, nr, nc)`` with the
        size-1 trailing dimensions dropped: ``filters`` ``(out, in, kh, kw)``, ``biases``,
        ``gamma``, ``beta`` ``(C,)``, ``weights`` ``(in, out)``. Aliases follow each other in
        ``params`` in their serialised order."""
        names = [n.split(":")[0] for n in RECORDS[self.kind] if n.endswith(":a")]
        offset = 0
        for name in names:
            shape = tuple(self.fields[name])
            size = int(np.prod(shape))
            if name == alias:
                values = self.fields["params"][offset : offset + size].reshape(shape)
                while values.ndim > 1 and values.shape[-1] == 1:
                    values = values.reshape(values.shape[:-1])
                return values.reshape(-1) if values.shape[0] == 1 else values
            offset += size
        raise KeyError(alias)


class _Stream:
    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.pos, self.source = data, 0, source

    def fail(self, what: str) -> TwinshotError:
        return TwinshotError(f"{self.source}: byte {self.pos}: {what}")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("unexpected end of file")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self) -> int:
        head = self.take(1)[0]
        n = head & 0x0F
        if n > 8 or head & 0x70:
            raise self.fail(f"not a dlib integer (header byte {head:#04x})")
        value = int.from_bytes(self.take(n), "little")
        return -value if head & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent >= 32000:  # float_details' codes for inf / -inf / nan
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(mantissa) * 2.0 ** exponent

    def string(self) -> str:
        n = self.integer()
        if not 0 <= n < 256:
            raise self.fail(f"implausible string length {n}")
        return self.take(n).decode("ascii", errors="replace")

    def boolean(self) -> bool:
        b = self.take(1)
        if b not in (b"0", b"1"):
            raise self.fail(f"not a dlib bool: {b!r}")
        return b == b"1"

    def tensor(self) -> np.ndarray:
        if (v := self.integer()) != 2:
            raise self.fail(f"tensor version {v}, expected 2")
        shape = [self.integer() for _ in range(4)]
        n = int(np.prod(shape))
        return np.frombuffer(self.take(4 * n), "<f4").astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        if (v := self.integer()) != 1:
            raise self.fail(f"alias tensor version {v}, expected 1")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]

    def record(self) -> DlibLayer:
        kind = self.string()
        if kind not in RECORDS:
            raise self.fail(f"unsupported dlib layer {kind!r} (this reader knows {', '.join(RECORDS)})")
        read = {"t": self.tensor, "a": self.alias, "i": self.integer, "f": self.real, "b": self.boolean}
        fields = {}
        for spec in RECORDS[kind]:
            name, kind_code = spec.split(":")
            fields[name] = read[kind_code]()
        return DlibLayer(kind, fields)


def read_dlib_net(path: str | Path) -> tuple[DlibLayer, list[DlibLayer]]:
    """The loss layer and the layers from the input outwards (tag and skip layers, which hold
    nothing, are left out) of a dlib network file.

    Raises:
        TwinshotError: ``"<path>: byte N: ..."`` on anything this reader does not know, or
            if bytes are left over.
    """
    s = _Stream(Path(path).read_bytes(), str(path))
    if (v := s.integer()) != 1:
        raise s.fail(f"add_loss_layer version {v}, expected 1")
    loss = s.record()
    versions = []
    while s.data[s.pos] == 0x01 and s.data[s.pos + 1] in (1, 2, 3):  # wrapper versions, outer to inner
        versions.append(s.integer())
        if versions[-1] == 3:
            break
    if not versions or versions[-1] != 3:
        raise s.fail("expected the input-level add_layer (version 3) after the wrapper versions")
    layers = [s.record()]  # the input layer
    for v in reversed(versions):
        if v == 1:  # add_tag_layer / add_skip_layer: nothing after the subnetwork
            continue
        layers.append(s.record())
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, outputs disabled
            s.boolean()
        for _ in range(3):  # x_grad, cached_output, params_grad (v2) / grad_final (v3)
            s.tensor()
        if v == 3:
            s.integer()  # _sample_expansion_factor
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} bytes left over")
    return loss, layers


def face_resnet_tensors(layers: list[DlibLayer]) -> dict[str, np.ndarray]:
    """The float32 tensors of dlib's ResNet face descriptor (the layers :func:`read_dlib_net`
    returns for ``dlib_face_recognition_resnet_model_v1.dat``), named and laid out as face-api's
    ``face_recognition`` net, which the port loads: ``<block>/conv{1,2}/conv/filters`` ``(kh, kw,
    in, out)``, ``.../conv/bias``, ``.../scale/weights`` (dlib's affine gamma), ``.../scale/biases``
    (beta), ``conv32_down/...`` for the stem and ``fc`` ``(256, 128)``.

    dlib scales its input as ``(pixel - mean) / 256``, the port (as face-api) as
    ``(pixel - mean) / 255``; the stem's filters are multiplied by 255/256 here so the port
    computes dlib's descriptor.

    Raises:
        TwinshotError: if the layers are not that network's (kinds, order or shapes).
    """
    from twinshot.faces.resnet import BLOCKS, MEAN_RGB

    kinds = [layer.kind for layer in layers]
    expected = ["input_rgb_image_sized", "con_4", "affine_", "relu_", "max_pool_2"]
    for _name, _cin, _cout, down in BLOCKS:
        expected += ["con_4", "affine_", "relu_", "con_4", "affine_"] + (["avg_pool_2"] if down else []) + ["add_prev_", "relu_"]
    expected += ["avg_pool_2", "fc_2"]
    if kinds != expected:
        raise TwinshotError(f"not dlib's ResNet face descriptor: layers {kinds[:8]}... ({len(kinds)}), expected {len(expected)}")
    source = layers[0].fields
    if [source["avg_red"], source["avg_green"], source["avg_blue"]] != [float(np.float32(m)) for m in MEAN_RGB] or source["nr"] != 150:
        raise TwinshotError(f"unexpected input layer {source} (the port subtracts {MEAN_RGB} from 150x150 chips)")
    convs = [layer for layer in layers if layer.kind == "con_4"]
    affines = [layer for layer in layers if layer.kind == "affine_"]
    prefixes = ["conv32_down"] + [f"{name}/{c}" for name, *_ in BLOCKS for c in ("conv1", "conv2")]
    out: dict[str, np.ndarray] = {}
    for i, (prefix, con, affine) in enumerate(zip(prefixes, convs, affines)):
        filters = con.view("filters") * (np.float32(255.0 / 256.0) if i == 0 else np.float32(1.0))
        out[f"{prefix}/conv/filters"] = np.ascontiguousarray(filters.transpose(2, 3, 1, 0), dtype=np.float32)
        out[f"{prefix}/conv/bias"] = con.view("biases").copy()
        out[f"{prefix}/scale/weights"] = affine.view("gamma").copy()
        out[f"{prefix}/scale/biases"] = affine.view("beta").copy()
    fc = layers[-1]
    if fc.fields["bias_mode"] != 1 or fc.fields["num_inputs"] != 256 or fc.fields["num_outputs"] != 128:
        raise TwinshotError(f"unexpected final layer {fc.kind}: {fc.fields['num_inputs']} -> {fc.fields['num_outputs']}, bias mode {fc.fields['bias_mode']}")
    out["fc"] = fc.view("weights").copy()
    return out

"""One weight loader for the face-api nets (recognition, tiny detector, 68 landmarks).

The npm package stores each net as ``<name>-weights_manifest.json`` + ``<name>.bin``: the
manifest lists tensors in file order (``name``, ``shape`` in TensorFlow layout, ``dtype``
float32, and for most of them ``quantization: {dtype: uint8, scale, min}``). A quantised
tensor takes one byte per value and is dequantised as ``q * scale + min``; a tensor with no
quantisation entry is plain little-endian float32 (4 bytes per value).

:func:`read_face_api` reads that format (used once, by ``scripts/convert_face_api.py``);
:func:`write_packaged` stores the tensors *still quantised* (``<name>`` uint8 plus
``<name>::scale_min`` float64 ``(2,)``, or ``<name>`` float32) as safetensors, and
:func:`load_packaged` dequantises them at load time exactly as tfjs does. Tensors come back
in TensorFlow layout (conv filters HWIO); :func:`hwio_to_oihw` and
:func:`depthwise_to_torch` convert them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from twinshot.errors import TwinshotError

#: Where the converted weights live inside the package.
PACKAGED_DIR = Path(__file__).resolve().parent / "face_api"
#: The face-api nets twinshot uses (file stem in the npm package -> packaged file stem).
NETS = {
    "face_recognition_model": "face_recognition",
    "tiny_face_detector_model": "tiny_face_detector",
    "face_landmark_68_model": "face_landmark_68",
}
_SCALE_MIN = "::scale_min"


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as the package stores it: ``values`` uint8 (quantised) or float32,
    in TensorFlow layout, and ``scale``/``minimum`` when quantised."""

    values: np.ndarray
    scale: float | None = None
    minimum: float | None = None

    def dequantize(self) -> np.ndarray:
        """float32 values: ``q * scale + min`` computed in float64 then rounded to float32
        (as tfjs does in JavaScript numbers); an int32 tensor stays int32."""
        if self.scale is None:
            return self.values if self.values.dtype == np.int32 else self.values.astype(np.float32)
        return (self.values.astype(np.float64) * self.scale + self.minimum).astype(np.float32)


def read_face_api(manifest: str | Path) -> dict[str, StoredTensor]:
    """Read a face-api ``*-weights_manifest.json`` and the ``.bin`` file(s) beside it.

    Raises:
        TwinshotError: if the bytes do not match the manifest exactly.
    """
    manifest = Path(manifest)
    return read_weight_groups(json.loads(manifest.read_text()), manifest.parent, str(manifest))


def read_weight_groups(groups: list[dict], folder: Path, source: str) -> dict[str, StoredTensor]:
    """Read the tensors of a tfjs weights manifest (a list of ``{"paths", "weights"}``
    groups, as in a face-api manifest or a graph model's ``weightsManifest``) from the
    ``.bin`` files in ``folder``: uint8- or float16-quantised, float32 or int32 tensors.

    Raises:
        TwinshotError: ``"<source>: ..."`` if the bytes do not match the manifest exactly.
    """
    out: dict[str, StoredTensor] = {}
    for group in groups:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = tuple(int(s) for s in w["shape"])
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q and q["dtype"] == "float16":  # stored as half floats, computed in float32
                values = np.frombuffer(data, "<f2", n, offset).reshape(shape).copy()
                out[w["name"]] = StoredTensor(values)
                offset += 2 * n
            elif q:
                if q["dtype"] != "uint8":
                    raise TwinshotError(f"{source}: {w['name']}: unsupported quantisation {q['dtype']}")
                values = np.frombuffer(data, np.uint8, n, offset).reshape(shape).copy()
                out[w["name"]] = StoredTensor(values, float(q["scale"]), float(q["min"]))
                offset += n
            else:
                if w["dtype"] not in ("float32", "int32"):
                    raise TwinshotError(f"{source}: {w['name']}: unsupported dtype {w['dtype']}")
                dtype = "<f4" if w["dtype"] == "float32" else "<i4"
                values = np.frombuffer(data, dtype, n, offset).reshape(shape).copy()
                out[w["name"]] = StoredTensor(values)
                offset += 4 * n
        if offset != len(data):
            raise TwinshotError(f"{source}: read {offset} bytes of {len(data)}")
    return out


def write_packaged(tensors: dict[str, StoredTensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Store tensors still quantised as safetensors (see the module docstring); ``metadata``
    adds string entries to the file's header."""
    flat: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        flat[name] = np.ascontiguousarray(t.values)
        if t.scale is not None:
            flat[name + _SCALE_MIN] = np.array([t.scale, t.minimum], dtype=np.float64)
    save_file(flat, str(path), metadata={"format": "twinshot-face-api/1", **(metadata or {})})


def write_npm_provenance(package: Path, out_dir: Path, files: dict[str, str], converted_by: str, **extra: object) -> None:
    """Copy an unpacked npm ``package``'s LICENSE into ``out_dir`` and write ``PROVENANCE.json``
    there: the package's name, version, licence and tarball address, the sha256 of each
    original file read (``files``: path in the package -> hex digest), ``converted_by`` and
    any ``extra`` entries."""
    pkg = json.loads((package / "package.json").read_text())
    shutil.copy2(package / "LICENSE", out_dir / "LICENSE")
    provenance = {
        "package": pkg["name"],
        "version": pkg["version"],
        "licence": pkg.get("license", "MIT"),
        "source": f"https://registry.npmjs.org/{pkg['name']}/-/{pkg['name'].split('/')[-1]}-{pkg['version']}.tgz",
        "sha256": files,
        **extra,
        "converted_by": converted_by,
    }
    (out_dir / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")


def load_stored(path: str | Path) -> dict[str, StoredTensor]:
    """Read a file written by :func:`write_packaged`."""
    flat = load_file(str(path))
    out: dict[str, StoredTensor] = {}
    for name, values in flat.items():
        if name.endswith(_SCALE_MIN):
            continue
        sm = flat.get(name + _SCALE_MIN)
        out[name] = StoredTensor(values, None, None) if sm is None else StoredTensor(values, float(sm[0]), float(sm[1]))
    return out


def load_packaged(net: str) -> dict[str, torch.Tensor]:
    """The dequantised float32 tensors (TensorFlow layout) of a packaged net: ``net`` is
    ``"face_recognition"``, ``"tiny_face_detector"`` or ``"face_landmark_68"``."""
    path = PACKAGED_DIR / f"{net}.safetensors"
    if not path.is_file():
        raise TwinshotError(f"{path}: the packaged face-api weights are missing (run scripts/convert_face_api.py)")
    return {name: torch.from_numpy(t.dequantize()) for name, t in load_stored(path).items()}


def hwio_to_oihw(w: torch.Tensor) -> torch.Tensor:
    """A TensorFlow conv filter ``(kh, kw, in, out)`` as a torch one ``(out, in, kh, kw)``."""
    return w.permute(3, 2, 0, 1).contiguous()


def depthwise_to_torch(w: torch.Tensor) -> torch.Tensor:
    """A TensorFlow depthwise filter ``(kh, kw, C, 1)`` as a torch grouped one ``(C, 1, kh, kw)``."""
    return w.permute(2, 3, 0, 1).contiguous()

"""Convert the face-api nets twinshot uses into packaged safetensors, once.

    cd /tmp/faceapi && npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
    python scripts/convert_face_api.py /tmp/faceapi/package

Writes ``src/twinshot/faces/face_api/{face_recognition,tiny_face_detector,face_landmark_68}.safetensors``
(the tensors still uint8-quantised, with their scale and min, as the package stores them),
``PROVENANCE.json`` (package, version, sha256 of every original file) and ``LICENSE``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from twinshot.faces.weights import NETS, PACKAGED_DIR, read_face_api, write_npm_provenance, write_packaged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="the unpacked npm package (holds package.json and model/)")
    args = parser.parse_args()
    PACKAGED_DIR.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    nets: dict[str, dict] = {}
    for stem, out in NETS.items():
        manifest = args.package / "model" / f"{stem}-weights_manifest.json"
        tensors = read_face_api(manifest)
        write_packaged(tensors, PACKAGED_DIR / f"{out}.safetensors")
        for f in (manifest, manifest.parent / f"{stem}.bin"):
            files[f"model/{f.name}"] = hashlib.sha256(f.read_bytes()).hexdigest()
        nets[out] = {
            "tensors": len(tensors),
            "parameters": int(sum(t.values.size for t in tensors.values())),
            "quantised_uint8": sum(t.scale is not None for t in tensors.values()),
        }
        print(f"{stem}: {nets[out]}")
    write_npm_provenance(
        args.package, PACKAGED_DIR, files,
        "scripts/convert_face_api.py (tensors kept uint8 with scale/min; dequantised at load)", nets=nets,
    )



if __name__ == "__main__":
    main()

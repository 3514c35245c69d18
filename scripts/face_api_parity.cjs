// Runs the original @vladmandic/face-api nets (pure-JS @tensorflow/tfjs, CPU backend) on raw
// images written by scripts/face_api_parity.py, and prints their outputs as JSON.
//   node scripts/face_api_parity.cjs JOB.json
// JOB: {"faceapi": ".../face-api.cjs", "models": ".../package/model", "tasks": [
//   {"net": "recognition" | "landmarks" | "detector", "raw": "file.u8", "shape": [N, H, W, 3],
//    "inputSize": 416, "scoreThreshold": 0.5}]}
const fs = require('fs');
const tf = require('@tensorflow/tfjs');

function loadNet(net, models, stem) {
  const manifest = JSON.parse(fs.readFileSync(`${models}/${stem}-weights_manifest.json`));
  const buf = fs.readFileSync(`${models}/${stem}.bin`);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  net.loadFromWeightMap(tf.io.decodeWeights(ab, manifest[0].weights));
}

(async () => {
  const job = JSON.parse(fs.readFileSync(process.argv[2]));
  const faceapi = require(job.faceapi);
  await tf.setBackend('cpu');
  await tf.ready();
  loadNet(faceapi.nets.faceRecognitionNet, job.models, 'face_recognition_model');
  loadNet(faceapi.nets.faceLandmark68Net, job.models, 'face_landmark_68_model');
  loadNet(faceapi.nets.tinyFaceDetector, job.models, 'tiny_face_detector_model');
  const results = [];
  for (const task of job.tasks) {
    const [n, h, w, c] = task.shape;
    const raw = fs.readFileSync(task.raw);
    const out = [];
    for (let i = 0; i < n; i += 1) {
      const img = tf.tensor3d(new Int32Array(raw.subarray(i * h * w * c, (i + 1) * h * w * c)), [h, w, c], 'int32');
      if (task.net === 'recognition') {
        out.push(Array.from(await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(img)));
      } else if (task.net === 'landmarks') {
        const lm = await faceapi.nets.faceLandmark68Net.detectLandmarks(img);
        out.push(lm.positions.map((p) => [p.x, p.y]));
      } else if (task.net === 'detector') {
        const opts = new faceapi.TinyFaceDetectorOptions({ inputSize: task.inputSize, scoreThreshold: task.scoreThreshold });
        const dets = await faceapi.nets.tinyFaceDetector.locateFaces(img, opts);
        out.push(dets.map((d) => [d.box.x, d.box.y, d.box.width, d.box.height, d.score]));
      }
      img.dispose();
    }
    results.push({ net: task.net, tfjs: tf.version.tfjs, backend: tf.getBackend(), outputs: out });
  }
  process.stdout.write(JSON.stringify(results));
})();

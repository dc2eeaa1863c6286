/**
 * A model whose failures happen inside onnxruntime, not in the worker's checks: `x` float32 [batch, n] is
 * reshaped to [-1, 7], so any job whose element count is not a multiple of 7 passes validation (every
 * dimension is dynamic) and then makes `session.run` raise. It is how the tests produce a real inference error.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';

export const RESHAPE_COLUMNS = 7;

/** Writes the model into a fresh temporary directory and returns its path. */
export function writeReshapeModel(): string {
  const { FLOAT, INT64 } = onnx.TensorProto.DataType;
  const shape = new BigInt64Array([-1n, BigInt(RESHAPE_COLUMNS)]);
  const dims = (names: Array<string | number>) => ({
    dim: names.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
  });

  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'worker broker tests',
    graph: {
      name: 'reshape-to-7',
      input: [{ name: 'x', type: { tensorType: { elemType: FLOAT, shape: dims(['batch', 'n']) } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: FLOAT, shape: dims(['rows', RESHAPE_COLUMNS]) } } }],
      initializer: [{ name: 'shape', dims: [2], dataType: INT64, rawData: new Uint8Array(shape.buffer) }],
      node: [{ opType: 'Reshape', input: ['x', 'shape'], output: ['y'], name: 'reshape' }],
    },
  });
  const path = join(mkdtempSync(join(tmpdir(), 'worker-test-model-')), 'reshape.onnx');
  writeFileSync(path, onnx.ModelProto.encode(model).finish());
  return path;
}

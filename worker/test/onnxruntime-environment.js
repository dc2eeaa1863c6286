// Jest runs each test file in its own V8 context, whose Float32Array & co. are not the ones onnxruntime-node's
// native binding creates output tensors with; onnxruntime-common then rejects those outputs ("A float32
// tensor's data must be type of function Float32Array()"). Sharing the outer context's typed array
// constructors makes in-process inference tests behave as the worker does in production.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer', 'SharedArrayBuffer', 'DataView',
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
];

class OnnxruntimeEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) {
      if (globalThis[name] !== undefined) this.global[name] = globalThis[name];
    }
  }
}

module.exports = OnnxruntimeEnvironment;

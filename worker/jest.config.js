/** @type {import('jest').Config} */
module.exports = {
  // Node with the typed arrays onnxruntime-node's binding uses (see the file).
  testEnvironment: '<rootDir>/test/onnxruntime-environment.js',
  roots: ['<rootDir>/test'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
  testTimeout: 60_000,
};

import { writeFileSync, mkdtempSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { listSupportedBackends } from 'onnxruntime-node';
import { OCR_DETECTION_MODEL, ensureTestModels } from '../scripts/build-test-models';
import { ExecutionProviderUnavailableError, ModelLoadError } from '../src/errors';
import { ProviderEnvironment, chooseExecutionProvider, detectProviderEnvironment, loadModel } from '../src/model';

const models = ensureTestModels();
const OCR_DET = OCR_DETECTION_MODEL;

const gpuMachine: ProviderEnvironment = { backends: ['cpu', 'webgpu', 'cuda', 'tensorrt'], cudaProviderInstalled: true, gpuVisible: true };

describe('chooseExecutionProvider (environment faked: no GPU here)', () => {
  test('auto takes CUDA only when the build, the provider libraries and a GPU are all there', () => {
    expect(chooseExecutionProvider('auto', gpuMachine).provider).toBe('cuda');
    expect(chooseExecutionProvider('auto', { ...gpuMachine, gpuVisible: false }).provider).toBe('cpu');
    expect(chooseExecutionProvider('auto', { ...gpuMachine, cudaProviderInstalled: false }).provider).toBe('cpu');
    expect(chooseExecutionProvider('auto', { ...gpuMachine, backends: ['cpu'] }).provider).toBe('cpu');
  });

  test('auto falling back to CPU says why', () => {
    const decision = chooseExecutionProvider('auto', { ...gpuMachine, gpuVisible: false });
    expect(decision.reason).toContain('EXECUTION_PROVIDER is auto and CUDA is unavailable');
    expect(decision.reason).toContain('no NVIDIA GPU is visible');
  });

  test('cpu is always CPU, even on a GPU machine', () => {
    expect(chooseExecutionProvider('cpu', gpuMachine)).toEqual({ provider: 'cpu', reason: 'EXECUTION_PROVIDER is cpu' });
  });

  test('cuda without CUDA is a start-up error naming everything that is missing', () => {
    const env = { backends: ['cpu'], cudaProviderInstalled: false, gpuVisible: false };
    expect(() => chooseExecutionProvider('cuda', env)).toThrow(ExecutionProviderUnavailableError);
    expect(() => chooseExecutionProvider('cuda', env)).toThrow(/no CUDA provider.*ONNXRUNTIME_NODE_INSTALL=cuda12.*no NVIDIA GPU/);
    expect(chooseExecutionProvider('cuda', gpuMachine).provider).toBe('cuda');
  });

  test('this machine: onnxruntime-node lists its providers; without the CUDA files auto means CPU', () => {
    const env = detectProviderEnvironment();
    expect(env.backends).toEqual(listSupportedBackends().map((b) => b.name));
    expect(env.backends).toContain('cpu');
    // The CPU package is installed with ONNXRUNTIME_NODE_INSTALL=skip, so the CUDA provider files are absent.
    expect(env.cudaProviderInstalled).toBe(false);
    expect(chooseExecutionProvider('auto', env).provider).toBe('cpu');
  });
});

describe('loadModel', () => {
  test('reads names, element types, shapes and the dynamic batch axis once', async () => {
    const model = await loadModel(models.mlp, 'auto');
    try {
      expect(model.provider).toBe('cpu');
      expect([...model.inputs.keys()]).toEqual(['input']);
      expect([...model.outputs.keys()]).toEqual(['logits', 'probabilities']);
      expect(model.inputs.get('input')).toEqual({ name: 'input', type: 'float32', datatype: 'FP32', shape: [null, 4], dimNames: ['batch', null] });
      expect(model.batchable).toBe(true);
    } finally {
      await model.release();
    }
  });

  test('a fixed batch axis is not batchable', async () => {
    const model = await loadModel(models.mlpFixedBatch, 'cpu');
    expect(model.inputs.get('input')!.shape).toEqual([1, 4]);
    expect(model.batchable).toBe(false);
    await model.release();
  });

  test('PP-OCRv4 detection: dynamic batch, height and width', async () => {
    const model = await loadModel(OCR_DET, 'auto');
    expect(model.inputs.get('x')!.shape).toEqual([null, 3, null, null]);
    expect(model.batchable).toBe(true);
    await model.release();
  });

  test('missing model: the error names the path and the cause', async () => {
    const path = '/models/does-not-exist.onnx';
    await expect(loadModel(path, 'cpu')).rejects.toThrow(ModelLoadError);
    await expect(loadModel(path, 'cpu')).rejects.toThrow(
      'cannot load the ONNX model at /models/does-not-exist.onnx: no such file (is the model volume mounted, and MODEL_PATH pointing into it?)',
    );
  });

  test('broken model: the error names the path and onnxruntime’s reason', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'w1-model-')), 'broken.onnx');
    writeFileSync(path, 'this is not a protobuf');
    const error = await loadModel(path, 'cpu').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as ModelLoadError).modelPath).toBe(path);
    expect((error as Error).message).toMatch(new RegExp(`^cannot load the ONNX model at ${path}: .*Protobuf parsing failed`));
  });

  test('cuda requested on this CPU-only machine fails at start-up and says why', async () => {
    await expect(loadModel(models.mlp, 'cuda')).rejects.toThrow(/^EXECUTION_PROVIDER is cuda but CUDA cannot be used: /);
  });

  test('auto on a machine that looks like a GPU host but cannot create a CUDA session falls back to CPU', async () => {
    // The fake says CUDA is present; onnxruntime then fails to load its (absent) CUDA provider library.
    // Expected noise: onnxruntime prints a red "Failed to load library libonnxruntime_providers_shared.so" line
    // for each attempt. It comes from onnxruntime's process-wide logger, which a session's logSeverityLevel does
    // not reach; the only switch, env.logLevel, is read once per process and would hide real errors of every test
    // that shares the jest worker. So it stays.
    const model = await loadModel(models.mlp, 'auto', { environment: gpuMachine });
    expect(model.provider).toBe('cpu');
    expect(model.providerReason).toMatch(/^EXECUTION_PROVIDER is auto; CUDA looked present but failed \(.+\), so running on CPU$/);
    await model.release();
    await expect(loadModel(models.mlp, 'cuda', { environment: gpuMachine })).rejects.toThrow(ExecutionProviderUnavailableError);
  });
});

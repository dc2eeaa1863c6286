/**
 * Loading the ONNX model: one onnxruntime session for the life of the process, on CUDA or CPU.
 *
 * Everything a job is checked against (input names, element types, fixed dimensions, whether axis 0 is a
 * dynamic batch axis) is read from the model once here, so checking a job costs a few map look-ups.
 */
import { existsSync, readdirSync, statSync } from 'fs';
import { dirname, join } from 'path';
import { InferenceSession, Tensor, listSupportedBackends } from 'onnxruntime-node';
import type { ExecutionProviderChoice } from './contract';
import { ExecutionProviderUnavailableError, ModelLoadError } from './errors';
import { Datatype, datatypeOf } from './tensors';

/** The execution providers the worker runs on. */
export type ExecutionProvider = 'cuda' | 'cpu';

/** What the machine offers, as far as choosing an execution provider is concerned. */
export interface ProviderEnvironment {
  /** Execution providers this build of onnxruntime-node knows (`listSupportedBackends()`). */
  readonly backends: readonly string[];
  /** onnxruntime's CUDA provider libraries are installed next to its binding (the GPU image build fetches them). */
  readonly cudaProviderInstalled: boolean;
  /** An NVIDIA GPU is visible to this process (its device nodes exist, as the device plugin mounts them). */
  readonly gpuVisible: boolean;
}

/** The provider picked and why, in words fit for the start-up log. */
export interface ProviderDecision {
  readonly provider: ExecutionProvider;
  readonly reason: string;
}

// The files `npm install` with ONNXRUNTIME_NODE_INSTALL=cuda12 puts next to the binding; the CUDA EP needs both.
const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'];

/** Looks at this machine: onnxruntime's backends, its CUDA provider files, and NVIDIA device nodes. */
export function detectProviderEnvironment(): ProviderEnvironment {
  const bindingDir = join(dirname(require.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  return {
    backends: listSupportedBackends().map((b) => b.name),
    cudaProviderInstalled: CUDA_PROVIDER_FILES.every((file) => existsSync(join(bindingDir, file))),
    gpuVisible: nvidiaDeviceVisible(),
  };
}

// Known shortcoming: only the /dev/nvidia<N> device nodes count as a GPU. Set-ups that expose GPUs some other
// way (WSL's /dev/dxg) are treated as CPU-only under `auto`; `cuda` refuses to start there.
function nvidiaDeviceVisible(devDir = '/dev'): boolean {
  try {
    return readdirSync(devDir).some((name) => /^nvidia\d+$/.test(name));
  } catch {
    return false;
  }
}

/**
 * Decides between CUDA and CPU. `auto` takes CUDA only when this onnxruntime build supports it, its provider
 * libraries are installed and a GPU is visible, and CPU otherwise. `cuda` with any of those missing is an
 * error that names what is missing, because a GPU pod that silently runs on CPU is a costly surprise.
 */
export function chooseExecutionProvider(choice: ExecutionProviderChoice, env: ProviderEnvironment): ProviderDecision {
  if (choice === 'cpu') return { provider: 'cpu', reason: 'EXECUTION_PROVIDER is cpu' };

  const missing: string[] = [];
  if (!env.backends.includes('cuda')) missing.push(`this onnxruntime-node build has no CUDA provider (it offers ${env.backends.join(', ')})`);
  if (!env.cudaProviderInstalled) {
    missing.push(`onnxruntime's CUDA provider libraries are not installed (${CUDA_PROVIDER_FILES.join(', ')}; install with ONNXRUNTIME_NODE_INSTALL=cuda12)`);
  }
  if (!env.gpuVisible) missing.push('no NVIDIA GPU is visible (no /dev/nvidia<N> device; is the pod requesting nvidia.com/gpu?)');

  if (missing.length === 0) return { provider: 'cuda', reason: `EXECUTION_PROVIDER is ${choice} and a GPU with the CUDA provider is present` };
  if (choice === 'cuda') {
    throw new ExecutionProviderUnavailableError(`EXECUTION_PROVIDER is cuda but CUDA cannot be used: ${missing.join('; ')}`);
  }
  return { provider: 'cpu', reason: `EXECUTION_PROVIDER is auto and CUDA is unavailable: ${missing.join('; ')}` };
}

/** An input or output of the model, as its metadata declares it. */
export interface TensorSpec {
  readonly name: string;
  /** onnxruntime's element type, e.g. `float32`. */
  readonly type: Tensor.Type;
  /** The same type by its wire name, e.g. `FP32`. */
  readonly datatype: Datatype;
  /** Each dimension: a fixed size, or null where any size is accepted (a symbolic or unknown dimension). */
  readonly shape: ReadonlyArray<number | null>;
  /** The symbolic names of the dynamic dimensions, null where a dimension is fixed or unnamed. */
  readonly dimNames: ReadonlyArray<string | null>;
}

/** A model ready to run. */
export interface LoadedModel {
  readonly path: string;
  /** The provider actually running the model. */
  readonly provider: ExecutionProvider;
  /** Why that provider was chosen. */
  readonly providerReason: string;
  readonly inputs: ReadonlyMap<string, TensorSpec>;
  readonly outputs: ReadonlyMap<string, TensorSpec>;
  /** True when axis 0 of every input and output is dynamic, so jobs can be stacked along it. */
  readonly batchable: boolean;
  /** Runs the model once. */
  run(feeds: Record<string, Tensor>, outputNames?: readonly string[]): Promise<Record<string, Tensor>>;
  /** Frees the session. */
  release(): Promise<void>;
}

/** Options of {@link loadModel}; the defaults suit a worker that owns its GPU or CPU share. */
export interface LoadModelOptions {
  /** Provider environment to decide from; detected from this machine when unset (tests pass a fake). */
  readonly environment?: ProviderEnvironment;
  /**
   * Threads onnxruntime may use inside one operator on CPU; onnxruntime's own default when unset.
   *
   * Known shortcoming: that default counts the host's cores, not the pod's CPU limit, and the worker has no
   * setting for this yet, so a CPU pod with a small limit runs more threads than it gets and is throttled.
   */
  readonly intraOpNumThreads?: number;
}

/**
 * Loads the model at `path` on the provider {@link chooseExecutionProvider} picks. When `auto` picked CUDA
 * but the CUDA session cannot be created (e.g. cuDNN missing from the image), it falls back to CPU and says
 * why in `providerReason`; with `cuda` that is an error. A missing or unreadable model throws a
 * {@link ModelLoadError} naming the path and the cause.
 */
export async function loadModel(path: string, choice: ExecutionProviderChoice, options: LoadModelOptions = {}): Promise<LoadedModel> {
  checkModelFile(path);
  const decision = chooseExecutionProvider(choice, options.environment ?? detectProviderEnvironment());

  let session: InferenceSession;
  let { provider, reason } = decision;
  try {
    session = await createSession(path, provider, options);
  } catch (error) {
    if (provider !== 'cuda') throw new ModelLoadError(path, errorMessage(error), { cause: error });
    if (choice === 'cuda') {
      throw new ExecutionProviderUnavailableError(`EXECUTION_PROVIDER is cuda but the CUDA session for ${path} failed: ${errorMessage(error)}`);
    }
    reason = `EXECUTION_PROVIDER is auto; CUDA looked present but failed (${errorMessage(error)}), so running on CPU`;
    provider = 'cpu';
    try {
      session = await createSession(path, provider, options);
    } catch (cpuError) {
      throw new ModelLoadError(path, errorMessage(cpuError), { cause: cpuError });
    }
  }

  try {
    return describe(path, session, provider, reason);
  } catch (error) {
    await session.release();
    throw error;
  }
}

function checkModelFile(path: string): void {
  if (!existsSync(path)) {
    throw new ModelLoadError(path, 'no such file (is the model volume mounted, and MODEL_PATH pointing into it?)');
  }
  if (!statSync(path).isFile()) throw new ModelLoadError(path, 'not a regular file');
}

function createSession(path: string, provider: ExecutionProvider, options: LoadModelOptions): Promise<InferenceSession> {
  return InferenceSession.create(path, {
    // CPU stays in the list behind CUDA so that operators CUDA lacks still run.
    executionProviders: provider === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    graphOptimizationLevel: 'all',
    ...(options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
  });
}

// A failed run reaches the caller as an exception, which the worker logs as JSON with the job id; onnxruntime's
// own stderr line for it would only break the one-JSON-object-per-line log. Start-up warnings still print.
const RUN_OPTIONS: InferenceSession.RunOptions = { logSeverityLevel: 4 };

function describe(path: string, session: InferenceSession, provider: ExecutionProvider, providerReason: string): LoadedModel {
  const inputs = specs(path, 'input', session.inputMetadata);
  const outputs = specs(path, 'output', session.outputMetadata);
  const batchable = [...inputs.values(), ...outputs.values()].every((spec) => spec.shape.length > 0 && spec.shape[0] === null);

  return {
    path,
    provider,
    providerReason,
    inputs,
    outputs,
    batchable,
    run: async (feeds, outputNames) => {
      const result = outputNames ? await session.run(feeds, outputNames as string[], RUN_OPTIONS) : await session.run(feeds, RUN_OPTIONS);
      return result as Record<string, Tensor>;
    },
    release: () => session.release(),
  };
}

function specs(path: string, kind: 'input' | 'output', metadata: readonly InferenceSession.ValueMetadata[]): Map<string, TensorSpec> {
  const map = new Map<string, TensorSpec>();
  for (const value of metadata) {
    if (!value.isTensor) throw new ModelLoadError(path, `${kind} ${value.name} is not a tensor; the worker feeds and returns tensors only`);
    const datatype = datatypeOf(value.type);
    if (datatype === undefined) {
      throw new ModelLoadError(path, `${kind} ${value.name} has element type ${value.type}, which the worker cannot carry`);
    }
    // A dimension given as a name, or as a non-positive number, accepts any size.
    map.set(value.name, {
      name: value.name,
      type: value.type,
      datatype,
      shape: value.shape.map((dim) => (typeof dim === 'number' && dim > 0 ? dim : null)),
      dimNames: value.shape.map((dim) => (typeof dim === 'string' && dim !== '' ? dim : null)),
    });
  }
  return map;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

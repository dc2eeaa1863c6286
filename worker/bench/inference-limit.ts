/**
 * The inference limit: onnxruntime-node alone, `session.run` in a loop on the inputs the jobs carry, with the
 * session options the worker uses (src/model.ts: CPU provider, all graph optimizations, onnxruntime's default
 * thread count). Nothing else runs in between calls, so no worker can beat this.
 */
import { monitorEventLoopDelay, performance } from 'perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { BenchModel } from './models';

/** What the bare loop measured at one batch size. */
export interface InferenceLimit {
  readonly batchSize: number;
  readonly calls: number;
  readonly seconds: number;
  /** Model calls per second. */
  readonly callsPerSecond: number;
  /** Inferences (jobs' worth of input) per second: calls per second × batch size. */
  readonly inferencesPerSecond: number;
  /** Mean milliseconds per call. */
  readonly msPerCall: number;
  /**
   * Longest time the event loop could not run a callback during the loop, in ms. onnxruntime-node runs
   * `session.run` synchronously on the main thread (after a setImmediate), so this is about one call: while the
   * model runs, a worker's event loop reads no delivery, processes no confirm and sends no ack.
   */
  readonly eventLoopBlockedMaxMs: number;
}

/**
 * Runs `model` at each batch size for about `seconds` (after `warmup` untimed calls) and returns the rates.
 * Every call is awaited before the next, as the worker's engine does.
 */
export async function measureInferenceLimit(
  model: BenchModel,
  batchSizes: readonly number[],
  seconds: number,
  warmup = 3,
): Promise<InferenceLimit[]> {
  const session = await InferenceSession.create(model.path, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  try {
    const limits: InferenceLimit[] = [];
    for (const batchSize of batchSizes) {
      const feeds = { [model.inputName]: batchOf(model, batchSize) };
      for (let i = 0; i < warmup; i++) await session.run(feeds);

      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();
      let calls = 0;
      const started = performance.now();
      const deadline = started + seconds * 1000;
      // At least a handful of calls, so a slow model still gives a mean over more than one sample.
      while (performance.now() < deadline || calls < 5) {
        await session.run(feeds);
        calls++;
      }
      const elapsed = (performance.now() - started) / 1000;
      delay.disable();
      limits.push({
        batchSize,
        calls,
        seconds: elapsed,
        callsPerSecond: calls / elapsed,
        inferencesPerSecond: (calls * batchSize) / elapsed,
        msPerCall: (elapsed * 1000) / calls,
        eventLoopBlockedMaxMs: delay.max / 1e6,
      });
    }
    return limits;
  } finally {
    await session.release();
  }
}

/** `batchSize` copies of the job's input stacked on axis 0, as the worker's batching concatenates them. */
function batchOf(model: BenchModel, batchSize: number): Tensor {
  const data = new Float32Array(model.input.length * batchSize);
  for (let i = 0; i < batchSize; i++) data.set(model.input, i * model.input.length);
  return new Tensor('float32', data, [batchSize, ...model.inputShape.slice(1)]);
}

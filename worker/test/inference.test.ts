import { InferenceSession, Tensor } from 'onnxruntime-node';
import { OCR_DETECTION_MODEL, ensureTestModels } from '../scripts/build-test-models';
import { JobRejection, JobWithdrawn } from '../src/errors';
import { InferenceEngine, InferenceEngineOptions, ModelCall } from '../src/inference';
import { AIGenerationJobRequested, BINARY_JOB_HEADER, Job, JobResult, parseJob } from '../src/messages';
import { LoadedModel, loadModel } from '../src/model';

const models = ensureTestModels();
const limits = { maxMessageBytes: 16 * 1024 * 1024 };

/** Parses a JSON job the way the worker does, so tests go through the real message path. */
function jsonJob(body: Omit<AIGenerationJobRequested, 'schemaVersion'>): Job {
  return parseJob(Buffer.from(JSON.stringify({ schemaVersion: 1, ...body })), { contentType: 'application/json' }, limits);
}

function mlpJob(jobId: string, rows: number[][], extra: Partial<AIGenerationJobRequested> = {}): Job {
  return jsonJob({ jobId, inputs: [{ name: 'input', datatype: 'FP32', shape: [rows.length, 4], data: rows.flat() }], ...extra });
}

/** Deterministic pseudo-random floats in [0, 1). */
function pattern(count: number, seed: number): Float32Array {
  const values = new Float32Array(count);
  let state = seed;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    values[i] = (state >>> 8) / 16777216;
  }
  return values;
}

function rowsOf(values: Float32Array, width: number): number[][] {
  return Array.from({ length: values.length / width }, (_, r) => Array.from(values.subarray(r * width, (r + 1) * width)));
}

async function engineFor(path: string, options: Partial<InferenceEngineOptions> = {}) {
  const calls: ModelCall[] = [];
  const model = await loadModel(path, 'cpu');
  const engine = new InferenceEngine(model, {
    maxBatchSize: 8,
    maxBatchWaitMs: 20,
    onModelCall: (_jobs, _seconds, call) => calls.push(call),
    ...options,
  });
  return { engine, calls, model };
}

function expectClose(actual: Tensor, expected: Tensor) {
  expect(actual.dims).toEqual(expected.dims);
  const a = actual.data as Float32Array;
  const e = expected.data as Float32Array;
  expect(a.length).toBe(e.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - e[i]));
  expect(worst).toBeLessThan(1e-5);
}

function rejectionOf(fn: () => unknown): JobRejection {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(JobRejection);
    return error as JobRejection;
  }
  throw new Error('expected a JobRejection');
}

describe('single-pass jobs on the MLP (dynamic batch axis)', () => {
  let direct: InferenceSession;
  let engine: InferenceEngine;
  let calls: ModelCall[];

  beforeAll(async () => {
    direct = await InferenceSession.create(models.mlp);
    ({ engine, calls } = await engineFor(models.mlp));
  });
  afterAll(async () => {
    await engine.close();
    await direct.release();
  });
  beforeEach(() => calls.splice(0));

  const directRun = async (rows: number[][]) =>
    direct.run({ input: new Tensor('float32', Float32Array.from(rows.flat()), [rows.length, 4]) });

  test('one job: outputs equal onnxruntime’s own run of the same input', async () => {
    const rows = [[0.1, -0.2, 0.3, 0.9]];
    const result = await engine.run(mlpJob('single', rows));
    const expected = await directRun(rows);
    expect([...result.outputs.keys()]).toEqual(['logits', 'probabilities']);
    expectClose(result.outputs.get('logits')!, expected.logits);
    expectClose(result.outputs.get('probabilities')!, expected.probabilities);
    expect(result.batchSize).toBe(1);
  });

  test('concurrent jobs run as one call and each gets its own rows back', async () => {
    const inputs = [0, 1, 2, 3, 4].map((i) => rowsOf(pattern(i === 2 ? 8 : 4, i + 1), 4)); // job 2 sends two rows
    const jobs = inputs.map((rows, i) =>
      mlpJob(`batch-${i}`, rows, i === 3 ? { outputs: ['probabilities'] } : {}),
    );
    const results = await Promise.all(jobs.map((job) => engine.run(job)));

    expect(calls).toEqual([expect.objectContaining({ kind: 'inference', jobs: 5, rows: 6, ok: true })]);
    for (const [i, result] of results.entries()) {
      const expected = await directRun(inputs[i]);
      expect(result.batchSize).toBe(5);
      expectClose(result.outputs.get('probabilities')!, expected.probabilities);
      if (i === 3) expect([...result.outputs.keys()]).toEqual(['probabilities']);
      else expectClose(result.outputs.get('logits')!, expected.logits);
    }
    expect(results[2].outputs.get('logits')!.dims).toEqual([2, 3]);
  });

  test('batches never exceed maxBatchSize rows', async () => {
    const { engine: small, calls: smallCalls } = await engineFor(models.mlp, { maxBatchSize: 4, maxBatchWaitMs: 50 });
    const jobs = Array.from({ length: 10 }, (_, i) => mlpJob(`cap-${i}`, rowsOf(pattern(4, 100 + i), 4)));
    const results = await Promise.all(jobs.map((job) => small.run(job)));
    await small.close();

    expect(smallCalls.map((c) => c.jobs)).toEqual([4, 4, 2]);
    for (const [i, result] of results.entries()) {
      expectClose(result.outputs.get('logits')!, (await directRun(rowsOf(pattern(4, 100 + i), 4))).logits);
    }
  });

  test('maxBatchWaitMs 0 runs a lone job at once instead of waiting for company', async () => {
    const { engine: eager, calls: eagerCalls } = await engineFor(models.mlp, { maxBatchWaitMs: 0 });
    const result = await eager.run(mlpJob('eager', [[1, 1, 1, 1]]));
    await eager.close();
    expect(result.batchSize).toBe(1);
    expect(result.queueMs).toBeLessThan(1000);
    expect(eagerCalls).toHaveLength(1);
  });

  describe('jobs that do not fit the model are rejected with a precise reason', () => {
    test('unknown input', () => {
      const job = jsonJob({ jobId: 'u1', inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
      const r = rejectionOf(() => engine.validate(job));
      expect(r.code).toBe('unknown_input');
      expect(r.reason).toBe('input "pixels" is not an input of the model, which takes "input" (FP32 [batch, 4])');
      expect(r.jobId).toBe('u1');
    });

    test('wrong datatype', () => {
      const job = jsonJob({ jobId: 'd1', inputs: [{ name: 'input', datatype: 'FP64', shape: [1, 4], data: [1, 2, 3, 4] }] });
      expect(rejectionOf(() => engine.validate(job)).reason).toBe('input "input" is FP64; the model takes FP32');
    });

    test('wrong shape: a fixed dimension, and the rank', () => {
      const wide = jsonJob({ jobId: 's1', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 5], data: [1, 2, 3, 4, 5] }] });
      expect(rejectionOf(() => engine.validate(wide)).reason).toBe(
        'input "input" has shape [1, 5]; the model takes [batch, 4] (axis 1 must be 4)',
      );
      const flat = jsonJob({ jobId: 's2', inputs: [{ name: 'input', datatype: 'FP32', shape: [4], data: [1, 2, 3, 4] }] });
      expect(rejectionOf(() => engine.validate(flat)).code).toBe('shape');
    });

    test('unknown output', () => {
      const job = mlpJob('o1', [[1, 2, 3, 4]], { outputs: ['embeddings'] });
      expect(rejectionOf(() => engine.validate(job)).reason).toBe(
        'output "embeddings" is not an output of the model, which gives logits, probabilities',
      );
    });

    test('a generation job on a model that is not a decoder', async () => {
      const job = jsonJob({ jobId: 'g1', kind: 'generation', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
      await expect(engine.run(job)).rejects.toThrow(/^this model cannot run generation jobs: input input is FP32/);
    });
  });
});

describe('a model without a batch axis', () => {
  test('runs each job alone, with the right outputs', async () => {
    const { engine, calls } = await engineFor(models.mlpFixedBatch);
    const direct = await InferenceSession.create(models.mlpFixedBatch);
    const inputs = [1, 2, 3].map((seed) => rowsOf(pattern(4, seed), 4));
    const results = await Promise.all(inputs.map((rows, i) => engine.run(mlpJob(`fixed-${i}`, rows))));
    await engine.close();

    expect(calls.map((c) => c.jobs)).toEqual([1, 1, 1]);
    for (const [i, result] of results.entries()) {
      const expected = await direct.run({ input: new Tensor('float32', Float32Array.from(inputs[i].flat()), [1, 4]) });
      expectClose(result.outputs.get('logits')!, expected.logits);
    }
    await direct.release();
    const two = mlpJob('fixed-two', rowsOf(pattern(8, 9), 4));
    expect(rejectionOf(() => engine.validate(two)).reason).toContain('(axis 0 must be 1)');
  });
});

describe('one bad job in a batch does not fail the others', () => {
  test('the batch is retried job by job; only the job that breaks the model fails (retryably)', async () => {
    // Run as single-pass jobs, the decoder's Gather fails on a token id outside its vocabulary.
    const { engine, calls } = await engineFor(models.decoder, { maxBatchWaitMs: 50 });
    const ids = (jobId: string, tokens: number[]) =>
      jsonJob({ jobId, inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, tokens.length], data: tokens }] });

    const [good, bad] = await Promise.allSettled([engine.run(ids('good', [1, 2])), engine.run(ids('bad', [1, 99]))]);
    await engine.close();

    expect(good.status).toBe('fulfilled');
    expect((good as PromiseFulfilledResult<JobResult>).value.outputs.get('logits')!.dims).toEqual([1, 2, 16]);
    expect(bad.status).toBe('rejected');
    expect((bad as PromiseRejectedResult).reason).not.toBeInstanceOf(JobRejection);
    expect(calls.map((c) => [c.jobs, c.ok])).toEqual([
      [2, false],
      [1, true],
      [1, false],
    ]);
  });
});

describe('PP-OCRv4 text detection at 3×320×320', () => {
  let direct: InferenceSession;
  let model: LoadedModel;
  let engine: InferenceEngine;
  const image = pattern(3 * 320 * 320, 2024);
  const bytes = Buffer.from(image.buffer, image.byteOffset, image.byteLength);

  beforeAll(async () => {
    direct = await InferenceSession.create(OCR_DETECTION_MODEL);
    ({ engine, model } = await engineFor(OCR_DETECTION_MODEL, { maxBatchWaitMs: 0 }));
  });
  afterAll(async () => {
    await engine.close();
    await direct.release();
  });

  test('base64 JSON body and binary body give onnxruntime’s own output', async () => {
    const expected = (await direct.run({ x: new Tensor('float32', image, [1, 3, 320, 320]) }))[model.outputs.keys().next().value!];

    const viaBase64 = jsonJob({
      jobId: 'ocr-base64',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 320, 320], base64: bytes.toString('base64') }],
    });
    const header = JSON.stringify({ schemaVersion: 1, jobId: 'ocr-binary', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 320, 320] }] });
    const viaBinary = parseJob(bytes, { contentType: 'application/octet-stream', headers: { [BINARY_JOB_HEADER]: header } }, limits);

    for (const job of [viaBase64, viaBinary]) {
      const result = await engine.run(job);
      const output = result.outputs.get('sigmoid_0.tmp_0')!;
      expect(output.dims).toEqual([1, 1, 320, 320]);
      expectClose(output, expected);
    }
  });

  test('images of different sizes batch separately, each with its own output size', async () => {
    const { engine: batching, calls } = await engineFor(OCR_DETECTION_MODEL, { maxBatchWaitMs: 50 });
    const job = (jobId: string, side: number) => {
      const pixels = pattern(3 * side * side, side);
      return parseJob(
        Buffer.from(pixels.buffer),
        {
          contentType: 'application/octet-stream',
          headers: { [BINARY_JOB_HEADER]: { schemaVersion: 1, jobId, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, side, side] }] } },
        },
        limits,
      );
    };
    const results = await Promise.all([job('a', 32), job('b', 64), job('c', 32)].map((j) => batching.run(j)));
    await batching.close();

    expect(calls.map((c) => c.jobs).sort()).toEqual([1, 2]);
    expect(results.map((r) => r.outputs.get('sigmoid_0.tmp_0')!.dims)).toEqual([
      [1, 1, 32, 32],
      [1, 1, 64, 64],
      [1, 1, 32, 32],
    ]);
  });
});

describe('shutdown', () => {
  test('close() runs queued jobs without waiting out the batch window, then refuses new ones', async () => {
    const { engine } = await engineFor(models.mlp, { maxBatchWaitMs: 60_000 });
    const queued = engine.run(mlpJob('queued', [[1, 2, 3, 4]]));
    await engine.close();
    await expect(queued).resolves.toMatchObject({ batchSize: 1 });
    await expect(engine.run(mlpJob('late', [[1, 2, 3, 4]]))).rejects.toThrow('shutting down');
  });

  test('withdrawWaiting() hands back jobs waiting for a batch, and every later job, without a model call', async () => {
    const { engine, calls } = await engineFor(models.mlp, { maxBatchWaitMs: 60_000 });
    const waiting = [engine.run(mlpJob('w1', [[1, 2, 3, 4]])), engine.run(mlpJob('w2', [[5, 6, 7, 8]]))];
    expect(engine.withdrawWaiting()).toBe(2);
    for (const job of waiting) await expect(job).rejects.toBeInstanceOf(JobWithdrawn);
    await expect(engine.run(mlpJob('late', [[1, 2, 3, 4]]))).rejects.toBeInstanceOf(JobWithdrawn);
    await engine.close();
    expect(calls).toHaveLength(0);
  });

  test('withdrawWaiting(keep) runs the kept jobs at once, without waiting out the batch window, now and later', async () => {
    const { engine, calls } = await engineFor(models.mlp, { maxBatchWaitMs: 60_000 });
    const keep = (job: { jobId: string }) => job.jobId.startsWith('keep');
    const kept = engine.run(mlpJob('keep-1', [[1, 2, 3, 4]]));
    const withdrawn = engine.run(mlpJob('drop-1', [[5, 6, 7, 8]]));
    expect(engine.withdrawWaiting(keep)).toBe(1);
    await expect(withdrawn).rejects.toBeInstanceOf(JobWithdrawn);
    await expect(kept).resolves.toMatchObject({ batchSize: 1 });
    await expect(engine.run(mlpJob('keep-late', [[1, 2, 3, 4]]))).resolves.toMatchObject({ batchSize: 1 });
    await expect(engine.run(mlpJob('drop-late', [[1, 2, 3, 4]]))).rejects.toBeInstanceOf(JobWithdrawn);
    expect(calls).toHaveLength(2);
    await engine.close();
  });

  test('generation jobs run one at a time; withdrawWaiting() leaves the running one to finish and hands back the rest', async () => {
    const { engine, calls } = await engineFor(models.decoder);
    const generation = (jobId: string) =>
      jsonJob({ jobId, kind: 'generation', inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, 2], data: [1, 2] }], generation: { maxNewTokens: 8 } });
    const running = engine.run(generation('first'));
    const waiting = [engine.run(generation('second')), engine.run(generation('third'))];

    expect(engine.withdrawWaiting()).toBe(2);
    for (const job of waiting) await expect(job).rejects.toBeInstanceOf(JobWithdrawn);
    const first = await running;
    expect(first.generation?.newTokens).toBe(8);
    // Eight steps of the first job, none of the others.
    expect(calls.filter((c) => c.kind === 'generation')).toHaveLength(8);
    await engine.close();
  });
});

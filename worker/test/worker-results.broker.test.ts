/**
 * What a worker process answers, against the real RabbitMQ: results equal onnxruntime's own output, bad input is
 * answered and dead-lettered without stopping the worker, inference errors are retried up to the delivery limit.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { JobOutcome, MessageType, WorkerEnv, WorkerMetrics } from '../src/contract';
import { RESULT_PUBLISH_RETRY } from '../src/consumer';
import { BINARY_CONTENT_TYPE, BINARY_JOB_HEADER, SCHEMA_VERSION } from '../src/messages';
import {
  BROKER_URL,
  ensureWorkerBuilt,
  MODELS,
  runCli,
  TestBroker,
  TestTopology,
  uniqueTopology,
  WorkerProcess,
} from './support/broker';
import { RESHAPE_COLUMNS, writeReshapeModel } from './support/failing-model';

const FEATURES = 4;

let broker: TestBroker;

beforeAll(async () => {
  await ensureWorkerBuilt();
  broker = await TestBroker.connect();
}, 120_000);

afterAll(async () => {
  await broker?.close();
});

/** A worker on its own topology, with a collector bound to its results exchange. */
async function startWorker(label: string, env: Record<string, string>) {
  const topology = uniqueTopology(label);
  const worker = await WorkerProcess.start(topology, env);
  await worker.waitUntilReady();
  const results = await broker.collectResults(topology.resultsExchange);
  return { topology, worker, results };
}

async function stopWorker(ctx: { topology: TestTopology; worker: WorkerProcess } | undefined, extraQueues: string[] = []) {
  if (!ctx) return;
  await ctx.worker.stop();
  await broker.deleteTopology(ctx.topology, extraQueues);
}

function jsonJob(jobId: string, rows: number[][], extra: object = {}) {
  return {
    schemaVersion: SCHEMA_VERSION,
    jobId,
    inputs: [{ name: 'input', datatype: 'FP32', shape: [rows.length, FEATURES], data: rows.flat() }],
    ...extra,
  };
}

function randomRows(n: number): number[][] {
  // Values that survive float32 exactly, so JSON numbers and raw bytes carry the same inputs.
  return Array.from({ length: n }, () => Array.from({ length: FEATURES }, () => Math.fround(Math.random() * 2 - 1)));
}

function float32Bytes(rows: number[][]): Buffer {
  return Buffer.from(new Float32Array(rows.flat()).buffer);
}

/** A result tensor's values, whether it came as JSON numbers or base64 bytes. */
function values(output: { data?: number[]; base64?: string }): number[] {
  if (output.data) return output.data;
  const bytes = Buffer.from(output.base64!, 'base64');
  return Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
}

describe('results', () => {
  let ctx: Awaited<ReturnType<typeof startWorker>>;
  let session: InferenceSession;
  const replyQueue = `test-w2-replies-${Date.now().toString(36)}`;

  beforeAll(async () => {
    // A generous batch window so that a burst of jobs really shares model calls.
    ctx = await startWorker('results', { [WorkerEnv.MODEL_PATH]: MODELS.mlp, [WorkerEnv.MAX_BATCH_WAIT_MS]: '50' });
    session = await InferenceSession.create(MODELS.mlp);
    await broker.declareQueue(replyQueue);
  });

  afterAll(async () => {
    await session?.release();
    await stopWorker(ctx, [replyQueue]);
  });

  test('declares a durable quorum job queue with the delivery limit and dead-letter settings', async () => {
    const { stdout } = await promisify(execFile)('rabbitmqctl', ['-q', 'list_queues', 'name', 'type', 'durable', 'arguments', '--formatter', 'json']);
    const queues: Array<{ name: string; type: string; durable: boolean; arguments: Array<[string, string, unknown]> }> = JSON.parse(stdout);
    const jobs = queues.find((q) => q.name === ctx.topology.jobQueue)!;
    const args = Object.fromEntries(jobs.arguments.map(([key, , value]) => [key, value]));

    expect(jobs).toMatchObject({ type: 'quorum', durable: true });
    expect(args).toEqual({
      'x-queue-type': 'quorum',
      'x-delivery-limit': 3,
      'x-dead-letter-exchange': ctx.topology.deadLetterExchange,
      'x-dead-letter-strategy': 'at-least-once',
      'x-overflow': 'reject-publish',
    });
    expect(queues.find((q) => q.name === ctx.topology.deadLetterQueue)).toMatchObject({ type: 'quorum', durable: true });
  });

  test('every job gets exactly its own outputs, equal to onnxruntime run directly on its inputs', async () => {
    // JSON numbers, base64 and binary bodies, one and two rows each, published in one burst so they batch.
    const jobs: Array<{ jobId: string; rows: number[][] }> = [];
    const publishes: Array<Promise<void>> = [];
    for (let i = 0; i < 12; i++) {
      const jobId = `mixed-${i}`;
      const rows = randomRows(i % 3 === 0 ? 2 : 1);
      jobs.push({ jobId, rows });
      const input = { name: 'input', datatype: 'FP32', shape: [rows.length, FEATURES] };
      if (i % 3 === 0) {
        publishes.push(broker.publish(ctx.topology.jobQueue, jsonJob(jobId, rows), { messageId: jobId, type: MessageType.jobRequested }));
      } else if (i % 3 === 1) {
        const body = { schemaVersion: SCHEMA_VERSION, jobId, inputs: [{ ...input, base64: float32Bytes(rows).toString('base64') }] };
        publishes.push(broker.publish(ctx.topology.jobQueue, body, { messageId: jobId }));
      } else {
        const header = JSON.stringify({ schemaVersion: SCHEMA_VERSION, jobId, inputs: [input] });
        publishes.push(
          broker.publish(ctx.topology.jobQueue, float32Bytes(rows), {
            contentType: BINARY_CONTENT_TYPE,
            headers: { [BINARY_JOB_HEADER]: header },
            messageId: jobId,
          }),
        );
      }
    }
    await Promise.all(publishes);
    await ctx.results.waitForJobs(jobs.map((j) => j.jobId));

    for (const { jobId, rows } of jobs) {
      const [result, ...duplicates] = ctx.results.forJob(jobId);
      expect(duplicates).toHaveLength(0);
      expect(result.type).toBe(MessageType.jobCompleted);
      expect(result.correlationId).toBe(jobId);
      expect(result.body).toMatchObject({ jobId, kind: 'inference', workerId: expect.any(String) });

      const direct = await session.run({ input: new Tensor('float32', new Float32Array(rows.flat()), [rows.length, FEATURES]) });
      for (const name of ['logits', 'probabilities']) {
        const output = result.body.outputs.find((o: { name: string }) => o.name === name);
        expect(output.shape).toEqual([rows.length, 3]);
        const expected = Array.from(direct[name].data as Float32Array);
        values(output).forEach((v, k) => expect(v).toBeCloseTo(expected[k], 5));
      }
    }

    // The burst shared model calls: fewer calls than jobs, and some result reports a batch of several jobs.
    const batchSizes = jobs.map((j) => ctx.results.one(j.jobId).body.timings.batchSize as number);
    expect(Math.max(...batchSizes)).toBeGreaterThan(1);
    expect(await ctx.worker.metric(`${WorkerMetrics.batchSize}_count`)).toBeLessThan(jobs.length);
  });

  test('a result goes to reply_to as well, with the job correlation id', async () => {
    const replies = await broker.collectResults('', replyQueue);
    await broker.publish(ctx.topology.jobQueue, jsonJob('with-reply', randomRows(1)), {
      messageId: 'with-reply',
      correlationId: 'caller-42',
      replyTo: replyQueue,
    });
    await Promise.all([ctx.results.waitForJobs(['with-reply']), replies.waitForJobs(['with-reply'])]);

    expect(ctx.results.one('with-reply').correlationId).toBe('caller-42');
    expect(replies.one('with-reply')).toEqual(ctx.results.one('with-reply'));
  });

  test('the worker reports completed jobs and its provider in /metrics', async () => {
    const completed = ctx.results.all.filter((r) => r.type === MessageType.jobCompleted).length;
    expect(await ctx.worker.metric(`${WorkerMetrics.jobsTotal}{outcome="${JobOutcome.completed}"}`)).toBe(completed);
    expect(await ctx.worker.metric(`${WorkerMetrics.jobsInFlight}`)).toBe(0);
    expect(await ctx.worker.metric(`${WorkerMetrics.brokerConnected}`)).toBe(1);
    expect(await ctx.worker.metric(`${WorkerMetrics.executionProviderInfo}{provider="cpu"}`)).toBe(1);
  });
});

describe('ai-worker-cli', () => {
  let ctx: Awaited<ReturnType<typeof startWorker>>;

  beforeAll(async () => {
    ctx = await startWorker('cli', { [WorkerEnv.MODEL_PATH]: MODELS.mlp });
  });

  afterAll(() => stopWorker(ctx));

  test('publishes generated jobs in every encoding with confirms, and follows their results to the count', async () => {
    const env = {
      [WorkerEnv.RABBITMQ_URL]: BROKER_URL,
      [WorkerEnv.JOB_QUEUE]: ctx.topology.jobQueue,
      [WorkerEnv.RESULTS_EXCHANGE]: ctx.topology.resultsExchange,
    };
    const follow = runCli(['follow', '--count', '9', '--timeout', '60', '--brief'], env);
    await follow.waitForStderr('following results'); // printed once its queue is bound

    for (const encoding of ['json', 'base64', 'binary']) {
      const published = await runCli(['publish', '--model', MODELS.mlp, '--encoding', encoding, '-n', '3', '--rate', '100', '--job-id-prefix', `${encoding}-`, '-q'], env).done;
      expect(published.code).toBe(0);
      expect(JSON.parse(published.stdout)).toMatchObject({ published: 3, confirmed: 3, returned: 0 });
    }

    const followed = await follow.done;
    expect(followed.code).toBe(0);
    const lines = followed.stdout.trim().split('\n').map((line) => JSON.parse(line));
    expect(lines.map((l) => l.jobId).sort()).toEqual(['base64-0', 'base64-1', 'base64-2', 'binary-0', 'binary-1', 'binary-2', 'json-0', 'json-1', 'json-2']);
    expect(new Set(lines.map((l) => l.type))).toEqual(new Set([MessageType.jobCompleted]));
  });

  test('publish refuses an invalid job file with the schema error, and reports jobs no queue took', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'worker-cli-test-'));
    try {
      const file = join(dir, 'job.json');
      writeFileSync(file, JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP33', shape: [1, 4], data: [1, 2, 3, 4] }] }));
      const invalid = await runCli(['publish', '--file', file, '--queue', ctx.topology.jobQueue, '-q'], { [WorkerEnv.RABBITMQ_URL]: BROKER_URL }).done;
      expect(invalid.code).toBe(1);
      expect(invalid.stderr).toContain('inputs.0.datatype');

      writeFileSync(file, JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }));
      const nowhere = await runCli(['publish', '--file', file, '--queue', `${ctx.topology.jobQueue}.missing`, '-q'], { [WorkerEnv.RABBITMQ_URL]: BROKER_URL }).done;
      expect(nowhere.code).toBe(1);
      expect(nowhere.stderr).toContain(`queue '${ctx.topology.jobQueue}.missing' does not exist`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bad input', () => {
  let ctx: Awaited<ReturnType<typeof startWorker>>;
  const MAX_MESSAGE_BYTES = 4096;

  beforeAll(async () => {
    ctx = await startWorker('bad-input', { [WorkerEnv.MODEL_PATH]: MODELS.mlp, [WorkerEnv.MAX_MESSAGE_BYTES]: String(MAX_MESSAGE_BYTES) });
  });

  afterAll(() => stopWorker(ctx));

  const input = (over: object = {}) => ({ name: 'input', datatype: 'FP32', shape: [1, FEATURES], data: [1, 2, 3, 4], ...over });
  const job = (jobId: string, over: object = {}) => ({ schemaVersion: SCHEMA_VERSION, jobId, inputs: [input()], ...over });

  /** Each case: what is sent, and the failure code the producer must get back. */
  const cases: Array<{ id: string; code: string; content: Buffer | object; properties?: object }> = [
    { id: 'bad-json', code: 'malformed_json', content: Buffer.from('{"jobId": "bad-json", ') },
    { id: 'bad-schema', code: 'schema', content: { schemaVersion: SCHEMA_VERSION, jobId: 'bad-schema', inputs: 'image.png' } },
    { id: 'bad-unknown-field', code: 'schema', content: job('bad-unknown-field', { priority: 'high' }) },
    { id: 'bad-version', code: 'unsupported_version', content: job('bad-version', { schemaVersion: 99 }) },
    { id: 'bad-unknown-input', code: 'unknown_input', content: job('bad-unknown-input', { inputs: [input({ name: 'pixels' })] }) },
    { id: 'bad-datatype', code: 'datatype', content: job('bad-datatype', { inputs: [input({ datatype: 'INT32' })] }) },
    { id: 'bad-shape', code: 'shape', content: job('bad-shape', { inputs: [input({ shape: [1, 5], data: [1, 2, 3, 4, 5] })] }) },
    { id: 'bad-data-length', code: 'data', content: job('bad-data-length', { inputs: [input({ data: [1, 2, 3] })] }) },
    { id: 'bad-oversize', code: 'oversize', content: job('bad-oversize', { padding: 'x'.repeat(MAX_MESSAGE_BYTES) }) },
    { id: 'bad-type', code: 'message_type', content: job('bad-type'), properties: { type: 'SomethingElse' } },
    {
      id: 'bad-binary-length',
      code: 'data',
      content: Buffer.alloc(12),
      properties: {
        contentType: BINARY_CONTENT_TYPE,
        headers: { [BINARY_JOB_HEADER]: JSON.stringify({ schemaVersion: SCHEMA_VERSION, jobId: 'bad-binary-length', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }] }) },
      },
    },
  ];

  test('each case gets a failed result naming the problem, lands in the dead-letter queue, and the worker keeps consuming', async () => {
    for (const c of cases) {
      await broker.publish(ctx.topology.jobQueue, c.content, { messageId: c.id, ...c.properties });
    }
    // A message too broken to name its job, without even a message id.
    await broker.publish(ctx.topology.jobQueue, Buffer.from('not json'), { correlationId: 'anonymous' });
    // And a good job after all of them.
    await broker.publish(ctx.topology.jobQueue, job('good-after-bad'), { messageId: 'good-after-bad' });

    await ctx.results.waitForJobs([...cases.map((c) => c.id), 'good-after-bad']);
    for (const c of cases) {
      const [result, ...more] = ctx.results.forJob(c.id);
      expect(more).toHaveLength(0);
      expect({ id: c.id, type: result.type, code: result.body.code, retryable: result.body.retryable }).toEqual({
        id: c.id,
        type: MessageType.jobFailed,
        code: c.code,
        retryable: false,
      });
      expect(result.body.reason).toEqual(expect.any(String));
    }
    expect(ctx.results.one('bad-oversize').body.reason).toContain(String(MAX_MESSAGE_BYTES));
    expect(ctx.results.one('bad-unknown-input').body.reason).toContain('pixels');

    await waitFor(() => ctx.results.all.some((r) => r.correlationId === 'anonymous'));
    const anonymous = ctx.results.all.find((r) => r.correlationId === 'anonymous')!;
    expect(anonymous.body).toMatchObject({ jobId: null, code: 'malformed_json', retryable: false });

    expect(ctx.results.one('good-after-bad').type).toBe(MessageType.jobCompleted);

    // Every bad message, and only those, waits in the dead-letter queue, rejected by the worker.
    await broker.waitForDepth(ctx.topology.deadLetterQueue, cases.length + 1);
    const dead = await broker.drain(ctx.topology.deadLetterQueue);
    expect(dead.map((m) => m.properties.messageId ?? m.properties.correlationId).sort()).toEqual([...cases.map((c) => c.id), 'anonymous'].sort());
    for (const m of dead) expect(m.properties.headers?.['x-first-death-reason']).toBe('rejected');

    expect(await ctx.worker.metric(`${WorkerMetrics.jobsTotal}{outcome="${JobOutcome.rejected}"}`)).toBe(cases.length + 1);
    expect(ctx.worker.process.exitCode).toBeNull();
  });
});

describe('inference errors', () => {
  let ctx: Awaited<ReturnType<typeof startWorker>>;
  const DELIVERY_LIMIT = 2;

  let modelPath: string;

  beforeAll(async () => {
    modelPath = writeReshapeModel();
    ctx = await startWorker('inference-error', {
      [WorkerEnv.MODEL_PATH]: modelPath,
      [WorkerEnv.DELIVERY_LIMIT]: String(DELIVERY_LIMIT),
      // One job per call: a batch of failing jobs could add up to a shape the model accepts.
      [WorkerEnv.MAX_BATCH_SIZE]: '1',
    });
  });

  afterAll(async () => {
    await stopWorker(ctx);
    if (modelPath) rmSync(dirname(modelPath), { recursive: true, force: true });
  });

  test('are requeued until the delivery limit, then answered as retryable and dead-lettered', async () => {
    const failing = { schemaVersion: SCHEMA_VERSION, jobId: 'always-fails', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] };
    const working = {
      schemaVersion: SCHEMA_VERSION,
      jobId: 'works',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, RESHAPE_COLUMNS], data: Array.from({ length: RESHAPE_COLUMNS }, (_, i) => i) }],
    };
    await broker.publish(ctx.topology.jobQueue, failing, { messageId: 'always-fails' });
    await broker.publish(ctx.topology.jobQueue, working, { messageId: 'works' });

    await ctx.results.waitForJobs(['always-fails', 'works']);
    // The broker allows DELIVERY_LIMIT returns to the queue; the worker answers on the last delivery, once.
    const attempts = DELIVERY_LIMIT + 1;
    const [failed, ...more] = ctx.results.forJob('always-fails');
    expect(more).toHaveLength(0);
    expect(failed.type).toBe(MessageType.jobFailed);
    expect(failed.body).toMatchObject({ jobId: 'always-fails', code: 'delivery_limit', retryable: true });
    expect(failed.body.reason).toContain(`${attempts} deliveries`);
    expect(ctx.results.one('works').type).toBe(MessageType.jobCompleted);

    const attemptLogs = ctx.worker.logs.filter((l) => l.jobId === 'always-fails' && l.msg === 'job received');
    expect(attemptLogs.map((l) => l.deliveryCount)).toEqual([0, 1, 2]);

    await broker.waitForDepth(ctx.topology.deadLetterQueue, 1);
    const dead = await broker.drain(ctx.topology.deadLetterQueue);
    expect(dead.map((m) => m.properties.messageId)).toEqual(['always-fails']);

    expect(await ctx.worker.metric(`${WorkerMetrics.jobsTotal}{outcome="${JobOutcome.retried}"}`)).toBe(DELIVERY_LIMIT);
    expect(await ctx.worker.metric(`${WorkerMetrics.jobsTotal}{outcome="${JobOutcome.exhausted}"}`)).toBe(1);
  });
});

describe('results the broker refuses', () => {
  let ctx: Awaited<ReturnType<typeof startWorker>>;
  const DELIVERY_LIMIT = 2;
  const refusingQueue = `test-w2-refusing-${Date.now().toString(36)}`;

  beforeAll(async () => {
    ctx = await startWorker('refused-result', { [WorkerEnv.MODEL_PATH]: MODELS.mlp, [WorkerEnv.DELIVERY_LIMIT]: String(DELIVERY_LIMIT) });
    await broker.declareRefusingQueue(refusingQueue, ctx.topology.resultsExchange);
  });

  afterAll(async () => {
    await stopWorker(ctx, [refusingQueue]);
  });

  test('the same result is published again with backoff, then the job is rejected toward the delivery limit and dead-lettered', async () => {
    await broker.publish(ctx.topology.jobQueue, jsonJob('refused', randomRows(1)), { messageId: 'refused' });

    const deliveries = DELIVERY_LIMIT + 1;
    await broker.waitForDepth(ctx.topology.deadLetterQueue, 1, 60_000);
    const dead = await broker.drain(ctx.topology.deadLetterQueue);
    expect(dead.map((m) => m.properties.messageId)).toEqual(['refused']);
    expect(dead[0].properties.headers?.['x-first-death-reason']).toBe('rejected');

    // One model call per delivery: a refused result is re-sent, never recomputed.
    const received = ctx.worker.logs.filter((l) => l.jobId === 'refused' && l.msg === 'job received');
    expect(received.map((l) => l.deliveryCount)).toEqual([0, 1, 2]);
    expect(await ctx.worker.metric(`${WorkerMetrics.inferenceDurationSeconds}_count`)).toBe(deliveries);

    // The collector's queue accepts what the refusing queue does not: each delivery sent one message, the same
    // every time (one message id), RESULT_PUBLISH_RETRY.attempts times.
    const copies = ctx.results.forJob('refused');
    expect(new Set(copies.map((r) => r.type))).toEqual(new Set([MessageType.jobCompleted]));
    const perMessage = new Map<string, number>();
    for (const r of copies) perMessage.set(r.messageId!, (perMessage.get(r.messageId!) ?? 0) + 1);
    expect([...perMessage.values()]).toEqual(Array(deliveries).fill(RESULT_PUBLISH_RETRY.attempts));

    expect(await ctx.worker.metric(`${WorkerMetrics.jobsTotal}{outcome="${JobOutcome.retried}"}`)).toBe(DELIVERY_LIMIT);
    expect(await ctx.worker.metric(`${WorkerMetrics.jobsTotal}{outcome="${JobOutcome.exhausted}"}`)).toBe(1);
    expect(await ctx.worker.metric(`${WorkerMetrics.jobsTotal}{outcome="${JobOutcome.completed}"}`)).toBe(0);
    expect(await broker.depth(ctx.topology.jobQueue)).toEqual({ messages: 0, consumers: 1 });
    expect(ctx.worker.process.exitCode).toBeNull();
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

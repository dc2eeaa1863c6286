/**
 * The worker process's life against the real RabbitMQ: start-up failures, kill -9 and SIGTERM in the middle of a
 * job, the shutdown deadline, and a connection closed by the broker. In every case each job ends with a result;
 * results are counted by jobId.
 */
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobOutcome, MessageType, WorkerEnv, WorkerHttp, WorkerMetrics } from '../src/contract';
import { SCHEMA_VERSION } from '../src/messages';
import {
  closeWorkerConnection,
  ensureWorkerBuilt,
  httpGet,
  MODELS,
  ResultCollector,
  TestBroker,
  TestTopology,
  uniqueTopology,
  WorkerProcess,
} from './support/broker';

let broker: TestBroker;
const topologies: TestTopology[] = [];
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  await ensureWorkerBuilt();
  broker = await TestBroker.connect();
}, 120_000);

afterAll(async () => {
  for (const worker of workers) if (worker.process.exitCode === null && worker.process.signalCode === null) worker.process.kill('SIGKILL');
  for (const topology of topologies) await broker.deleteTopology(topology);
  await broker?.close();
});

function topology(label: string): TestTopology {
  const t = uniqueTopology(label);
  topologies.push(t);
  return t;
}

async function start(t: TestTopology, workerId: string, env: Record<string, string> = {}): Promise<WorkerProcess> {
  const worker = await WorkerProcess.start(t, { [WorkerEnv.MODEL_PATH]: MODELS.decoder, [WorkerEnv.WORKER_ID]: workerId, ...env });
  workers.push(worker);
  return worker;
}

/**
 * A generation job on the test decoder. 4096 new tokens (the schema's maximum) with no stop token keep the CPU
 * busy for most of a second: long enough to act while it runs.
 */
function generationJob(jobId: string, maxNewTokens: number) {
  return {
    schemaVersion: SCHEMA_VERSION,
    jobId,
    kind: 'generation',
    inputs: [{ name: 'input_ids', datatype: 'INT64', shape: [1, 2], data: [1, 2] }],
    generation: { maxNewTokens },
  };
}
const LONG = 4096;

function publishJobs(t: TestTopology, jobs: Array<{ jobId: string }>): Promise<void[]> {
  return Promise.all(jobs.map((job) => broker.publish(t.jobQueue, job, { messageId: job.jobId, type: MessageType.jobRequested })));
}

const received = (jobId: string) => (line: { msg: string; jobId?: unknown }) => line.msg === 'job received' && line.jobId === jobId;

/** Every job answered, all of them completed; returns the jobs answered more than once (allowed after a crash). */
function expectAllCompleted(results: ResultCollector, jobIds: string[]): string[] {
  for (const jobId of jobIds) {
    const forJob = results.forJob(jobId);
    expect({ jobId, types: [...new Set(forJob.map((r) => r.type))] }).toEqual({ jobId, types: [MessageType.jobCompleted] });
  }
  return jobIds.filter((jobId) => results.forJob(jobId).length > 1);
}

/** Call with no worker running: then an unacked job would be back in the queue. */
async function expectQueueEmpty(t: TestTopology): Promise<void> {
  expect(await broker.depth(t.jobQueue)).toEqual({ messages: 0, consumers: 0 });
}

describe('start-up failures', () => {
  test('a missing model exits non-zero with a message naming the path and the cause', async () => {
    const t = topology('no-model');
    const worker = await start(t, 'no-model', { [WorkerEnv.MODEL_PATH]: '/nonexistent/models/model.onnx' });
    expect((await worker.exited).code).toBe(1);
    const fatal = await worker.waitForLog((l) => l.level === 'fatal');
    expect(fatal.msg).toContain('/nonexistent/models/model.onnx');
    expect(fatal.msg).toContain('no such file');
  });

  test('a broken model file exits non-zero with onnxruntime’s reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'worker-test-broken-'));
    const path = join(dir, 'model.onnx');
    writeFileSync(path, 'this is not an ONNX model');
    try {
      const worker = await start(topology('broken-model'), 'broken-model', { [WorkerEnv.MODEL_PATH]: path });
      expect((await worker.exited).code).toBe(1);
      const fatal = await worker.waitForLog((l) => l.level === 'fatal');
      expect(fatal.msg).toContain(path);
      expect(fatal.msg.length).toBeGreaterThan(`cannot load the ONNX model at ${path}: `.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('bad configuration exits non-zero listing every problem at once', async () => {
    const worker = await start(topology('bad-config'), 'bad-config', {
      [WorkerEnv.PREFETCH]: 'lots',
      [WorkerEnv.EXECUTION_PROVIDER]: 'tpu',
      [WorkerEnv.RABBITMQ_URL]: 'localhost:5672',
    });
    expect((await worker.exited).code).toBe(1);
    const fatal = await worker.waitForLog((l) => l.level === 'fatal');
    expect(fatal.msg).toContain(`${WorkerEnv.PREFETCH} must be a whole number`);
    expect(fatal.msg).toContain(`${WorkerEnv.EXECUTION_PROVIDER} must be one of auto, cuda, cpu`);
    expect(fatal.msg).toContain(`${WorkerEnv.RABBITMQ_URL} must start with amqp://`);
  });

  test('a job queue declared with other settings stops the worker with an error naming it', async () => {
    const t = topology('mismatch');
    await broker.declareQueue(t.jobQueue); // a classic queue where the worker wants a quorum queue
    const worker = await start(t, 'mismatch');
    expect((await worker.exited).code).toBe(1);
    const fatal = await worker.waitForLog((l) => l.level === 'fatal');
    expect(fatal.msg).toContain(`queue '${t.jobQueue}' (${WorkerEnv.JOB_QUEUE}) already exists with different settings`);
  });

  test('while the broker is unreachable the worker is alive but not ready, and SIGTERM still exits 0', async () => {
    const worker = await start(topology('unreachable'), 'unreachable', { [WorkerEnv.RABBITMQ_URL]: 'amqp://guest:guest@127.0.0.1:1' });
    await worker.waitForLog((l) => l.msg === 'broker connection attempt failed; retrying');

    expect((await httpGet(worker.httpPort, WorkerHttp.healthPath)).status).toBe(200);
    const ready = await httpGet(worker.httpPort, WorkerHttp.readyPath);
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body).checks).toEqual({ modelLoaded: true, brokerConsuming: false, notShuttingDown: true });
    expect(await worker.metric(WorkerMetrics.brokerConnected)).toBe(0);

    expect((await worker.stop()).code).toBe(0);
  });
});

describe('crashes and shutdowns mid-job', () => {
  test('kill -9 mid-job: the job is redelivered and completed by another worker', async () => {
    const t = topology('kill');
    const first = await start(t, `${t.jobQueue}-first`);
    await first.waitUntilReady();
    const results = await broker.collectResults(t.resultsExchange);

    const jobs = [generationJob('long', LONG), ...Array.from({ length: 5 }, (_, i) => generationJob(`short-${i}`, 4))];
    await publishJobs(t, jobs);
    await first.waitForLog(received('long'));
    first.process.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    expect(results.forJob('long')).toHaveLength(0);

    const second = await start(t, `${t.jobQueue}-second`);
    await results.waitForJobs(jobs.map((j) => j.jobId));
    expectAllCompleted(results, jobs.map((j) => j.jobId));
    expect(results.forJob('long')).toHaveLength(1);
    expect(results.one('long').body.workerId).toBe(`${t.jobQueue}-second`);
    expect((await second.waitForLog(received('long'))).deliveryCount).toBe(1);

    expect((await second.stop()).code).toBe(0);
    await expectQueueEmpty(t);
  });

  test('SIGTERM with jobs prefetched: the started job finishes and is acked, the unstarted ones go back at once, exit 0', async () => {
    const t = topology('sigterm');
    const SHUTDOWN_TIMEOUT_MS = 30_000;
    const worker = await start(t, `${t.jobQueue}-draining`, {
      [WorkerEnv.PREFETCH]: '5',
      [WorkerEnv.SHUTDOWN_TIMEOUT_MS]: String(SHUTDOWN_TIMEOUT_MS),
    });
    await worker.waitUntilReady();
    const results = await broker.collectResults(t.resultsExchange);

    // Generation jobs run one at a time: the first starts, the other four wait in the worker's prefetch.
    const jobIds = Array.from({ length: 5 }, (_, i) => `prefetched-${i}`);
    await publishJobs(t, jobIds.map((id) => generationJob(id, LONG)));
    for (const id of jobIds) await worker.waitForLog(received(id));
    const started = String(worker.logs.find((l) => l.msg === 'job received')?.jobId);

    const signalledAt = Date.now();
    worker.process.kill('SIGTERM');
    expect((await worker.waitForLog((l) => l.msg === 'handing back jobs that had not started')).withdrawn).toBe(4);
    await worker.waitForLog((l) => l.msg === 'consumer cancelled; no new jobs will arrive');
    await publishJobs(t, [generationJob('after-sigterm', 4)]);

    expect((await worker.exited).code).toBe(0);
    // One job's run, not five, stood between the signal and the exit.
    expect(Date.now() - signalledAt).toBeLessThan(SHUTDOWN_TIMEOUT_MS / 2);
    expect(results.all.map((r) => [r.body.jobId, r.type])).toEqual([[started, MessageType.jobCompleted]]);
    const handedBack = worker.logs.filter((l) => l.msg === 'job handed back unstarted for another worker').map((l) => l.jobId);
    expect(handedBack.sort()).toEqual(jobIds.filter((id) => id !== started).sort());
    expect(worker.logs.some(received('after-sigterm'))).toBe(false);
    expect(worker.logs.some((l) => l.msg === 'shut down cleanly')).toBe(true);

    // The started job was acked; the four handed back and the one sent after SIGTERM wait for a worker.
    expect(await broker.depth(t.jobQueue)).toEqual({ messages: 5, consumers: 0 });
    const next = await start(t, `${t.jobQueue}-next`);
    const rest = [...handedBack.map(String), 'after-sigterm'];
    await results.waitForJobs(rest);
    expectAllCompleted(results, [...jobIds, 'after-sigterm']);
    for (const id of rest) expect(results.one(id).body.workerId).toBe(`${t.jobQueue}-next`);
    expect((await next.stop()).code).toBe(0);
    await expectQueueEmpty(t);
  });

  test('SIGTERM never hands back a job on its last allowed delivery: it runs, so the limit cannot dead-letter it', async () => {
    // On RabbitMQ before 4.3 a hand-back counts as a delivery: with DELIVERY_LIMIT=1 a job handed back once is on
    // its last allowed delivery, and handing it back again would make the broker dead-letter it without a result.
    const t = topology('last-attempt');
    const env = { [WorkerEnv.PREFETCH]: '3', [WorkerEnv.DELIVERY_LIMIT]: '1', [WorkerEnv.SHUTDOWN_TIMEOUT_MS]: '30000' };
    const jobIds = ['last-0', 'last-1', 'last-2'];
    const first = await start(t, `${t.jobQueue}-first`, env);
    await first.waitUntilReady();
    const results = await broker.collectResults(t.resultsExchange);
    await publishJobs(t, jobIds.map((id) => generationJob(id, LONG)));
    for (const id of jobIds) await first.waitForLog(received(id));
    first.process.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    const handedBack = first.logs.filter((l) => l.msg === 'job handed back unstarted for another worker').map((l) => String(l.jobId));
    expect(handedBack).toHaveLength(2);

    const second = await start(t, `${t.jobQueue}-second`, env);
    for (const id of handedBack) {
      const line = await second.waitForLog(received(id));
      expect({ id, deliveryCount: line.deliveryCount }).toEqual({ id, deliveryCount: 1 });
    }
    second.process.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    expect(second.logs.some((l) => l.msg === 'job handed back unstarted for another worker')).toBe(false);

    await results.waitForJobs(jobIds);
    expectAllCompleted(results, jobIds);
    for (const id of handedBack) expect(results.one(id).body.workerId).toBe(`${t.jobQueue}-second`);
    await expectQueueEmpty(t);
    expect(await broker.depth(t.deadLetterQueue)).toEqual({ messages: 0, consumers: 0 });
  });

  test('SIGTERM with a job that outlives SHUTDOWN_TIMEOUT_MS: exit 1, the job is left unacked and redelivered', async () => {
    const t = topology('deadline');
    const worker = await start(t, `${t.jobQueue}-slow`, { [WorkerEnv.SHUTDOWN_TIMEOUT_MS]: '100' });
    await worker.waitUntilReady();
    const results = await broker.collectResults(t.resultsExchange);

    await publishJobs(t, [generationJob('too-long', LONG)]);
    await worker.waitForLog(received('too-long'));
    worker.process.kill('SIGTERM');

    expect((await worker.exited).code).toBe(1);
    const gaveUp = await worker.waitForLog((l) => l.level === 'error' && Array.isArray(l.unfinished));
    expect(gaveUp.unfinished).toEqual(['too-long']);
    expect(results.forJob('too-long')).toHaveLength(0);

    const next = await start(t, `${t.jobQueue}-next`);
    await results.waitForJobs(['too-long']);
    expectAllCompleted(results, ['too-long']);
    expect((await next.waitForLog(received('too-long'))).deliveryCount).toBe(1);
    expect((await next.stop()).code).toBe(0);
    await expectQueueEmpty(t);
  });
});

describe('broker connection loss', () => {
  test('a connection closed by the broker: the worker reconnects and finishes the backlog, losing nothing', async () => {
    const t = topology('reconnect');
    const workerId = `${t.jobQueue}-reconnecting`;
    const worker = await start(t, workerId);
    await worker.waitUntilReady();
    const results = await broker.collectResults(t.resultsExchange);

    const jobs = Array.from({ length: 40 }, (_, i) => generationJob(`backlog-${i}`, 1024));
    await publishJobs(t, jobs);
    await worker.waitForLog(received('backlog-0'));
    await closeWorkerConnection(workerId);

    await worker.waitForLog((l) => l.msg === 'reconnected to the broker; consuming again');
    await results.waitForJobs(jobs.map((j) => j.jobId), 60_000);
    // The backlog really was finished over the new connection.
    const reconnectedAt = worker.logs.findIndex((l) => l.msg === 'reconnected to the broker; consuming again');
    expect(worker.logs.slice(reconnectedAt).filter((l) => l.msg === 'job completed').length).toBeGreaterThan(0);
    const duplicates = expectAllCompleted(results, jobs.map((j) => j.jobId));
    // Jobs finished on the old channel were never acked there; they come back and may be answered twice.
    expect(duplicates.length).toBeLessThanOrEqual(8);

    expect(worker.process.exitCode).toBeNull();
    expect(await worker.metric(WorkerMetrics.brokerReconnectsTotal)).toBe(1);
    expect(await worker.metric(WorkerMetrics.brokerConnected)).toBe(1);
    // Each job is counted when acked; an ack lost with the connection is counted again on redelivery.
    expect(await worker.metric(`${WorkerMetrics.jobsTotal}{outcome="${JobOutcome.completed}"}`)).toBeGreaterThanOrEqual(jobs.length);
    expect((await httpGet(worker.httpPort, WorkerHttp.readyPath)).status).toBe(200);

    expect((await worker.stop()).code).toBe(0);
    await expectQueueEmpty(t);
  });

  test('a channel closed by the broker (results exchange deleted): the worker starts over and answers the job', async () => {
    const t = topology('channel-loss');
    const replies = `${t.jobQueue}.replies`;
    const worker = await start(t, `${t.jobQueue}-worker`);
    await worker.waitUntilReady();
    await broker.declareQueue(replies);
    const results = await broker.collectResults('', replies);

    // Publishing a result to a missing exchange is a channel error (404): the channel dies, the job was never acked.
    await broker.deleteExchange(t.resultsExchange);
    await broker.publish(t.jobQueue, generationJob('orphan', 4), { messageId: 'orphan', replyTo: replies });

    await worker.waitForLog((l) => l.msg === 'reconnected to the broker; consuming again');
    await results.waitForJobs(['orphan']);
    expectAllCompleted(results, ['orphan']);
    expect(await worker.metric(WorkerMetrics.brokerReconnectsTotal)).toBe(1);

    expect((await worker.stop()).code).toBe(0);
    await expectQueueEmpty(t);
    await broker.deleteQueue(replies);
  });
});

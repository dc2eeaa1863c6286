/**
 * Test support for the broker integration tests: real worker processes against the real RabbitMQ on
 * 127.0.0.1:5672, unique topology names per test, and the inspection tools a person would use (rabbitmqctl,
 * a consumer bound to the results exchange, the dead-letter queue).
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, readdirSync, statSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import * as amqp from 'amqplib';
import { ensureTestModels, TEST_MODELS_DIR, TestModels } from '../../scripts/build-test-models';
import { WorkerEnv, WorkerHttp } from '../../src/contract';

export const BROKER_URL = process.env.TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

const WORKER_DIR = resolve(__dirname, '..', '..');
const MAIN_JS = join(WORKER_DIR, 'dist', 'worker', 'src', 'main.js');
const CLI_JS = join(WORKER_DIR, 'dist', 'worker', 'src', 'cli.js');

export const MODELS = {
  mlp: join(TEST_MODELS_DIR, TestModels.mlp),
  decoder: join(TEST_MODELS_DIR, TestModels.decoder),
};

/** Topology names no other test (or engineer) uses, so tests run side by side on one broker. */
export interface TestTopology {
  readonly jobQueue: string;
  readonly resultsExchange: string;
  readonly deadLetterExchange: string;
  readonly deadLetterQueue: string;
}

export function uniqueTopology(label: string): TestTopology {
  const prefix = `test-w2-${label}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  return {
    jobQueue: `${prefix}.jobs`,
    resultsExchange: `${prefix}.results`,
    deadLetterExchange: `${prefix}.dlx`,
    deadLetterQueue: `${prefix}.dead-letter`,
  };
}

/** The environment that points a worker at a test topology. */
export function topologyEnv(t: TestTopology): Record<string, string> {
  return {
    [WorkerEnv.RABBITMQ_URL]: BROKER_URL,
    [WorkerEnv.JOB_QUEUE]: t.jobQueue,
    [WorkerEnv.RESULTS_EXCHANGE]: t.resultsExchange,
    [WorkerEnv.DEAD_LETTER_EXCHANGE]: t.deadLetterExchange,
    [WorkerEnv.DEAD_LETTER_QUEUE]: t.deadLetterQueue,
  };
}

// ------------------------------------------------------------------------------------------- the build

/**
 * Compiles the worker into dist/ unless dist is newer than every source file, and builds the test models if they
 * are missing (`npm test` builds them first; a single `npx jest <file>` may not have). Test files run in parallel
 * jest workers, so a directory lock keeps two of them from building at once.
 */
export async function ensureWorkerBuilt(): Promise<void> {
  const lock = join(tmpdir(), 'gpu-queue-worker-test-build.lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`${lock} held for 2 minutes; remove it if no test run is building`);
      await sleep(250);
    }
  }
  try {
    ensureTestModels();
    if (!isBuildFresh()) {
      execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: WORKER_DIR, stdio: 'pipe' });
    }
  } finally {
    rmdirSync(lock);
  }
}

function isBuildFresh(): boolean {
  if (!existsSync(MAIN_JS) || !existsSync(CLI_JS)) return false;
  const built = statSync(MAIN_JS).mtimeMs;
  const sources = [join(WORKER_DIR, '..', 'src', 'contract.ts'), ...readdirSync(join(WORKER_DIR, 'src')).map((f) => join(WORKER_DIR, 'src', f))];
  return sources.every((file) => statSync(file).mtimeMs <= built);
}

// ------------------------------------------------------------------------------------ worker processes

/** One log line of the worker (pino JSON). */
export type LogLine = Record<string, unknown> & { level: string; msg: string };

/** A real worker process (`node dist/worker/src/main.js`), its logs parsed as they arrive. */
export class WorkerProcess {
  readonly logs: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters: Array<{ predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = [];
  private stderr = '';

  private constructor(
    readonly process: ChildProcess,
    readonly httpPort: number,
  ) {
    let buffered = '';
    process.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const text = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        this.onLine(text);
      }
    });
    process.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      for (const text of chunk.split('\n')) if (text.startsWith('{')) this.onLine(text);
    });
    this.exited = new Promise((resolveExit) => process.once('exit', (code, signal) => resolveExit({ code, signal })));
  }

  /** Starts a worker; `env` is added to the test topology's variables and a free HTTP port. */
  static async start(topology: TestTopology, env: Record<string, string>): Promise<WorkerProcess> {
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN_JS], {
      cwd: WORKER_DIR,
      env: {
        PATH: process.env.PATH,
        ...topologyEnv(topology),
        [WorkerEnv.HTTP_PORT]: String(port),
        [WorkerEnv.LOG_LEVEL]: 'debug',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new WorkerProcess(child, port);
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** Everything the process wrote, for failure messages. */
  get output(): string {
    return `${this.logs.map((l) => JSON.stringify(l)).join('\n')}\n${this.stderr}`;
  }

  /** Resolves with the first log line (already seen or yet to come) that matches. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 30_000, what = 'log line'): Promise<LogLine> {
    const seen = this.logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return withTimeout(
      new Promise<LogLine>((resolveLine) => this.waiters.push({ predicate, resolve: resolveLine })),
      timeoutMs,
      () => `worker ${this.pid}: no ${what} within ${timeoutMs} ms; output:\n${this.output}`,
    );
  }

  /** Waits for `/readyz` to answer 200. */
  async waitUntilReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.process.exitCode !== null) throw new Error(`worker exited with ${this.process.exitCode} before ready:\n${this.output}`);
      const res = await httpGet(this.httpPort, WorkerHttp.readyPath).catch(() => undefined);
      if (res?.status === 200) return;
      await sleep(100);
    }
    throw new Error(`worker not ready within ${timeoutMs} ms:\n${this.output}`);
  }

  /** The value of one sample in `/metrics`, e.g. `ai_worker_jobs_total{outcome="completed"}`. */
  async metric(sample: string): Promise<number | undefined> {
    const { body } = await httpGet(this.httpPort, WorkerHttp.metricsPath);
    const line = body.split('\n').find((l) => l.startsWith(`${sample} `));
    return line === undefined ? undefined : Number(line.slice(sample.length + 1));
  }

  /** SIGTERM and wait for exit (the normal end of a test's worker). */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGTERM');
    return withTimeout(this.exited, 30_000, () => `worker ${this.pid} did not exit after SIGTERM`);
  }

  private onLine(text: string): void {
    let line: LogLine;
    try {
      line = JSON.parse(text);
    } catch {
      return;
    }
    this.logs.push(line);
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate(line)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  }
}

/** Runs the compiled CLI; `done` resolves with its exit code and output, `waitForStderr` with a line it printed. */
export function runCli(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI_JS, ...args], { cwd: WORKER_DIR, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const done = new Promise<{ code: number; stdout: string; stderr: string }>((resolveRun) =>
    child.once('close', (code) => resolveRun({ code: code ?? 1, stdout, stderr })),
  );
  const waitForStderr = async (text: string, timeoutMs = 15_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!stderr.includes(text)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the CLI did not print "${text}"; stderr:\n${stderr}`);
      await sleep(50);
    }
  };
  return { done, waitForStderr };
}

// ------------------------------------------------------------------------------------------ the broker

/** A result as the test received it from the results exchange. */
export interface ReceivedResult {
  readonly type: string;
  readonly correlationId?: string;
  readonly messageId?: string;
  readonly body: any;
}

/** A plain AMQP client for the test's side: publishing jobs, reading results and dead letters, cleaning up. */
export class TestBroker {
  private constructor(
    private readonly connection: amqp.ChannelModel,
    private readonly channel: amqp.ConfirmChannel,
  ) {}

  static async connect(): Promise<TestBroker> {
    const connection = await amqp.connect(BROKER_URL, { clientProperties: { connection_name: 'worker broker tests' } });
    connection.on('error', () => undefined);
    const channel = await connection.createConfirmChannel();
    return new TestBroker(connection, channel);
  }

  /** Publishes one message to the job queue and waits for the broker's confirm. */
  async publish(queue: string, content: Buffer | object, properties: amqp.Options.Publish = {}): Promise<void> {
    const body = Buffer.isBuffer(content) ? content : Buffer.from(JSON.stringify(content));
    await new Promise<void>((resolvePublish, reject) =>
      this.channel.sendToQueue(queue, body, { persistent: true, contentType: 'application/json', ...properties }, (err) =>
        err ? reject(err) : resolvePublish(),
      ),
    );
  }

  /**
   * Binds a fresh exclusive queue to the results exchange and collects every result. The exchange must exist,
   * so call this after a worker (which declares it) is ready.
   */
  async collectResults(exchange: string, queue?: string): Promise<ResultCollector> {
    const channel = await this.connection.createChannel();
    const name = queue ?? (await channel.assertQueue('', { exclusive: true, autoDelete: true })).queue;
    if (queue === undefined) await channel.bindQueue(name, exchange, '#');
    const collector = new ResultCollector();
    await channel.consume(
      name,
      (msg) => {
        if (!msg) return;
        collector.add({
          type: String(msg.properties.type),
          correlationId: msg.properties.correlationId,
          messageId: msg.properties.messageId,
          body: JSON.parse(msg.content.toString()),
        });
      },
      { noAck: true },
    );
    return collector;
  }

  /** Declares a plain queue (e.g. for reply_to). */
  async declareQueue(name: string): Promise<void> {
    await this.channel.assertQueue(name, { durable: false, autoDelete: false });
  }

  /**
   * Binds to `exchange` a queue that refuses every message (`x-max-length` 0 with `x-overflow: reject-publish`),
   * so the broker answers each publish routed to it with basic.nack.
   */
  async declareRefusingQueue(name: string, exchange: string): Promise<void> {
    await this.channel.assertQueue(name, { durable: false, arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
    await this.channel.bindQueue(name, exchange, '#');
  }

  async deleteQueue(name: string): Promise<void> {
    await this.channel.deleteQueue(name);
  }

  async deleteExchange(name: string): Promise<void> {
    await this.channel.deleteExchange(name);
  }

  /** Takes every message currently in `queue` (acking them). */
  async drain(queue: string): Promise<amqp.GetMessage[]> {
    const messages: amqp.GetMessage[] = [];
    for (;;) {
      const msg = await this.channel.get(queue, { noAck: true });
      if (msg === false) return messages;
      messages.push(msg);
    }
  }

  /** Waits until `queue` holds `count` ready messages (dead-lettering is asynchronous). */
  async waitForDepth(queue: string, count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let depth = -1;
    while (Date.now() < deadline) {
      depth = (await this.channel.checkQueue(queue)).messageCount;
      if (depth >= count) return;
      await sleep(100);
    }
    throw new Error(`queue ${queue} holds ${depth} messages, expected ${count}`);
  }

  /**
   * Messages in `queue` and its consumers, straight from the queue (queue.declare-ok). rabbitmqctl's counts of
   * quorum queues come from periodic statistics and lag by seconds. With no consumer, a message delivered and
   * never acked is back among these, so a count of 0 then means every job was acked.
   */
  async depth(queue: string): Promise<{ messages: number; consumers: number }> {
    const { messageCount, consumerCount } = await this.channel.checkQueue(queue);
    return { messages: messageCount, consumers: consumerCount };
  }

  /** Deletes everything a test topology created. */
  async deleteTopology(t: TestTopology, extraQueues: string[] = []): Promise<void> {
    const channel = await this.connection.createChannel();
    channel.on('error', () => undefined);
    for (const queue of [t.jobQueue, t.deadLetterQueue, ...extraQueues]) await channel.deleteQueue(queue).catch(() => undefined);
    for (const exchange of [t.resultsExchange, t.deadLetterExchange]) await channel.deleteExchange(exchange).catch(() => undefined);
    await channel.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.connection.close().catch(() => undefined);
  }
}

/** Results by jobId, with a way to wait for a set of them. */
export class ResultCollector {
  readonly all: ReceivedResult[] = [];
  private readonly waiters: Array<() => void> = [];

  add(result: ReceivedResult): void {
    this.all.push(result);
    this.waiters.splice(0).forEach((wake) => wake());
  }

  /** Every result for one job (more than one only after a redelivery). */
  forJob(jobId: string): ReceivedResult[] {
    return this.all.filter((r) => r.body.jobId === jobId);
  }

  /** The one result of a job; fails when there is none. */
  one(jobId: string): ReceivedResult {
    const results = this.forJob(jobId);
    if (results.length === 0) throw new Error(`no result for job ${jobId}`);
    return results[0];
  }

  /** Waits until every id in `jobIds` has at least one result. */
  async waitForJobs(jobIds: readonly string[], timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const missing = jobIds.filter((id) => this.forJob(id).length === 0);
      if (missing.length === 0) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no result within ${timeoutMs} ms for ${missing.length} job(s): ${missing.slice(0, 10).join(', ')}`);
      await withTimeout(new Promise<void>((wake) => this.waiters.push(wake)), left, () => '').catch(() => undefined);
    }
  }
}

/** Closes, from the server side, the broker connection a worker opened (named after its WORKER_ID). */
export async function closeWorkerConnection(workerId: string): Promise<void> {
  const run = promisify(execFile);
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties', '--no-table-headers']);
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(`"ai-worker ${workerId}"`))
    .map((line) => line.split('\t')[0]);
  if (pids.length === 0) throw new Error(`no broker connection named "ai-worker ${workerId}"`);
  for (const pid of pids) await run('rabbitmqctl', ['close_connection', pid, 'test: connection closed by the broker tests']);
}

// ------------------------------------------------------------------------------------------- plumbing

export function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolvePort(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message())), ms);
    }),
  ]);
}

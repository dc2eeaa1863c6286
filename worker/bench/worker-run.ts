/**
 * The worker, end to end: the compiled worker process started the way users start it (`node` on the package's
 * main file, configured only through the contract's environment variables), fed real job messages through the
 * local RabbitMQ, its results read back from the results exchange.
 *
 * Two phases per run:
 * 1. Throughput: the job queue is filled with N jobs before the worker starts, then the worker drains it. Jobs
 *    per second are counted from the first result to the last, exactly as the broker limit is counted from the
 *    first delivery to the last, so model loading and start-up are left out of both.
 * 2. Latency: jobs are published at a steady rate below that throughput (open loop, `latencyLoad` × the drained
 *    rate) and each one is timed from its publish to its result arriving. Latency in phase 1 would only
 *    measure how long a job waited in a full queue.
 */
import { spawn, ChildProcess } from 'child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync } from 'fs';
import { createServer } from 'net';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { performance } from 'perf_hooks';
import * as amqp from 'amqplib';
import { MessageType, WorkerEnv, WorkerHttp, WorkerMetrics } from '../src/contract';
import { TopologyNames } from '../src/topology';
import { BROKER_URL, connectBroker, declareTopology, deleteTopology, fillQueue, publish, uniqueTopology } from './broker';
import { BenchModel, jobMessage } from './models';
import { CoresUsed, CpuTimeline, findBrokerPid, peakRssMiB } from './proc';
import { metricTotal, percentiles, Percentiles, sleep } from './stats';

/** How one worker run is configured. */
export interface WorkerRunOptions {
  readonly label: string;
  readonly model: BenchModel;
  /** Jobs drained in the throughput phase. */
  readonly jobs: number;
  /** MAX_BATCH_SIZE given to the worker. */
  readonly maxBatchSize: number;
  /** PREFETCH given to the worker; unset leaves the worker's default. */
  readonly prefetch?: number;
  /** The prefetch the worker ends up with (its default when `prefetch` is unset), for the report. */
  readonly effectivePrefetch: number;
  /** Seconds of steady load in the latency phase (0 skips it). */
  readonly latencySeconds: number;
  /** Publish rate of the latency phase as a fraction of the drained throughput. */
  readonly latencyLoad: number;
  /** Write a V8 CPU profile of the worker into this directory. */
  readonly cpuProfileDir?: string;
  /** Gives up on a phase after this many seconds. */
  readonly timeoutSeconds: number;
}

/** Where the worker spent a job's time, as its own results report it (means, milliseconds). */
export interface WorkerTimings {
  readonly decodeMs: number;
  readonly queueMs: number;
  readonly inferenceMs: number;
  /** Receipt to result ready, inside the worker. */
  readonly totalMs: number;
  readonly batchSize: number;
}

/** What one worker run measured. */
export interface WorkerRunResult {
  readonly label: string;
  readonly maxBatchSize: number;
  readonly prefetch: number;
  readonly jobs: number;
  readonly failed: number;
  readonly seconds: number;
  /** Jobs per second between the first result and the last. */
  readonly jobsPerSecond: number;
  /** Mean jobs per model call during the drain (the worker's batch size histogram). */
  readonly meanBatchSize: number;
  /** Share of the drain (first to last result) spent inside model calls (the worker's inference duration histogram). */
  readonly inferenceBusy: number;
  /** Mean milliseconds per model call inside the worker during the drain; compare with the bare loop's. */
  readonly msPerModelCall: number;
  /**
   * Mean milliseconds from receipt to ack of a job during the drain (the worker's job duration histogram).
   * A job holds one prefetch slot that long, so throughput can be at most prefetch / this (Little's law).
   */
  readonly receiptToAckMs: number;
  /** CPU used during the drain by the worker, the broker and this harness, in cores (CPU seconds per second). */
  readonly cores: CoresUsed;
  readonly timings: WorkerTimings;
  readonly latency?: { readonly publishRate: number; readonly achievedRate: number; readonly ms: Percentiles };
  /** Peak resident memory of the worker process (VmHWM), in MiB. */
  readonly peakRssMiB: number;
  readonly startupSeconds: number;
  /** The worker's V8 CPU profile, when one was asked for. */
  readonly cpuProfile?: string;
}

interface Arrival {
  readonly at: number;
  readonly type: string | undefined;
  readonly content: Buffer;
}

/** Runs the worker through both phases and returns the figures. Everything it created is removed again. */
export async function runWorker(options: WorkerRunOptions): Promise<WorkerRunResult> {
  const names = uniqueTopology(options.label);
  await declareTopology(names);
  const results = await ResultsTap.open(names);
  let worker: WorkerProcess | undefined;
  const result: { value?: WorkerRunResult } = {};
  try {
    const drainPrefix = `${options.label}-drain-`;
    await fillQueue(names.jobQueue, options.jobs, (i) => jobMessage(options.model, `${drainPrefix}${i}`));

    worker = await WorkerProcess.start(options, names);
    const cpu = new CpuTimeline({ worker: worker.pid, broker: findBrokerPid() });
    // The worker's counters at the first result and at the last bound the same window as the throughput.
    await results.waitFor(drainPrefix, 1, options.timeoutSeconds, worker);
    const metricsAtFirst = await worker.metrics();
    const drained = await results.waitFor(drainPrefix, options.jobs, options.timeoutSeconds, worker);
    cpu.sample();
    cpu.stop();
    const metricsAtLast = await worker.metrics();
    const delta = (name: string) => metricTotal(metricsAtLast, name) - metricTotal(metricsAtFirst, name);

    const arrivals = [...drained.values()].sort((a, b) => a.at - b.at);
    const seconds = (arrivals[arrivals.length - 1].at - arrivals[0].at) / 1000;
    const jobsPerSecond = seconds > 0 ? (arrivals.length - 1) / seconds : 0;
    const startupSeconds = (arrivals[0].at - worker.startedAt) / 1000;
    const failures = arrivals.filter((a) => a.type !== MessageType.jobCompleted);
    if (failures.length > 0) {
      console.error(`  ${failures.length} job(s) failed; first: ${failures[0].content.toString('utf8').slice(0, 400)}`);
    }

    const latency = options.latencySeconds > 0 ? await measureLatency(options, names, results, worker, jobsPerSecond) : undefined;
    const peakRss = peakRssMiB(worker.pid);

    result.value = {
      label: options.label,
      maxBatchSize: options.maxBatchSize,
      prefetch: options.effectivePrefetch,
      jobs: arrivals.length,
      failed: failures.length,
      seconds,
      jobsPerSecond,
      meanBatchSize: ratio(delta(`${WorkerMetrics.batchSize}_sum`), delta(`${WorkerMetrics.batchSize}_count`)),
      inferenceBusy: ratio(delta(`${WorkerMetrics.inferenceDurationSeconds}_sum`), seconds),
      msPerModelCall: ratio(delta(`${WorkerMetrics.inferenceDurationSeconds}_sum`) * 1000, delta(`${WorkerMetrics.inferenceDurationSeconds}_count`)),
      receiptToAckMs: ratio(delta(`${WorkerMetrics.jobDurationSeconds}_sum`) * 1000, delta(`${WorkerMetrics.jobDurationSeconds}_count`)),
      cores: cpu.coresBetween(arrivals[0].at, arrivals[arrivals.length - 1].at),
      timings: meanTimings(arrivals),
      latency,
      peakRssMiB: peakRss,
      startupSeconds,
    };
  } finally {
    await worker?.stop();
    await results.close();
    await deleteTopology(names, [results.queue]);
  }
  // Node writes the profile when the worker exits; its file name carries the pid.
  const profile = options.cpuProfileDir && worker ? readdirSync(options.cpuProfileDir).find((f) => f.includes(`.${worker!.pid}.`)) : undefined;
  return { ...result.value!, cpuProfile: profile ? join(options.cpuProfileDir!, profile) : undefined };
}

/** Phase 2: steady open-loop load at `latencyLoad` × the drained rate; publish-to-result time of each job. */
async function measureLatency(
  options: WorkerRunOptions,
  names: TopologyNames,
  results: ResultsTap,
  worker: WorkerProcess,
  drainedRate: number,
): Promise<WorkerRunResult['latency']> {
  const rate = Math.max(1, drainedRate * options.latencyLoad);
  const count = Math.max(20, Math.round(rate * options.latencySeconds));
  const prefix = `${options.label}-latency-`;
  const publishedAt = new Map<string, number>();
  const jobs = Array.from({ length: count }, (_, i) => jobMessage(options.model, `${prefix}${i}`));

  const connection = await connectBroker();
  try {
    const channel = await connection.createConfirmChannel();
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      const due = started + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      publishedAt.set(jobs[i].jobId, performance.now());
      if (!publish(channel, names.jobQueue, jobs[i])) await new Promise((r) => channel.once('drain', r));
    }
    const achievedRate = count / ((performance.now() - started) / 1000);
    await channel.waitForConfirms();

    const arrived = await results.waitFor(prefix, count, options.timeoutSeconds, worker);
    const samples = [...arrived.entries()].map(([jobId, arrival]) => arrival.at - publishedAt.get(jobId)!);
    return { publishRate: rate, achievedRate, ms: percentiles(samples) };
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** A queue of our own bound to the results exchange; records when each result arrived. */
class ResultsTap {
  static async open(names: TopologyNames): Promise<ResultsTap> {
    const connection = await connectBroker();
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    // Results are routed by their message type; '#' takes completed and failed alike.
    await channel.bindQueue(queue, names.resultsExchange, '#');
    const tap = new ResultsTap(connection, queue);
    await channel.consume(queue, (message) => message && tap.record(message), { noAck: true });
    return tap;
  }

  private readonly arrivals = new Map<string, Arrival>();
  private readonly counts = new Map<string, number>();
  private target?: { prefix: string; count: number; reached: () => void };

  private constructor(
    private readonly connection: amqp.ChannelModel,
    readonly queue: string,
  ) {}

  // Kept cheap on purpose: the harness shares the CPU with the worker and the broker. Bodies are parsed later.
  private record(message: amqp.ConsumeMessage): void {
    const id = String(message.properties.correlationId);
    this.arrivals.set(id, { at: performance.now(), type: message.properties.type, content: message.content });
    const prefix = id.slice(0, id.lastIndexOf('-') + 1);
    const count = (this.counts.get(prefix) ?? 0) + 1;
    this.counts.set(prefix, count);
    if (this.target?.prefix === prefix && count >= this.target.count) this.target.reached();
  }

  /** Waits until `count` results of jobs named `<prefix><n>` have arrived; rejects if the worker dies. */
  async waitFor(prefix: string, count: number, timeoutSeconds: number, worker: WorkerProcess): Promise<Map<string, Arrival>> {
    const deadline = performance.now() + timeoutSeconds * 1000;
    const seen = () => this.counts.get(prefix) ?? 0;
    while (seen() < count) {
      if (worker.exited) throw new Error(`the worker exited (${worker.exitDescription}) after ${seen()}/${count} results\n${worker.logTail()}`);
      if (performance.now() > deadline) throw new Error(`only ${seen()}/${count} results after ${timeoutSeconds} s\n${worker.logTail()}`);
      // Woken when the count is reached, or every 200 ms to check on the worker and the deadline.
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, 200);
        this.target = {
          prefix,
          count,
          reached: () => {
            clearTimeout(timer);
            wake();
          },
        };
      });
      this.target = undefined;
    }
    return new Map([...this.arrivals].filter(([id]) => id.startsWith(prefix)));
  }

  async close(): Promise<void> {
    await this.connection.close().catch(() => undefined);
  }
}

/** The worker as a child process. */
class WorkerProcess {
  static async start(options: WorkerRunOptions, names: TopologyNames): Promise<WorkerProcess> {
    const workerDir = resolve(__dirname, '..');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const main = resolve(workerDir, require(resolve(workerDir, 'package.json')).main as string);
    const httpPort = await freePort();
    const logDir = mkdtempSync(join(tmpdir(), 'worker-bench-'));
    const logPath = join(logDir, `${options.label}.log`);
    const log = openSync(logPath, 'w');

    const env: Record<string, string> = {
      [WorkerEnv.RABBITMQ_URL]: BROKER_URL,
      [WorkerEnv.JOB_QUEUE]: names.jobQueue,
      [WorkerEnv.RESULTS_EXCHANGE]: names.resultsExchange,
      [WorkerEnv.DEAD_LETTER_EXCHANGE]: names.deadLetterExchange,
      [WorkerEnv.DEAD_LETTER_QUEUE]: names.deadLetterQueue,
      [WorkerEnv.DELIVERY_LIMIT]: String(names.deliveryLimit),
      [WorkerEnv.MODEL_PATH]: options.model.path,
      [WorkerEnv.EXECUTION_PROVIDER]: 'auto',
      [WorkerEnv.MAX_BATCH_SIZE]: String(options.maxBatchSize),
      [WorkerEnv.HTTP_PORT]: String(httpPort),
      [WorkerEnv.WORKER_ID]: `bench-${options.label}`,
      [WorkerEnv.LOG_LEVEL]: 'info',
    };
    if (options.prefetch !== undefined) env[WorkerEnv.PREFETCH] = String(options.prefetch);

    if (options.cpuProfileDir) mkdirSync(options.cpuProfileDir, { recursive: true });
    const nodeArgs = options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : [];
    const child = spawn(process.execPath, [...nodeArgs, main], {
      cwd: workerDir,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    return new WorkerProcess(child, httpPort, logPath);
  }

  readonly startedAt = performance.now();
  exited = false;
  exitDescription = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly httpPort: number,
    private readonly logPath: string,
  ) {
    child.on('exit', (code, signal) => {
      this.exited = true;
      this.exitDescription = signal ? `signal ${signal}` : `code ${code}`;
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The worker's Prometheus exposition. */
  async metrics(): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${this.httpPort}${WorkerHttp.metricsPath}`);
    return response.text();
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no worker log)';
    }
  }

  /** SIGTERM, as Kubernetes stops a pod; SIGKILL if the worker is not gone after 30 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((done) => this.child.once('exit', () => done()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    await gone;
    clearTimeout(timer);
  }
}

function meanTimings(arrivals: readonly Arrival[]): WorkerTimings {
  const sums = { decodeMs: 0, queueMs: 0, inferenceMs: 0, totalMs: 0, batchSize: 0 };
  let n = 0;
  for (const arrival of arrivals) {
    if (arrival.type !== MessageType.jobCompleted) continue;
    const timings = (JSON.parse(arrival.content.toString('utf8')) as { timings: WorkerTimings }).timings;
    for (const key of Object.keys(sums) as Array<keyof WorkerTimings>) sums[key] += timings[key];
    n++;
  }
  const mean = (v: number) => (n > 0 ? v / n : NaN);
  return {
    decodeMs: mean(sums.decodeMs),
    queueMs: mean(sums.queueMs),
    inferenceMs: mean(sums.inferenceMs),
    totalMs: mean(sums.totalMs),
    batchSize: mean(sums.batchSize),
  };
}

function ratio(a: number, b: number): number {
  return b > 0 ? a / b : NaN;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? done(address.port) : fail(new Error('no port'))));
    });
  });
}

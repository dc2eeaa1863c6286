/**
 * `npm run bench`: the worker against its two limits, on the local RabbitMQ, for two models.
 *
 * For each model it measures, in one run:
 *   1. the broker limit: a bare consumer with the worker's prefetch draining the same job messages;
 *   2. the inference limit: onnxruntime-node's `session.run` in a loop on the same inputs, at batch 1 and at
 *      the worker's max batch;
 *   3. the compiled worker process draining those jobs end to end, then under steady load for latency;
 * and reports each worker figure as a ratio to the lower of its two limits, plus the gain from dynamic
 * batching. The table is printed; the figures go to bench/results/worker.json (or --out).
 *
 * Not a test: it needs a quiet machine to mean anything. `--smoke` (or BENCH_SMOKE=1) runs every stage with a
 * few jobs, to prove the harness works, and writes no results file unless --out is given.
 */
import { mkdirSync, writeFileSync } from 'fs';
import { cpus, loadavg, totalmem } from 'os';
import { dirname, resolve } from 'path';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../src/config';
import { WorkerEnv } from '../src/contract';
import { BROKER_URL, connectBroker, declareTopology, deleteTopology, drainWithBareConsumer, fillQueue, uniqueTopology, DrainResult } from './broker';
import { InferenceLimit, measureInferenceLimit } from './inference-limit';
import { printProfileSummary } from './profile-summary';
import { BenchModel, DEFAULT_MAX_BATCH, detectionModel, jobMessage, mlpModel } from './models';
import { round } from './stats';
import { runWorker, WorkerRunResult } from './worker-run';

/** How big each stage is. Sized so that the whole run takes a few minutes on a 2-core machine. */
interface Sizes {
  readonly mlpJobs: number;
  readonly detectionJobs: number;
  readonly inferenceSeconds: number;
  readonly latencySeconds: number;
}

// Known shortcoming: each configuration runs once. On a shared 2-vCPU machine the broker limits move by about 30 %
// between runs, so only ratios taken within one run compare well; there is no repeat-and-median yet.
const FULL: Sizes = { mlpJobs: 20000, detectionJobs: 240, inferenceSeconds: 4, latencySeconds: 5 };
const SMOKE: Sizes = { mlpJobs: 200, detectionJobs: 6, inferenceSeconds: 0.3, latencySeconds: 0.5 };

/** Targets from the benchmark's definition (issue 7). */
const TARGETS = {
  detectionVsInferenceLimit: 0.9,
  mlpVsBrokerLimit: 0.7,
  batchingGain: 2,
};

/** One configuration of the worker to measure. */
interface WorkerRunPlan {
  readonly label: string;
  /** What the run shows, for the progress line. */
  readonly why: string;
  readonly maxBatchSize: number;
  /** PREFETCH; the worker's own default when unset. */
  readonly prefetch?: number;
}

/** The runs of each model. */
/** The batching gain: a batched run over an unbatched one at the same prefetch. */
interface BatchingGain {
  readonly batched: string;
  readonly single: string;
  readonly prefetch: number;
  readonly gain: number;
}

const PLANS: Array<{ model: () => BenchModel; runs: WorkerRunPlan[]; batchingGains?: Array<[string, string]> }> = [
  {
    model: mlpModel,
    runs: [
      { label: 'mlp-batched', why: `defaults (MAX_BATCH_SIZE=${DEFAULT_MAX_BATCH}, PREFETCH=${DEFAULT_MAX_BATCH})`, maxBatchSize: DEFAULT_MAX_BATCH },
      // Same prefetch as the batched run: the gain measured is batching's alone, not a deeper pipeline's.
      { label: 'mlp-batch1', why: `MAX_BATCH_SIZE=1, PREFETCH=${DEFAULT_MAX_BATCH}`, maxBatchSize: 1, prefetch: DEFAULT_MAX_BATCH },
      // Two batches in hand: the next one is already delivered while the current one is answered.
      { label: 'mlp-batched-prefetch2x', why: `MAX_BATCH_SIZE=${DEFAULT_MAX_BATCH}, PREFETCH=${2 * DEFAULT_MAX_BATCH}`, maxBatchSize: DEFAULT_MAX_BATCH, prefetch: 2 * DEFAULT_MAX_BATCH },
      { label: 'mlp-batch1-prefetch2x', why: `MAX_BATCH_SIZE=1, PREFETCH=${2 * DEFAULT_MAX_BATCH}`, maxBatchSize: 1, prefetch: 2 * DEFAULT_MAX_BATCH },
    ],
    // The first pair is the target's (the defaults' prefetch); the second shows the gain once the pipeline is full.
    batchingGains: [
      ['mlp-batched', 'mlp-batch1'],
      ['mlp-batched-prefetch2x', 'mlp-batch1-prefetch2x'],
    ],
  },
  {
    model: detectionModel,
    runs: [
      { label: 'detection-batch1', why: 'MAX_BATCH_SIZE=1 (PREFETCH defaults to 1)', maxBatchSize: 1 },
      // One job waits on the worker while the other runs, so the model never waits for the broker.
      { label: 'detection-batch1-prefetch2', why: 'MAX_BATCH_SIZE=1, PREFETCH=2', maxBatchSize: 1, prefetch: 2 },
      { label: 'detection-batch1-prefetch4', why: 'MAX_BATCH_SIZE=1, PREFETCH=4', maxBatchSize: 1, prefetch: 4 },
      { label: 'detection-batched', why: `defaults (MAX_BATCH_SIZE=${DEFAULT_MAX_BATCH}, PREFETCH=${DEFAULT_MAX_BATCH})`, maxBatchSize: DEFAULT_MAX_BATCH },
    ],
  },
];

/** The PREFETCH a run ends up with: the worker's own configuration code decides the default. */
function effectivePrefetch(run: WorkerRunPlan): number {
  const env: NodeJS.ProcessEnv = { [WorkerEnv.RABBITMQ_URL]: BROKER_URL, [WorkerEnv.MAX_BATCH_SIZE]: String(run.maxBatchSize) };
  if (run.prefetch !== undefined) env[WorkerEnv.PREFETCH] = String(run.prefetch);
  return loadConfig(env).prefetch;
}

/** A worker figure next to the limit it is held against. */
interface Comparison {
  readonly run: WorkerRunResult;
  readonly brokerLimit: DrainResult;
  readonly inferenceLimit: InferenceLimit;
  /** The lower of the two limits, jobs per second. */
  readonly limit: number;
  readonly limitedBy: 'broker' | 'inference';
  /** Worker jobs per second / limit. */
  readonly ratio: number;
}

interface Options {
  readonly smoke: boolean;
  readonly models: string[];
  readonly out?: string;
  readonly cpuProf?: string;
  readonly latencyLoad: number;
  readonly mlpJobs?: number;
  readonly detectionJobs?: number;
  readonly runs?: string[];
}

async function main(): Promise<void> {
  const options = parseOptions();
  const base = options.smoke ? SMOKE : FULL;
  const sizes: Sizes = { ...base, mlpJobs: options.mlpJobs ?? base.mlpJobs, detectionJobs: options.detectionJobs ?? base.detectionJobs };
  const started = Date.now();
  const environment = await describeEnvironment();
  console.log(`worker benchmark${options.smoke ? ' (smoke: sizes too small to mean anything)' : ''}`);
  console.log(`  ${environment.cpus} × ${environment.cpuModel}, ${environment.memoryGiB} GiB, Node ${environment.node}, ` +
    `onnxruntime-node ${environment.onnxruntime}, RabbitMQ ${environment.rabbitmq}, load average ${environment.loadAverageBefore.join(' ')}`);

  const results: Record<string, unknown> = {};
  const limitLines: string[] = [];
  const comparisons: Comparison[] = [];
  const batchingGains: BatchingGain[] = [];

  for (const plan of PLANS.filter((p) => options.models.includes(p.model().key))) {
    const model = plan.model();
    const jobs = model.key === 'mlp' ? sizes.mlpJobs : sizes.detectionJobs;
    const runs = plan.runs
      .filter((r) => options.runs === undefined || options.runs.includes(r.label))
      .map((r) => ({ ...r, effectivePrefetch: effectivePrefetch(r) }));
    if (runs.length === 0) continue;

    // Both limits, at every prefetch and batch size a worker run below uses.
    const [brokerLimit, inference] = await limits(model, jobs, runs.map((r) => r.effectivePrefetch), runs.map((r) => r.maxBatchSize), sizes.inferenceSeconds);
    limitLines.push(...describeLimits(model, brokerLimit, inference));

    const measured: WorkerRunResult[] = [];
    for (const run of runs) {
      const result = await step(`${model.key}: worker, ${run.why}`, () =>
        runWorker({
          model,
          jobs,
          label: run.label,
          maxBatchSize: run.maxBatchSize,
          prefetch: run.prefetch,
          effectivePrefetch: run.effectivePrefetch,
          latencySeconds: sizes.latencySeconds,
          latencyLoad: options.latencyLoad,
          timeoutSeconds: 600,
          cpuProfileDir: options.cpuProf,
        }),
      );
      measured.push(result);
      comparisons.push(compare(result, brokerLimit.get(run.effectivePrefetch)!, bestInferenceLimit(inference, run.maxBatchSize)));
    }

    for (const [batchedLabel, singleLabel] of plan.batchingGains ?? []) {
      const batched = measured.find((r) => r.label === batchedLabel);
      const single = measured.find((r) => r.label === singleLabel);
      if (batched && single) {
        batchingGains.push({ batched: batchedLabel, single: singleLabel, prefetch: batched.prefetch, gain: batched.jobsPerSecond / single.jobsPerSecond });
      }
    }
    results[model.key] = {
      model: describeModel(model),
      brokerLimit: Object.fromEntries(brokerLimit),
      inferenceLimit: [...inference.values()],
      worker: measured,
      ...(model.key === 'mlp' ? { batchingGains: batchingGains.map((g) => ({ ...g, gain: round(g.gain) })) } : {}),
    };
  }

  environment.loadAverageAfter = loadavg().map((l) => round(l, 2));
  const targets = checkTargets(comparisons, batchingGains);
  printReport(limitLines, comparisons, batchingGains, targets);
  for (const c of comparisons) {
    if (!c.run.cpuProfile) continue;
    console.log(`\nCPU profile of the worker, ${c.run.label} (whole process life: start-up, drain, latency phase):`);
    printProfileSummary(c.run.cpuProfile, 12);
  }

  const out = options.out ?? (options.smoke ? undefined : resolve(__dirname, 'results', 'worker.json'));
  if (out) {
    mkdirSync(dirname(out), { recursive: true });
    const summary = comparisons.map((c) => ({
      run: c.run.label,
      jobsPerSecond: round(c.run.jobsPerSecond),
      limit: round(c.limit),
      limitedBy: c.limitedBy,
      brokerLimit: round(c.brokerLimit.perSecond),
      inferenceLimit: round(c.inferenceLimit.inferencesPerSecond),
      inferenceLimitBatch: c.inferenceLimit.batchSize,
      bareMsPerCall: round(c.inferenceLimit.msPerCall),
      ratio: round(c.ratio),
      latencyMs: c.run.latency ? { p50: round(c.run.latency.ms.p50), p95: round(c.run.latency.ms.p95), p99: round(c.run.latency.ms.p99) } : undefined,
      peakRssMiB: round(c.run.peakRssMiB),
    }));
    const document = {
      benchmark: 'worker',
      date: new Date(started).toISOString(),
      durationSeconds: round((Date.now() - started) / 1000),
      smoke: options.smoke,
      environment,
      sizes: { ...sizes, latencyLoad: options.latencyLoad },
      summary,
      batchingGains: batchingGains.map((g) => ({ ...g, gain: round(g.gain) })),
      targets,
      results,
    };
    writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`);
    console.log(`\nresults written to ${out}`);
  }
  console.log(`total ${round((Date.now() - started) / 1000)} s`);
}

/**
 * Both limits of a model: the bare consumer at each prefetch (on its own private copy of the topology) and
 * the bare inference loop at each batch size.
 */
async function limits(
  model: BenchModel,
  jobs: number,
  prefetches: number[],
  batchSizes: number[],
  inferenceSeconds: number,
): Promise<[Map<number, DrainResult>, Map<number, InferenceLimit>]> {
  const broker = new Map<number, DrainResult>();
  for (const p of [...new Set(prefetches)].sort((a, b) => a - b)) {
    broker.set(p, await step(`${model.key}: broker limit, prefetch ${p}`, () => brokerLimit(model, jobs, p)));
  }
  const sizes = [...new Set(batchSizes)].sort((a, b) => a - b);
  const measured = await step(`${model.key}: inference limit, batch ${sizes.join(' and ')}`, () =>
    measureInferenceLimit(model, sizes, inferenceSeconds),
  );
  return [broker, new Map(measured.map((l) => [l.batchSize, l]))];
}

async function brokerLimit(model: BenchModel, jobs: number, prefetch: number): Promise<DrainResult> {
  const names = uniqueTopology(`${model.key}-broker`);
  await declareTopology(names);
  try {
    await fillQueue(names.jobQueue, jobs, (i) => jobMessage(model, `${model.key}-broker-${i}`));
    return await drainWithBareConsumer(names.jobQueue, jobs, prefetch);
  } finally {
    await deleteTopology(names);
  }
}

/**
 * The inference limit of a worker that may run any batch size up to `maxBatchSize`: the best rate measured at
 * those sizes (on a CPU a larger batch is not always faster per item).
 */
function bestInferenceLimit(inference: Map<number, InferenceLimit>, maxBatchSize: number): InferenceLimit {
  const candidates = [...inference.values()].filter((l) => l.batchSize <= maxBatchSize);
  return candidates.reduce((best, l) => (l.inferencesPerSecond > best.inferencesPerSecond ? l : best));
}

function compare(run: WorkerRunResult, brokerLimit: DrainResult, inferenceLimit: InferenceLimit): Comparison {
  const limitedBy = brokerLimit.perSecond <= inferenceLimit.inferencesPerSecond ? 'broker' : 'inference';
  const limit = Math.min(brokerLimit.perSecond, inferenceLimit.inferencesPerSecond);
  return { run, brokerLimit, inferenceLimit, limit, limitedBy, ratio: run.jobsPerSecond / limit };
}

interface TargetCheck {
  readonly target: string;
  readonly required: number;
  readonly measured: number;
  readonly met: boolean;
}

function checkTargets(comparisons: Comparison[], batchingGains: BatchingGain[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const find = (label: string) => comparisons.find((c) => c.run.label === label);
  for (const label of ['detection-batch1', 'detection-batch1-prefetch2']) {
    const c = find(label);
    if (c) {
      const name = `detection worker, batch 1, prefetch ${c.run.prefetch} / inference limit at batch 1`;
      checks.push(target(name, TARGETS.detectionVsInferenceLimit, c.run.jobsPerSecond / c.inferenceLimit.inferencesPerSecond));
    }
  }
  for (const label of ['mlp-batched', 'mlp-batched-prefetch2x']) {
    const c = find(label);
    if (c) {
      const name = `mlp worker, batch ${c.run.maxBatchSize}, prefetch ${c.run.prefetch} / broker limit at that prefetch`;
      checks.push(target(name, TARGETS.mlpVsBrokerLimit, c.run.jobsPerSecond / c.brokerLimit.perSecond));
    }
  }
  for (const g of batchingGains) {
    checks.push(target(`mlp dynamic batching gain (batch ${DEFAULT_MAX_BATCH} / batch 1, both at prefetch ${g.prefetch})`, TARGETS.batchingGain, g.gain));
  }
  return checks;
}

function target(name: string, required: number, measured: number): TargetCheck {
  return { target: name, required, measured: round(measured), met: measured >= required };
}

function describeLimits(model: BenchModel, broker: Map<number, DrainResult>, inference: Map<number, InferenceLimit>): string[] {
  const lines: string[] = [];
  for (const [prefetch, d] of broker) {
    lines.push(`  ${model.key}: broker limit at prefetch ${prefetch}: ${fmt(d.perSecond)} msg/s (broker ${fmt(d.cores.broker, 2)} cores, harness ${fmt(d.cores.harness, 2)})`);
  }
  for (const l of inference.values()) {
    lines.push(
      `  ${model.key}: inference limit at batch ${l.batchSize}: ${fmt(l.inferencesPerSecond)} inferences/s (${fmt(l.msPerCall)} ms per call; ` +
        `event loop blocked up to ${fmt(l.eventLoopBlockedMaxMs)} ms)`,
    );
  }
  return lines;
}

function printReport(limitLines: string[], comparisons: Comparison[], batchingGains: BatchingGain[], targets: TargetCheck[]): void {
  console.log('\nlimits:');
  for (const line of limitLines) console.log(line);
  const header = ['run', 'batch', 'prefetch', 'jobs/s', 'broker lim', 'infer lim', 'ratio', 'p50 ms', 'p95 ms', 'p99 ms', 'mean batch', 'infer busy', 'ms/call w|bare', 'cores w/b/h', 'peak RSS MiB'];
  const rows = comparisons.map((c) => [
    c.run.label,
    String(c.run.maxBatchSize),
    String(c.run.prefetch),
    fmt(c.run.jobsPerSecond),
    fmt(c.brokerLimit.perSecond),
    `${fmt(c.inferenceLimit.inferencesPerSecond)} (b${c.inferenceLimit.batchSize})`,
    `${fmt(c.ratio)} of ${c.limitedBy}`,
    fmt(c.run.latency?.ms.p50),
    fmt(c.run.latency?.ms.p95),
    fmt(c.run.latency?.ms.p99),
    fmt(c.run.meanBatchSize),
    fmt(c.run.inferenceBusy),
    `${fmt(c.run.msPerModelCall)}|${fmt(c.inferenceLimit.msPerCall)}`,
    [c.run.cores.worker, c.run.cores.broker, c.run.cores.harness].map((v) => fmt(v, 2)).join('/'),
    fmt(c.run.peakRssMiB),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  console.log(`\n${line(header)}`);
  for (const row of rows) console.log(line(row));
  console.log(
    'jobs/s: first to last result of a pre-filled queue; ratio: to the lower limit; p50-p99: publish to result at ' +
      'half that rate; infer busy: share of the drain inside model calls; ms/call: model call in the worker | bare loop; ' +
      'cores: CPU of worker/broker/harness during the drain',
  );

  console.log(
    "\nwhere a job's time goes inside the worker (means, ms): decode / wait for batch and model / inference / receipt→result " +
      '| receipt→ack, and the bound it puts on jobs/s: prefetch ÷ receipt→ack (Little\'s law)',
  );
  for (const c of comparisons) {
    const t = c.run.timings;
    const bound = c.run.prefetch / (c.run.receiptToAckMs / 1000);
    console.log(
      `  ${c.run.label.padEnd(28)} ${fmt(t.decodeMs)} / ${fmt(t.queueMs)} / ${fmt(t.inferenceMs)} / ${fmt(t.totalMs)}  (batch ${fmt(t.batchSize)}) ` +
        `| ${fmt(c.run.receiptToAckMs)} → at most ${fmt(bound)} jobs/s`,
    );
  }
  for (const g of batchingGains) console.log(`\ndynamic batching gain (mlp, prefetch ${g.prefetch}): ${fmt(g.gain)}× (${g.batched} / ${g.single})`);
  console.log('\ntargets:');
  for (const t of targets) console.log(`  ${t.met ? 'met   ' : 'MISSED'} ${t.target}: ${t.measured} (needs >= ${t.required})`);
}

function fmt(value: number | undefined, digits = 3): string {
  return value === undefined || Number.isNaN(value) ? '-' : String(round(value, digits));
}

async function step<T>(what: string, run: () => Promise<T>): Promise<T> {
  process.stdout.write(`- ${what} ... `);
  const started = Date.now();
  const result = await run();
  console.log(`${round((Date.now() - started) / 1000, 2)} s`);
  return result;
}

function describeModel(model: BenchModel) {
  return { key: model.key, description: model.description, path: model.path, inputShape: model.inputShape, encoding: model.encoding, messageBytes: jobMessage(model, 'x').content.length };
}

async function describeEnvironment() {
  const connection = await connectBroker();
  const rabbitmq = String(connection.connection.serverProperties.version ?? 'unknown');
  await connection.close();
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: round(totalmem() / 2 ** 30),
    node: process.version,
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    onnxruntime: require('onnxruntime-node/package.json').version as string,
    rabbitmq,
    loadAverageBefore: loadavg().map((l) => round(l, 2)),
    loadAverageAfter: [] as number[],
  };
}

function parseOptions(): Options {
  const program = new Command()
    .name('bench')
    .description('Worker throughput and latency against the broker and inference limits, on the local RabbitMQ')
    .option('--smoke', 'a few jobs per stage: proves the harness works, measures nothing (also BENCH_SMOKE=1)', false)
    .option('--models <list>', 'comma-separated: mlp, detection', list, ['mlp', 'detection'])
    .option('--out <file>', 'results JSON (default bench/results/worker.json; none in smoke mode)')
    .option('--cpu-prof <dir>', 'write a V8 CPU profile of each worker process into <dir>')
    .option('--latency-load <fraction>', 'publish rate of the latency phase, as a fraction of the drained throughput', fraction, 0.5)
    .option('--runs <labels>', `comma-separated subset of the worker runs: ${PLANS.flatMap((p) => p.runs.map((r) => r.label)).join(', ')}`, list)
    .option('--mlp-jobs <n>', `jobs per MLP stage (default ${FULL.mlpJobs}, smoke ${SMOKE.mlpJobs})`, positiveInt)
    .option('--detection-jobs <n>', `jobs per detection stage (default ${FULL.detectionJobs}, smoke ${SMOKE.detectionJobs})`, positiveInt)
    .parse();
  const opts = program.opts<{ smoke: boolean; models: string[]; out?: string; cpuProf?: string; latencyLoad: number; mlpJobs?: number; detectionJobs?: number; runs?: string[] }>();
  for (const m of opts.models) {
    if (m !== 'mlp' && m !== 'detection') throw new InvalidArgumentError(`--models: unknown model "${m}"; use mlp and/or detection`);
  }
  return { ...opts, smoke: opts.smoke || process.env.BENCH_SMOKE === '1', cpuProf: opts.cpuProf ? resolve(opts.cpuProf) : undefined };
}

function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 2) throw new InvalidArgumentError('must be a whole number of at least 2');
  return n;
}

function fraction(value: string): number {
  const n = Number(value);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('must be a number in (0, 1]');
  return n;
}

main().catch((err: Error) => {
  console.error(`\nbenchmark failed: ${err.stack ?? err.message}`);
  process.exitCode = 1;
});

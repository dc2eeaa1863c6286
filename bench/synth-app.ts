/**
 * One synthesis measurement, in a process of its own: builds an app with N queue-scaled GPU worker pools and
 * synthesizes it to a temporary directory, then prints one JSON line with time and memory.
 *
 *   node --expose-gc -r ts-node/register/transpile-only bench/synth-app.ts <pools> [lib|src]
 *
 * Run by bench/synth.ts; a fresh process per size keeps one size's garbage out of the next one's figures.
 * Loading the library (and ts-node, as `cdk8s synth` does for a TypeScript app) happens before the clock
 * starts and is reported apart.
 */
/* eslint-disable import/order */
// The clock for loading starts before anything else is imported.
import { performance } from 'perf_hooks';
const loadStarted = performance.now();

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { App, Chart, Duration } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import type * as Library from '../src';

// `lib`: the compiled library, as an app gets it from npm (only the app itself goes through ts-node).
// `src`: the TypeScript sources through ts-node, for a quick run without compiling.
const LIBRARY = process.argv[3] === 'src' ? '../src' : '../lib/src';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ModelSource, PrometheusAdapterRules, QueueProcessingGpuService } = require(LIBRARY) as typeof Library;
/* eslint-enable import/order */

/** What one process measured. */
export interface SynthMeasurement {
  readonly pools: number;
  /** Loading the library's modules, before the clock starts. */
  readonly loadMs: number;
  /** Building the construct tree. */
  readonly constructMs: number;
  /** `app.synth()`: validation, resolution, YAML written to disk. */
  readonly synthMs: number;
  readonly totalMs: number;
  /** Kubernetes objects written. */
  readonly objects: number;
  /** Heap in use after a full GC, before the app is built (MiB). */
  readonly heapBaselineMiB: number;
  /** Heap in use right after synthesis, garbage included (MiB). */
  readonly heapAfterSynthMiB: number;
  /** Heap still held by the app after a full GC, over the baseline (MiB). */
  readonly heapRetainedMiB: number;
  /** Resident memory after loading, and the process's peak (VmHWM), in MiB. */
  readonly rssBaselineMiB: number;
  readonly rssPeakMiB: number;
}

/**
 * One worker pool as users declare it: the top-level pattern, i.e. the GPU worker Deployment, its backlog
 * HPA (whose prometheus-adapter rules land in the app-wide rules ConfigMap) and its monitoring (PodMonitor
 * and alerts in the monitoring chart; RabbitMQ's per-queue ServiceMonitor once per app).
 */
function addPool(workers: Chart, monitoring: Chart, i: number): void {
  new QueueProcessingGpuService(workers, `Pool${i}`, {
    name: `pool-${i}`,
    queue: `jobs-${i}`,
    rabbitmqUrl: { secret: kplus.Secret.fromSecretName(workers, `Pool${i}Amqp`, `rabbitmq-pool-${i}`), key: 'url' },
    model: ModelSource.fromPersistentVolumeClaim(`models-${i}`),
    maxJobDuration: Duration.minutes(2),
    maxReplicas: 8,
    monitoring: { scope: monitoring, rabbitmq: i === 0 ? { namespace: 'messaging' } : false },
  });
}

function main(): void {
  const pools = Number(process.argv[2]);
  if (!Number.isInteger(pools) || pools < 1) throw new Error(`usage: synth-app.ts <pools>; got ${JSON.stringify(process.argv[2])}`);
  const loadMs = performance.now() - loadStarted;
  const outdir = mkdtempSync(join(tmpdir(), 'synth-bench-'));
  try {
    gc();
    const heapBaseline = process.memoryUsage().heapUsed;
    const rssBaseline = process.memoryUsage().rss;

    const started = performance.now();
    const app = new App({ outdir });
    const workers = new Chart(app, 'ai-workers', { namespace: 'ai-workers' });
    const monitoring = new Chart(app, 'monitoring', { namespace: 'monitoring' });
    // The app's one rules ConfigMap, in the adapter's namespace; every pool's autoscaler finds it.
    new PrometheusAdapterRules(monitoring, 'AdapterRules', { namespace: 'monitoring' });
    for (let i = 0; i < pools; i++) addPool(workers, monitoring, i);
    const built = performance.now();
    app.synth();
    const synthesized = performance.now();

    const heapAfterSynth = process.memoryUsage().heapUsed;
    gc();
    const heapRetained = process.memoryUsage().heapUsed - heapBaseline;
    const measurement: SynthMeasurement = {
      pools,
      loadMs,
      constructMs: built - started,
      synthMs: synthesized - built,
      totalMs: synthesized - started,
      objects: countObjects(outdir),
      heapBaselineMiB: mib(heapBaseline),
      heapAfterSynthMiB: mib(heapAfterSynth),
      heapRetainedMiB: mib(heapRetained),
      rssBaselineMiB: mib(rssBaseline),
      rssPeakMiB: peakRssMiB(),
    };
    // The app is used after the collection, so the retained heap above is the app's own.
    if (app.charts.length !== 2) throw new Error('unexpected charts');
    console.log(JSON.stringify(measurement));
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

function countObjects(dir: string): number {
  let count = 0;
  for (const file of readdirSync(dir)) {
    // cdk8s writes one YAML stream per chart; every object starts with a top-level apiVersion.
    count += (readFileSync(join(dir, file), 'utf8').match(/^apiVersion: /gm) ?? []).length;
  }
  return count;
}

function peakRssMiB(): number {
  const kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  return kib / 1024;
}

function mib(bytes: number): number {
  return bytes / 2 ** 20;
}

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run with node --expose-gc so that heap figures are taken after a full collection');
  collect();
}

main();

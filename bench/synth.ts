/**
 * Synthesis cost: time and memory of apps with 1, 10 and 100 queue-scaled GPU worker pools.
 *
 *   npx ts-node --transpile-only bench/synth.ts [--smoke] [--compiled] [--out file]
 *
 * Each measurement runs bench/synth-app.ts in a fresh Node process (so no size inherits another's heap or
 * JIT state), three times per size; the report takes the median time and the highest memory. Results are
 * printed and written to bench/results/synth.json. The full run compiles the library first (`tsc --build`)
 * and loads it from lib/, as an app loads it from npm. `--smoke` (or BENCH_SMOKE=1) does one quick pass of
 * the small sizes from the sources (or from lib/ with --compiled) and writes nothing unless --out is given.
 */
import { execFileSync } from 'child_process';
import { mkdirSync, writeFileSync } from 'fs';
import { cpus, loadavg, totalmem } from 'os';
import { dirname, resolve } from 'path';
import { performance } from 'perf_hooks';
import type { SynthMeasurement } from './synth-app';

const ROOT = resolve(__dirname, '..');
const FULL = { sizes: [1, 10, 100], repeats: 3 };
const SMOKE = { sizes: [1, 10], repeats: 1 };

/** From the benchmark's definition: 100 pools synthesize in under 10 s on this machine. */
const MAX_SECONDS_FOR_100 = 10;
/** "Close to linear": the cost per pool at 100 pools is at most this multiple of the cost per pool at 10. */
const MAX_PER_POOL_GROWTH = 1.5;

interface SizeResult {
  readonly pools: number;
  readonly runs: SynthMeasurement[];
  /** Median over the runs of construct + synth time. */
  readonly medianMs: number;
  /** Median wall time of the whole process: start-up, loading, building, synthesizing, exit. */
  readonly medianProcessMs: number;
  readonly objects: number;
  readonly maxHeapRetainedMiB: number;
  readonly maxRssPeakMiB: number;
}

function main(): void {
  const args = process.argv.slice(2);
  const smoke = args.includes('--smoke') || process.env.BENCH_SMOKE === '1';
  const outIndex = args.indexOf('--out');
  const out = outIndex >= 0 ? resolve(args[outIndex + 1]) : smoke ? undefined : resolve(__dirname, 'results', 'synth.json');
  const plan = smoke ? SMOKE : FULL;
  // The full run measures the compiled library, as apps load it from npm; smoke reads the sources directly.
  const library = smoke && !args.includes('--compiled') ? 'src' : 'lib';
  if (library === 'lib') {
    console.log('compiling the library (tsc --build) ...');
    execFileSync('npx', ['tsc', '--build'], { cwd: ROOT, stdio: 'inherit' });
  }
  const loadBefore = loadavg();

  const results: SizeResult[] = plan.sizes.map((pools) => measure(pools, plan.repeats, library));
  const checks = checkTargets(results);
  print(results, checks);

  if (out) {
    mkdirSync(dirname(out), { recursive: true });
    const document = {
      benchmark: 'synthesis',
      date: new Date().toISOString(),
      smoke,
      library,
      environment: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? 'unknown',
        memoryGiB: totalmem() / 2 ** 30,
        node: process.version,
        loadAverageBefore: loadBefore,
        loadAverageAfter: loadavg(),
      },
      // What one pool is: see addPool in bench/synth-app.ts.
      pool: 'QueueProcessingGpuService: GpuWorkerDeployment + QueueScaledHpa (rules in the app-wide prometheus-adapter ConfigMap) + QueueWorkerMonitoring',
      results,
      targets: checks,
    };
    writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`);
    console.log(`\nresults written to ${out}`);
  }
}

function measure(pools: number, repeats: number, library: 'lib' | 'src'): SizeResult {
  const runs: SynthMeasurement[] = [];
  const processMs: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const started = performance.now();
    const stdout = execFileSync(process.execPath, ['--expose-gc', '-r', 'ts-node/register/transpile-only', 'bench/synth-app.ts', String(pools), library], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    processMs.push(performance.now() - started);
    const lines = stdout.trim().split('\n');
    runs.push(JSON.parse(lines[lines.length - 1]) as SynthMeasurement);
  }
  return {
    pools,
    runs,
    medianMs: median(runs.map((r) => r.totalMs)),
    medianProcessMs: median(processMs),
    objects: runs[0].objects,
    maxHeapRetainedMiB: Math.max(...runs.map((r) => r.heapRetainedMiB)),
    maxRssPeakMiB: Math.max(...runs.map((r) => r.rssPeakMiB)),
  };
}

interface TargetCheck {
  readonly target: string;
  readonly required: string;
  readonly measured: number;
  readonly met: boolean;
}

function checkTargets(results: SizeResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const at = (pools: number) => results.find((r) => r.pools === pools);
  const hundred = at(100);
  const ten = at(10);
  if (hundred) {
    // The whole process, loading included: what a user waits for.
    const seconds = hundred.medianProcessMs / 1000;
    checks.push({ target: '100 pools, whole synth process (s)', required: `< ${MAX_SECONDS_FOR_100}`, measured: round(seconds), met: seconds < MAX_SECONDS_FOR_100 });
  }
  if (hundred && ten) {
    const growth = hundred.medianMs / 100 / (ten.medianMs / 10);
    checks.push({
      target: 'time per pool at 100 / time per pool at 10',
      required: `<= ${MAX_PER_POOL_GROWTH}`,
      measured: round(growth),
      met: growth <= MAX_PER_POOL_GROWTH,
    });
  }
  return checks;
}

function print(results: SizeResult[], checks: TargetCheck[]): void {
  console.log(`synthesis benchmark (${cpus().length} × ${cpus()[0]?.model}, Node ${process.version}, load ${loadavg().map((l) => round(l)).join(' ')})`);
  const header = ['pools', 'objects', 'build+synth ms', 'ms per pool', 'process ms', 'load ms', 'heap retained MiB', 'peak RSS MiB'];
  const rows = results.map((r) => [
    String(r.pools),
    String(r.objects),
    String(round(r.medianMs)),
    String(round(r.medianMs / r.pools)),
    String(round(r.medianProcessMs)),
    String(round(median(r.runs.map((m) => m.loadMs)))),
    String(round(r.maxHeapRetainedMiB)),
    String(round(r.maxRssPeakMiB)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  for (const row of [header, ...rows]) console.log(row.map((cell, i) => cell.padStart(widths[i])).join('  '));
  for (const c of checks) console.log(`${c.met ? 'met   ' : 'MISSED'} ${c.target}: ${c.measured} (needs ${c.required})`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function round(value: number): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const scale = 10 ** (2 - Math.floor(Math.log10(Math.abs(value))));
  return Math.round(value * scale) / scale;
}

main();

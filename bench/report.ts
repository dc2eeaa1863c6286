/**
 * Turns the two results files into the Markdown tables of docs/performance.md, so that the document
 * quotes the committed figures exactly.
 *
 *   npx ts-node --transpile-only bench/report.ts [worker.json] [synth.json]
 */
import { readFileSync } from 'fs';
import { resolve } from 'path';

const ROOT = resolve(__dirname, '..');

/* eslint-disable @typescript-eslint/no-explicit-any */
function main(): void {
  const [workerPath, synthPath] = [
    process.argv[2] ?? resolve(ROOT, 'worker', 'bench', 'results', 'worker.json'),
    process.argv[3] ?? resolve(ROOT, 'bench', 'results', 'synth.json'),
  ];
  const worker = JSON.parse(readFileSync(workerPath, 'utf8'));
  const synth = JSON.parse(readFileSync(synthPath, 'utf8'));
  const lines: string[] = [];
  const env = worker.environment;

  lines.push(`Run on ${worker.date.slice(0, 16).replace('T', ' ')} UTC: ${env.cpus} vCPU (${env.cpuModel}), ${env.memoryGiB} GiB, ` +
    `Node ${env.node}, onnxruntime-node ${env.onnxruntime} (CPU), RabbitMQ ${env.rabbitmq}. Load average before and after the worker ` +
    `benchmark: ${env.loadAverageBefore.join(' ')} → ${env.loadAverageAfter.join(' ')}.`, '');

  lines.push('### Limits', '', '| model | limit | at | rate | notes |', '| --- | --- | --- | --- | --- |');
  for (const [key, r] of Object.entries<any>(worker.results)) {
    for (const [prefetch, d] of Object.entries<any>(r.brokerLimit)) {
      lines.push(`| ${key} | broker | prefetch ${prefetch} | ${n(d.perSecond)} msg/s | CPU: broker ${n(d.cores.broker, 2)}, harness ${n(d.cores.harness, 2)} cores |`);
    }
    for (const l of r.inferenceLimit) {
      lines.push(`| ${key} | inference | batch ${l.batchSize} | ${n(l.inferencesPerSecond)} inferences/s (${n(l.msPerCall)} ms per call) | event loop blocked up to ${n(l.eventLoopBlockedMaxMs)} ms |`);
    }
  }

  lines.push('', '### The worker', '',
    '| run | batch | prefetch | jobs/s | ratio to the lower limit | p50 / p95 / p99 ms | mean batch | model busy | ms per model call, worker / bare (batch) | receipt→ack ms | CPU worker / broker / harness | peak RSS |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const s of worker.summary) {
    const r = Object.values<any>(worker.results).flatMap((m: any) => m.worker).find((w: any) => w.label === s.run);
    lines.push(`| \`${s.run}\` | ${r.maxBatchSize} | ${r.prefetch} | ${n(s.jobsPerSecond)} | **${n(s.ratio)}** of ${s.limitedBy} (${n(s.limit)}/s) | ` +
      `${n(s.latencyMs?.p50)} / ${n(s.latencyMs?.p95)} / ${n(s.latencyMs?.p99)} | ${n(r.meanBatchSize)} | ${pct(r.inferenceBusy)} | ` +
      `${n(r.msPerModelCall)} / ${n(s.bareMsPerCall)} (${s.inferenceLimitBatch}) | ${n(r.receiptToAckMs)} | ${n(r.cores.worker, 2)} / ${n(r.cores.broker, 2)} / ${n(r.cores.harness, 2)} | ${n(s.peakRssMiB)} MiB |`);
  }
  lines.push('');
  for (const g of worker.batchingGains) {
    lines.push(`Dynamic batching gain at prefetch ${g.prefetch} (\`${g.batched}\` over \`${g.single}\`): **${n(g.gain)}×**.`, '');
  }
  lines.push('| target | required | measured | |', '| --- | --- | --- | --- |');
  for (const t of worker.targets) lines.push(`| ${t.target} | ≥ ${t.required} | ${n(t.measured)} | ${t.met ? 'met' : '**missed**'} |`);

  lines.push('', '### Synthesis', '', `Library loaded from \`${synth.library}/\`; ${synth.results[0].runs.length} fresh processes per size.`, '',
    '| pools | objects | build + synth (median) | per pool | whole process (median) | module loading | heap retained | peak RSS |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of synth.results) {
    const load = median(r.runs.map((m: any) => m.loadMs));
    lines.push(`| ${r.pools} | ${r.objects} | ${n(r.medianMs)} ms | ${n(r.medianMs / r.pools)} ms | ${n(r.medianProcessMs)} ms | ${n(load)} ms | ` +
      `${n(r.maxHeapRetainedMiB, 2)} MiB | ${n(r.maxRssPeakMiB)} MiB |`);
  }
  lines.push('');
  for (const t of synth.targets) lines.push(`- ${t.target}: ${n(t.measured)} (needs ${t.required}): ${t.met ? 'met' : '**missed**'}`);
  console.log(lines.join('\n'));
}

function n(value: number | undefined | null, digits = 3): string {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  if (value === 0) return '0';
  const scale = 10 ** (digits - 1 - Math.floor(Math.log10(Math.abs(value))));
  return String(Math.round(value * scale) / scale);
}

function pct(value: number | null | undefined): string {
  return value === undefined || value === null ? '–' : `${Math.round(value * 100)} %`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

main();

/**
 * Where a worker's CPU time went: a V8 CPU profile (`node --cpu-prof`, written by `npm run bench -- --cpu-prof
 * <dir>`) summed by self time per function and per package.
 *
 *   npx ts-node --transpile-only bench/profile-summary.ts <file.cpuprofile> [top]
 */
import { readFileSync } from 'fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: number[];
}

interface CpuProfile {
  readonly nodes: ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: number[];
  readonly timeDeltas: number[];
}

/** Self time in milliseconds, by function and by the package (or worker file) it lives in. */
export interface ProfileSummary {
  readonly totalMs: number;
  readonly idleMs: number;
  readonly byPackage: Array<{ name: string; ms: number; share: number }>;
  readonly byFunction: Array<{ name: string; ms: number; share: number }>;
}

/** Sums the self time of every sample of `path` by function and by package. */
export function summarizeProfile(path: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfMs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));

  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let totalMs = 0;
  let idleMs = 0;
  for (const [id, ms] of selfMs) {
    const frame = nodes.get(id)!.callFrame;
    totalMs += ms;
    if (frame.functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    const where = packageOf(frame.url, frame.functionName);
    const name = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + ms);
    byPackage.set(where, (byPackage.get(where) ?? 0) + ms);
  }
  const busy = totalMs - idleMs;
  const rank = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, ms]) => ({ name, ms, share: busy > 0 ? ms / busy : 0 }));
  return { totalMs, idleMs, byPackage: rank(byPackage), byFunction: rank(byFunction) };
}

// node_modules/<pkg> (scoped too), the worker's own files by name, Node's internals, and V8's pseudo-frames.
function packageOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1];
  if (url.startsWith('node:')) return 'node internals';
  const own = /\/dist\/worker\/src\/([^/]+)\.js$/.exec(url);
  return own ? `worker ${own[1]}.ts` : url;
}

function shortUrl(url: string): string {
  return url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, '').replace(/^.*\/dist\/worker\//, '');
}

/** Prints a summary; shares are of the busy (non-idle) time. */
export function printProfileSummary(path: string, top = 15): void {
  const s = summarizeProfile(path, top);
  const pct = (share: number) => `${(share * 100).toFixed(1).padStart(5)} %`;
  console.log(`${path}: ${(s.totalMs / 1000).toFixed(2)} s profiled, ${((s.totalMs - s.idleMs) / 1000).toFixed(2)} s busy`);
  console.log('  self time by package:');
  for (const p of s.byPackage) console.log(`    ${pct(p.share)}  ${p.ms.toFixed(0).padStart(6)} ms  ${p.name}`);
  console.log('  self time by function:');
  for (const f of s.byFunction) console.log(`    ${pct(f.share)}  ${f.ms.toFixed(0).padStart(6)} ms  ${f.name}`);
}

if (require.main === module) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    console.error('usage: profile-summary.ts <file.cpuprofile> [top]');
    process.exit(2);
  }
  printProfileSummary(file, top ? Number(top) : 15);
}

/**
 * CPU time and memory of the processes a run involves (worker, broker, this harness), read from /proc, so that
 * a figure below its limit can be explained by who used the machine's cores meanwhile.
 */
import { readdirSync, readFileSync } from 'fs';
import { performance } from 'perf_hooks';

// /proc/<pid>/stat counts in clock ticks; USER_HZ is 100 on every Linux this runs on.
const TICKS_PER_SECOND = 100;

/** User + system CPU seconds a process has used so far; NaN once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces; fields after it start with the state (field 3). utime, stime are 14, 15.
    const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** Peak resident set size of a process (VmHWM), in MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
}

/** The local RabbitMQ's Erlang VM, found by its command line; undefined when not visible from here. */
export function findBrokerPid(): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('beam.smp') && cmdline.includes('rabbit')) return Number(entry);
    } catch {
      // The process ended while we looked.
    }
  }
  return undefined;
}

/** CPU cores used by each watched process over a window: CPU seconds / wall seconds. */
export type CoresUsed = Record<string, number>;

/**
 * Samples the CPU time of a few processes every `intervalMs`, so that the CPU used between two moments
 * (e.g. the first and the last result of a drain) can be read afterwards.
 */
export class CpuTimeline {
  private readonly samples: Array<{ at: number; seconds: Record<string, number> }> = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: Record<string, number | undefined>,
    intervalMs = 50,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Takes a sample now (also call it at the end of a window for an exact last reading). */
  sample(): void {
    const seconds: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids)) seconds[name] = pid === undefined ? NaN : cpuSeconds(pid);
    seconds.harness = process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6;
    this.samples.push({ at: performance.now(), seconds });
  }

  /** Cores used by each process over the sampled span that covers `from`..`to` (performance.now() times). */
  coresBetween(from: number, to: number): CoresUsed {
    const start = [...this.samples].reverse().find((s) => s.at <= from) ?? this.samples[0];
    const end = this.samples.find((s) => s.at >= to) ?? this.samples[this.samples.length - 1];
    const wall = (end.at - start.at) / 1000;
    const cores: CoresUsed = {};
    for (const name of Object.keys(end.seconds)) cores[name] = wall > 0 ? (end.seconds[name] - start.seconds[name]) / wall : NaN;
    return cores;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

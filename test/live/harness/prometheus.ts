/**
 * A real Prometheus server (Debian's `prometheus` package) on loopback, for the live-signal suite.
 *
 * Each instance gets its own temporary directory (config, rules, TSDB) and a free port, and is killed and
 * removed by {@link PrometheusServer.stop}. The query helpers speak the HTTP API that prometheus-adapter and
 * KEDA use, so the suite sends the same requests they would.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as YAML from 'yaml';

/** The binary Debian's package installs. Override with PROMETHEUS_BIN. */
export const PROMETHEUS_BIN = process.env.PROMETHEUS_BIN ?? 'prometheus';

/** One sample of an instant vector. */
export interface VectorSample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

/** The part of prometheus.yml the suite writes. */
export interface PrometheusConfig {
  readonly global: { readonly scrape_interval: string; readonly evaluation_interval: string; readonly scrape_timeout?: string };
  readonly scrape_configs: readonly object[];
  /** Rule groups in Prometheus' own format: `{ groups: [...] }`. Written to rules.yml. */
  readonly rules?: { readonly groups: readonly object[] };
}

/** A loaded rule as /api/v1/rules reports it. */
export interface RuleState {
  readonly name: string;
  readonly health: string;
  readonly lastError?: string;
  readonly query: string;
  readonly type: string;
}

/** A scrape target as /api/v1/targets reports it. */
export interface ActiveTarget {
  readonly scrapePool: string;
  readonly scrapeUrl: string;
  readonly health: 'up' | 'down' | 'unknown';
  readonly lastError: string;
  readonly labels: Record<string, string>;
  readonly discoveredLabels: Record<string, string>;
}

/** Whether the binary is there, and its version line, for a clear skip/failure message. */
export function prometheusVersion(): string | undefined {
  const result = spawnSync(PROMETHEUS_BIN, ['--version'], { encoding: 'utf8' });
  if (result.status !== 0) return undefined;
  return (result.stdout || result.stderr).split('\n')[0];
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for `promise` or `ms`, whichever comes first, without leaving a timer behind. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => { timer = setTimeout(resolve, ms); })]);
  clearTimeout(timer);
}

export class PrometheusServer {
  /** Starts a server with this configuration and waits until it answers /-/ready. */
  public static async start(name: string, config: PrometheusConfig): Promise<PrometheusServer> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `live-prometheus-${name}-`));
    const port = await freePort();
    const server = new PrometheusServer(name, dir, port);
    try {
      server.writeConfig(config);
      server.spawn();
      await server.waitReady();
    } catch (error) {
      await server.stop(); // nothing left running, no directory left behind
      throw error;
    }
    return server;
  }

  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  public readonly url: string;

  private child?: ChildProcess;
  private output = '';

  private constructor(public readonly name: string, public readonly dir: string, public readonly port: number) {
    this.url = `http://127.0.0.1:${port}`;
  }

  /** The YAML of prometheus.yml as written, for failure messages. */
  public get configText(): string {
    return fs.readFileSync(path.join(this.dir, 'prometheus.yml'), 'utf8');
  }

  /** Last lines of the server's own log. */
  public get log(): string {
    return this.output.split('\n').slice(-20).join('\n');
  }

  /** Runs an instant query; throws with the query and Prometheus' error when it is rejected. */
  public async query(promql: string): Promise<VectorSample[]> {
    const body = await this.api('/api/v1/query', { query: promql });
    const data = body.data as { resultType: string; result: any };
    if (data.resultType === 'scalar') return [{ metric: {}, value: Number(data.result[1]) }];
    if (data.resultType !== 'vector') throw new Error(`query ${promql} returned a ${data.resultType}, not a vector`);
    return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((s) => ({
      metric: s.metric,
      value: Number(s.value[1]),
    }));
  }

  /** A range query: each series with its values from `start` to `end` (seconds since the epoch) every `stepSeconds`. */
  public async queryRange(
    promql: string,
    start: number,
    end: number,
    stepSeconds = 1,
  ): Promise<Array<{ metric: Record<string, string>; values: number[]; times: number[] }>> {
    const body = await this.api('/api/v1/query_range', { query: promql, start: String(start), end: String(end), step: String(stepSeconds) });
    return (body.data.result as Array<{ metric: Record<string, string>; values: Array<[number, string]> }>).map((s) => ({
      metric: s.metric,
      values: s.values.map((v) => Number(v[1])),
      times: s.values.map((v) => Number(v[0])),
    }));
  }

  /** The series a selector matches over the last `lookback` seconds (what prometheus-adapter discovers with). */
  public async series(match: string, lookbackSeconds = 600): Promise<Array<Record<string, string>>> {
    const start = String(Date.now() / 1000 - lookbackSeconds);
    const body = await this.api('/api/v1/series', { 'match[]': match, start });
    return body.data as Array<Record<string, string>>;
  }

  /** Active scrape targets. */
  public async targets(): Promise<ActiveTarget[]> {
    const body = await this.api('/api/v1/targets', { state: 'active' });
    return (body.data as { activeTargets: ActiveTarget[] }).activeTargets;
  }

  /** Loaded rule groups, with each rule's health and last error. */
  public async rules(): Promise<Array<{ name: string; rules: RuleState[] }>> {
    const body = await this.api('/api/v1/rules', {});
    return (body.data as { groups: any[] }).groups;
  }

  /** Kills the server and removes its directory. Safe to call twice. */
  public async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await within(exited, 5000);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private writeConfig(config: PrometheusConfig): void {
    const { rules, ...rest } = config;
    const text = YAML.stringify({ ...rest, rule_files: rules ? ['rules.yml'] : [] }, { lineWidth: 0 });
    fs.writeFileSync(path.join(this.dir, 'prometheus.yml'), text);
    if (rules) fs.writeFileSync(path.join(this.dir, 'rules.yml'), YAML.stringify(rules, { lineWidth: 0 }));

    // Prometheus would only log a bad config and exit; checking it first gives a precise message.
    const check = spawnSync('promtool', ['check', 'config', path.join(this.dir, 'prometheus.yml')], { encoding: 'utf8' });
    if (check.error === undefined && check.status !== 0) {
      throw new Error(`Prometheus ${this.name}: the generated configuration is invalid:\n${check.stdout}${check.stderr}\n--- prometheus.yml\n${text}`);
    }
  }

  private spawn(): void {
    this.child = spawn(
      PROMETHEUS_BIN,
      [
        `--config.file=${path.join(this.dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(this.dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
  }

  private async waitReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined) {
        throw new Error(`Prometheus ${this.name} exited with code ${this.child.exitCode}:\n${this.log}`);
      }
      try {
        const response = await fetch(`${this.url}/-/ready`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(200);
    }
    throw new Error(`Prometheus ${this.name} was not ready on ${this.url} after ${timeoutMs} ms:\n${this.log}`);
  }

  private async api(endpoint: string, params: Record<string, string>): Promise<any> {
    const response = await fetch(`${this.url}${endpoint}?${new URLSearchParams(params).toString()}`);
    const body = (await response.json()) as { status: string; error?: string; data?: unknown };
    if (body.status !== 'success') {
      throw new Error(`Prometheus ${this.name} ${endpoint} ${JSON.stringify(params)} failed: ${body.error}`);
    }
    return body;
  }
}

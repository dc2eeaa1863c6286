/**
 * Real worker processes from worker/, started with the environment the synthesized Deployment gives its
 * container: each one stands for one pod of the simulated cluster.
 *
 * The container's env is taken from the manifest. Values Kubernetes would fill in from elsewhere are resolved
 * the way the cluster would: `RABBITMQ_URL` from its Secret (here, the suite's virtual host), `WORKER_ID` from
 * the pod name (downward API). Three are replaced because this machine is not the cluster, and each replacement
 * is named: `MODEL_PATH` points at the worker's CPU test model, `EXECUTION_PROVIDER` is `cpu` (no GPU here), and
 * `HTTP_PORT` is a free loopback port (pods each have their own network namespace; processes here share one).
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { freePort } from './prometheus';
import { WorkerEnv, WorkerHttp } from '../../../src';
import { Manifest } from '../../util/manifests';

export const WORKER_DIR = path.resolve(__dirname, '../../../worker');
export const WORKER_MAIN = path.join(WORKER_DIR, 'dist/worker/src/main.js');
export const WORKER_CLI = path.join(WORKER_DIR, 'dist/worker/src/cli.js');
export const WORKER_TEST_MODEL = path.join(WORKER_DIR, 'models/mlp.onnx');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for `promise` or `ms`, whichever comes first, without leaving a timer behind. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => { timer = setTimeout(resolve, ms); })]);
  clearTimeout(timer);
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : fs.statSync(full).mtimeMs);
  }
  return newest;
}

/**
 * Builds the worker (tsc) when its compiled entry point is missing or older than its sources, and its test
 * models when they are missing. Throws with the compiler's output when the build fails.
 */
export function ensureWorkerBuilt(): void {
  if (!fs.existsSync(path.join(WORKER_DIR, 'node_modules'))) {
    throw new Error('worker/node_modules is missing: run `npm ci --prefix worker` (.ci/run does)');
  }
  const sourcesNewest = Math.max(newestMtime(path.join(WORKER_DIR, 'src')), fs.statSync(path.resolve(WORKER_DIR, '../src/contract.ts')).mtimeMs);
  const stale = !fs.existsSync(WORKER_MAIN) || fs.statSync(WORKER_MAIN).mtimeMs < sourcesNewest;
  if (stale) {
    const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: WORKER_DIR, encoding: 'utf8', timeout: 180_000 });
    if (build.status !== 0) throw new Error(`worker build (npm run build in worker/) failed:\n${build.stdout}${build.stderr}`);
  }
  if (!fs.existsSync(WORKER_TEST_MODEL)) {
    const models = spawnSync('npm', ['run', '--silent', 'build:test-models'], { cwd: WORKER_DIR, encoding: 'utf8', timeout: 180_000 });
    if (models.status !== 0) throw new Error(`worker test models (npm run build:test-models) failed:\n${models.stdout}${models.stderr}`);
  }
}

/** The worker container of a synthesized Deployment: the one that exposes the contract's metrics port. */
export function workerContainer(deployment: Manifest): any {
  const containers: any[] = deployment.spec.template.spec.containers;
  const found = containers.find((c) => (c.ports ?? []).some((p: any) => p.containerPort === WorkerHttp.port));
  if (!found) throw new Error(`Deployment ${deployment.metadata.name} has no container with port ${WorkerHttp.port}`);
  return found;
}

/** Environment of one worker pod, resolved as described in the module comment. */
export function podEnvironment(deployment: Manifest, podName: string, rabbitmqUrl: string, httpPort: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of workerContainer(deployment).env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.secretKeyRef && e.name === WorkerEnv.RABBITMQ_URL) env[e.name] = rabbitmqUrl;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = podName;
    else if (e.valueFrom) throw new Error(`env ${e.name} of the worker container comes from ${JSON.stringify(e.valueFrom)}, which the suite cannot resolve`);
  }
  const missing = [WorkerEnv.RABBITMQ_URL, WorkerEnv.JOB_QUEUE].filter((name) => env[name] === undefined);
  if (missing.length > 0) throw new Error(`the worker container does not set ${missing.join(', ')}`);
  // The three replacements: this machine's model, CPU, and a port of its own.
  env[WorkerEnv.MODEL_PATH] = WORKER_TEST_MODEL;
  env[WorkerEnv.EXECUTION_PROVIDER] = 'cpu';
  env[WorkerEnv.HTTP_PORT] = String(httpPort);
  return env;
}

/** One running worker process standing in for a pod. */
export class WorkerProcess {
  /**
   * Starts the compiled worker with the pod's environment, listening on `port` (a free one by default), and waits
   * until /readyz answers 200.
   */
  public static async start(deployment: Manifest, podName: string, rabbitmqUrl: string, port?: number, timeoutMs = 60_000): Promise<WorkerProcess> {
    const httpPort = port ?? (await freePort());
    const env = podEnvironment(deployment, podName, rabbitmqUrl, httpPort);
    const child = spawn(process.execPath, [WORKER_MAIN], {
      cwd: WORKER_DIR,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const worker = new WorkerProcess(podName, httpPort, env, child);
    await worker.waitReady(timeoutMs);
    return worker;
  }

  private output = '';

  private constructor(
    public readonly podName: string,
    public readonly port: number,
    public readonly env: Record<string, string>,
    private readonly child: ChildProcess,
  ) {
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  /** Loopback address of the pod's metrics port. */
  public get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Last lines of the worker's log. */
  public get log(): string {
    return this.output.split('\n').slice(-15).join('\n');
  }

  public get pid(): number | undefined {
    return this.child.pid;
  }

  /** SIGTERM (what the kubelet sends), then SIGKILL after `graceMs`. Safe to call twice. */
  public async stop(graceMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await within(exited, graceMs);
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await within(exited, 2000);
    }
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) {
        throw new Error(`worker ${this.podName} exited with code ${this.child.exitCode} before it was ready:\n${this.log}`);
      }
      try {
        const response = await fetch(`http://${this.address}${WorkerHttp.readyPath}`);
        if (response.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(250);
    }
    await this.stop(1000);
    throw new Error(`worker ${this.podName} was not ready on ${this.address}${WorkerHttp.readyPath} after ${timeoutMs} ms:\n${this.log}`);
  }
}

/** Publishes `count` valid jobs for the worker's test model with the worker's own CLI (publisher confirms). */
export function publishJobs(rabbitmqUrl: string, queue: string, count: number, jobIdPrefix: string): void {
  const result = spawnSync(
    process.execPath,
    [WORKER_CLI, 'publish', '--url', rabbitmqUrl, '--queue', queue, '--model', WORKER_TEST_MODEL, '--count', String(count),
      '--job-id-prefix', jobIdPrefix, '--quiet'],
    { cwd: WORKER_DIR, encoding: 'utf8', timeout: 60_000 },
  );
  if (result.status !== 0) throw new Error(`ai-worker-cli publish failed (exit ${result.status}):\n${result.stdout}${result.stderr}`);
}

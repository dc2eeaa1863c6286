/**
 * The worker's one HTTP port: liveness, readiness and Prometheus metrics, on the paths of {@link WorkerHttp}
 * that the constructs' probes and PodMonitor use.
 */
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { WorkerHttp } from './contract';
import type { Logger } from './logger';

/** Why the worker is or is not ready; `ready` is true only when every check passes. */
export interface Readiness {
  readonly ready: boolean;
  readonly checks: Record<string, boolean>;
}

export interface HealthServerOptions {
  readonly port: number;
  /** Loopback in tests; all interfaces in a pod, where the kubelet probes the pod IP. */
  readonly host?: string;
  readonly registry: Registry;
  readonly readiness: () => Readiness;
  readonly logger: Logger;
}

/** Serves `/healthz`, `/readyz` and `/metrics`. Resolves once listening. */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    handle(options, req, res).catch((err) => {
      options.logger.error({ err, path: req.url }, 'HTTP handler failed');
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  // Probes and scrapes are short; do not let an idle keep-alive socket hold shutdown up.
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return new HealthServer(server);
}

export class HealthServer {
  constructor(private readonly server: http.Server) {}

  /** The port actually bound (differs from the configured one when that was 0). */
  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function handle(options: HealthServerOptions, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  const path = new URL(req.url ?? '/', 'http://worker').pathname;

  switch (path) {
    case WorkerHttp.healthPath:
      // Answering at all proves the event loop is alive; nothing else belongs in liveness, or a broker outage
      // would make the kubelet restart every replica.
      sendJson(res, 200, { status: 'ok' });
      return;

    case WorkerHttp.readyPath: {
      const readiness = options.readiness();
      sendJson(res, readiness.ready ? 200 : 503, { status: readiness.ready ? 'ready' : 'not ready', checks: readiness.checks });
      return;
    }

    case WorkerHttp.metricsPath: {
      const body = await options.registry.metrics();
      res.writeHead(200, { 'content-type': options.registry.contentType }).end(body);
      return;
    }

    default:
      sendJson(res, 404, {
        error: `no such path; try ${WorkerHttp.healthPath}, ${WorkerHttp.readyPath} or ${WorkerHttp.metricsPath}`,
      });
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

import * as http from 'node:http';
import pino from 'pino';
import { WorkerHttp, WorkerMetrics } from '../src/contract';
import { HealthServer, Readiness, startHealthServer } from '../src/http';
import { WorkerMetricsRegistry } from '../src/metrics';
import { httpGet } from './support/broker';

describe('health server', () => {
  let server: HealthServer;
  let readiness: Readiness;
  let metrics: WorkerMetricsRegistry;

  beforeAll(async () => {
    metrics = new WorkerMetricsRegistry({ maxBatchSize: 8, defaultMetrics: false });
    readiness = { ready: false, checks: { modelLoaded: true, brokerConsuming: false } };
    server = await startHealthServer({
      port: 0,
      host: '127.0.0.1',
      registry: metrics.registry,
      readiness: () => readiness,
      logger: pino({ level: 'silent' }),
    });
  });

  afterAll(() => server.close());

  test('liveness answers 200 whatever the readiness', async () => {
    expect(await httpGet(server.port, WorkerHttp.healthPath)).toEqual({ status: 200, body: '{"status":"ok"}' });
  });

  test('readiness is 503 naming the failing check, then 200', async () => {
    const notReady = await httpGet(server.port, WorkerHttp.readyPath);
    expect(notReady.status).toBe(503);
    expect(JSON.parse(notReady.body)).toEqual({ status: 'not ready', checks: { modelLoaded: true, brokerConsuming: false } });

    readiness = { ready: true, checks: { modelLoaded: true, brokerConsuming: true } };
    expect((await httpGet(server.port, WorkerHttp.readyPath)).status).toBe(200);
  });

  test('metrics are the Prometheus text format with every outcome at 0 and batch buckets up to the batch size', async () => {
    metrics.jobFinished('completed', 0.2);
    const { status, body } = await httpGet(server.port, WorkerHttp.metricsPath);
    expect(status).toBe(200);
    expect(body).toContain(`${WorkerMetrics.jobsTotal}{outcome="completed"} 1`);
    for (const outcome of ['rejected', 'retried', 'exhausted']) expect(body).toContain(`${WorkerMetrics.jobsTotal}{outcome="${outcome}"} 0`);
    const buckets = [...body.matchAll(new RegExp(`^${WorkerMetrics.batchSize}_bucket\\{le="([^"]+)"\\}`, 'gm'))].map((m) => m[1]);
    expect(buckets).toEqual(['1', '2', '4', '8', '+Inf']);
  });

  test('unknown paths are 404 and other methods 405', async () => {
    expect((await httpGet(server.port, '/')).status).toBe(404);
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: server.port, path: WorkerHttp.healthPath, method: 'POST' }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(405);
  });
});

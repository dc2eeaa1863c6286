import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { App, Chart, Testing } from 'cdk8s';
import { parseAllDocuments } from 'yaml';
import { WorkerEnv, WorkerHttp } from '../src/contract';
import { Manifest, all, only, validateManifest } from './util/manifests';
import { buildExampleApp } from '../src/example/app';

const DIST = join(__dirname, '..', 'dist');

/** The example app's manifests, chart by chart, each object validated against its schema. */
function synthesizeCharts(): Map<string, Manifest[]> {
  const app = buildExampleApp(Testing.app());
  const charts = new Map<string, Manifest[]>();
  for (const chart of app.charts as Chart[]) {
    const manifests = chart.toJson() as Manifest[];
    manifests.forEach(validateManifest);
    charts.set(chart.node.id, manifests);
  }
  return charts;
}

describe('example app', () => {
  const charts = synthesizeCharts();
  const everything = [...charts.values()].flat();
  const workers = charts.get('ai-workers')!;
  const monitoring = charts.get('monitoring')!;
  const cluster = charts.get('cluster')!;

  test('dist/ is what `npm run synth` writes today', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'example-synth-'));
    try {
      buildExampleApp(new App({ outdir })).synth();
      const expected = readdirSync(outdir).sort();
      const committed = readdirSync(DIST).filter((f) => f.endsWith('.yaml')).sort();
      const stale = 'dist/ is stale: run `npm run synth` and commit dist/.';
      expect({ files: committed, hint: stale }).toEqual({ files: expected, hint: stale });
      for (const file of expected) {
        const fresh = readFileSync(join(outdir, file), 'utf8');
        const onDisk = readFileSync(join(DIST, file), 'utf8');
        if (fresh !== onDisk) throw new Error(`dist/${file} is stale: run \`npm run synth\` and commit dist/.`);
      }
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });

  test('every committed manifest in dist/ validates against its schema', () => {
    for (const file of readdirSync(DIST).filter((f) => f.endsWith('.yaml'))) {
      const docs = parseAllDocuments(readFileSync(join(DIST, file), 'utf8')).map((d) => d.toJSON() as Manifest);
      expect(docs.length).toBeGreaterThan(0);
      docs.forEach(validateManifest);
    }
  });

  test('snapshot of the OCR service\'s objects', () => {
    // Only this service's objects: other charts (GPU infrastructure, KEDA) add to `monitoring` and the adapter rules.
    // The HPA is QueueScaledHpa's and asserted below.
    const ocrMonitoring = monitoring.filter((m) => m.metadata.name?.startsWith('ocr-workers'));
    const ocrWorkers = workers.filter((m) => m.kind !== 'HorizontalPodAutoscaler');
    expect({ cluster, monitoring: ocrMonitoring, workers: ocrWorkers }).toMatchSnapshot();
  });

  test('RabbitMQ is scraped in messaging, workers run in ai-workers, monitoring objects live in monitoring', () => {
    const serviceMonitor = only(monitoring, 'ServiceMonitor', 'ocr-workers-rabbitmq');
    expect(serviceMonitor.spec.namespaceSelector.matchNames).toEqual(['messaging']);
    for (const m of monitoring) expect(m.metadata.namespace).toBe('monitoring');
    for (const m of workers) expect(m.metadata.namespace).toBe('ai-workers');
    for (const m of cluster) expect(m.metadata.namespace).toBeUndefined();
  });

  test('the workers\' namespace enforces the restricted profile their pods are built for', () => {
    const namespace = only(cluster, 'Namespace', 'ai-workers');
    expect(namespace.metadata.labels!['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const pod = only(workers, 'Deployment', 'ocr-workers').spec.template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    }
    expect(pod.volumes.some((v: any) => v.hostPath)).toBe(false);
  });

  test('the HPA scales the worker Deployment, which carries no replicas, on a metric the adapter serves', () => {
    const deployment = only(workers, 'Deployment', 'ocr-workers');
    const hpa = only(workers, 'HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    expect(deployment.spec.replicas).toBeUndefined();
    expect(hpa.spec).toMatchObject({ minReplicas: 1, maxReplicas: 40 });

    const adapterConfig = only(monitoring, 'ConfigMap', 'prometheus-adapter-rules').data['config.yaml'];
    const metricName = hpa.spec.metrics[0].external.metric.name;
    expect(adapterConfig).toContain(`as: ${metricName}`);
    // The backlog per worker is the jobs one worker holds: its prefetch.
    const prefetch = deployment.spec.template.spec.containers[0].env.find((e: any) => e.name === WorkerEnv.PREFETCH).value;
    expect(hpa.spec.metrics[0].external.target.averageValue).toBe(prefetch);
  });

  test('the PodMonitor and the alerts point at the worker pods and the autoscaler', () => {
    const deployment = only(workers, 'Deployment', 'ocr-workers');
    const hpa = only(workers, 'HorizontalPodAutoscaler');
    const podMonitor = only(monitoring, 'PodMonitor');
    expect(podMonitor.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    expect(deployment.spec.template.spec.containers[0].ports.map((p: any) => p.name)).toContain(podMonitor.spec.podMetricsEndpoints[0].port);
    expect(podMonitor.spec.podMetricsEndpoints[0].port).toBe(WorkerHttp.portName);

    const rules = only(monitoring, 'PrometheusRule').spec.groups.flatMap((g: any) => g.rules);
    const atMax = rules.find((r: any) => r.alert === 'JobQueueAutoscalerAtMaxReplicas');
    expect(atMax.expr).toContain(`horizontalpodautoscaler="${hpa.metadata.name}"`);
  });

  test('the OCR HPA scales on the backlog and on GPU utilization, both served by the adapter', () => {
    const hpa = only(workers, 'HorizontalPodAutoscaler');
    expect(hpa.spec.metrics.map((m: any) => m.type)).toEqual(['External', 'Pods']);
    const gpu = hpa.spec.metrics[1].pods;
    expect(gpu.metric.name).toBe('dcgm_gpu_utilization');
    expect(gpu.target.type).toBe('AverageValue');
    const adapterConfig = only(monitoring, 'ConfigMap', 'prometheus-adapter-rules').data['config.yaml'];
    expect(adapterConfig).toContain('DCGM_FI_DEV_GPU_UTIL');
    expect(adapterConfig).toContain(`as: ${gpu.metric.name}`);
  });

  test('one Kubernetes version, the imports\' 1.27, for Pod Security and the Cluster Autoscaler', () => {
    const namespace = only(cluster, 'Namespace', 'ai-workers');
    expect(namespace.metadata.labels!['pod-security.kubernetes.io/enforce-version']).toBe('v1.27');
    const autoscaler = only(charts.get('gpu-infrastructure')!, 'Deployment', 'cluster-autoscaler');
    expect(autoscaler.spec.template.spec.containers[0].image).toMatch(/\/cluster-autoscaler:v1\.27\.\d+$/);
  });

  test('the KEDA service\'s monitoring objects are named after its workers, not its construct path', () => {
    const keda = charts.get('ai-workers-keda')!;
    const deployment = only(keda, 'Deployment');
    const names = keda.filter((m) => ['PodMonitor', 'ServiceMonitor', 'PrometheusRule'].includes(m.kind))
      .map((m) => m.metadata.name).sort();
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(name).toMatch(new RegExp(`^${deployment.metadata.name}(-|$)`));
    expect(JSON.stringify(names)).not.toMatch(/monitoring-[0-9a-f]{8}/);
  });

  test('the workers\' PriorityClass is part of the app', () => {
    const deployment = only(workers, 'Deployment', 'ocr-workers');
    const className = deployment.spec.template.spec.priorityClassName;
    expect(all(everything, 'PriorityClass').map((p) => p.metadata.name)).toContain(className);
  });

  test('the AMQP URL is only referenced, never written', () => {
    const deployment = only(workers, 'Deployment', 'ocr-workers');
    const url = deployment.spec.template.spec.containers[0].env.find((e: any) => e.name === WorkerEnv.RABBITMQ_URL);
    expect(url).toEqual({ name: WorkerEnv.RABBITMQ_URL, valueFrom: { secretKeyRef: { name: 'rabbitmq-ocr-worker', key: 'url' } } });
    expect(JSON.stringify(everything)).not.toMatch(/amqps?:\/\/[^"]*@/);
    expect(all(everything, 'Secret')).toEqual([]);
  });
});

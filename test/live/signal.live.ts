/**
 * The scaling signal, end to end, on the real servers: RabbitMQ on 127.0.0.1:5672, a real Prometheus scraping
 * it with the settings of the synthesized ServiceMonitor/PodMonitor, the exact queries prometheus-adapter would
 * send for the synthesized HPA, real worker processes draining the queue, the PrometheusRule's alerts evaluated
 * on the live data, and a recorded dcgm-exporter page for the GPU signal.
 *
 * A second Prometheus runs the same objects with deliberately broken scrape settings, to show that the checks
 * fail when the settings are wrong. Each step that fails says which step it was and what it saw.
 */
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as amqp from 'amqplib';
import { Chart, Duration, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import {
  DCGM_EXPORTER_PORT,
  hpaDesiredReplicas,
  HpaMetricSample,
  JobOutcome,
  MessageType,
  RabbitmqQueueSeries,
  WorkerEnv,
  WorkerHttp,
  WorkerMetrics,
} from '../../src';
import { GpuWorkerDeployment, ModelSource } from '../../src/gpu-worker-deployment';
import { KedaQueueScaler, RabbitmqProtocol } from '../../src/keda-queue-scaler';
import { QueueScaledHpa } from '../../src/queue-scaled-hpa';
import { KubeStateMetricsSeries, QueueWorkerAlert, QueueWorkerAlertNames, workerPodNamePattern } from '../../src/queue-worker-monitoring';
import { Manifest, synthValid, only } from '../util/manifests';
import { LiveBroker, prometheusPluginEnabled, RABBITMQ_METRICS_ADDRESS } from './harness/broker';
import { podsOf, rabbitmqClusterOperatorObjects, serviceOf } from './harness/cluster';
import { FixtureServer } from './harness/fixture-server';
import { KedaTrigger, kedaPrometheusValue, kedaRabbitmqHttpQueueLength } from './harness/keda';
import { kubeStateMetricsObjects, kubeStateMetricsPage } from './harness/kube-state-metrics';
import { PrometheusServer, prometheusVersion, freePort } from './harness/prometheus';
import { adapterConfigFromConfigMap, buildExternalQuery, PrometheusAdapterModel } from './harness/prometheus-adapter';
import { monitorJobs, prometheusRuleGroups, SimulatedCluster } from './harness/scrape-config';
import { eventually, step } from './harness/steps';
import { ensureWorkerBuilt, publishJobs, workerContainer, WorkerProcess } from './harness/workers';
import { NAMESPACES, PROMETHEUS_SELECTOR, Scenario, synthesizeScenario, WORKER_DEPLOYMENT } from './scenario';
import { assertTopology } from '../../worker/src/topology';

/** Short test interval: the suite needs seconds, not the 15 s the objects declare. */
const TEST_INTERVAL = '1s';

/** Backlog per replica (the HPA's AverageValue target), and the HPA's bounds. */
const TARGET = 5;
const MIN_REPLICAS = 1;
const MAX_REPLICAS = 10;

/** The job queue's backlog after each publishing step, and the replicas the HPA must ask for at each. */
const BACKLOG_STEPS = [
  { backlog: 7, replicas: 2 },
  { backlog: 23, replicas: 5 },
  { backlog: 61, replicas: 10 }, // ceil(61 / 5) = 13, clamped to maxReplicas
];

/** Messages on another queue of the same vhost, and on a same-named queue of the default vhost "/". */
const OTHER_QUEUE_DEPTH = 4;
const DECOY_DEPTH = 9;

/**
 * The worker pods: `<deployment>-<pod-template-hash>-<suffix>`, with the hash and suffixes the fixture recorded
 * (a ReplicaSet would choose others; any will do), and the GPU utilization the fixture gives each.
 */
const FIXTURE_PREFIX = 'gpu-workers';
const POD_SUFFIXES = ['6d8f7c9b54-2xk4q', '6d8f7c9b54-h8zpl'];
const FIXTURE_UTILIZATION = [87, 62];
let WORKER_PODS: string[] = [];
const EXPORTER_POD = 'dcgm-exporter-7xq2m';
const RABBITMQ_CLUSTER = 'rabbitmq';

const suffix = randomBytes(3).toString('hex');
const queue = `live-jobs-${suffix}`;
const otherQueue = `live-other-${suffix}`;

let broker: LiveBroker | undefined;
let scenario: Scenario;
let prometheus: PrometheusServer | undefined;
let broken: PrometheusServer | undefined;
let fixture: FixtureServer | undefined;
let ksm: FixtureServer | undefined;
let ksmObjects: ReturnType<typeof kubeStateMetricsObjects>;
const workers: WorkerProcess[] = [];
const workerPorts: Record<string, number> = {};
let adapter: PrometheusAdapterModel;
let brokenAdapter: PrometheusAdapterModel;

/** Deep copy of a manifest, to break one setting without touching the synthesized original. */
const clone = (m: Manifest): Manifest => JSON.parse(JSON.stringify(m));

function cluster(s: Scenario): SimulatedCluster {
  const rabbit = rabbitmqClusterOperatorObjects(NAMESPACES.rabbitmq, RABBITMQ_CLUSTER, RABBITMQ_METRICS_ADDRESS);
  const deployment = s.manifests.deployment;
  const workerPods = podsOf(deployment, WORKER_PODS, (pod, port) =>
    (port === WorkerHttp.port ? `127.0.0.1:${workerPorts[pod]}` : undefined));
  // A neighbour in the workers' namespace with a port of the same name: a selector that is too wide scrapes it.
  const neighbour = { ...workerPods[0], name: 'web-frontend-5f7b8c-abcde', labels: { 'app.kubernetes.io/name': 'web-frontend' } };
  const exporterPods = podsOf(s.manifests.dcgmDaemonSet, [EXPORTER_POD], (_pod, port) =>
    (port === DCGM_EXPORTER_PORT ? fixture!.address : undefined));
  // The operator's headless Service of the same cluster, with the same labels but no metrics port.
  const nodesService = { ...rabbit.service, name: `${RABBITMQ_CLUSTER}-nodes`, ports: [{ name: 'epmd', port: 4369 }, { name: 'cluster-links', port: 25672 }] };
  return {
    pods: [rabbit.pod, ...workerPods, neighbour, ...exporterPods, ksmObjects.pod],
    services: [rabbit.service, nodesService, serviceOf(s.manifests.dcgmService), ksmObjects.service],
  };
}

/** Scrape jobs and rules from the synthesized monitoring objects. */
function prometheusConfig(objects: Manifest[], rules: Manifest | undefined, c: SimulatedCluster) {
  const options = { testInterval: TEST_INTERVAL, monitorSelector: PROMETHEUS_SELECTOR };
  return {
    global: { scrape_interval: TEST_INTERVAL, evaluation_interval: TEST_INTERVAL },
    scrape_configs: objects.flatMap((o) => monitorJobs(o, c, options).map((j) => j.config)),
    rules: rules ? prometheusRuleGroups(rules, TEST_INTERVAL) : undefined,
  };
}

const backlogMetric = () => scenario.hpa.backlogMetric;
const hpaExternal = () => scenario.manifests.hpa.spec.metrics.find((m: any) => m.type === 'External').external;

/** The adapter's answer for the HPA's backlog metric, as the HPA (in the workers' namespace) asks for it. */
async function adapterBacklog(a = adapter, selector = hpaExternal().metric.selector) {
  return a.externalMetric(scenario.manifests.hpa.metadata.namespace!, hpaExternal().metric.name, selector);
}

function alert(name: string): QueueWorkerAlert {
  const found = scenario.monitoring.alerts.find((a) => a.alert === name);
  if (!found) throw new Error(`the PrometheusRule has no alert ${name}`);
  return found;
}

/**
 * The kube-state-metrics page for the cluster state of a step: the HPA at its maximum or not, and one worker pod
 * that no node can take (no GPU free) or none.
 */
function clusterState(state: { atMax: boolean; pending: boolean }): string {
  const hpa = scenario.manifests.hpa;
  return kubeStateMetricsPage({
    hpas: [{
      namespace: hpa.metadata.namespace!, name: hpa.metadata.name!, max: hpa.spec.maxReplicas, current: state.atMax ? hpa.spec.maxReplicas : 2,
    }],
    unschedulablePods: state.pending ? [{ namespace: NAMESPACES.workers, pod: `${scenario.workers.name}-6d8f7c9b54-q7w2e` }] : [],
  });
}

/** Evaluates an alert's expression on the live data: any series means its condition holds. */
async function holds(name: string): Promise<boolean> {
  return (await prometheus!.query(alert(name).expr)).length > 0;
}

/** The state Prometheus' own rule evaluation gives the loaded alert: 'pending' until its `for` has passed. */
async function ruleState(name: string): Promise<string | undefined> {
  const series = await prometheus!.query(`ALERTS{alertname=${JSON.stringify(name)}}`);
  return series[0]?.metric.alertstate;
}

async function publishRaw(target: string, body: string, count: number): Promise<void> {
  const connection = await amqp.connect(broker!.url);
  try {
    const ch = await connection.createConfirmChannel();
    for (let i = 0; i < count; i++) {
      ch.sendToQueue(target, Buffer.from(body), { type: MessageType.jobRequested, contentType: 'application/json', messageId: `poison-${i}` });
    }
    await ch.waitForConfirms();
  } finally {
    await connection.close();
  }
}

beforeAll(async () => {
  await step('preconditions', () => {
    const version = prometheusVersion();
    if (!version) throw new Error("no `prometheus` binary: install Debian's prometheus package (.ci/run does)");
    if (!prometheusPluginEnabled()) throw new Error('RabbitMQ runs without the rabbitmq_prometheus plugin: `rabbitmq-plugins enable rabbitmq_prometheus`');
  });
  await step('build the worker', () => ensureWorkerBuilt());

  broker = await step('create the suite\'s RabbitMQ virtual host', () => LiveBroker.create('live-signal'));
  scenario = await step('synthesize the app', () => synthesizeScenario({
    queue, vhost: broker!.vhost, backlogPerReplica: TARGET, minReplicas: MIN_REPLICAS, maxReplicas: MAX_REPLICAS,
  }));
  WORKER_PODS = POD_SUFFIXES.map((s) => `${scenario.workers.name}-${s}`);

  await step('declare the worker topology as the worker does', async () => {
    const env = Object.fromEntries((workerContainer(scenario.manifests.deployment).env as any[])
      .filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
    const ch = await broker!.channel();
    await assertTopology(ch as any, {
      jobQueue: env[WorkerEnv.JOB_QUEUE],
      resultsExchange: env[WorkerEnv.RESULTS_EXCHANGE],
      deadLetterExchange: env[WorkerEnv.DEAD_LETTER_EXCHANGE],
      deadLetterQueue: env[WorkerEnv.DEAD_LETTER_QUEUE],
      deliveryLimit: Number(env[WorkerEnv.DELIVERY_LIMIT]),
    });
    await ch.close();
    await broker!.declareQueue(otherQueue);
    await broker!.fill(otherQueue, OTHER_QUEUE_DEPTH);
    await broker!.fillDecoy('/', queue, DECOY_DEPTH);
  });

  await step('serve the recorded dcgm-exporter page', async () => {
    const recorded = fs.readFileSync(path.join(__dirname, 'fixtures/dcgm-exporter-metrics.prom'), 'utf8');
    const page = recorded.split(`pod="${FIXTURE_PREFIX}-`).join(`pod="${scenario.workers.name}-`);
    const metricsPath = scenario.manifests.dcgmServiceMonitor.spec.endpoints[0].path ?? '/metrics';
    fixture = await FixtureServer.start(page, metricsPath);
  });

  await step('serve kube-state-metrics for an idle cluster', async () => {
    ksm = await FixtureServer.start(clusterState({ atMax: false, pending: false }));
    ksmObjects = kubeStateMetricsObjects(NAMESPACES.monitoring, PROMETHEUS_SELECTOR.release, ksm.address);
  });

  for (const pod of WORKER_PODS) workerPorts[pod] = await freePort();
  const c = cluster(scenario);
  const m = scenario.manifests;

  // The deliberately broken variants: RabbitMQ scraped at the plugin's default endpoint (no per-queue series),
  // and dcgm-exporter scraped the way most guides show it (no honorLabels, no relabelling).
  const rabbitDefault = clone(m.rabbitmqServiceMonitor);
  delete rabbitDefault.spec.endpoints[0].path;
  delete rabbitDefault.spec.endpoints[0].params;
  const dcgmNaive = clone(m.dcgmServiceMonitor);
  dcgmNaive.spec.endpoints[0].honorLabels = false;
  delete dcgmNaive.spec.endpoints[0].relabelings;
  const ksmNaive = clone(ksmObjects.serviceMonitor);
  ksmNaive.spec.endpoints[0].honorLabels = false;

  await step('start Prometheus with the synthesized scrape settings', async () => {
    // Started together; each one that starts is kept for afterAll even if the other fails.
    const started = await Promise.allSettled([
      PrometheusServer.start('good', prometheusConfig(
        [m.rabbitmqServiceMonitor, m.workerPodMonitor, m.dcgmServiceMonitor, ksmObjects.serviceMonitor], m.prometheusRule, c)),
      PrometheusServer.start('broken', prometheusConfig([rabbitDefault, dcgmNaive, ksmNaive], undefined, c)),
    ]);
    [prometheus, broken] = started.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  });
  const adapterConfig = adapterConfigFromConfigMap(m.adapterConfigMap);
  adapter = new PrometheusAdapterModel(adapterConfig, prometheus!);
  brokenAdapter = new PrometheusAdapterModel(adapterConfig, broken!);
}, 240_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop(5000)));
  await Promise.all([prometheus?.stop(), broken?.stop(), fixture?.stop(), ksm?.stop()]);
  await broker?.close();
}, 60_000);

describe('scraping, derived from the synthesized monitors', () => {
  test('each monitor keeps exactly its targets, with the labels prometheus-operator attaches', async () => {
    // RabbitMQ, two worker pods, the exporter and kube-state-metrics.
    const targets = await eventually('targets discovered', () => prometheus!.targets(), (t) => t.length >= 5);
    const byJob = (job: string) => targets.filter((t) => t.scrapePool.startsWith(job));
    const sm = scenario.manifests.rabbitmqServiceMonitor;
    const pm = scenario.manifests.workerPodMonitor;
    const dsm = scenario.manifests.dcgmServiceMonitor;

    const rabbit = byJob(`serviceMonitor/${sm.metadata.namespace}/${sm.metadata.name}/0`);
    expect(rabbit).toHaveLength(1);
    expect(rabbit[0].labels).toMatchObject({
      job: RABBITMQ_CLUSTER,
      namespace: NAMESPACES.rabbitmq,
      service: RABBITMQ_CLUSTER,
      pod: `${RABBITMQ_CLUSTER}-server-0`,
      container: 'rabbitmq',
      endpoint: sm.spec.endpoints[0].port,
    });
    expect(rabbit[0].scrapeUrl).toBe(`http://${RABBITMQ_METRICS_ADDRESS}/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count`);

    // The worker PodMonitor keeps the two worker pods and not their neighbour, whose port has the same name.
    const pods = byJob(`podMonitor/${pm.metadata.namespace}/${pm.metadata.name}/0`);
    expect(pods.map((t) => t.labels.pod).sort()).toEqual([...WORKER_PODS].sort());
    for (const t of pods) {
      expect(t.labels).toMatchObject({ job: `${pm.metadata.namespace}/${pm.metadata.name}`, namespace: NAMESPACES.workers, container: 'worker', endpoint: WorkerHttp.portName });
    }

    // The exporter's own namespace/pod/container target labels are dropped by its ServiceMonitor.
    const dcgm = byJob(`serviceMonitor/${dsm.metadata.namespace}/${dsm.metadata.name}/0`);
    expect(dcgm).toHaveLength(1);
    expect(dcgm[0].labels.job).toBe(scenario.manifests.dcgmService.metadata.name);
    expect(dcgm[0].labels).not.toHaveProperty('pod');
    expect(dcgm[0].labels).not.toHaveProperty('namespace');
  });

  test('RabbitMQ serves per-queue depth only on the endpoint the ServiceMonitor asks for', async () => {
    const perQueue = `${RabbitmqQueueSeries.messages}{vhost=${JSON.stringify(broker!.vhost)},queue=${JSON.stringify(otherQueue)}}`;
    const good = await eventually('per-queue series scraped', () => prometheus!.query(perQueue), (r) => r.length === 1);
    expect(good[0].value).toBe(OTHER_QUEUE_DEPTH);
    expect(good[0].metric.namespace).toBe(NAMESPACES.rabbitmq);

    // Broken: the plugin's default /metrics endpoint, scraped fine, aggregates over all queues.
    await eventually('broken Prometheus scrapes RabbitMQ', () => broken!.query('up{namespace="messaging"} == 1'), (r) => r.length === 1);
    await eventually('broken Prometheus has aggregated RabbitMQ metrics', () => broken!.query('rabbitmq_queues'), (r) => r.length > 0);
    expect(await broken!.query(perQueue)).toEqual([]);
    await expect(adapterBacklog(brokenAdapter)).rejects.toThrow(/is not served/);
  });
});

describe('the HPA external metric, as prometheus-adapter serves it', () => {
  let published = 0;

  test.each(BACKLOG_STEPS)('with $backlog jobs waiting the adapter returns $backlog for that queue only, and the HPA asks for $replicas', async ({ backlog, replicas }) => {
    await step(`publish ${backlog - published} jobs with the worker CLI`, () => publishJobs(broker!.url, queue, backlog - published, `live-${backlog}-`));
    published = backlog;

    const answer = await eventually(`adapter returns backlog ${backlog}`, () => adapterBacklog(), (a) => a.samples.length === 1 && a.samples[0].value === backlog);
    expect(answer.samples[0].metric).toMatchObject({ queue, vhost: broker!.vhost });
    expect(answer.milliValues).toEqual([backlog * 1000]);

    // The library's own statement of the query equals what the adapter renders from the ConfigMap and the HPA.
    expect(answer.query).toBe(backlogMetric().query);
    // RabbitMQ is in `messaging`, the HPA in `ai-workers`: the rule must not add the HPA's namespace.
    expect(scenario.manifests.hpa.metadata.namespace).toBe(NAMESPACES.workers);
    expect(answer.query).not.toMatch(/namespace=/);
    const raw = await prometheus!.query(`${RabbitmqQueueSeries.messages}{queue=${JSON.stringify(queue)},vhost=${JSON.stringify(broker!.vhost)}}`);
    expect(raw.map((s) => s.metric.namespace)).toEqual([NAMESPACES.rabbitmq]);

    const result = hpaDesiredReplicas({
      currentReplicas: MIN_REPLICAS,
      minReplicas: scenario.manifests.hpa.spec.minReplicas,
      maxReplicas: scenario.manifests.hpa.spec.maxReplicas,
      metrics: [{ type: 'ExternalAverageValue', values: answer.milliValues.map((v) => v / 1000), averageValue: Number(hpaExternal().target.averageValue) }],
    });
    expect(result.desiredReplicas).toBe(replicas);
  });

  test('the same rule serves the other queue its own depth', async () => {
    const answer = await adapterBacklog(adapter, { matchLabels: { queue: otherQueue } });
    expect(answer.samples.map((s) => [s.metric.queue, s.value])).toEqual([[otherQueue, OTHER_QUEUE_DEPTH]]);
  });

  test('the KEDA variant reads the same backlog: its prometheus trigger\'s query and its rabbitmq trigger\'s queue', async () => {
    const backlog = BACKLOG_STEPS[BACKLOG_STEPS.length - 1].backlog;
    const app = Testing.app();
    const chart = new Chart(app, 'keda', { namespace: NAMESPACES.workers });
    const secret = kplus.Secret.fromSecretName(chart, 'S', 'rabbitmq-worker');
    const deployment = new GpuWorkerDeployment(chart, 'Workers', {
      name: WORKER_DEPLOYMENT,
      queue,
      rabbitmqUrl: { secret, key: 'url' },
      model: ModelSource.fromPersistentVolumeClaim('models'),
      maxJobDuration: Duration.minutes(2),
    });
    new KedaQueueScaler(chart, 'Scaler', {
      target: deployment,
      queue,
      vhost: broker!.vhost,
      backlogPerReplica: TARGET,
      maxReplicas: MAX_REPLICAS,
      rabbitmq: { connection: { secret, key: 'management-url' }, protocol: RabbitmqProtocol.HTTP },
      prometheus: { serverAddress: 'http://prometheus-operated.monitoring.svc:9090' },
      gpuUtilization: { source: scenario.dcgm.gpuUtilization! },
    });
    const scaledObject = only(synthValid(chart), 'ScaledObject');
    const triggers: KedaTrigger[] = scaledObject.spec.triggers;
    const byType = (type: string) => triggers.filter((t) => t.type === type);

    // Prometheus trigger (what KEDA runs against serverAddress; here against the suite's Prometheus).
    const [backlogTrigger, gpuTrigger] = byType('prometheus');
    expect(await kedaPrometheusValue(prometheus!, backlogTrigger)).toBe(backlog);
    expect(backlogTrigger.metadata.query).toBe(backlogMetric().query);

    // Rabbitmq trigger: the management API, as the TriggerAuthentication's Secret would point KEDA at it.
    const [rabbitTrigger] = byType('rabbitmq');
    const length = await eventually('management API reports the queue', () =>
      kedaRabbitmqHttpQueueLength('http://guest:guest@127.0.0.1:15672/', rabbitTrigger), (v) => v === backlog, 20_000);
    expect(length).toBe(backlog);

    // Both triggers are AverageValue targets of KEDA's HPA: the same replica count as the adapter-backed HPA.
    const desired = hpaDesiredReplicas({
      currentReplicas: 1,
      minReplicas: 1,
      maxReplicas: scaledObject.spec.maxReplicaCount,
      metrics: [
        { type: 'ExternalAverageValue', name: 'prometheus', values: [backlog], averageValue: Number(backlogTrigger.metadata.threshold) },
        { type: 'ExternalAverageValue', name: 'rabbitmq', values: [length], averageValue: Number(rabbitTrigger.metadata.value) },
      ],
    });
    expect(desired.proposals.map((p) => p.replicas)).toEqual([Math.ceil(backlog / TARGET), Math.ceil(backlog / TARGET)]);
    expect(desired.desiredReplicas).toBe(BACKLOG_STEPS[BACKLOG_STEPS.length - 1].replicas);

    // The GPU trigger sums the worker pods' average utilization, and only theirs.
    expect(await kedaPrometheusValue(prometheus!, gpuTrigger)).toBe(FIXTURE_UTILIZATION.reduce((a, b) => a + b, 0));
  });

  test('alerts while jobs pile up and nobody consumes: backlog growing and no consumers hold, dead letters do not', async () => {
    await eventually('JobQueueBacklogGrowing holds', () => holds(QueueWorkerAlertNames.backlogGrowing), (v) => v);
    await eventually('JobQueueHasNoConsumers holds', () => holds(QueueWorkerAlertNames.noConsumers), (v) => v);
    await eventually('JobQueueBacklogGrowing pending in Prometheus', () => ruleState(QueueWorkerAlertNames.backlogGrowing), (v) => v === 'pending');
    expect(await holds(QueueWorkerAlertNames.deadLetterNotEmpty)).toBe(false);
    expect(await holds(QueueWorkerAlertNames.autoscalerAtMax)).toBe(false);
    expect(await holds(QueueWorkerAlertNames.podsUnschedulable)).toBe(false);
  });

  test('with the HPA at its maximum and a worker pod unschedulable, those alerts hold too (kube-state-metrics)', async () => {
    ksm!.setPage(clusterState({ atMax: true, pending: true }));
    await eventually('JobQueueAutoscalerAtMaxReplicas holds', () => holds(QueueWorkerAlertNames.autoscalerAtMax), (v) => v);
    await eventually('GpuWorkerPodsUnschedulable holds', () => holds(QueueWorkerAlertNames.podsUnschedulable), (v) => v);

    // Broken: kube-state-metrics scraped without honorLabels; its series name its own namespace, the alerts stay blind.
    const pending = `${KubeStateMetricsSeries.podUnschedulable} == 1`;
    const seen = await eventually('broken Prometheus sees the pending pod', () => broken!.query(pending), (r) => r.length === 1);
    expect(seen[0].metric).toMatchObject({ namespace: NAMESPACES.monitoring, exported_namespace: NAMESPACES.workers });
    expect(await broken!.query(alert(QueueWorkerAlertNames.podsUnschedulable).expr)).toEqual([]);
  });
});

describe('deliberately broken settings give the wrong figure', () => {
  const last = BACKLOG_STEPS[BACKLOG_STEPS.length - 1].backlog;

  test('an autoscaler that forgot the vhost reads the same-named queue of "/"', async () => {
    const app = Testing.app();
    const chart = new Chart(app, 'forgot-vhost', { namespace: NAMESPACES.workers });
    const deployment = new GpuWorkerDeployment(chart, 'Workers', {
      name: WORKER_DEPLOYMENT,
      queue,
      rabbitmqUrl: { secret: kplus.Secret.fromSecretName(chart, 'S', 'rabbitmq-worker'), key: 'url' },
      model: ModelSource.fromPersistentVolumeClaim('models'),
      maxJobDuration: Duration.minutes(2),
    });
    const wrong = new QueueScaledHpa(chart, 'Autoscaler', { target: deployment, queue, backlogPerReplica: TARGET, maxReplicas: MAX_REPLICAS });
    const manifests = synthValid(chart);
    const model = new PrometheusAdapterModel(adapterConfigFromConfigMap(only(manifests, 'ConfigMap')), prometheus!);
    const metric = only(manifests, 'HorizontalPodAutoscaler').spec.metrics[0].external.metric;

    const answer = await eventually('decoy scraped', () => model.externalMetric(NAMESPACES.workers, metric.name, metric.selector), (a) => a.samples.length === 1);
    expect(wrong.scaling.vhost).toBe('/');
    expect(answer.samples[0].value).toBe(DECOY_DEPTH);
    expect(answer.samples[0].value).not.toBe(last);
  });

  test('a selector without the queue label sums every queue of the vhost', async () => {
    const answer = await adapterBacklog(adapter, {});
    const total = answer.milliValues.reduce((a, b) => a + b, 0) / 1000;
    expect(answer.samples.length).toBeGreaterThan(1);
    expect(total).toBe(last + OTHER_QUEUE_DEPTH);
  });

  test('an external rule left namespaced (the adapter\'s default) looks for the queue in the HPA\'s namespace and finds nothing', async () => {
    const config = adapterConfigFromConfigMap(scenario.manifests.adapterConfigMap);
    // The shape of the adapter docs' first external rule: the namespace label mapped, `namespaced` left at true.
    const rule = { ...config.externalRules![0], resources: { overrides: { namespace: { resource: 'namespace' } } } };
    const query = buildExternalQuery(rule, RabbitmqQueueSeries.messages, NAMESPACES.workers, hpaExternal().metric.selector);
    expect(query).toContain(`namespace="${NAMESPACES.workers}"`);
    expect(await prometheus!.query(query)).toEqual([]);
  });
});

describe('real workers drain the queue', () => {
  const last = BACKLOG_STEPS[BACKLOG_STEPS.length - 1].backlog;
  let drainStart = 0;

  test('the backlog falls to zero as two workers consume it, and the HPA falls back to its minimum', async () => {
    drainStart = Date.now() / 1000;
    for (const pod of WORKER_PODS) {
      // Each process listens on the port its pod's static target was given when Prometheus started.
      workers.push(await step(`start worker ${pod}`, () => WorkerProcess.start(scenario.manifests.deployment, pod, broker!.url, workerPorts[pod])));
    }

    const answer = await eventually('adapter backlog reaches 0', () => adapterBacklog(), (a) => a.samples.length === 1 && a.samples[0].value === 0, 60_000);
    const result = hpaDesiredReplicas({
      currentReplicas: 2,
      minReplicas: MIN_REPLICAS,
      maxReplicas: MAX_REPLICAS,
      metrics: [{ type: 'ExternalAverageValue', values: [answer.samples[0].value], averageValue: TARGET }],
    });
    expect(result).toMatchObject({ desiredReplicas: MIN_REPLICAS, decision: 'TooFewReplicas' });

    // The backlog as Prometheus recorded it over the drain: from the full queue, only ever down, to zero.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const history = await prometheus!.queryRange(backlogMetric().query, drainStart, Date.now() / 1000, 1);
    const values = history[0].values;
    expect(values[0]).toBe(last);
    expect(values[values.length - 1]).toBe(0);
    for (let i = 1; i < values.length; i++) expect(values[i]).toBeLessThanOrEqual(values[i - 1]);
  });

  test('the workers\' own metrics are in Prometheus under the names the alerts use', async () => {
    const pods = `namespace="${NAMESPACES.workers}",pod=~"${workerPodNamePattern(scenario.workers.name)}"`;
    const completed = await eventually('completed jobs counted', () =>
      prometheus!.query(`sum(${WorkerMetrics.jobsTotal}{${pods},outcome="${JobOutcome.completed}"})`), (r) => r.length === 1 && r[0].value === last);
    expect(completed[0].value).toBe(last);

    const inFlight = await prometheus!.query(`${WorkerMetrics.jobsInFlight}{${pods}}`);
    expect(inFlight.map((s) => s.metric.pod).sort()).toEqual([...WORKER_PODS].sort());
    const connected = await prometheus!.query(`${WorkerMetrics.brokerConnected}{${pods}}`);
    expect(connected.map((s) => s.value)).toEqual([1, 1]);

    // The alerts read these very series.
    expect(alert(QueueWorkerAlertNames.jobsFailing).expr).toContain(WorkerMetrics.jobsTotal);
    expect(alert(QueueWorkerAlertNames.brokerDisconnected).expr).toContain(WorkerMetrics.brokerConnected);
  });

  test('with the queue drained and consumed, the backlog, consumer, capacity and autoscaler alerts no longer hold', async () => {
    ksm!.setPage(clusterState({ atMax: false, pending: false }));
    await eventually('JobQueueHasNoConsumers clears', () => holds(QueueWorkerAlertNames.noConsumers), (v) => !v);
    await eventually('JobQueueBacklogGrowing clears', () => holds(QueueWorkerAlertNames.backlogGrowing), (v) => !v);
    await eventually('GpuWorkerPodsUnschedulable clears', () => holds(QueueWorkerAlertNames.podsUnschedulable), (v) => !v);
    expect(await holds(QueueWorkerAlertNames.autoscalerAtMax)).toBe(false);
    expect(await holds(QueueWorkerAlertNames.brokerDisconnected)).toBe(false);
  });

  test('a poison message is dead-lettered: the dead-letter alert holds, and a failure share above 5 % too', async () => {
    // Healthy traffic first, so the failure share has a denominator that Prometheus saw grow.
    publishJobs(broker!.url, queue, 40, 'live-healthy-');
    const pods = `namespace="${NAMESPACES.workers}",pod=~"${workerPodNamePattern(scenario.workers.name)}"`;
    await eventually('40 more completions seen', () => prometheus!.query(`sum(${WorkerMetrics.jobsTotal}{${pods},outcome="${JobOutcome.completed}"})`),
      (r) => r.length === 1 && r[0].value === last + 40);

    expect(await holds(QueueWorkerAlertNames.deadLetterNotEmpty)).toBe(false);
    await publishRaw(queue, '{"this is": not json', 1);
    await eventually('JobDeadLetterQueueNotEmpty holds', () => holds(QueueWorkerAlertNames.deadLetterNotEmpty), (v) => v);
    // The rule as loaded from the PrometheusRule is active too: pending, since its `for` (5 minutes) has not passed.
    await eventually('JobDeadLetterQueueNotEmpty pending in Prometheus', () => ruleState(QueueWorkerAlertNames.deadLetterNotEmpty), (v) => v === 'pending');
    expect(await holds(QueueWorkerAlertNames.jobsFailing)).toBe(false); // 1 of 41: below 5 %

    await publishRaw(queue, '{"this is": not json', 9); // 10 of about 111: above 5 %
    await eventually('GpuWorkerJobsFailing holds', () => holds(QueueWorkerAlertNames.jobsFailing), (v) => v);
  });

  test('every alert of the PrometheusRule loads and evaluates in the real Prometheus', async () => {
    const groups = await eventually('rules evaluated', () => prometheus!.rules(), (g) => g.length > 0 && g.every((x) => x.rules.every((r) => r.health === 'ok')));
    const names = groups.flatMap((g) => g.rules.map((r) => r.name)).sort();
    expect(names).toEqual(scenario.monitoring.alerts.map((a) => a.alert).sort());
  });
});

describe('GPU utilization from dcgm-exporter, per worker pod', () => {
  test('the custom metric returns each worker pod\'s utilization under its own name, never the exporter\'s', async () => {
    const gpuMetric = scenario.manifests.hpa.spec.metrics.find((m: any) => m.type === 'Pods').pods.metric.name;
    const answer = await eventually('GPU utilization per worker pod', () => adapter.podsMetric(NAMESPACES.workers, gpuMetric, WORKER_PODS),
      (a) => Object.keys(a.byPod).length === WORKER_PODS.length);
    const expected = Object.fromEntries(WORKER_PODS.map((p, i) => [p, FIXTURE_UTILIZATION[i]]));
    expect(answer.byPod).toEqual(expected);
    expect(answer.samples.map((s) => s.metric.pod)).not.toContain(EXPORTER_POD);
    expect(answer.query).toContain(`pod=~"${WORKER_PODS.join('|')}"`);

    const discovered = await prometheus!.series(`${scenario.dcgm.gpuUtilization!.series}{pod!=""}`);
    expect(discovered.map((s) => s.pod)).not.toContain(EXPORTER_POD);
    expect(discovered.map((s) => s.pod)).toContain('notebook-0'); // another team's pod keeps its own name too

    // Both signals together: 61 jobs drained to 0, GPUs at 87 % and 62 % against 80 %: 74.5 / 80 is within 10 %.
    const metrics: HpaMetricSample[] = [
      { type: 'ExternalAverageValue', values: [0], averageValue: TARGET },
      { type: 'PodsAverageValue', podValues: Object.values(answer.byPod), averageValue: Number(scenario.manifests.hpa.spec.metrics[1].pods.target.averageValue) },
    ];
    expect(hpaDesiredReplicas({ currentReplicas: 2, minReplicas: MIN_REPLICAS, maxReplicas: MAX_REPLICAS, metrics }).desiredReplicas).toBe(2);
  });

  test('broken: scraped without honorLabels, the series name the exporter\'s pod and the worker pods get nothing', async () => {
    const gpuMetric = scenario.manifests.hpa.spec.metrics.find((m: any) => m.type === 'Pods').pods.metric.name;
    const series = await eventually('naive DCGM scrape', () => broken!.series(`${scenario.dcgm.gpuUtilization!.series}{pod!=""}`), (s) => s.length > 0);
    expect(new Set(series.map((s) => s.pod))).toEqual(new Set([EXPORTER_POD]));
    expect(series.map((s) => s.exported_pod)).toContain(WORKER_PODS[0]);
    const answer = await brokenAdapter.podsMetric(NAMESPACES.workers, gpuMetric, WORKER_PODS).catch((e: Error) => e);
    if (answer instanceof Error) expect(answer.message).toMatch(/not served/);
    else expect(answer.byPod).toEqual({});
  });
});

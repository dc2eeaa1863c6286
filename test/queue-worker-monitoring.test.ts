import { execFileSync } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { App, Chart, Duration } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { stringify } from 'yaml';
import { JobOutcome, WORKER_DEFAULTS, WorkerHttp, WorkerMetrics } from '../src/contract';
import { GpuWorkerDeployment, ModelSource } from '../src/gpu-worker-deployment';
import {
  KubeStateMetricsSeries,
  QueueWorkerAlertNames,
  QueueWorkerMonitoring,
  QueueWorkerMonitoringProps,
  queueWorkerAlerts,
  workerPodNamePattern,
} from '../src/queue-worker-monitoring';
import {
  RABBITMQ_DETAILED_FAMILIES,
  RABBITMQ_DETAILED_METRICS_PATH,
  RabbitmqQueueSeries,
} from '../src/rabbitmq-metrics';
import { InvalidPropError } from '../src/validation';
import { invalidPropError, Manifest, only, synthValid } from './util/manifests';

/** Workers in `ai-workers` and the monitoring objects in `monitoring`, as in a real cluster. */
function setup(props: Partial<QueueWorkerMonitoringProps> = {}) {
  const app = new App();
  const workerChart = new Chart(app, 'workers', { namespace: 'ai-workers' });
  const workers = new GpuWorkerDeployment(workerChart, 'Workers', {
    name: 'ocr-workers',
    rabbitmqUrl: { secret: kplus.Secret.fromSecretName(workerChart, 'Amqp', 'rabbitmq-worker'), key: 'url' },
    model: ModelSource.fromPersistentVolumeClaim('ocr-models'),
    maxJobDuration: Duration.minutes(2),
  });
  const chart = new Chart(app, 'monitoring', { namespace: 'monitoring' });
  const monitoring = new QueueWorkerMonitoring(chart, 'Monitoring', { workers, name: 'ocr', autoscalerName: 'ocr-workers', ...props });
  return { workerChart, workers, chart, monitoring };
}

function errorOf(props: Partial<QueueWorkerMonitoringProps>): InvalidPropError {
  return invalidPropError(() => setup(props));
}

describe('QueueWorkerMonitoring', () => {
  test('synthesizes a ServiceMonitor, a PodMonitor and a PrometheusRule that validate', () => {
    const { chart } = setup();
    const manifests = synthValid(chart);
    expect(manifests).toMatchSnapshot();
    expect(manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual([
      'PodMonitor/ocr-workers',
      'PrometheusRule/ocr',
      'ServiceMonitor/ocr-rabbitmq',
    ]);
    for (const m of manifests) {
      expect(m.metadata.namespace).toBe('monitoring');
      expect(m.metadata.labels).toEqual({ release: 'kube-prometheus-stack' });
    }
  });

  test('scrapes RabbitMQ\'s per-queue endpoint in its own namespace', () => {
    const { chart } = setup();
    const monitor = only(synthValid(chart), 'ServiceMonitor');
    expect(monitor.spec.namespaceSelector).toEqual({ matchNames: ['messaging'] });
    expect(monitor.spec.selector).toEqual({ matchLabels: { 'app.kubernetes.io/component': 'rabbitmq' } });
    expect(monitor.spec.endpoints).toEqual([{
      port: 'prometheus',
      path: RABBITMQ_DETAILED_METRICS_PATH,
      params: { family: [...RABBITMQ_DETAILED_FAMILIES] },
      interval: '15s',
    }]);
    // The families hold the series the alerts and the autoscaler read.
    expect(monitor.spec.endpoints[0].params.family).toEqual(['queue_coarse_metrics', 'queue_consumer_count']);
  });

  test('the PodMonitor selects the worker pods by their labels and scrapes the named container port', () => {
    const { chart, workerChart, workers } = setup();
    const podMonitor = only(synthValid(chart), 'PodMonitor');
    const deployment = only(synthValid(workerChart), 'Deployment');
    const podLabels = deployment.spec.template.metadata.labels;
    const container = deployment.spec.template.spec.containers[0];

    expect(podMonitor.spec.namespaceSelector).toEqual({ matchNames: [deployment.metadata.namespace] });
    for (const [key, value] of Object.entries(podMonitor.spec.selector.matchLabels)) {
      expect(podLabels[key]).toBe(value);
    }
    expect(podMonitor.spec.selector.matchLabels).toEqual(workers.podSelectorLabels);
    const [endpoint] = podMonitor.spec.podMetricsEndpoints;
    expect(container.ports.map((p: any) => p.name)).toContain(endpoint.port);
    expect(endpoint).toEqual({ port: WorkerHttp.portName, path: WorkerHttp.metricsPath, interval: '15s' });
  });

  test('selector labels, RabbitMQ location and interval are props', () => {
    const { chart } = setup({
      prometheusSelectorLabels: { prometheus: 'platform' },
      rabbitmq: { namespace: 'rabbitmq-system', serviceLabels: { 'app.kubernetes.io/name': 'jobs' }, portName: 'metrics' },
      scrapeInterval: Duration.seconds(30),
    });
    const manifests = synthValid(chart);
    const monitor = only(manifests, 'ServiceMonitor');
    expect(monitor.metadata.labels).toEqual({ prometheus: 'platform' });
    expect(monitor.spec.namespaceSelector.matchNames).toEqual(['rabbitmq-system']);
    expect(monitor.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'jobs' });
    expect(monitor.spec.endpoints[0]).toMatchObject({ port: 'metrics', interval: '30s' });
    expect(only(manifests, 'PodMonitor').spec.podMetricsEndpoints[0].interval).toBe('30s');
  });

  test('RabbitMQ scraping and the rules can be turned off', () => {
    const { chart, monitoring } = setup({ rabbitmq: false, alerts: false });
    const manifests = synthValid(chart);
    expect(manifests.map((m) => m.kind)).toEqual(['PodMonitor']);
    expect(monitoring.rabbitmqServiceMonitor).toBeUndefined();
    expect(monitoring.alerts.length).toBeGreaterThan(0);
  });

  test('the rule group holds the alerts exposed as data', () => {
    const { chart, monitoring } = setup();
    const rule = only(synthValid(chart), 'PrometheusRule');
    const rules = rule.spec.groups[0].rules;
    expect(rules.map((r: any) => r.alert)).toEqual(monitoring.alerts.map((a) => a.alert));
    expect(rules.map((r: any) => r.expr)).toEqual(monitoring.alerts.map((a) => a.expr));
    expect(new Set(rules.map((r: any) => r.alert))).toEqual(new Set(Object.values(QueueWorkerAlertNames)));
    expect(rules.find((r: any) => r.alert === QueueWorkerAlertNames.backlogGrowing).for).toBe('15m');
  });

  test('every alert expression is built from the shared series names', () => {
    const { monitoring } = setup();
    const expr = (name: string) => monitoring.alerts.find((a) => a.alert === name)!.expr;
    const queue = `queue="${WORKER_DEFAULTS.jobQueue}"`;

    expect(expr(QueueWorkerAlertNames.backlogGrowing)).toContain(`deriv(${RabbitmqQueueSeries.messagesReady}{vhost="/",${queue}}[5m])`);
    expect(expr(QueueWorkerAlertNames.noConsumers)).toContain(`${RabbitmqQueueSeries.consumers}{vhost="/",${queue}}`);
    expect(expr(QueueWorkerAlertNames.deadLetterNotEmpty)).toContain(`queue="${WORKER_DEFAULTS.deadLetterQueue}"`);
    expect(expr(QueueWorkerAlertNames.autoscalerAtMax)).toContain(`${KubeStateMetricsSeries.hpaMaxReplicas}{namespace="ai-workers",horizontalpodautoscaler="ocr-workers"}`);
    expect(expr(QueueWorkerAlertNames.podsUnschedulable)).toContain(`${KubeStateMetricsSeries.podUnschedulable}{namespace="ai-workers",pod=~"ocr-workers-[a-z0-9]+-[a-z0-9]+"}`);
    expect(expr(QueueWorkerAlertNames.jobsFailing)).toContain(`${WorkerMetrics.jobsTotal}{`);
    expect(expr(QueueWorkerAlertNames.jobsFailing)).toContain(`outcome=~"${JobOutcome.rejected}|${JobOutcome.exhausted}"`);
    expect(expr(QueueWorkerAlertNames.brokerDisconnected)).toContain(WorkerMetrics.brokerConnected);
  });

  test('the no-consumers window covers a cold start: unschedulableFor plus the workers\' startupTimeout', () => {
    const noConsumers = (m: QueueWorkerMonitoring) => m.alerts.find((a) => a.alert === QueueWorkerAlertNames.noConsumers)!;
    const byDefault = noConsumers(setup().monitoring);
    expect(byDefault.for.toMinutes()).toBe(25);
    expect(byDefault.severity).toBe('critical');
    expect(byDefault.description).toContain('for 25 minutes');
    expect(byDefault.expr).toMatch(/ > 0\) and on/);
    expect(noConsumers(setup({ unschedulableFor: Duration.minutes(20) }).monitoring).for.toMinutes()).toBe(30);
    expect(noConsumers(setup({ noConsumersFor: Duration.minutes(5) }).monitoring).for.toMinutes()).toBe(5);
    const { workers } = setup();
    expect(workers.startupTimeout.toMinutes()).toBe(10);
    const slowStart = queueWorkerAlerts({ workers: { ...workers, startupTimeout: Duration.minutes(20) }, vhost: '/' });
    expect(slowStart.find((a) => a.alert === QueueWorkerAlertNames.noConsumers)!.for.toMinutes()).toBe(35);
    const rule = only(synthValid(setup().chart), 'PrometheusRule');
    expect(rule.spec.groups[0].rules.find((r: any) => r.alert === QueueWorkerAlertNames.noConsumers).for).toBe('25m');
    expect(errorOf({ activationBacklog: -1 }).prop).toBe('activationBacklog');
  });

  test('without an autoscaler name the "at max replicas" alert is left out', () => {
    const { monitoring } = setup({ autoscalerName: undefined });
    expect(monitoring.alerts.map((a) => a.alert)).not.toContain(QueueWorkerAlertNames.autoscalerAtMax);
  });

  test('worker pod pattern matches the Deployment\'s pods and not a longer-named sibling', () => {
    const pattern = new RegExp(`^${workerPodNamePattern('ocr-workers')}$`);
    expect(pattern.test('ocr-workers-5d8f7c9b4-x2k9p')).toBe(true);
    expect(pattern.test('ocr-workers-canary-5d8f7c9b4-x2k9p')).toBe(false);
  });

  test('names derived from a long construct path fit in 63 characters with their suffixes', () => {
    const app = new App();
    const workerChart = new Chart(app, 'w', { namespace: 'ai-workers' });
    const workers = new GpuWorkerDeployment(workerChart, 'W', {
      rabbitmqUrl: { secret: kplus.Secret.fromSecretName(workerChart, 'Amqp', 'rabbitmq-worker'), key: 'url' },
      model: ModelSource.fromPersistentVolumeClaim('ocr-models'),
      maxJobDuration: Duration.minutes(2),
    });
    const chart = new Chart(app, 'a-rather-long-monitoring-chart-name-for-the-platform', { namespace: 'monitoring' });
    new QueueWorkerMonitoring(chart, 'MonitoringOfTheOcrGpuWorkersAndTheirRabbitmqJobQueue', { workers });
    const manifests = synthValid(chart);
    for (const m of manifests) {
      expect(m.metadata.name!.length).toBeLessThanOrEqual(63);
      expect(m.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
  });

  describe('bad input', () => {
    test.each(['Ocr', 'o'.repeat(55), 'ocr_monitoring'])('name %p is an error', (name) => {
      expect(errorOf({ name }).prop).toBe('name');
    });

    test('RabbitMQ service labels that select every Service are an error', () => {
      expect(errorOf({ rabbitmq: { serviceLabels: {} } }).prop).toBe('rabbitmq.serviceLabels');
    });

    test('an invalid RabbitMQ namespace is an error', () => {
      expect(errorOf({ rabbitmq: { namespace: 'Messaging' } }).prop).toBe('rabbitmq.namespace');
    });

    test.each([0, -0.1, 1, 2])('failureRatio %p is an error', (failureRatio) => {
      expect(errorOf({ failureRatio }).prop).toBe('failureRatio');
    });

    test('a scrape interval under a second is an error', () => {
      expect(errorOf({ scrapeInterval: Duration.millis(500) }).prop).toBe('scrapeInterval');
    });

    test('workers without a namespace are an error', () => {
      const chart = new Chart(new App(), 'monitoring', { namespace: 'monitoring' });
      expect(() => new QueueWorkerMonitoring(chart, 'M', {
        workers: { name: 'w', podSelectorLabels: { app: 'w' }, queue: 'jobs', deadLetterQueue: 'jobs.dlq' },
      })).toThrow(/`workers` has no namespace/);
    });

    test('workers without pod labels are an error', () => {
      const chart = new Chart(new App(), 'monitoring', { namespace: 'monitoring' });
      expect(() => new QueueWorkerMonitoring(chart, 'M', {
        workers: { name: 'w', namespace: 'ai-workers', podSelectorLabels: {}, queue: 'jobs', deadLetterQueue: 'jobs.dlq' },
      })).toThrow(/`workers.podSelectorLabels` is empty/);
    });

    test('an empty queue is an error', () => {
      expect(() => queueWorkerAlerts({
        workers: { name: 'w', namespace: 'ai-workers', podSelectorLabels: { app: 'w' }, queue: '', deadLetterQueue: 'd' },
        vhost: '/',
      })).toThrow(/`workers.queue`/);
    });
  });
});

/**
 * The alert rules run by Prometheus's own rule engine (`promtool test rules`) on recorded series: each alert
 * fires on the situation it is meant for, with the labels a route needs, and stays quiet on its near miss.
 */
describe('QueueWorkerMonitoring alerts under promtool', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'queue-worker-alerts-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function promtoolTest(rule: Manifest, tests: object[]): void {
    try {
      execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    } catch {
      throw new Error('promtool not found: install Debian\'s `prometheus` package (apt-get install prometheus), as .ci/run does');
    }
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: rule.spec.groups }));
    writeFileSync(join(dir, 'tests.yaml'), stringify({ rule_files: ['rules.yaml'], evaluation_interval: '1m', tests }));
    try {
      execFileSync('promtool', ['test', 'rules', 'tests.yaml'], { cwd: dir, encoding: 'utf8', stdio: 'pipe' });
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string };
      throw new Error(`promtool test rules failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  }

  const { chart, monitoring } = setup();
  const rule = only(synthValid(chart), 'PrometheusRule');
  const alert = (name: string) => monitoring.alerts.find((a) => a.alert === name)!;
  const fired = (name: string, labels: Record<string, string>) => ({
    exp_labels: { severity: alert(name).severity, ...labels },
    exp_annotations: { summary: alert(name).summary, description: alert(name).description },
  });
  const jobs = { vhost: '/', queue: WORKER_DEFAULTS.jobQueue };
  const sel = (labels: Record<string, string>) => `{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;
  const pod = { namespace: 'ai-workers', pod: 'ocr-workers-5d8f7c9b4-x2k9p' };

  test('the rules file passes promtool check', () => {
    writeFileSync(join(dir, 'check.yaml'), stringify({ groups: rule.spec.groups }));
    expect(() => execFileSync('promtool', ['check', 'rules', join(dir, 'check.yaml')], { stdio: 'pipe' })).not.toThrow();
  });

  test('backlog growing fires after its window, not on a steady backlog', () => {
    promtoolTest(rule, [
      {
        interval: '1m',
        input_series: [{ series: `${RabbitmqQueueSeries.messagesReady}${sel(jobs)}`, values: '0+10x40' }],
        alert_rule_test: [
          { eval_time: '12m', alertname: QueueWorkerAlertNames.backlogGrowing, exp_alerts: [] },
          { eval_time: '30m', alertname: QueueWorkerAlertNames.backlogGrowing, exp_alerts: [fired(QueueWorkerAlertNames.backlogGrowing, jobs)] },
        ],
      },
      {
        interval: '1m',
        input_series: [{ series: `${RabbitmqQueueSeries.messagesReady}${sel(jobs)}`, values: '100x40' }],
        alert_rule_test: [{ eval_time: '30m', alertname: QueueWorkerAlertNames.backlogGrowing, exp_alerts: [] }],
      },
    ]);
  });

  test('no consumers while jobs wait fires after a cold start\'s time; with consumers it does not', () => {
    const consumers = (n: number) => ({ series: `${RabbitmqQueueSeries.consumers}${sel(jobs)}`, values: `${n}x40` });
    const ready = { series: `${RabbitmqQueueSeries.messagesReady}${sel(jobs)}`, values: '50x40' };
    promtoolTest(rule, [
      {
        interval: '1m',
        input_series: [ready, consumers(0)],
        alert_rule_test: [
          // A scale-up from zero that waits 20 minutes for a GPU node and loads the model is not paged.
          { eval_time: '20m', alertname: QueueWorkerAlertNames.noConsumers, exp_alerts: [] },
          { eval_time: '30m', alertname: QueueWorkerAlertNames.noConsumers, exp_alerts: [fired(QueueWorkerAlertNames.noConsumers, jobs)] },
        ],
      },
      {
        interval: '1m',
        input_series: [ready, consumers(2)],
        alert_rule_test: [{ eval_time: '30m', alertname: QueueWorkerAlertNames.noConsumers, exp_alerts: [] }],
      },
    ]);
  });

  test('no consumers stays silent at or below the activation backlog, where zero workers is intended', () => {
    const { chart: activationChart } = setup({ activationBacklog: 5 });
    const activationRule = only(synthValid(activationChart), 'PrometheusRule');
    const consumers = { series: `${RabbitmqQueueSeries.consumers}${sel(jobs)}`, values: '0x40' };
    const ready = (n: number) => ({ series: `${RabbitmqQueueSeries.messagesReady}${sel(jobs)}`, values: `${n}x40` });
    promtoolTest(activationRule, [
      {
        interval: '1m',
        input_series: [ready(5), consumers],
        alert_rule_test: [{ eval_time: '35m', alertname: QueueWorkerAlertNames.noConsumers, exp_alerts: [] }],
      },
      {
        interval: '1m',
        input_series: [ready(6), consumers],
        alert_rule_test: [{ eval_time: '35m', alertname: QueueWorkerAlertNames.noConsumers, exp_alerts: [fired(QueueWorkerAlertNames.noConsumers, jobs)] }],
      },
    ]);
  });

  test('autoscaler at max replicas fires only while jobs wait', () => {
    const hpa = { namespace: 'ai-workers', horizontalpodautoscaler: 'ocr-workers', job: 'kube-state-metrics' };
    const atMax = [
      { series: `${KubeStateMetricsSeries.hpaCurrentReplicas}${sel(hpa)}`, values: '10x30' },
      { series: `${KubeStateMetricsSeries.hpaMaxReplicas}${sel(hpa)}`, values: '10x30' },
    ];
    const labels = { namespace: 'ai-workers', horizontalpodautoscaler: 'ocr-workers' };
    promtoolTest(rule, [
      {
        interval: '1m',
        input_series: [...atMax, { series: `${RabbitmqQueueSeries.messagesReady}${sel(jobs)}`, values: '40x30' }],
        alert_rule_test: [{ eval_time: '20m', alertname: QueueWorkerAlertNames.autoscalerAtMax, exp_alerts: [fired(QueueWorkerAlertNames.autoscalerAtMax, labels)] }],
      },
      {
        interval: '1m',
        input_series: [...atMax, { series: `${RabbitmqQueueSeries.messagesReady}${sel(jobs)}`, values: '0x30' }],
        alert_rule_test: [{ eval_time: '20m', alertname: QueueWorkerAlertNames.autoscalerAtMax, exp_alerts: [] }],
      },
    ]);
  });

  test('unschedulable worker pods fire; another Deployment\'s pods do not count', () => {
    promtoolTest(rule, [
      {
        interval: '1m',
        input_series: [{ series: `${KubeStateMetricsSeries.podUnschedulable}${sel(pod)}`, values: '1x30' }],
        alert_rule_test: [
          { eval_time: '10m', alertname: QueueWorkerAlertNames.podsUnschedulable, exp_alerts: [] },
          { eval_time: '20m', alertname: QueueWorkerAlertNames.podsUnschedulable, exp_alerts: [fired(QueueWorkerAlertNames.podsUnschedulable, { namespace: 'ai-workers' })] },
        ],
      },
      {
        interval: '1m',
        input_series: [{ series: `${KubeStateMetricsSeries.podUnschedulable}${sel({ namespace: 'ai-workers', pod: 'ocr-workers-canary-5d8f7c9b4-x2k9p' })}`, values: '1x30' }],
        alert_rule_test: [{ eval_time: '20m', alertname: QueueWorkerAlertNames.podsUnschedulable, exp_alerts: [] }],
      },
    ]);
  });

  test('a dead-lettered job fires; an empty dead-letter queue does not', () => {
    const dlq = { vhost: '/', queue: WORKER_DEFAULTS.deadLetterQueue };
    promtoolTest(rule, [
      {
        interval: '1m',
        input_series: [{ series: `${RabbitmqQueueSeries.messages}${sel(dlq)}`, values: '0 0 1x10' }],
        alert_rule_test: [{ eval_time: '9m', alertname: QueueWorkerAlertNames.deadLetterNotEmpty, exp_alerts: [fired(QueueWorkerAlertNames.deadLetterNotEmpty, dlq)] }],
      },
      {
        interval: '1m',
        input_series: [{ series: `${RabbitmqQueueSeries.messages}${sel(dlq)}`, values: '0x10' }],
        alert_rule_test: [{ eval_time: '9m', alertname: QueueWorkerAlertNames.deadLetterNotEmpty, exp_alerts: [] }],
      },
    ]);
  });

  test('jobs failing fires above the failure share, not below it', () => {
    const outcome = (o: string, values: string) => ({ series: `${WorkerMetrics.jobsTotal}${sel({ ...pod, outcome: o })}`, values });
    promtoolTest(rule, [
      {
        // 10 failed of 70 finished per minute: 14%.
        interval: '1m',
        input_series: [outcome(JobOutcome.completed, '0+60x30'), outcome(JobOutcome.rejected, '0+10x30'), outcome(JobOutcome.retried, '0+100x30')],
        alert_rule_test: [{ eval_time: '25m', alertname: QueueWorkerAlertNames.jobsFailing, exp_alerts: [fired(QueueWorkerAlertNames.jobsFailing, { namespace: 'ai-workers' })] }],
      },
      {
        // 1 exhausted of 101 finished per minute: 1%; retries are not failures.
        interval: '1m',
        input_series: [outcome(JobOutcome.completed, '0+100x30'), outcome(JobOutcome.exhausted, '0+1x30'), outcome(JobOutcome.retried, '0+100x30')],
        alert_rule_test: [{ eval_time: '25m', alertname: QueueWorkerAlertNames.jobsFailing, exp_alerts: [] }],
      },
    ]);
  });

  test('a worker disconnected from the broker fires with its pod name', () => {
    promtoolTest(rule, [{
      interval: '1m',
      input_series: [{ series: `${WorkerMetrics.brokerConnected}${sel(pod)}`, values: '1 1 0x10' }],
      alert_rule_test: [{ eval_time: '10m', alertname: QueueWorkerAlertNames.brokerDisconnected, exp_alerts: [fired(QueueWorkerAlertNames.brokerDisconnected, pod)] }],
    }]);
  });
});

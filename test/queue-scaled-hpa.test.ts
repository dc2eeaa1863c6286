import { Chart, Duration, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import * as YAML from 'yaml';
import { DCGM_GPU_UTILIZATION } from '../src/gpu-metrics';
import { GpuWorkerDeployment, ModelSource } from '../src/gpu-worker-deployment';
import { KedaQueueScaler } from '../src/keda-queue-scaler';
import { PrometheusAdapterRules, renderExternalMetricsQuery } from '../src/prometheus-adapter-rules';
import {
  DEFAULT_SCALE_DOWN,
  DEFAULT_SCALE_UP,
  HpaScalingRulesJson,
  QueueScaledHpa,
  QueueScaledHpaProps,
  queueBacklogExternalMetric,
  ScalingPolicySelect,
  ScalingPolicyType,
} from '../src/queue-scaled-hpa';
import { BacklogMeasure, queueBacklogQuery, RabbitmqQueueSeries } from '../src/rabbitmq-metrics';
import { toQuantity } from '../src/validation';
import { invalidPropError, only, synthValid, testChart } from './util/manifests';

function workers(chart: Chart, props: Partial<kplus.DeploymentProps> = {}, id = 'Workers'): kplus.Deployment {
  return new kplus.Deployment(chart, id, {
    metadata: { name: 'gpu-workers' },
    containers: [{ image: 'ghcr.io/example/worker:1.0.0', securityContext: { ensureNonRoot: false } }],
    ...props,
  });
}

function hpa(chart: Chart, props: Partial<QueueScaledHpaProps> = {}, id = 'Autoscaler'): QueueScaledHpa {
  return new QueueScaledHpa(chart, id, {
    target: props.target ?? workers(chart),
    queue: 'ai-generation-jobs',
    maxReplicas: 40,
    ...props,
  });
}

/**
 * Replica counts after the backlog drops to nothing, as the HPA controller removes them: nothing for the
 * stabilization window, then a step at its end and one per policy period after it (the controller syncs every
 * 15 s, so each real step can come up to 15 s later), each bounded by the policies as the controller's
 * calculateScaleDownLimitWithBehaviors computes them (Pods: start - value; Percent: int32(start × (1 - value/100));
 * selectPolicy Max takes the larger change). Equal periods only, which is what the defaults use.
 */
function drain(from: number, minReplicas: number, rules: HpaScalingRulesJson): { replicas: number[]; minutes: number } {
  const period = rules.policies[0].periodSeconds;
  expect(rules.policies.every((p) => p.periodSeconds === period)).toBe(true);
  expect(rules.selectPolicy).toBe('Max');
  const replicas = [from];
  let current = from;
  while (current > minReplicas) {
    const proposals = rules.policies.map((p) => (p.type === 'Pods' ? current - p.value : Math.trunc(current * (1 - p.value / 100))));
    current = Math.max(minReplicas, Math.min(...proposals));
    replicas.push(current);
  }
  const steps = replicas.length - 1;
  return { replicas, minutes: (rules.stabilizationWindowSeconds + (steps - 1) * period) / 60 };
}

function adapterConfig(manifests: any[]): any {
  return YAML.parse(only(manifests, 'ConfigMap').data['config.yaml']);
}

describe('QueueScaledHpa', () => {
  test('synthesizes an HPA on the Deployment and the adapter rule behind its metric', () => {
    const chart = testChart();
    hpa(chart);
    const manifests = synthValid(chart);
    expect(manifests).toMatchSnapshot();

    const deployment = only(manifests, 'Deployment');
    const autoscaler = only(manifests, 'HorizontalPodAutoscaler');
    expect(autoscaler.apiVersion).toBe('autoscaling/v2');
    expect(autoscaler.metadata.namespace).toBe('ai-workers');
    expect(autoscaler.spec.scaleTargetRef).toEqual({
      apiVersion: deployment.apiVersion,
      kind: deployment.kind,
      name: deployment.metadata.name,
    });
    expect(autoscaler.spec.minReplicas).toBe(1);
    expect(autoscaler.spec.maxReplicas).toBe(40);

    // The autoscaler owns the replica count.
    expect(deployment.spec.replicas).toBeUndefined();
  });

  test('the HPA metric name and selector are exactly what the adapter rule serves and queries', () => {
    const chart = testChart();
    hpa(chart);
    const manifests = synthValid(chart);
    const [metric] = only(manifests, 'HorizontalPodAutoscaler').spec.metrics;
    const config = adapterConfig(manifests);

    expect(metric.type).toBe('External');
    expect(metric.external.target).toEqual({ type: 'AverageValue', averageValue: '8' });
    expect(metric.external.metric).toEqual({
      name: 'rabbitmq_queue_backlog',
      selector: { matchLabels: { queue: 'ai-generation-jobs' } },
    });

    expect(config.externalRules).toHaveLength(1);
    const [rule] = config.externalRules;
    expect(rule.name.as).toBe(metric.external.metric.name);
    expect(rule.resources).toEqual({ namespaced: false });
    expect(rule.seriesQuery).toBe('rabbitmq_detailed_queue_messages{vhost="/"}');
    // What the adapter runs for the HPA's selector is the shared backlog query of this queue, nothing wider.
    expect(renderExternalMetricsQuery(rule, metric.external.metric.selector.matchLabels)).toBe(
      queueBacklogQuery('ai-generation-jobs', '/', BacklogMeasure.READY_AND_UNACKED),
    );
    expect(renderExternalMetricsQuery(rule, metric.external.metric.selector.matchLabels)).toBe(
      'max by (vhost, queue) (rabbitmq_detailed_queue_messages{vhost="/",queue="ai-generation-jobs"})',
    );
  });

  test('backlog counts ready + unacked by default and ready only on request', () => {
    const both = queueBacklogExternalMetric('jobs');
    expect(both.rule.seriesQuery.startsWith(RabbitmqQueueSeries.messages + '{')).toBe(true);
    expect(both.query).toContain(RabbitmqQueueSeries.messages + '{');

    const chart = testChart();
    hpa(chart, { backlog: BacklogMeasure.READY });
    const manifests = synthValid(chart);
    const [metric] = only(manifests, 'HorizontalPodAutoscaler').spec.metrics;
    const [rule] = adapterConfig(manifests).externalRules;
    expect(metric.external.metric.name).toBe('rabbitmq_queue_ready_backlog');
    expect(rule.name.as).toBe('rabbitmq_queue_ready_backlog');
    expect(renderExternalMetricsQuery(rule, { queue: 'ai-generation-jobs' })).toBe(
      `max by (vhost, queue) (${RabbitmqQueueSeries.messagesReady}{vhost="/",queue="ai-generation-jobs"})`,
    );
  });

  test('the vhost is pinned in PromQL, never put in a label selector', () => {
    const metric = queueBacklogExternalMetric('jobs', 'tenant-a');
    expect(metric.selector).toEqual({ queue: 'jobs' });
    expect(metric.metricName).toMatch(/^rabbitmq_queue_backlog_vhost_tenant_a_[0-9a-f]{8}$/);
    expect(metric.rule.seriesQuery).toBe('rabbitmq_detailed_queue_messages{vhost="tenant-a"}');
    expect(metric.query).toBe(queueBacklogQuery('jobs', 'tenant-a'));

    // The hash is added only when slugging changed the vhost (as docs/scaling.md says).
    expect(queueBacklogExternalMetric('q', 'jobs').metricName).toBe('rabbitmq_queue_backlog_vhost_jobs');
    expect(queueBacklogExternalMetric('q', 'tenant_a').metricName).toBe('rabbitmq_queue_backlog_vhost_tenant_a');
    expect(queueBacklogExternalMetric('q', '/jobs').metricName).toMatch(/^rabbitmq_queue_backlog_vhost__jobs_[0-9a-f]{8}$/);

    // "/" and "tenant/a" must not collapse into one metric name.
    expect(queueBacklogExternalMetric('jobs', 'tenant/a').metricName).not.toBe(queueBacklogExternalMetric('jobs', 'tenant_a').metricName);
  });

  test('a queue name that is not a valid label value is pinned in its own rule, with no selector', () => {
    const chart = testChart();
    hpa(chart, { queue: 'jobs:gpu/high priority' });
    const manifests = synthValid(chart);
    const [metric] = only(manifests, 'HorizontalPodAutoscaler').spec.metrics;
    const [rule] = adapterConfig(manifests).externalRules;

    expect(metric.external.metric.selector).toBeUndefined();
    expect(metric.external.metric.name).toMatch(/^rabbitmq_queue_backlog_queue_jobs_gpu_high_priority_[0-9a-f]{8}$/);
    expect(rule.name.as).toBe(metric.external.metric.name);
    expect(rule.seriesQuery).toBe('rabbitmq_detailed_queue_messages{vhost="/",queue="jobs:gpu/high priority"}');
    expect(renderExternalMetricsQuery(rule, {})).toBe(queueBacklogQuery('jobs:gpu/high priority', '/'));

    // 64 characters is one too many for a label value.
    expect(queueBacklogExternalMetric('q'.repeat(64)).selector).toEqual({});
    expect(queueBacklogExternalMetric('q'.repeat(63)).selector).toEqual({ queue: 'q'.repeat(63) });
  });

  test('behavior: fast scale-up, slow stabilized scale-down by default', () => {
    const chart = testChart();
    hpa(chart);
    const { behavior } = only(synthValid(chart), 'HorizontalPodAutoscaler').spec;
    expect(behavior).toEqual({
      scaleUp: {
        stabilizationWindowSeconds: 0,
        selectPolicy: 'Max',
        policies: [
          { type: 'Percent', value: 100, periodSeconds: 30 },
          { type: 'Pods', value: 4, periodSeconds: 30 },
        ],
      },
      scaleDown: {
        stabilizationWindowSeconds: 600,
        selectPolicy: 'Max',
        policies: [
          { type: 'Percent', value: 25, periodSeconds: 120 },
          { type: 'Pods', value: 2, periodSeconds: 120 },
        ],
      },
    });
    expect(DEFAULT_SCALE_UP.stabilizationWindow.toSeconds()).toBe(0);
    expect(DEFAULT_SCALE_DOWN.stabilizationWindow.toSeconds()).toBe(600);
  });

  test('behavior: a drained queue releases 40 GPUs in 26 minutes, the tail 2 pods at a time', () => {
    const chart = testChart();
    hpa(chart);
    const scaleDown: HpaScalingRulesJson = only(synthValid(chart), 'HorizontalPodAutoscaler').spec.behavior.scaleDown;
    const defaults = drain(40, 1, scaleDown);
    expect(defaults.replicas).toEqual([40, 30, 22, 16, 12, 9, 6, 4, 2, 1]);
    expect(defaults.minutes).toBe(26);

    // A percentage alone is truncated and shrinks a small fleet one pod per period.
    const percentOnly = drain(40, 1, { ...scaleDown, policies: [scaleDown.policies[0]] });
    expect(percentOnly.replicas).toEqual([40, 30, 22, 16, 12, 9, 6, 4, 3, 2, 1]);
    expect(percentOnly.minutes).toBe(28);

    // The 2-pod policy only matters at 4 workers or fewer.
    expect(drain(8, 1, scaleDown).replicas).toEqual([8, 6, 4, 2, 1]);
    expect(drain(8, 1, { ...scaleDown, policies: [scaleDown.policies[0]] }).replicas).toEqual([8, 6, 4, 3, 2, 1]);
  });

  test('behavior: every field can be overridden, the rest keep their defaults', () => {
    const chart = testChart();
    hpa(chart, {
      scaleUp: { stabilizationWindow: Duration.seconds(15) },
      scaleDown: {
        policies: [{ type: ScalingPolicyType.PODS, value: 1, period: Duration.minutes(5) }],
        selectPolicy: ScalingPolicySelect.MIN,
      },
    });
    const { behavior } = only(synthValid(chart), 'HorizontalPodAutoscaler').spec;
    expect(behavior.scaleUp.stabilizationWindowSeconds).toBe(15);
    expect(behavior.scaleUp.policies).toHaveLength(2);
    expect(behavior.scaleDown).toEqual({
      stabilizationWindowSeconds: 600,
      selectPolicy: 'Min',
      policies: [{ type: 'Pods', value: 1, periodSeconds: 300 }],
    });
  });

  test('GPU utilization adds a Pods metric served by a custom rule of the same name', () => {
    const chart = testChart();
    hpa(chart, { gpuUtilization: { source: DCGM_GPU_UTILIZATION, targetPercent: 75 } });
    const manifests = synthValid(chart);
    const metrics = only(manifests, 'HorizontalPodAutoscaler').spec.metrics;
    const config = adapterConfig(manifests);

    expect(metrics).toHaveLength(2);
    expect(metrics[1]).toEqual({
      type: 'Pods',
      pods: { metric: { name: 'dcgm_gpu_utilization' }, target: { type: 'AverageValue', averageValue: '75' } },
    });
    expect(config.rules).toEqual([
      {
        seriesQuery: 'DCGM_FI_DEV_GPU_UTIL{namespace!="",pod!=""}',
        resources: { overrides: { namespace: { resource: 'namespace' }, pod: { resource: 'pod' } } },
        name: { matches: '^DCGM_FI_DEV_GPU_UTIL$', as: metrics[1].pods.metric.name },
        metricsQuery: 'avg by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})',
      },
    ]);
  });

  test('fractional backlog per replica becomes a milli-quantity', () => {
    const chart = testChart();
    hpa(chart, { backlogPerReplica: 0.5 });
    const [metric] = only(synthValid(chart), 'HorizontalPodAutoscaler').spec.metrics;
    expect(metric.external.target.averageValue).toBe('500m');
  });

  test('a fractional backlog per replica is the same number for the HPA and for KEDA', () => {
    const chart = testChart();
    const autoscaler = hpa(chart, { backlogPerReplica: 2.5 });
    const [metric] = only(synthValid(chart), 'HorizontalPodAutoscaler').spec.metrics;
    expect(metric.external.target.averageValue).toBe('2500m');

    const kedaChart = testChart();
    const keda = new KedaQueueScaler(kedaChart, 'Keda', {
      target: workers(kedaChart),
      queue: 'ai-generation-jobs',
      maxReplicas: 40,
      backlogPerReplica: 2.5,
      prometheus: { serverAddress: 'http://prometheus-operated.monitoring.svc:9090' },
    });
    // KEDA parses its metadata as floats, so it gets the plain decimal of the same number.
    expect(keda.triggers[0].metadata?.threshold).toBe('2.5');
    expect(autoscaler.scaling.backlogPerReplica).toBe(keda.scaling.backlogPerReplica);
  });

  test('toQuantity: canonical quantities for Kubernetes, plain decimals for KEDA, nothing finer than 0.001', () => {
    expect(toQuantity('X', 'p', 8, 'kubernetes')).toBe('8');
    expect(toQuantity('X', 'p', 0.001, 'kubernetes')).toBe('1m');
    expect(toQuantity('X', 'p', 0.007, 'kubernetes')).toBe('7m');
    expect(toQuantity('X', 'p', 12.25, 'kubernetes')).toBe('12250m');
    // Whole thousands take the SI suffix the API server stores them with; anything else stays as written.
    expect(toQuantity('X', 'p', 1000, 'kubernetes')).toBe('1k');
    expect(toQuantity('X', 'p', 1500, 'kubernetes')).toBe('1500');
    expect(toQuantity('X', 'p', 2_000_000, 'kubernetes')).toBe('2M');
    expect(toQuantity('X', 'p', 1000, 'decimal')).toBe('1000');
    expect(toQuantity('X', 'p', 8, 'decimal')).toBe('8');
    expect(toQuantity('X', 'p', 0.001, 'decimal')).toBe('0.001');
    expect(toQuantity('X', 'p', 12.25, 'decimal')).toBe('12.25');
    expect(toQuantity('X', 'p', 0, 'decimal', { allowZero: true })).toBe('0');
    expect(invalidPropError(() => toQuantity('X', 'p', 0, 'decimal')).message).toMatch(/`p` is 0\. Use a number of at least 0\.001/);
    expect(invalidPropError(() => toQuantity('X', 'p', 0.0004, 'kubernetes')).message).toMatch(/`p` is 0\.0004\. Use a number of at least 0\.001/);
    expect(invalidPropError(() => toQuantity('X', 'p', 2.5004, 'decimal')).message).toMatch(/finer than a thousandth.*e\.g\. 2\.5\)/);
    expect(invalidPropError(() => toQuantity('X', 'p', -1, 'decimal', { allowZero: true })).message).toMatch(/Use 0 or a number of at least 0\.001/);
    expect(invalidPropError(() => toQuantity('X', 'p', NaN, 'decimal')).message).toMatch(/`p` is NaN/);
  });

  test('on a GpuWorkerDeployment: target reference, namespace, and no spec.replicas', () => {
    const app = Testing.app();
    const chart = new Chart(app, 'workers', { namespace: 'ai-workers' });
    const target = new GpuWorkerDeployment(chart, 'Gpu', {
      name: 'ocr-workers',
      rabbitmqUrl: { secret: kplus.Secret.fromSecretName(chart, 'Url', 'rabbitmq-credentials'), key: 'url' },
      model: ModelSource.fromPersistentVolumeClaim('models'),
      maxJobDuration: Duration.minutes(2),
    });
    hpa(chart, { target });
    const manifests = synthValid(chart);
    const deployment = only(manifests, 'Deployment');
    const autoscaler = only(manifests, 'HorizontalPodAutoscaler');
    expect(deployment.spec.replicas).toBeUndefined();
    expect(autoscaler.metadata).toEqual({ name: 'ocr-workers', namespace: 'ai-workers' });
    expect(autoscaler.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    expect(target.hasAutoscaler).toBe(true);
  });

  test('minReplicas 0 is allowed when the cluster has HPAScaleToZero', () => {
    const chart = testChart();
    hpa(chart, { minReplicas: 0, clusterHasHpaScaleToZero: true });
    expect(only(synthValid(chart), 'HorizontalPodAutoscaler').spec.minReplicas).toBe(0);
  });
});

describe('QueueScaledHpa: one adapter configuration per app', () => {
  test('autoscalers in several charts share one ConfigMap in the adapter namespace, without duplicates', () => {
    const app = Testing.app();
    const monitoring = new Chart(app, 'monitoring', { namespace: 'monitoring' });
    const rules = new PrometheusAdapterRules(monitoring, 'AdapterRules', { name: 'adapter-rules' });
    const a = new Chart(app, 'a', { namespace: 'ai-workers' });
    const b = new Chart(app, 'b', { namespace: 'batch-workers' });
    hpa(a, { queue: 'images' });
    hpa(b, { queue: 'videos' });
    hpa(b, { queue: 'slow jobs', target: workers(b, {}, 'SlowWorkers') }, 'SlowAutoscaler');

    const configMaps = [monitoring, a, b].flatMap((chart) => synthValid(chart)).filter((m) => m.kind === 'ConfigMap');
    expect(configMaps).toHaveLength(1);
    expect(configMaps[0].metadata).toMatchObject({ name: 'adapter-rules', namespace: 'monitoring' });
    const config = YAML.parse(configMaps[0].data['config.yaml']);
    // images and videos share one rule (selected by queue label); "slow jobs" has its own pinned rule.
    expect(config.externalRules.map((r: any) => r.name.as)).toEqual([
      'rabbitmq_queue_backlog',
      expect.stringMatching(/^rabbitmq_queue_backlog_queue_slow_jobs_[0-9a-f]{8}$/),
    ]);
    expect(rules.toConfig().externalRules).toHaveLength(2);
  });

  test('the first autoscaler creates the rules in its own chart when the app has none', () => {
    const chart = testChart();
    const scaler = hpa(chart);
    const configMap = only(synthValid(chart), 'ConfigMap');
    expect(configMap.metadata).toMatchObject({ name: 'prometheus-adapter-rules', namespace: 'monitoring' });
    expect(scaler.adapterRules).toBe(PrometheusAdapterRules.find(chart));
  });
});

describe('QueueScaledHpa: bad input', () => {
  // Runs `fn` once (constructs cannot be created twice under one id) and checks the error it throws.
  const expectInvalid = (fn: () => unknown, message: RegExp) => expect(invalidPropError(fn).message).toMatch(message);

  test('minReplicas greater than maxReplicas', () => {
    expectInvalid(() => hpa(testChart(), { minReplicas: 5, maxReplicas: 2 }), /`minReplicas` \(5\) is greater than `maxReplicas` \(2\)/);
  });

  test('maxReplicas below 1', () => {
    expectInvalid(() => hpa(testChart(), { maxReplicas: 0 }), /`maxReplicas` is 0/);
  });

  test('non-positive backlog per replica', () => {
    expectInvalid(() => hpa(testChart(), { backlogPerReplica: 0 }), /`backlogPerReplica` is 0/);
    expectInvalid(() => hpa(testChart(), { backlogPerReplica: -3 }), /`backlogPerReplica` is -3/);
    // Positive, but below what a quantity can carry: it would be written as 0, which the API server rejects.
    expectInvalid(() => hpa(testChart(), { backlogPerReplica: 0.0004 }), /`backlogPerReplica` is 0\.0004\. Use a number of at least 0\.001/);
    expectInvalid(() => hpa(testChart(), { backlogPerReplica: 1.0005 }), /`backlogPerReplica` is 1\.0005, finer than a thousandth/);
  });

  test('GPU utilization target outside 1..100', () => {
    expectInvalid(
      () => hpa(testChart(), { gpuUtilization: { source: DCGM_GPU_UTILIZATION, targetPercent: 0 } }),
      /`gpuUtilization.targetPercent` is 0/,
    );
    expectInvalid(
      () => hpa(testChart(), { gpuUtilization: { source: DCGM_GPU_UTILIZATION, targetPercent: 120 } }),
      /`gpuUtilization.targetPercent` is 120/,
    );
  });

  test('minReplicas 0 points to KEDA or the HPAScaleToZero gate', () => {
    expectInvalid(
      () => hpa(testChart(), { minReplicas: 0 }),
      /use KedaQueueScaler \(on a QueueProcessingGpuService: set its `keda` prop\), or set `clusterHasHpaScaleToZero: true`/,
    );
  });

  test('a Deployment with fixed replicas as the target', () => {
    const chart = testChart();
    expectInvalid(() => hpa(chart, { target: workers(chart, { replicas: 3 }) }), /sets fixed replicas \(3\)/);
  });

  test('a second autoscaler on the same Deployment', () => {
    const chart = testChart();
    const target = workers(chart);
    new QueueScaledHpa(chart, 'First', { target, queue: 'a', maxReplicas: 4 });
    expectInvalid(() => new QueueScaledHpa(chart, 'Second', { target, queue: 'b', maxReplicas: 4 }), /already scaled by/);
  });

  test('a Deployment that already has another autoscaler', () => {
    const chart = testChart();
    const target = workers(chart);
    new kplus.HorizontalPodAutoscaler(chart, 'PlusHpa', { target, maxReplicas: 3 });
    expectInvalid(() => hpa(chart, { target }), /already has an autoscaler/);
  });

  test('an empty queue name', () => {
    expectInvalid(() => hpa(testChart(), { queue: '' }), /`queue` is ""/);
    expectInvalid(() => hpa(testChart(), { queue: ' jobs' }), /`queue` is " jobs"/);
  });

  test('a queue that could match every queue', () => {
    expectInvalid(() => hpa(testChart(), { queue: '.*' }), /could match every queue/);
    expectInvalid(() => hpa(testChart(), { queue: '*' }), /could match every queue/);
  });

  test('behavior values outside what the API accepts', () => {
    expectInvalid(() => hpa(testChart(), { scaleDown: { stabilizationWindow: Duration.hours(2) } }), /`scaleDown.stabilizationWindow` is 7200 seconds/);
    expectInvalid(
      () => hpa(testChart(), { scaleUp: { policies: [{ type: ScalingPolicyType.PODS, value: 2, period: Duration.minutes(31) }] } }),
      /`scaleUp.policies\[0\].period` is 1860 seconds/,
    );
    expectInvalid(
      () => hpa(testChart(), { scaleUp: { policies: [{ type: ScalingPolicyType.PERCENT, value: 0, period: Duration.minutes(1) }] } }),
      /`scaleUp.policies\[0\].value` is 0/,
    );
    expectInvalid(() => hpa(testChart(), { scaleUp: { stabilizationWindow: Duration.millis(1500) } }), /whole, non-negative number of seconds/);
    expectInvalid(() => hpa(testChart(), { scaleDown: { policies: [] } }), /`scaleDown.policies` is empty/);
  });

  test('two different rules under one metric name', () => {
    const chart = testChart();
    hpa(chart, { queue: 'a', metricName: 'jobs_backlog' });
    expectInvalid(
      () => hpa(chart, { queue: 'b c', metricName: 'jobs_backlog', target: workers(chart, { metadata: { name: 'other' } }, 'Other') }, 'Second'),
      /metric jobs_backlog` is already served by a different rule/,
    );
  });

  test('a metric name the API cannot carry', () => {
    expectInvalid(() => hpa(testChart(), { metricName: 'jobs/backlog' }), /`metricName` is "jobs\/backlog"/);
  });

  test('a second PrometheusAdapterRules in one app', () => {
    const chart = testChart();
    new PrometheusAdapterRules(chart, 'One');
    expectInvalid(() => new PrometheusAdapterRules(chart, 'Two'), /already has one/);
  });
});

import { Chart, Duration, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { DCGM_GPU_UTILIZATION } from '../src/gpu-metrics';
import { GpuWorkerDeployment, ModelSource } from '../src/gpu-worker-deployment';
import { KedaQueueScaler, KedaQueueScalerProps, RabbitmqProtocol, RabbitmqTriggerMode } from '../src/keda-queue-scaler';
import { QueueScaledHpa } from '../src/queue-scaled-hpa';
import { BacklogMeasure, queueBacklogQuery } from '../src/rabbitmq-metrics';
import { all, expectInvalidProp, invalidPropError, only, synthValid, testChart } from './util/manifests';

const PROMETHEUS = 'http://prometheus-operated.monitoring.svc:9090';

function workers(chart: Chart, props: Partial<kplus.DeploymentProps> = {}, id = 'Workers'): kplus.Deployment {
  return new kplus.Deployment(chart, id, {
    metadata: { name: 'gpu-workers' },
    containers: [{ image: 'ghcr.io/example/worker:1.0.0', securityContext: { ensureNonRoot: false } }],
    ...props,
  });
}

function managementUrl(chart: Chart): kplus.SecretValue {
  const secret = (chart.node.tryFindChild('RabbitSecret') as kplus.ISecret | undefined)
    ?? kplus.Secret.fromSecretName(chart, 'RabbitSecret', 'rabbitmq-credentials');
  return { secret, key: 'management-url' };
}

function scaler(chart: Chart, props: Partial<KedaQueueScalerProps> = {}, id = 'Scaler'): KedaQueueScaler {
  return new KedaQueueScaler(chart, id, {
    target: props.target ?? workers(chart),
    queue: 'ai-generation-jobs',
    maxReplicas: 40,
    rabbitmq: { connection: managementUrl(chart) },
    ...props,
  });
}

function expectInvalid(fn: () => unknown, message: RegExp): void {
  expect(invalidPropError(fn).message).toMatch(message);
}

describe('KedaQueueScaler', () => {
  test('synthesizes a ScaledObject that scales to zero and a TriggerAuthentication from the Secret', () => {
    const chart = testChart();
    scaler(chart);
    const manifests = synthValid(chart);
    expect(manifests).toMatchSnapshot();

    const deployment = only(manifests, 'Deployment');
    const scaledObject = only(manifests, 'ScaledObject');
    const auth = only(manifests, 'TriggerAuthentication');
    expect(deployment.spec.replicas).toBeUndefined();
    expect(all(manifests, 'HorizontalPodAutoscaler')).toHaveLength(0);
    expect(all(manifests, 'ConfigMap')).toHaveLength(0);

    expect(scaledObject.apiVersion).toBe('keda.sh/v1alpha1');
    expect(scaledObject.metadata).toEqual({ name: 'gpu-workers', namespace: 'ai-workers' });
    expect(scaledObject.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    expect(scaledObject.spec).toMatchObject({
      minReplicaCount: 0,
      maxReplicaCount: 40,
      pollingInterval: 15,
      cooldownPeriod: 600,
      fallback: { failureThreshold: 3, replicas: 1, behavior: 'currentReplicasIfHigher' },
    });

    expect(auth.metadata).toEqual({ name: 'gpu-workers-rabbitmq', namespace: 'ai-workers' });
    expect(auth.spec).toEqual({ secretTargetRef: [{ parameter: 'host', name: 'rabbitmq-credentials', key: 'management-url' }] });

    const [trigger] = scaledObject.spec.triggers;
    expect(trigger).toEqual({
      type: 'rabbitmq',
      name: 'rabbitmq-backlog',
      metricType: 'AverageValue',
      authenticationRef: { name: auth.metadata.name },
      metadata: {
        protocol: 'http',
        mode: 'QueueLength',
        value: '8',
        activationValue: '0',
        queueName: 'ai-generation-jobs',
        vhostName: '/',
        excludeUnacknowledged: 'false',
      },
    });
    // No credential or connection string is written into the trigger itself.
    expect(Object.keys(trigger.metadata)).not.toContain('host');
    expect(JSON.stringify(scaledObject)).not.toMatch(/:\/\/|@/);
  });

  test('HPA behavior goes through advanced.horizontalPodAutoscalerConfig with the same defaults as the HPA backend', () => {
    const chart = testChart();
    const keda = scaler(chart, { scaleDown: { stabilizationWindow: Duration.minutes(20) } });
    const { advanced } = only(synthValid(chart), 'ScaledObject').spec;
    expect(advanced.horizontalPodAutoscalerConfig.behavior).toEqual(keda.scaling.behavior);
    expect(advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds).toBe(1200);
    expect(advanced.horizontalPodAutoscalerConfig.behavior.scaleUp).toEqual({
      stabilizationWindowSeconds: 0,
      selectPolicy: 'Max',
      policies: [
        { type: 'Percent', value: 100, periodSeconds: 30 },
        { type: 'Pods', value: 4, periodSeconds: 30 },
      ],
    });
  });

  test('ready-only backlog: excludeUnacknowledged over HTTP, or AMQP with the workers\' URL', () => {
    const chart = testChart();
    const target = workers(chart, { terminationGracePeriod: Duration.minutes(6) });
    scaler(chart, { target, backlog: BacklogMeasure.READY, maxJobDuration: Duration.minutes(5) });
    expect(only(synthValid(chart), 'ScaledObject').spec.triggers[0].metadata.excludeUnacknowledged).toBe('true');

    const amqpChart = testChart();
    const amqpUrl = { secret: kplus.Secret.fromSecretName(amqpChart, 'Amqp', 'rabbitmq-credentials'), key: 'url' };
    scaler(amqpChart, {
      target: workers(amqpChart, { terminationGracePeriod: Duration.minutes(6) }),
      backlog: BacklogMeasure.READY,
      maxJobDuration: Duration.minutes(5),
      rabbitmq: { connection: amqpUrl, protocol: RabbitmqProtocol.AMQP },
    });
    const metadata = only(synthValid(amqpChart), 'ScaledObject').spec.triggers[0].metadata;
    expect(metadata.protocol).toBe('amqp');
    expect(metadata.excludeUnacknowledged).toBeUndefined();
  });

  test('prometheus trigger runs the very backlog query of the HPA backend and fails on an empty result', () => {
    const chart = testChart();
    const keda = scaler(chart, { rabbitmq: undefined, prometheus: { serverAddress: PROMETHEUS }, activationBacklog: 2 });
    const scaledObject = only(synthValid(chart), 'ScaledObject');
    expect(all(synthValid(chart), 'TriggerAuthentication')).toHaveLength(0);
    expect(scaledObject.spec.triggers).toEqual([
      {
        type: 'prometheus',
        name: 'prometheus-backlog',
        metricType: 'AverageValue',
        metadata: {
          serverAddress: PROMETHEUS,
          query: 'max by (vhost, queue) (rabbitmq_detailed_queue_messages{vhost="/",queue="ai-generation-jobs"})',
          threshold: '8',
          activationThreshold: '2',
          ignoreNullValues: 'false',
        },
      },
    ]);
    expect(keda.backlogQuery).toBe(queueBacklogQuery('ai-generation-jobs', '/', BacklogMeasure.READY_AND_UNACKED));

    // The HPA backend's adapter runs the same query for the same intent.
    const hpaChart = testChart();
    const hpa = new QueueScaledHpa(hpaChart, 'Hpa', { target: workers(hpaChart), queue: 'ai-generation-jobs', maxReplicas: 40 });
    expect(hpa.backlogMetric.query).toBe(keda.backlogQuery);
  });

  test('both triggers, and GPU utilization as a sum of per-pod averages that never wakes the workload', () => {
    const chart = testChart();
    scaler(chart, { prometheus: { serverAddress: PROMETHEUS }, gpuUtilization: { source: DCGM_GPU_UTILIZATION } });
    const triggers = only(synthValid(chart), 'ScaledObject').spec.triggers;
    expect(triggers.map((t: any) => t.name)).toEqual(['rabbitmq-backlog', 'prometheus-backlog', 'gpu-utilization']);
    // KEDA's fallback accepts AverageValue triggers only.
    expect(triggers.every((t: any) => t.metricType === 'AverageValue')).toBe(true);
    expect(triggers[2].metadata).toEqual({
      serverAddress: PROMETHEUS,
      query: 'sum(avg by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace="ai-workers",pod=~"gpu-workers-[a-z0-9]+-[a-z0-9]+"}))',
      threshold: '80',
      activationThreshold: '100',
      ignoreNullValues: 'true',
    });
  });

  test('MessageRate mode with a backlog trigger beside it', () => {
    const chart = testChart();
    scaler(chart, {
      rabbitmq: { connection: managementUrl(chart), mode: RabbitmqTriggerMode.MESSAGE_RATE, messageRatePerReplica: 2.5 },
      prometheus: { serverAddress: PROMETHEUS },
    });
    const [rate] = only(synthValid(chart), 'ScaledObject').spec.triggers;
    expect(rate.metadata).toMatchObject({ mode: 'MessageRate', value: '2.5', protocol: 'http' });
    expect(rate.metadata.excludeUnacknowledged).toBeUndefined();
  });

  test('fallback can be tuned or turned off', () => {
    const chart = testChart();
    scaler(chart, { minReplicas: 2, fallback: { replicas: 4, failureThreshold: 5 } });
    expect(only(synthValid(chart), 'ScaledObject').spec.fallback).toEqual({ failureThreshold: 5, replicas: 4, behavior: 'currentReplicasIfHigher' });

    const off = testChart();
    scaler(off, { fallback: false });
    expect(only(synthValid(off), 'ScaledObject').spec.fallback).toBeUndefined();
  });

  test('on a GpuWorkerDeployment: no spec.replicas, and its job duration is checked', () => {
    const chart = testChart();
    const target = new GpuWorkerDeployment(chart, 'Gpu', {
      name: 'sdxl-workers',
      rabbitmqUrl: { secret: kplus.Secret.fromSecretName(chart, 'Url', 'rabbitmq-credentials'), key: 'url' },
      model: ModelSource.fromPersistentVolumeClaim('models'),
      maxJobDuration: Duration.minutes(15),
    });
    scaler(chart, { target, backlog: BacklogMeasure.READY, cooldownPeriod: Duration.minutes(20) });
    const manifests = synthValid(chart);
    const deployment = only(manifests, 'Deployment');
    expect(deployment.spec.replicas).toBeUndefined();
    expect(only(manifests, 'ScaledObject').spec.scaleTargetRef.name).toBe('sdxl-workers');

    const short = testChart();
    const shortTarget = new GpuWorkerDeployment(short, 'Gpu', {
      name: 'sdxl-workers',
      rabbitmqUrl: { secret: kplus.Secret.fromSecretName(short, 'Url', 'rabbitmq-credentials'), key: 'url' },
      model: ModelSource.fromPersistentVolumeClaim('models'),
      maxJobDuration: Duration.minutes(15),
    });
    expectInvalid(
      () => scaler(short, { target: shortTarget, backlog: BacklogMeasure.READY }),
      /`cooldownPeriod` \(600s\) is shorter than `maxJobDuration` \(900s\)/,
    );
  });
});

describe('KedaQueueScaler: bad input', () => {
  test('unknown trigger mode or protocol', () => {
    const chart = testChart();
    expectInvalid(
      () => scaler(chart, { rabbitmq: { connection: managementUrl(chart), mode: 'QueueDepth' as RabbitmqTriggerMode } }),
      /`rabbitmq.mode` is "QueueDepth", an unknown value. Use one of QueueLength, MessageRate/,
    );
    const other = testChart();
    expectInvalid(
      () => scaler(other, { rabbitmq: { connection: managementUrl(other), protocol: 'https' as RabbitmqProtocol } }),
      /`rabbitmq.protocol` is "https", an unknown value/,
    );
  });

  test('activation above the target, and values finer than a quantity can carry', () => {
    expectInvalid(() => scaler(testChart(), { activationBacklog: 10, backlogPerReplica: 4 }), /`activationBacklog` \(10\) is above `backlogPerReplica` \(4\)/);
    expectInvalid(() => scaler(testChart(), { activationBacklog: -1 }), /`activationBacklog` is -1/);
    expectInvalid(() => scaler(testChart(), { activationBacklog: 0.0002 }), /`activationBacklog` is 0\.0002\. Use 0 or a number of at least 0\.001/);
    // Below a thousandth, KEDA would hand its HPA a target of 0, which the API server rejects.
    expectInvalid(() => scaler(testChart(), { backlogPerReplica: 0.0004 }), /`backlogPerReplica` is 0\.0004\. Use a number of at least 0\.001/);
    const chart = testChart();
    const rate = { connection: managementUrl(chart), mode: RabbitmqTriggerMode.MESSAGE_RATE, messageRatePerReplica: 0.0001 };
    expectInvalid(() => scaler(chart, { rabbitmq: rate, prometheus: { serverAddress: PROMETHEUS } }), /`rabbitmq.messageRatePerReplica` is 0\.0001/);
  });

  test('both backends on one workload', () => {
    const chart = testChart();
    const target = workers(chart);
    new QueueScaledHpa(chart, 'Hpa', { target, queue: 'ai-generation-jobs', maxReplicas: 10 });
    expectInvalid(() => scaler(chart, { target }), /is already scaled by test\/Hpa.*never both/);

    const reverse = testChart();
    const reverseTarget = workers(reverse);
    scaler(reverse, { target: reverseTarget });
    expectInvalid(
      () => new QueueScaledHpa(reverse, 'Hpa', { target: reverseTarget, queue: 'ai-generation-jobs', maxReplicas: 10 }),
      /is already scaled by test\/Scaler/,
    );
  });

  test('credentials given as literals', () => {
    const chart = testChart();
    expectInvalid(
      () => scaler(chart, { rabbitmq: { connection: managementUrl(chart), extraMetadata: { host: 'http://guest:guest@rabbitmq:15672/' } } }),
      /`rabbitmq.extraMetadata.host` holds credentials as a literal/,
    );
    const other = testChart();
    expectInvalid(
      () => scaler(other, { rabbitmq: { connection: managementUrl(other), extraMetadata: { password: 'hunter2' } } }),
      /`rabbitmq.extraMetadata.password` holds credentials/,
    );
    expectInvalid(
      () => scaler(testChart(), { rabbitmq: undefined, prometheus: { serverAddress: 'http://admin:secret@prometheus:9090' } }),
      /`prometheus.serverAddress` holds credentials as a literal/,
    );
  });

  test('a Prometheus address that is not an http(s) URL', () => {
    expectInvalid(
      () => scaler(testChart(), { rabbitmq: undefined, prometheus: { serverAddress: 'prometheus-operated.monitoring:9090' } }),
      /`prometheus.serverAddress` is "prometheus-operated.monitoring:9090"/,
    );
  });

  test('no trigger at all', () => {
    expectInvalid(() => scaler(testChart(), { rabbitmq: undefined }), /`rabbitmq` and `prometheus` are both unset/);
  });

  test('AMQP cannot count unacknowledged messages', () => {
    const chart = testChart();
    expectInvalid(
      () => scaler(chart, { rabbitmq: { connection: managementUrl(chart), protocol: RabbitmqProtocol.AMQP } }),
      /`rabbitmq.protocol` is amqp, which counts ready messages only/,
    );
  });

  test('MessageRate alone cannot scale to zero safely, and needs HTTP and a rate', () => {
    const chart = testChart();
    expectInvalid(
      () => scaler(chart, { rabbitmq: { connection: managementUrl(chart), mode: RabbitmqTriggerMode.MESSAGE_RATE, messageRatePerReplica: 5 } }),
      /MessageRate with minReplicas 0/,
    );
    const amqp = testChart();
    expectInvalid(
      () => scaler(amqp, {
        backlog: BacklogMeasure.READY,
        maxJobDuration: Duration.seconds(20),
        rabbitmq: {
          connection: managementUrl(amqp),
          protocol: RabbitmqProtocol.AMQP,
          mode: RabbitmqTriggerMode.MESSAGE_RATE,
          messageRatePerReplica: 1,
        },
      }),
      /`rabbitmq.mode` is MessageRate, which KEDA reads from the management API only/,
    );
    const noRate = testChart();
    expectInvalid(
      () => scaler(noRate, { minReplicas: 1, rabbitmq: { connection: managementUrl(noRate), mode: RabbitmqTriggerMode.MESSAGE_RATE } }),
      /`rabbitmq.messageRatePerReplica` is unset/,
    );
  });

  test('ready-only backlog at zero replicas needs a cooldown longer than the longest job', () => {
    expectInvalid(() => scaler(testChart(), { backlog: BacklogMeasure.READY }), /`maxJobDuration` is unknown/);
    expectInvalid(
      () => scaler(testChart(), { backlog: BacklogMeasure.READY, maxJobDuration: Duration.minutes(30) }),
      /`cooldownPeriod` \(600s\) is shorter than `maxJobDuration` \(1800s\)/,
    );
  });

  test('a job duration longer than the target\'s grace period', () => {
    expectInvalid(
      () => scaler(testChart(), { maxJobDuration: Duration.minutes(5) }),
      /`maxJobDuration` \(5 minutes\) is longer than the target's termination grace period \(30 seconds\)/,
    );
  });

  test('GPU utilization without a Prometheus', () => {
    expectInvalid(() => scaler(testChart(), { gpuUtilization: { source: DCGM_GPU_UTILIZATION } }), /`gpuUtilization` needs a Prometheus/);
  });

  test('GPU utilization in a chart without a namespace is refused, not queried in `default`', () => {
    const chart = new Chart(Testing.app(), 'no-namespace');
    const build = () => scaler(chart, { prometheus: { serverAddress: PROMETHEUS }, gpuUtilization: { source: DCGM_GPU_UTILIZATION } });
    expectInvalidProp(build, 'namespace', /Give the chart a `namespace`/);

    // A namespace on the target itself is enough.
    const withNamespace = new Chart(Testing.app(), 'target-namespace');
    const keda = scaler(withNamespace, {
      target: workers(withNamespace, { metadata: { name: 'gpu-workers', namespace: 'gpu' } }),
      prometheus: { serverAddress: PROMETHEUS },
      gpuUtilization: { source: DCGM_GPU_UTILIZATION },
    });
    expect(keda.gpuUtilizationQuery()).toContain('namespace="gpu"');
  });

  test('shared intent rules: min > max, max < 1, fixed replicas, name too long for KEDA\'s label', () => {
    expectInvalid(() => scaler(testChart(), { minReplicas: 3, maxReplicas: 2 }), /`minReplicas` \(3\) is greater than `maxReplicas` \(2\)/);
    expectInvalid(() => scaler(testChart(), { maxReplicas: 0 }), /`maxReplicas` is 0/);
    const chart = testChart();
    expectInvalid(() => scaler(chart, { target: workers(chart, { replicas: 2 }) }), /sets fixed replicas \(2\)/);
    expectInvalid(() => scaler(testChart(), { name: 'w'.repeat(64) }), /`name` is 64 characters long/);
    expectInvalid(() => scaler(testChart(), { fallback: { replicas: 50 } }), /`fallback.replicas` \(50\) is above `maxReplicas` \(40\)/);
  });
});

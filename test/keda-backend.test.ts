import { Chart } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { DCGM_GPU_UTILIZATION } from '../src/gpu-metrics';
import { backlogSignal, ScalingBackend, ScalingBackendKind } from '../src/keda-backend';
import { KedaQueueScaler } from '../src/keda-queue-scaler';
import { renderExternalMetricsQuery } from '../src/prometheus-adapter-rules';
import { QueueScaledHpa, QueueScalingProps } from '../src/queue-scaled-hpa';
import { queueBacklogQuery } from '../src/rabbitmq-metrics';
import { InvalidPropError } from '../src/validation';
import { all, only, synthValid, testChart } from './util/manifests';

const PROMETHEUS = 'http://prometheus-operated.monitoring.svc:9090';

function intent(chart: Chart): QueueScalingProps {
  const target = new kplus.Deployment(chart, 'Workers', {
    metadata: { name: 'gpu-workers' },
    containers: [{ image: 'ghcr.io/example/worker:1.0.0', securityContext: { ensureNonRoot: false } }],
  });
  return { target, queue: 'ai-generation-jobs', maxReplicas: 12, gpuUtilization: { source: DCGM_GPU_UTILIZATION } };
}

function kedaBackend(chart: Chart): ScalingBackend {
  return ScalingBackend.keda({
    rabbitmq: { connection: { secret: kplus.Secret.fromSecretName(chart, 'Rabbit', 'rabbitmq-credentials'), key: 'management-url' } },
    prometheus: { serverAddress: PROMETHEUS },
  });
}

describe('ScalingBackend', () => {
  test('the same intent becomes an HPA + adapter rules, or a ScaledObject, never both', () => {
    const hpaChart = testChart();
    const hpa = ScalingBackend.prometheusAdapter().bind(hpaChart, 'Scaling', intent(hpaChart));
    const hpaManifests = synthValid(hpaChart);
    expect(hpa).toBeInstanceOf(QueueScaledHpa);
    expect(all(hpaManifests, 'HorizontalPodAutoscaler')).toHaveLength(1);
    expect(all(hpaManifests, 'ConfigMap')).toHaveLength(1);
    expect(all(hpaManifests, 'ScaledObject')).toHaveLength(0);

    const kedaChart = testChart();
    const scaler = kedaBackend(kedaChart).bind(kedaChart, 'Scaling', intent(kedaChart));
    const kedaManifests = synthValid(kedaChart);
    expect(scaler).toBeInstanceOf(KedaQueueScaler);
    expect(all(kedaManifests, 'ScaledObject')).toHaveLength(1);
    expect(all(kedaManifests, 'TriggerAuthentication')).toHaveLength(1);
    expect(all(kedaManifests, 'HorizontalPodAutoscaler')).toHaveLength(0);
    expect(all(kedaManifests, 'ConfigMap')).toHaveLength(0);

    // Same bounds and behavior from the same intent; the HPA backend's floor is 1, KEDA's is 0.
    const hpaSpec = only(hpaManifests, 'HorizontalPodAutoscaler').spec;
    const kedaSpec = only(kedaManifests, 'ScaledObject').spec;
    expect(kedaSpec.maxReplicaCount).toBe(hpaSpec.maxReplicas);
    expect(kedaSpec.advanced.horizontalPodAutoscalerConfig.behavior).toEqual(hpaSpec.behavior);
    expect([hpaSpec.minReplicas, kedaSpec.minReplicaCount]).toEqual([1, 0]);
  });

  test('backend options pass through', () => {
    const chart = testChart();
    const hpa = ScalingBackend.prometheusAdapter({ name: 'renamed-hpa' }).bind(chart, 'Scaling', intent(chart));
    expect(hpa).toBeInstanceOf(QueueScaledHpa);
    expect(only(synthValid(chart), 'HorizontalPodAutoscaler').metadata.name).toBe('renamed-hpa');
  });

  test('a second backend on the same workload is refused', () => {
    const chart = testChart();
    const shared = intent(chart);
    ScalingBackend.prometheusAdapter().bind(chart, 'Hpa', shared);
    expect(() => kedaBackend(chart).bind(chart, 'Keda', shared)).toThrow(InvalidPropError);
  });
});

describe('backlogSignal', () => {
  test('HPA backend: metric name, selector, rule, and the query the adapter runs', () => {
    const chart = testChart();
    const signal = backlogSignal(ScalingBackend.prometheusAdapter().bind(chart, 'Scaling', intent(chart)));
    expect(signal).toMatchObject({
      backend: ScalingBackendKind.PROMETHEUS_ADAPTER,
      namespace: 'ai-workers',
      queue: 'ai-generation-jobs',
      vhost: '/',
      backlogPerReplica: 8,
      minReplicas: 1,
      maxReplicas: 12,
      query: queueBacklogQuery('ai-generation-jobs', '/'),
      externalMetric: { name: 'rabbitmq_queue_backlog', selector: { queue: 'ai-generation-jobs' } },
    });
    expect(renderExternalMetricsQuery(signal.externalMetric!.rule, signal.externalMetric!.selector)).toBe(signal.query);
    expect(signal.gpuUtilizationRule?.name.as).toBe(DCGM_GPU_UTILIZATION.customMetricName);
  });

  test('KEDA backend: the prometheus trigger query is the same backlog query', () => {
    const chart = testChart();
    const signal = backlogSignal(kedaBackend(chart).bind(chart, 'Scaling', intent(chart)));
    expect(signal.backend).toBe(ScalingBackendKind.KEDA);
    expect(signal.query).toBe(queueBacklogQuery('ai-generation-jobs', '/'));
    expect(signal.kedaTriggers?.find((t) => t.name === 'prometheus-backlog')?.metadata.query).toBe(signal.query);
    expect(signal.gpuUtilizationQuery).toBe(
      'sum(avg by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace="ai-workers",pod=~"gpu-workers-[a-z0-9]+-[a-z0-9]+"}))',
    );
  });
});

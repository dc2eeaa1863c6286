import { App, Chart, Duration } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { parse } from 'yaml';
import { WorkerEnv } from '../src/contract';
import { ModelSource } from '../src/gpu-worker-deployment';
import { PrometheusAdapterRules } from '../src/prometheus-adapter-rules';
import { QueueProcessingGpuService, QueueProcessingGpuServiceProps } from '../src/queue-processing-gpu-service';
import { QueueWorkerAlertNames } from '../src/queue-worker-monitoring';
import { InvalidPropError } from '../src/validation';
import { only, synthValid, testChart } from './util/manifests';

function service(chart: Chart, props: Partial<QueueProcessingGpuServiceProps> = {}, id = 'Ocr'): QueueProcessingGpuService {
  return new QueueProcessingGpuService(chart, id, {
    name: 'ocr-workers',
    rabbitmqUrl: { secret: kplus.Secret.fromSecretName(chart, `${id}Amqp`, 'rabbitmq-worker'), key: 'url' },
    queue: 'ocr-jobs',
    model: ModelSource.fromPersistentVolumeClaim('ocr-models'),
    maxJobDuration: Duration.minutes(2),
    maxReplicas: 40,
    ...props,
  });
}

function errorOf(props: Partial<QueueProcessingGpuServiceProps>): Error {
  try {
    service(testChart(), props);
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('QueueProcessingGpuService', () => {
  test('builds workers, autoscaler, adapter rules and monitoring that validate', () => {
    const chart = testChart();
    const svc = service(chart);
    const manifests = synthValid(chart);
    // The snapshot holds this pattern's own objects; the HPA and adapter rules are QueueScaledHpa's, asserted below.
    expect(manifests.filter((m) => !['HorizontalPodAutoscaler', 'ConfigMap'].includes(m.kind))).toMatchSnapshot();
    expect(manifests.map((m) => m.kind).sort()).toEqual([
      'ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'PodMonitor', 'PrometheusRule', 'ServiceMonitor',
    ]);
    expect(svc.workers.name).toBe('ocr-workers');
    expect(svc.autoscaler!.hpa.name).toBe('ocr-workers');
    expect(svc.monitoring).toBeDefined();
  });

  test('the autoscaler targets the worker Deployment, which then carries no replicas', () => {
    const chart = testChart();
    service(chart, { minReplicas: 2, maxReplicas: 12 });
    const manifests = synthValid(chart);
    const deployment = only(manifests, 'Deployment');
    const hpa = only(manifests, 'HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: deployment.apiVersion, kind: deployment.kind, name: deployment.metadata.name });
    expect(hpa.metadata.namespace).toBe(deployment.metadata.namespace);
    expect(deployment.spec.replicas).toBeUndefined();
    expect(hpa.spec).toMatchObject({ minReplicas: 2, maxReplicas: 12 });
  });

  test('scales on the queue the workers consume, one prefetch of backlog per worker', () => {
    const chart = testChart();
    const svc = service(chart, { maxBatchSize: 4, prefetch: 6 });
    const manifests = synthValid(chart);
    const env = only(manifests, 'Deployment').spec.template.spec.containers[0].env;
    const metric = only(manifests, 'HorizontalPodAutoscaler').spec.metrics[0].external;
    expect(env.find((e: any) => e.name === WorkerEnv.PREFETCH).value).toBe('6');
    expect(metric.target).toEqual({ type: 'AverageValue', averageValue: '6' });
    expect(metric.metric.selector).toEqual({ matchLabels: { queue: 'ocr-jobs' } });
    expect(svc.autoscaler!.scaling.queue).toBe(svc.workers.queue);

    // The metric the HPA asks for is the one the adapter serves.
    const config = parse(only(manifests, 'ConfigMap').data['config.yaml']);
    expect(config.externalRules.map((r: any) => r.name.as)).toContain(metric.metric.name);
  });

  test('the alerts watch the same queue, workers and autoscaler', () => {
    const chart = testChart();
    const svc = service(chart, { vhost: 'jobs' });
    const alerts = svc.monitoring!.alerts;
    const expr = (name: string) => alerts.find((a) => a.alert === name)!.expr;
    expect(expr(QueueWorkerAlertNames.backlogGrowing)).toContain('vhost="jobs",queue="ocr-jobs"');
    expect(expr(QueueWorkerAlertNames.autoscalerAtMax)).toContain(`horizontalpodautoscaler="${svc.autoscaler!.hpa.name}"`);
    expect(expr(QueueWorkerAlertNames.podsUnschedulable)).toContain('pod=~"ocr-workers-[a-z0-9]+-[a-z0-9]+"');
    expect(only(synthValid(chart), 'PodMonitor').spec.selector.matchLabels).toEqual(svc.workers.podSelectorLabels);
  });

  test('monitoring objects can live in the monitoring chart, named after the workers', () => {
    const app = new App();
    const monitoringChart = new Chart(app, 'monitoring', { namespace: 'monitoring' });
    const adapterRules = new PrometheusAdapterRules(monitoringChart, 'AdapterRules');
    const workersChart = new Chart(app, 'workers', { namespace: 'ai-workers' });
    service(workersChart, { adapterRules, monitoring: { scope: monitoringChart } });

    const inWorkers = synthValid(workersChart);
    const inMonitoring = synthValid(monitoringChart);
    expect(inWorkers.map((m) => m.kind).sort()).toEqual(['Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget']);
    expect(inMonitoring.map((m) => `${m.kind}/${m.metadata.namespace}/${m.metadata.name}`).sort()).toEqual([
      'ConfigMap/monitoring/prometheus-adapter-rules',
      'PodMonitor/monitoring/ocr-workers-workers',
      'PrometheusRule/monitoring/ocr-workers',
      'ServiceMonitor/monitoring/ocr-workers-rabbitmq',
    ]);
    expect(only(inMonitoring, 'PodMonitor').spec.namespaceSelector).toEqual({ matchNames: ['ai-workers'] });
  });

  test('monitoring in the service\'s own scope is named after the workers too, not after the construct path', () => {
    const chart = testChart();
    service(chart, { keda: { rabbitmq: { connection: { secret: kplus.Secret.fromSecretName(chart, 'Mgmt', 'rabbitmq-management'), key: 'url' } } } });
    const manifests = synthValid(chart);
    expect(only(manifests, 'PodMonitor').metadata.name).toBe('ocr-workers-workers');
    expect(only(manifests, 'ServiceMonitor').metadata.name).toBe('ocr-workers-rabbitmq');
    expect(only(manifests, 'PrometheusRule').metadata.name).toBe('ocr-workers');
  });

  test('the no-consumers alert pages after 10 minutes with a warm replica, after a whole cold start from zero', () => {
    const noConsumersFor = (svc: QueueProcessingGpuService) =>
      svc.monitoring!.alerts.find((a) => a.alert === 'JobQueueHasNoConsumers')!.for.toMinutes();
    const warm = testChart();
    expect(noConsumersFor(service(warm))).toBe(10);
    const fromZero = testChart();
    const connection = { secret: kplus.Secret.fromSecretName(fromZero, 'Mgmt', 'rabbitmq-management'), key: 'url' };
    // unschedulableFor (15 min) + the workers' startupTimeout (10 min)
    expect(noConsumersFor(service(fromZero, { keda: { rabbitmq: { connection } } }))).toBe(25);
  });

  test('with keda, the no-consumers alert waits for backlog above the activation backlog', () => {
    const chart = testChart();
    const svc = service(chart, {
      keda: {
        activationBacklog: 3,
        rabbitmq: { connection: { secret: kplus.Secret.fromSecretName(chart, 'Mgmt', 'rabbitmq-management'), key: 'url' } },
      },
    });
    const noConsumers = svc.monitoring!.alerts.find((a) => a.alert === QueueWorkerAlertNames.noConsumers)!;
    expect(noConsumers.expr).toMatch(/ > 3\) and on/);
    expect(noConsumers.for.toMinutes()).toBe(25);
  });

  test('two services can share one monitoring chart', () => {
    const app = new App();
    const monitoringChart = new Chart(app, 'monitoring', { namespace: 'monitoring' });
    const workersChart = new Chart(app, 'workers', { namespace: 'ai-workers' });
    service(workersChart, { monitoring: { scope: monitoringChart } }, 'Ocr');
    service(workersChart, { name: 'caption-workers', queue: 'caption-jobs', monitoring: { scope: monitoringChart, rabbitmq: false } }, 'Caption');
    const names = synthValid(monitoringChart).map((m) => `${m.kind}/${m.metadata.name}`).sort();
    expect(names).toEqual([
      'PodMonitor/caption-workers-workers',
      'PodMonitor/ocr-workers-workers',
      'PrometheusRule/caption-workers',
      'PrometheusRule/ocr-workers',
      'ServiceMonitor/ocr-workers-rabbitmq',
    ]);
  });

  test('with keda, a ScaledObject scales the workers from zero and the alerts name KEDA\'s HPA', () => {
    const chart = testChart();
    const svc = service(chart, {
      keda: { rabbitmq: { connection: { secret: kplus.Secret.fromSecretName(chart, 'Mgmt', 'rabbitmq-management'), key: 'url' } } },
    });
    const manifests = synthValid(chart);
    const deployment = only(manifests, 'Deployment');
    const scaledObject = only(manifests, 'ScaledObject');
    expect(manifests.map((m) => m.kind)).not.toContain('HorizontalPodAutoscaler');
    expect(manifests.map((m) => m.kind)).not.toContain('ConfigMap');
    expect(scaledObject.spec.scaleTargetRef).toMatchObject({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    expect(scaledObject.spec.minReplicaCount).toBe(0);
    expect(deployment.spec.replicas).toBeUndefined();
    expect(svc.autoscaler).toBeUndefined();
    expect(svc.autoscalerName).toBe(`keda-hpa-${scaledObject.metadata.name}`);
    const atMax = svc.monitoring!.alerts.find((a) => a.alert === QueueWorkerAlertNames.autoscalerAtMax)!;
    expect(atMax.expr).toContain(`horizontalpodautoscaler="keda-hpa-${scaledObject.metadata.name}"`);
  });

  test('monitoring can be turned off', () => {
    const chart = testChart();
    const svc = service(chart, { monitoring: false });
    expect(svc.monitoring).toBeUndefined();
    expect(synthValid(chart).map((m) => m.kind)).not.toContain('PodMonitor');
  });

  describe('bad input', () => {
    test('fixed replicas is an error', () => {
      const error = errorOf({ replicas: 3 } as any);
      expect(error).toBeInstanceOf(InvalidPropError);
      expect(error.message).toMatch(/`replicas` is set, but the autoscaler owns the replica count/);
    });

    test('both backends at once (keda and adapter rules) is an error', () => {
      const app = new App();
      const chart = new Chart(app, 'workers', { namespace: 'ai-workers' });
      const adapterRules = new PrometheusAdapterRules(chart, 'Rules');
      const connection = { secret: kplus.Secret.fromSecretName(chart, 'Mgmt', 'rabbitmq-management'), key: 'url' };
      expect(() => service(chart, { adapterRules, keda: { rabbitmq: { connection } } })).toThrow(/`adapterRules` is set together with `keda`/);
    });

    test('minReplicas above maxReplicas is an error', () => {
      expect(errorOf({ minReplicas: 5, maxReplicas: 4 }).message).toMatch(/`minReplicas` \(5\) is greater than `maxReplicas` \(4\)/);
    });

    test('maxReplicas below 1 is an error', () => {
      expect(errorOf({ maxReplicas: 0 }).message).toMatch(/`maxReplicas` is 0/);
    });

    test('an empty queue is an error', () => {
      expect(errorOf({ queue: '' }).message).toMatch(/GpuWorkerDeployment: `queue`/);
    });

    test('a fractional GPU count is an error', () => {
      expect(errorOf({ gpuCount: 0.5 }).message).toMatch(/`gpuCount` is 0.5/);
    });

    test('a non-positive backlog per replica is an error', () => {
      expect(errorOf({ backlogPerReplica: 0 }).message).toMatch(/`backlogPerReplica` is 0/);
    });
  });
});

/**
 * The app the live-signal suite synthesizes: the library's top-level pattern, `QueueProcessingGpuService`, configured
 * as a user would, with RabbitMQ in `messaging`, the workers and their HPA in `ai-workers`, the monitoring objects
 * and prometheus-adapter's rules in `monitoring`, and dcgm-exporter in `gpu-monitoring`. Every object is
 * schema-validated by `synthValid`.
 */
import { Chart, Duration, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { DcgmExporter } from '../../src/dcgm-exporter';
import { GpuWorkerDeployment, ModelSource } from '../../src/gpu-worker-deployment';
import { PrometheusAdapterRules } from '../../src/prometheus-adapter-rules';
import { QueueProcessingGpuService } from '../../src/queue-processing-gpu-service';
import { QueueScaledHpa } from '../../src/queue-scaled-hpa';
import { QueueWorkerMonitoring } from '../../src/queue-worker-monitoring';
import { Manifest, only, synthValid } from '../util/manifests';

export const NAMESPACES = {
  rabbitmq: 'messaging',
  workers: 'ai-workers',
  monitoring: 'monitoring',
  gpu: 'gpu-monitoring',
} as const;

/** Labels the (simulated) Prometheus resource selects monitors by: kube-prometheus-stack's default. */
export const PROMETHEUS_SELECTOR = { release: 'kube-prometheus-stack' };

/** Name of the worker Deployment; the DCGM fixture records pods of this name. */
export const WORKER_DEPLOYMENT = 'gpu-workers';

export interface ScenarioOptions {
  /** Queue the workers consume (unique per run). */
  readonly queue: string;

  /** The suite's virtual host. */
  readonly vhost: string;

  /** Jobs of backlog per replica (the HPA's AverageValue target). */
  readonly backlogPerReplica: number;

  readonly minReplicas: number;
  readonly maxReplicas: number;
}

/** The synthesized objects the suite reads. */
export interface Scenario {
  readonly workers: GpuWorkerDeployment;
  readonly hpa: QueueScaledHpa;
  readonly monitoring: QueueWorkerMonitoring;
  readonly dcgm: DcgmExporter;
  readonly manifests: {
    readonly deployment: Manifest;
    readonly hpa: Manifest;
    readonly adapterConfigMap: Manifest;
    readonly rabbitmqServiceMonitor: Manifest;
    readonly workerPodMonitor: Manifest;
    readonly prometheusRule: Manifest;
    readonly dcgmServiceMonitor: Manifest;
    readonly dcgmDaemonSet: Manifest;
    readonly dcgmService: Manifest;
  };
}

/** Synthesizes the scenario's charts and picks out the objects the live checks need. */
export function synthesizeScenario(options: ScenarioOptions): Scenario {
  const app = Testing.app();
  const workerChart = new Chart(app, 'workers', { namespace: NAMESPACES.workers });
  const monitoringChart = new Chart(app, 'monitoring', { namespace: NAMESPACES.monitoring });
  const gpuChart = new Chart(app, 'gpu', { namespace: NAMESPACES.gpu });

  const dcgm = new DcgmExporter(gpuChart, 'dcgm-exporter', { serviceMonitorLabels: PROMETHEUS_SELECTOR });
  if (!dcgm.gpuUtilization) throw new Error('DcgmExporter does not collect GPU utilization by default');

  const secret = kplus.Secret.fromSecretName(workerChart, 'BrokerSecret', 'rabbitmq-worker');
  const adapterRules = new PrometheusAdapterRules(monitoringChart, 'AdapterRules');
  const service = new QueueProcessingGpuService(workerChart, 'Ocr', {
    name: WORKER_DEPLOYMENT,
    rabbitmqUrl: { secret, key: 'url' },
    queue: options.queue,
    vhost: options.vhost,
    resultsExchange: `${options.queue}.results`,
    deadLetterExchange: `${options.queue}.dlx`,
    deadLetterQueue: `${options.queue}.dead-letter`,
    model: ModelSource.fromPersistentVolumeClaim('models'),
    maxJobDuration: Duration.minutes(2),
    backlogPerReplica: options.backlogPerReplica,
    minReplicas: options.minReplicas,
    maxReplicas: options.maxReplicas,
    gpuUtilization: { source: dcgm.gpuUtilization },
    adapterRules,
    monitoring: {
      scope: monitoringChart,
      prometheusSelectorLabels: PROMETHEUS_SELECTOR,
      rabbitmq: { namespace: NAMESPACES.rabbitmq },
    },
  });
  const workers = service.workers;
  const hpa = service.autoscaler;
  const monitoring = service.monitoring;
  if (!hpa || !monitoring) throw new Error('QueueProcessingGpuService made no HPA or no monitoring with its default backend');

  const workerObjects = synthValid(workerChart);
  const monitoringObjects = synthValid(monitoringChart);
  const gpuObjects = synthValid(gpuChart);

  return {
    workers,
    hpa,
    monitoring,
    dcgm,
    manifests: {
      deployment: only(workerObjects, 'Deployment'),
      hpa: only(workerObjects, 'HorizontalPodAutoscaler'),
      adapterConfigMap: only(monitoringObjects, 'ConfigMap', adapterRules.name),
      rabbitmqServiceMonitor: only(monitoringObjects, 'ServiceMonitor'),
      workerPodMonitor: only(monitoringObjects, 'PodMonitor'),
      prometheusRule: only(monitoringObjects, 'PrometheusRule'),
      dcgmServiceMonitor: only(gpuObjects, 'ServiceMonitor'),
      dcgmDaemonSet: only(gpuObjects, 'DaemonSet'),
      dcgmService: only(gpuObjects, 'Service'),
    },
  };
}

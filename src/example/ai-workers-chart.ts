import { Chart, ChartProps, Duration, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { WORKER_DEFAULTS } from '../contract';
import { GpuUtilizationSource } from '../gpu-metrics';
import { ModelSource } from '../gpu-worker-deployment';
import { QueueProcessingGpuService } from '../queue-processing-gpu-service';
import { GPU_INFERENCE_PRIORITY_CLASS } from './cluster-chart';
import { MonitoringChart } from './monitoring-chart';

/** Namespace of the GPU workers. */
export const WORKERS_NAMESPACE = 'ai-workers';

/** Namespace RabbitMQ runs in (a RabbitmqCluster of the RabbitMQ Cluster Operator, installed separately). */
export const RABBITMQ_NAMESPACE = 'messaging';

/** Properties of the {@link AiWorkersChart}. */
export interface AiWorkersChartProps extends ChartProps {
  /** The chart that holds the monitoring objects and the adapter rules. */
  readonly monitoring: MonitoringChart;

  /**
   * The GPU utilization series the OCR workers also scale on (the GPU infrastructure's exporter).
   * @default - backlog only
   */
  readonly gpuUtilization?: GpuUtilizationSource;
}

/**
 * The OCR service in `ai-workers` (the namespace itself is in the {@link ClusterChart}): GPU workers that consume
 * `ai-generation-jobs`, scaled 1–40 on its backlog and GPU utilization, with their scrape objects and alerts in `monitoring`.
 *
 * Created outside this app, on purpose: the Secret `rabbitmq-ocr-worker` with the AMQP URL (key `url`, e.g. from
 * External Secrets), and the ReadOnlyMany claim `ocr-models` that the model release pipeline fills.
 */
export class AiWorkersChart extends Chart {
  /** The OCR service; its workers, autoscaler and monitoring are fields of it. */
  public readonly ocr: QueueProcessingGpuService;

  constructor(scope: Construct, id: string, props: AiWorkersChartProps) {
    super(scope, id, { namespace: WORKERS_NAMESPACE, ...props });

    this.ocr = new QueueProcessingGpuService(this, 'Ocr', {
      name: 'ocr-workers',
      rabbitmqUrl: { secret: kplus.Secret.fromSecretName(this, 'RabbitmqUrl', 'rabbitmq-ocr-worker'), key: 'url' },
      queue: WORKER_DEFAULTS.jobQueue,
      model: ModelSource.fromPersistentVolumeClaim('ocr-models', { subPath: 'ppocr-v4' }),
      modelPath: '/models/det.onnx',
      // A page of detection takes seconds; two minutes covers a full batch on a cold GPU.
      maxJobDuration: Duration.minutes(2),
      maxBatchSize: 8,
      memory: Size.gibibytes(12),
      sharedMemorySize: Size.gibibytes(2),
      priorityClassName: GPU_INFERENCE_PRIORITY_CLASS,
      topologySpread: [{ topologyKey: 'topology.kubernetes.io/zone' }],
      minReplicas: 1,
      maxReplicas: 40,
      // Backlog says how much work waits; GPU utilization catches batches that got heavier per job. The HPA
      // follows whichever asks for more workers.
      gpuUtilization: props.gpuUtilization ? { source: props.gpuUtilization } : undefined,
      adapterRules: props.monitoring.adapterRules,
      monitoring: {
        scope: props.monitoring,
        rabbitmq: { namespace: RABBITMQ_NAMESPACE },
        prometheusSelectorLabels: { release: 'kube-prometheus-stack' },
      },
    });
  }
}

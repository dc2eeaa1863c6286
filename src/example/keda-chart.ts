import { Chart, ChartProps, Duration, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { DCGM_GPU_UTILIZATION } from '../gpu-metrics';
import { ModelSource } from '../gpu-worker-deployment';
import { QueueProcessingGpuService } from '../queue-processing-gpu-service';
import { WORKERS_NAMESPACE } from './ai-workers-chart';
import { GPU_INFERENCE_PRIORITY_CLASS } from './cluster-chart';

/** In-cluster address of the Prometheus that kube-prometheus-stack runs in `monitoring`. */
export const PROMETHEUS_ADDRESS = 'http://prometheus-operated.monitoring.svc:9090';

/**
 * The second backend of the example: image-generation workers that KEDA scales 0–16 on the backlog of
 * `image-generation-jobs`. Image jobs come in bursts during office hours, so the GPUs are released at night.
 *
 * Created outside this app, on purpose: KEDA itself (Helm chart `kedacore/keda`), the Secret
 * `rabbitmq-image-worker` with the workers' AMQP URL (key `url`) and with the management API URL KEDA reads the
 * queue depth from (key `management-url`, e.g. `http://keda-monitor:...@rabbitmq.messaging:15672/`, a
 * user with the `monitoring` tag), and the claim `image-models`.
 */
export class KedaWorkersChart extends Chart {
  /** The image-generation service; its workers, KEDA scaler and monitoring are fields of it. */
  public readonly imageGeneration: QueueProcessingGpuService;

  constructor(scope: Construct, id: string, props: ChartProps = {}) {
    super(scope, id, { namespace: WORKERS_NAMESPACE, ...props });

    const secret = kplus.Secret.fromSecretName(this, 'RabbitmqImageWorker', 'rabbitmq-image-worker');
    this.imageGeneration = new QueueProcessingGpuService(this, 'ImageGeneration', {
      name: 'image-workers',
      rabbitmqUrl: { secret, key: 'url' },
      queue: 'image-generation-jobs',
      deadLetterExchange: 'image-generation-jobs.dlx',
      deadLetterQueue: 'image-generation-jobs.dead-letter',
      model: ModelSource.fromPersistentVolumeClaim('image-models'),
      // A 1024×1024 diffusion job takes tens of seconds; five minutes covers a batch on a throttled GPU.
      maxJobDuration: Duration.minutes(5),
      maxBatchSize: 2,
      memory: Size.gibibytes(24),
      sharedMemorySize: Size.gibibytes(4),
      priorityClassName: GPU_INFERENCE_PRIORITY_CLASS,
      maxReplicas: 16,
      // Scaled to zero by default with KEDA; the GPU utilization trigger adds workers when batches saturate them.
      gpuUtilization: { source: DCGM_GPU_UTILIZATION },
      keda: {
        rabbitmq: { connection: { secret, key: 'management-url' } },
        prometheus: { serverAddress: PROMETHEUS_ADDRESS },
      },
      // The worker PodMonitor and the alerts live next to the workers. RabbitMQ is not scraped a second time: the
      // OCR service's ServiceMonitor already collects the per-queue series of every queue, this one's included.
      monitoring: {
        rabbitmq: false,
        prometheusSelectorLabels: { release: 'kube-prometheus-stack' },
      },
    });
  }
}

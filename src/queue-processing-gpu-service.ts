import { Duration } from 'cdk8s';
import { Construct } from 'constructs';
import { GpuWorkerDeployment, GpuWorkerDeploymentProps } from './gpu-worker-deployment';
import { KEDA_DEFAULTS, KedaQueueScaler, KedaQueueScalerProps } from './keda-queue-scaler';
import { PrometheusAdapterRules } from './prometheus-adapter-rules';
import { GpuUtilizationMetric, QueueScaledHpa, QueueScalingProps, ScalingRules } from './queue-scaled-hpa';
import { MAX_MONITORING_NAME, QueueWorkerMonitoring, QueueWorkerMonitoringProps } from './queue-worker-monitoring';
import { BacklogMeasure } from './rabbitmq-metrics';
import { invalidProp } from './validation';

const CONSTRUCT = 'QueueProcessingGpuService';

/** Where and how the monitoring objects of a {@link QueueProcessingGpuService} are created. */
export interface QueueProcessingMonitoringOptions
  extends Omit<QueueWorkerMonitoringProps, 'workers' | 'vhost' | 'autoscalerName' | 'activationBacklog'> {
  /**
   * Scope of the monitoring objects, usually a chart in the namespace Prometheus runs in (`monitoring`), so that
   * they sit next to the Prometheus that selects them.
   * @default - this construct (the workers' chart and namespace)
   */
  readonly scope?: Construct;
}

/**
 * The KEDA-specific settings of a {@link QueueProcessingGpuService} scaled by KEDA: the triggers (at least one of
 * `rabbitmq` and `prometheus`), activation, polling, cooldown, fallback. The queue, bounds and behavior are the
 * service's own props; the longest job comes from the workers.
 */
export type QueueProcessingKedaOptions = Omit<KedaQueueScalerProps, keyof QueueScalingProps | 'maxJobDuration'>;

/** Properties of a {@link QueueProcessingGpuService}. */
export interface QueueProcessingGpuServiceProps extends Omit<GpuWorkerDeploymentProps, 'replicas'> {
  /** Most workers; usually the number of GPUs the service may hold. */
  readonly maxReplicas: number;

  /**
   * Fewest workers. With an HPA, one stays warm, which spares the first job after a lull a cold start (node, image,
   * model); scaling to zero is what KEDA is chosen for.
   * @default - 1 with the HPA, 0 with `keda`
   */
  readonly minReplicas?: number;

  /**
   * RabbitMQ virtual host of the queue (the one in the AMQP URL).
   * @default '/'
   */
  readonly vhost?: string;

  /**
   * What counts as backlog for scaling.
   * @default BacklogMeasure.READY_AND_UNACKED
   */
  readonly backlog?: BacklogMeasure;

  /**
   * Jobs of backlog one worker is expected to carry.
   * @default - the workers' prefetch: the number of jobs one worker holds at once
   */
  readonly backlogPerReplica?: number;

  /**
   * Also scale on per-pod GPU utilization (the autoscaler follows the larger proposal).
   * @default - backlog only
   */
  readonly gpuUtilization?: GpuUtilizationMetric;

  /**
   * Scale-up limits.
   * @default - QueueScaledHpa's defaults (fast)
   */
  readonly scaleUp?: ScalingRules;

  /**
   * Scale-down limits.
   * @default - QueueScaledHpa's defaults (slow, stabilized)
   */
  readonly scaleDown?: ScalingRules;

  /**
   * Scale with KEDA (a ScaledObject, down to zero) instead of an HPA fed by prometheus-adapter.
   * @default - an HPA (QueueScaledHpa) with its prometheus-adapter rules
   */
  readonly keda?: QueueProcessingKedaOptions;

  /**
   * The app's prometheus-adapter rules (HPA only).
   * @default - the app's PrometheusAdapterRules, created in this chart if there is none
   */
  readonly adapterRules?: PrometheusAdapterRules;

  /**
   * Scrape objects and alerts, or `false` for none.
   * @default - created in this construct's chart with QueueWorkerMonitoring's defaults
   */
  readonly monitoring?: QueueProcessingMonitoringOptions | false;
}

/** How long jobs may wait with no consumer before paging, when the autoscaler keeps at least one worker. */
const WARM_NO_CONSUMERS_FOR = Duration.minutes(10);

/**
 * GPU workers that drain a RabbitMQ queue, scaled on its backlog and watched by Prometheus: a
 * {@link GpuWorkerDeployment}, a {@link QueueScaledHpa} on it (with its prometheus-adapter rules) or, with `keda`,
 * a {@link KedaQueueScaler}, and a
 * {@link QueueWorkerMonitoring} with the alerts on the queue and the workers. Each part is a public field, to be
 * adjusted without forking the pattern.
 */
export class QueueProcessingGpuService extends Construct {
  /** The worker pods. */
  public readonly workers: GpuWorkerDeployment;

  /** The HPA of the workers, unless they are scaled by KEDA. */
  public readonly autoscaler?: QueueScaledHpa;

  /** The KEDA scaler of the workers, when `keda` was given. */
  public readonly kedaScaler?: KedaQueueScaler;

  /** Name of the HorizontalPodAutoscaler that sizes the workers (KEDA's is `keda-hpa-<ScaledObject name>`). */
  public readonly autoscalerName: string;

  /** The scrape objects and alerts, unless turned off. */
  public readonly monitoring?: QueueWorkerMonitoring;

  constructor(scope: Construct, id: string, props: QueueProcessingGpuServiceProps) {
    super(scope, id);

    // Reject what cannot work together before anything is built.
    if ((props as { replicas?: number }).replicas !== undefined) {
      invalidProp(CONSTRUCT, 'replicas', 'is set, but the autoscaler owns the replica count',
        'Remove `replicas`; use `minReplicas` and `maxReplicas`.');
    }
    if (props.keda && props.adapterRules) {
      invalidProp(CONSTRUCT, 'adapterRules', 'is set together with `keda`, which does not read prometheus-adapter',
        'Choose one backend: drop `keda` for an HPA with adapter rules, or drop `adapterRules` for KEDA.');
    }

    // The workers, then the one autoscaler that sizes them on the queue they consume.
    this.workers = new GpuWorkerDeployment(this, 'Workers', props);
    const scaling: QueueScalingProps = {
      target: this.workers,
      queue: this.workers.queue,
      vhost: props.vhost,
      backlog: props.backlog,
      backlogPerReplica: props.backlogPerReplica ?? this.workers.prefetch,
      minReplicas: props.minReplicas ?? (props.keda ? 0 : 1),
      maxReplicas: props.maxReplicas,
      gpuUtilization: props.gpuUtilization,
      scaleUp: props.scaleUp,
      scaleDown: props.scaleDown,
    };
    let vhost: string;
    if (props.keda) {
      this.kedaScaler = new KedaQueueScaler(this, 'Keda', { ...props.keda, ...scaling });
      this.autoscalerName = `keda-hpa-${this.kedaScaler.scaledObject.name}`;
      vhost = this.kedaScaler.scaling.vhost;
    } else {
      this.autoscaler = new QueueScaledHpa(this, 'Autoscaler', { ...scaling, adapterRules: props.adapterRules });
      this.autoscalerName = this.autoscaler.hpa.name;
      vhost = this.autoscaler.scaling.vhost;
    }

    // Scraping and alerts on the same queue, workers and autoscaler.
    // Shortcoming: every service scrapes its broker unless told `monitoring.rabbitmq: false`, so several services
    // on one broker scrape it several times (the queries stay right, the broker does the work twice).
    if (props.monitoring !== false) {
      const { scope: monitoringScope, ...options } = props.monitoring ?? {};
      // In another scope (a monitoring chart), the id comes from this construct's path so that two services never
      // collide there. The objects are named after the workers, in any scope, when the name leaves room for the
      // suffixes; only a longer worker name falls back to a path-derived one.
      // Shortcoming: two services whose workers share a name (in different namespaces) and share one monitoring
      // scope get the same object names there, and one overwrites the other on apply; give one of them
      // `monitoring.name`. Nothing checks this yet.
      const monitoringId = monitoringScope ? `${this.node.path.replace(/\//g, '-')}-Monitoring` : 'Monitoring';
      const workerName = this.workers.name.length <= MAX_MONITORING_NAME ? this.workers.name : undefined;
      this.monitoring = new QueueWorkerMonitoring(monitoringScope ?? this, monitoringId, {
        ...options,
        name: options.name ?? workerName,
        workers: this.workers,
        vhost,
        autoscalerName: this.autoscalerName,
        // KEDA keeps zero workers up to its activation backlog; the no-consumer alert must not page for that.
        activationBacklog: props.keda ? props.keda.activationBacklog ?? KEDA_DEFAULTS.activationBacklog : 0,
        // With a replica kept warm, a queue without consumers is an outage, not a cold start from zero.
        noConsumersFor: options.noConsumersFor ?? ((scaling.minReplicas ?? 1) >= 1 ? WARM_NO_CONSUMERS_FOR : undefined),
      });
    }
  }
}

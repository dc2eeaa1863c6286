/**
 * The backend switch of queue-driven scaling: one intent, built either as a HorizontalPodAutoscaler read
 * through prometheus-adapter or as a KEDA ScaledObject, never both; and the signal each backend scales on,
 * for tests that check it against a live Prometheus.
 */
import { Construct } from 'constructs';
import { KedaQueueScaler, KedaQueueScalerProps } from './keda-queue-scaler';
import { AdapterCustomRule, AdapterExternalRule } from './prometheus-adapter-rules';
import { QueueScaledHpa, QueueScaledHpaProps } from './queue-scaled-hpa';
import { QueueScalingProps, ResolvedQueueScaling } from './queue-scaling';
import * as keda from '../imports/keda.sh';

/** Either autoscaler of a queue-consuming workload. */
export type QueueScaler = QueueScaledHpa | KedaQueueScaler;

/** What the HPA backend takes beyond the shared intent. */
export type HpaBackendOptions = Omit<QueueScaledHpaProps, keyof QueueScalingProps>;

/** What the KEDA backend takes beyond the shared intent. */
export type KedaBackendOptions = Omit<KedaQueueScalerProps, keyof QueueScalingProps>;

/** Names of the two backends. */
export enum ScalingBackendKind {
  PROMETHEUS_ADAPTER = 'prometheus-adapter',
  KEDA = 'keda',
}

/**
 * Which autoscaler a workload gets. A pattern takes one `ScalingBackend`, so asking for both is not
 * expressible; two autoscalers created by hand on one workload are refused at construction.
 */
export abstract class ScalingBackend {
  /** HorizontalPodAutoscaler + prometheus-adapter rules. Needs prometheus-adapter; cannot go below 1 replica. */
  public static prometheusAdapter(options: HpaBackendOptions = {}): ScalingBackend {
    return new (class extends ScalingBackend {
      public readonly kind = ScalingBackendKind.PROMETHEUS_ADAPTER;
      public bind(scope: Construct, id: string, intent: QueueScalingProps): QueueScaler {
        return new QueueScaledHpa(scope, id, { ...options, ...intent });
      }
    })();
  }

  /** KEDA ScaledObject (+ TriggerAuthentication). Needs KEDA installed; scales to zero by default. */
  public static keda(options: KedaBackendOptions): ScalingBackend {
    return new (class extends ScalingBackend {
      public readonly kind = ScalingBackendKind.KEDA;
      public bind(scope: Construct, id: string, intent: QueueScalingProps): QueueScaler {
        return new KedaQueueScaler(scope, id, { ...options, ...intent });
      }
    })();
  }

  /** Which backend this is. */
  public abstract readonly kind: ScalingBackendKind;

  /** Creates the autoscaler for `intent` under `scope`. */
  public abstract bind(scope: Construct, id: string, intent: QueueScalingProps): QueueScaler;
}

/** The parts of the resolved scaling intent that a backlog signal reports. */
type ScalingIntentField = 'namespace' | 'queue' | 'vhost' | 'backlog' | 'backlogPerReplica' | 'minReplicas' | 'maxReplicas';

/**
 * The backlog signal an autoscaler acts on, exactly as the component that reads it will ask for it.
 * The live-signal suite runs `query` against a real Prometheus and expects the queue's message count.
 */
export interface BacklogSignal extends Pick<ResolvedQueueScaling, ScalingIntentField> {
  readonly backend: ScalingBackendKind;

  /**
   * PromQL of the backlog: what prometheus-adapter runs for the HPA's selector, or the KEDA prometheus
   * trigger's query. For KEDA's rabbitmq trigger it is the series of the same count that RabbitMQ exports.
   */
  readonly query: string;

  /** HPA backend: the external metric name, its selector and the adapter rule behind it. */
  readonly externalMetric?: {
    readonly name: string;
    readonly selector: Record<string, string>;
    readonly rule: AdapterExternalRule;
  };

  /** HPA backend with GPU utilization: the custom-metrics rule and the Pods metric name. */
  readonly gpuUtilizationRule?: AdapterCustomRule;

  /** KEDA backend: the triggers as written into the ScaledObject. */
  readonly kedaTriggers?: keda.ScaledObjectSpecTriggers[];

  /** KEDA backend with GPU utilization: the query of the gpu-utilization trigger. */
  readonly gpuUtilizationQuery?: string;
}

/** The signal `scaler` scales on. */
export function backlogSignal(scaler: QueueScaler): BacklogSignal {
  const { scaling } = scaler;
  const common: Pick<ResolvedQueueScaling, ScalingIntentField> = {
    namespace: scaling.namespace,
    queue: scaling.queue,
    vhost: scaling.vhost,
    backlog: scaling.backlog,
    backlogPerReplica: scaling.backlogPerReplica,
    minReplicas: scaling.minReplicas,
    maxReplicas: scaling.maxReplicas,
  };
  if (scaler instanceof QueueScaledHpa) {
    const { metricName, selector, rule, query } = scaler.backlogMetric;
    return {
      ...common,
      backend: ScalingBackendKind.PROMETHEUS_ADAPTER,
      query,
      externalMetric: { name: metricName, selector, rule },
      gpuUtilizationRule: scaler.gpuUtilizationRule,
    };
  }
  return {
    ...common,
    backend: ScalingBackendKind.KEDA,
    query: scaler.backlogQuery,
    kedaTriggers: scaler.triggers,
    gpuUtilizationQuery: scaling.gpuUtilization ? scaler.gpuUtilizationQuery() : undefined,
  };
}

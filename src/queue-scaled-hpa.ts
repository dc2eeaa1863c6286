/**
 * `QueueScaledHpa`: an autoscaling/v2 HorizontalPodAutoscaler that sizes a worker Deployment by the backlog
 * of one RabbitMQ queue, read through prometheus-adapter. The intent it shares with the KEDA backend
 * (`KedaQueueScaler`) lives in `./queue-scaling`.
 */
import { createHash } from 'crypto';
import { Construct } from 'constructs';
import { GpuUtilizationSource } from './gpu-metrics';
import {
  AdapterCustomRule,
  AdapterExternalRule,
  PrometheusAdapterRules,
  renderExternalMetricsQuery,
} from './prometheus-adapter-rules';
import { claimTarget, QueueScalingProps, resolveQueueScaling, ResolvedQueueScaling } from './queue-scaling';
import {
  BacklogMeasure,
  backlogSeries,
  promqlString,
  queueBacklogQuery,
  RabbitmqQueueLabels,
} from './rabbitmq-metrics';
import { checkDnsSubdomain, invalidProp, toQuantity } from './validation';
import * as k8s from '../imports/k8s';

// The shared intent used to live in this module; its names are still exported from here for existing imports.
export * from './queue-scaling';

// ---------------------------------------------------------------------------------------------------------
// The queue backlog as an external metric of prometheus-adapter.
// ---------------------------------------------------------------------------------------------------------

/** The backlog of one queue as prometheus-adapter serves it and the HPA selects it. */
export interface QueueBacklogExternalMetric {
  /** External metric name the HPA asks for. */
  readonly metricName: string;

  /** `matchLabels` of the HPA's metric selector; empty when the queue is pinned in the rule itself. */
  readonly selector: Record<string, string>;

  /** The adapter rule that serves the metric. */
  readonly rule: AdapterExternalRule;

  /** The PromQL the adapter runs for the HPA's selector. */
  readonly query: string;
}

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Whether a string can be a Kubernetes label value: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends. */
export function isLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value);
}

/**
 * The external metric for the backlog of one queue.
 *
 * A Kubernetes metric selector is a label selector, so it can only carry valid label values. The vhost is
 * therefore always pinned in the rule's PromQL (the default vhost `/` is not a valid label value), and the
 * metric name says which vhost it covers. The queue is selected by the HPA's `queue` label when its name is
 * a valid label value, so autoscalers of several queues share one rule; otherwise the queue is pinned in
 * its own rule as well and the HPA selects nothing further.
 *
 * `<<.Series>>` is the series the rule discovered (prometheus-adapter 0.6 and later; older releases put the
 * renamed metric name there for external rules, and their queries return nothing).
 */
export function queueBacklogExternalMetric(
  queue: string,
  vhost = '/',
  measure = BacklogMeasure.READY_AND_UNACKED,
  metricName?: string,
): QueueBacklogExternalMetric {
  const series = backlogSeries(measure);
  const vhostMatcher = `${RabbitmqQueueLabels.vhost}=${promqlString(vhost)}`;
  const queueMatcher = `${RabbitmqQueueLabels.queue}=${promqlString(queue)}`;
  const byLabels = `${RabbitmqQueueLabels.vhost}, ${RabbitmqQueueLabels.queue}`;
  const selectByLabel = isLabelValue(queue);

  const base = measure === BacklogMeasure.READY ? 'rabbitmq_queue_ready_backlog' : 'rabbitmq_queue_backlog';
  const name = metricName
    ?? [base, vhost === '/' ? undefined : `vhost_${slug(vhost)}`, selectByLabel ? undefined : `queue_${slug(queue)}`]
      .filter((part) => part !== undefined)
      .join('_');

  const pinned = selectByLabel ? vhostMatcher : `${vhostMatcher},${queueMatcher}`;
  const rule: AdapterExternalRule = {
    seriesQuery: `${series}{${pinned}}`,
    name: { matches: `^${series}$`, as: name },
    metricsQuery: selectByLabel
      ? `max by (${byLabels}) (<<.Series>>{${vhostMatcher},<<.LabelMatchers>>})`
      : `max by (${byLabels}) (<<.Series>>{${pinned}})`,
    resources: { namespaced: false },
  };
  const selector: Record<string, string> = selectByLabel ? { [RabbitmqQueueLabels.queue]: queue } : {};
  const query = renderExternalMetricsQuery(rule, selector);

  // The one invariant that matters most: whatever the adapter runs selects exactly this queue and vhost.
  if (query !== queueBacklogQuery(queue, vhost, measure)) {
    throw new Error(`internal: adapter query ${query} does not select queue ${queue} on vhost ${vhost} alone`);
  }
  return { metricName: name, selector, rule, query };
}

/** A metric-name-safe form of a value; lossy forms get a short hash so two values never share a name. */
function slug(value: string): string {
  const safe = value.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 60);
  if (safe === value) return safe;
  return `${safe}_${createHash('sha256').update(value).digest('hex').slice(0, 8)}`;
}

const METRIC_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,199}$/;

/** The custom-metrics rule that serves per-pod GPU utilization, averaged over the GPUs of each pod. */
export function gpuUtilizationRule(source: GpuUtilizationSource): AdapterCustomRule {
  return {
    seriesQuery: `${source.series}{${source.namespaceLabel}!="",${source.podLabel}!=""}`,
    resources: {
      overrides: {
        [source.namespaceLabel]: { resource: 'namespace' },
        [source.podLabel]: { resource: 'pod' },
      },
    },
    name: { matches: `^${source.series}$`, as: source.customMetricName },
    metricsQuery: 'avg by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})',
  };
}

// ---------------------------------------------------------------------------------------------------------
// The HPA backend.
// ---------------------------------------------------------------------------------------------------------

const SELF = 'QueueScaledHpa';

/** Properties of {@link QueueScaledHpa}. */
export interface QueueScaledHpaProps extends QueueScalingProps {
  /**
   * The app's prometheus-adapter rules, which this autoscaler adds its rules to.
   *
   * @default - the app's PrometheusAdapterRules, created in this chart if the app has none yet
   */
  readonly adapterRules?: PrometheusAdapterRules;

  /**
   * External metric name of the backlog; needed only when two rules would otherwise share a name.
   *
   * @default - derived from the backlog measure, the vhost and (when it is not a valid label value) the queue
   */
  readonly metricName?: string;

  /**
   * Set when the cluster runs with the `HPAScaleToZero` feature gate (alpha), which lets an HPA with an
   * external metric use `minReplicas: 0`.
   *
   * @default false
   */
  readonly clusterHasHpaScaleToZero?: boolean;

  /**
   * Name of the HorizontalPodAutoscaler.
   *
   * @default - the target Deployment's name
   */
  readonly name?: string;
}

/**
 * A HorizontalPodAutoscaler that keeps about `backlogPerReplica` jobs of one RabbitMQ queue per worker,
 * with the prometheus-adapter rules that serve its metrics.
 *
 * The backlog is an External metric with an `AverageValue` target; optionally per-pod GPU utilization is a
 * second, Pods metric, and the HPA follows whichever asks for more replicas.
 */
export class QueueScaledHpa extends Construct {
  /** The HorizontalPodAutoscaler object. */
  public readonly hpa: k8s.KubeHorizontalPodAutoscalerV2;

  /** The rules object this autoscaler registered its rules in. */
  public readonly adapterRules: PrometheusAdapterRules;

  /** The backlog metric: name, selector, adapter rule and the PromQL the adapter runs. */
  public readonly backlogMetric: QueueBacklogExternalMetric;

  /** The GPU utilization rule, when GPU utilization is a scaling signal. */
  public readonly gpuUtilizationRule?: AdapterCustomRule;

  /** The intent with defaults applied. */
  public readonly scaling: ResolvedQueueScaling;

  constructor(scope: Construct, id: string, props: QueueScaledHpaProps) {
    super(scope, id);
    const self = SELF;

    // Validate and resolve defaults.
    this.scaling = resolveQueueScaling(self, props, 1);
    const { minReplicas, maxReplicas, targetRef } = this.scaling;
    if (minReplicas === 0 && !props.clusterHasHpaScaleToZero) {
      invalidProp(
        self,
        'minReplicas',
        'is 0, which a HorizontalPodAutoscaler only accepts with the alpha feature gate HPAScaleToZero',
        'To scale to zero, use KedaQueueScaler (on a QueueProcessingGpuService: set its `keda` prop), '
          + 'or set `clusterHasHpaScaleToZero: true` on QueueScaledHpa if your cluster enables that gate.',
      );
    }
    if (props.metricName !== undefined && !METRIC_NAME.test(props.metricName)) {
      invalidProp(self, 'metricName', `is ${JSON.stringify(props.metricName)}`, 'Use letters, digits and "_", starting with a letter or "_".');
    }
    const name = checkDnsSubdomain(self, 'name', props.name ?? targetRef.name);

    // Register the adapter rules that serve the metrics; identical rules of other autoscalers are shared.
    this.adapterRules = props.adapterRules ?? PrometheusAdapterRules.of(this);
    this.backlogMetric = queueBacklogExternalMetric(this.scaling.queue, this.scaling.vhost, this.scaling.backlog, props.metricName);
    this.adapterRules.addExternalRule(this.backlogMetric.rule);
    if (this.scaling.gpuUtilization) {
      this.gpuUtilizationRule = gpuUtilizationRule(this.scaling.gpuUtilization.source);
      this.adapterRules.addCustomRule(this.gpuUtilizationRule);
    }

    // The autoscaler itself, in the target's namespace.
    this.hpa = new k8s.KubeHorizontalPodAutoscalerV2(this, 'Resource', {
      metadata: { name, namespace: this.scaling.namespace },
      spec: {
        scaleTargetRef: targetRef,
        minReplicas,
        maxReplicas,
        metrics: this.metrics(),
        behavior: this.scaling.behavior as k8s.HorizontalPodAutoscalerBehaviorV2,
      },
    });
    claimTarget(props.target, this);
  }

  /** The HPA's metric list: backlog per replica, and GPU utilization per pod when asked for. */
  private metrics(): k8s.MetricSpecV2[] {
    const { metricName, selector } = this.backlogMetric;
    const metrics: k8s.MetricSpecV2[] = [
      {
        type: 'External',
        external: {
          metric: { name: metricName, selector: Object.keys(selector).length ? { matchLabels: selector } : undefined },
          target: { type: 'AverageValue', averageValue: k8s.Quantity.fromString(toQuantity(SELF, 'backlogPerReplica', this.scaling.backlogPerReplica, 'kubernetes')) },
        },
      },
    ];
    const gpu = this.scaling.gpuUtilization;
    if (gpu) {
      metrics.push({
        type: 'Pods',
        pods: {
          metric: { name: gpu.source.customMetricName },
          target: { type: 'AverageValue', averageValue: k8s.Quantity.fromString(toQuantity(SELF, 'gpuUtilization.targetPercent', gpu.targetPercent, 'kubernetes')) },
        },
      });
    }
    return metrics;
  }
}

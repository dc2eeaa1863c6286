import { ApiObject, Duration, Names } from 'cdk8s';
import { Construct } from 'constructs';
import { JobOutcome, WorkerHttp, WorkerMetrics } from './contract';
import {
  BacklogMeasure,
  RABBITMQ_DETAILED_FAMILIES,
  RABBITMQ_DETAILED_METRICS_PATH,
  RabbitmqQueueLabels,
  RabbitmqQueueSeries,
  promqlString,
  queueBacklogQuery,
} from './rabbitmq-metrics';
import { checkDnsLabel, checkNonEmpty, checkPositive, invalidProp } from './validation';
import * as monitoring from '../imports/monitoring.coreos.com';

const CONSTRUCT = 'QueueWorkerMonitoring';

/** Longest `name` of a {@link QueueWorkerMonitoring}: its objects add up to 9 characters (`-rabbitmq`) within 63. */
export const MAX_MONITORING_NAME = 63 - '-rabbitmq'.length;

/** kube-state-metrics series the alerts read (kube-state-metrics v2 names). */
export const KubeStateMetricsSeries = {
  /** Current replicas of a HorizontalPodAutoscaler, labels `namespace`, `horizontalpodautoscaler`. */
  hpaCurrentReplicas: 'kube_horizontalpodautoscaler_status_current_replicas',
  /** `spec.maxReplicas` of a HorizontalPodAutoscaler, same labels. */
  hpaMaxReplicas: 'kube_horizontalpodautoscaler_spec_max_replicas',
  /** 1 while a pod cannot be scheduled, labels `namespace`, `pod`. */
  podUnschedulable: 'kube_pod_status_unschedulable',
} as const;

/** Names of the alerts, for routing rules and silences. */
export const QueueWorkerAlertNames = {
  backlogGrowing: 'JobQueueBacklogGrowing',
  noConsumers: 'JobQueueHasNoConsumers',
  autoscalerAtMax: 'JobQueueAutoscalerAtMaxReplicas',
  podsUnschedulable: 'GpuWorkerPodsUnschedulable',
  deadLetterNotEmpty: 'JobDeadLetterQueueNotEmpty',
  jobsFailing: 'GpuWorkerJobsFailing',
  brokerDisconnected: 'GpuWorkerBrokerDisconnected',
} as const;

/** One alerting rule, as data: what a live test evaluates against a real Prometheus, and what the rule group holds. */
export interface QueueWorkerAlert {
  /** Alert name, one of {@link QueueWorkerAlertNames}. */
  readonly alert: string;

  /** PromQL; any result series means the condition holds. */
  readonly expr: string;

  /** How long the condition must hold before the alert fires. */
  readonly for: Duration;

  /** `severity` label: `critical` pages, `warning` goes to a ticket queue. */
  readonly severity: 'critical' | 'warning';

  /** One-line summary annotation. */
  readonly summary: string;

  /** Description annotation: what it means and where to look. */
  readonly description: string;
}

/** The workers an alert set watches. {@link GpuWorkerDeployment} satisfies it. */
export interface MonitoredQueueWorkers {
  /** Name of the worker Deployment; its pods are named `<name>-<hash>-<suffix>`. */
  readonly name: string;

  /** Namespace of the workers. */
  readonly namespace?: string;

  /** Labels every worker pod carries. */
  readonly podSelectorLabels: Record<string, string>;

  /** Queue the workers consume. */
  readonly queue: string;

  /** Queue rejected jobs are dead-lettered to. */
  readonly deadLetterQueue: string;

  /**
   * Longest a new worker pod may take from start to ready (image pull aside: model load, broker connection).
   * @default - 10 minutes, GpuWorkerDeployment's default
   */
  readonly startupTimeout?: Duration;
}

/** Thresholds of the alerts. */
export interface QueueWorkerAlertThresholds {
  /**
   * How long the ready backlog must keep growing before {@link QueueWorkerAlertNames.backlogGrowing} fires.
   * Longer than a GPU node takes to join and load the model (often 5–10 minutes), so that a normal scale-up
   * does not page anyone.
   * @default Duration.minutes(15)
   */
  readonly backlogGrowingFor?: Duration;

  /**
   * How long worker pods may stay unschedulable. A new GPU node from the cluster autoscaler or Karpenter takes
   * minutes; longer than that means no capacity is coming (quota, stock-out, node group at its maximum).
   * @default Duration.minutes(15)
   */
  readonly unschedulableFor?: Duration;

  /**
   * How long jobs may wait with no consumer on the queue before {@link QueueWorkerAlertNames.noConsumers} pages.
   * With scale-to-zero, a consumer appears only after a whole cold start: a GPU node joins (the time
   * `unschedulableFor` allows for that, with its own alert) and the pod starts and loads the model (the workers'
   * `startupTimeout`). The default waits for both, so a normal scale-up from zero never pages; a shorter value
   * suits workers that always keep one replica warm.
   * @default - `unschedulableFor` + the workers' `startupTimeout` (15 + 10 = 25 minutes with the defaults)
   */
  readonly noConsumersFor?: Duration;

  /**
   * How long the autoscaler may sit at its maximum while jobs wait.
   * @default Duration.minutes(15)
   */
  readonly atMaxReplicasFor?: Duration;

  /**
   * Share of finished jobs that failed (rejected or delivery limit exhausted) over 10 minutes above which
   * {@link QueueWorkerAlertNames.jobsFailing} fires. A few malformed jobs are normal; a model or input-format
   * regression shows as a jump in the share.
   * @default 0.05
   */
  readonly failureRatio?: number;
}

/** What the alert expressions need to know. */
export interface QueueWorkerAlertOptions extends QueueWorkerAlertThresholds {
  /** The workers. */
  readonly workers: MonitoredQueueWorkers;

  /** Virtual host of the queues. */
  readonly vhost: string;

  /**
   * Name of the HorizontalPodAutoscaler that scales the workers (with KEDA: `keda-hpa-<ScaledObject name>`).
   * @default - no "autoscaler at max replicas" alert
   */
  readonly autoscalerName?: string;

  /**
   * Backlog up to which the autoscaler may keep zero workers (KEDA's `activationBacklog`). Jobs waiting with no
   * consumer are only alerted on above it.
   * @default 0
   */
  readonly activationBacklog?: number;
}

/**
 * The alerts an on-call engineer wants for a queue and its GPU workers, as data. Every series name comes from the
 * shared metric modules, so the rules and the objects that produce the series cannot drift apart.
 */
export function queueWorkerAlerts(options: QueueWorkerAlertOptions): QueueWorkerAlert[] {
  const { workers, vhost } = options;
  const namespace = workers.namespace;
  if (namespace === undefined) {
    invalidProp(CONSTRUCT, 'workers', 'has no namespace', 'Put the workers in a chart with a `namespace`.');
  }
  const growingFor = options.backlogGrowingFor ?? Duration.minutes(15);
  const unschedulableFor = options.unschedulableFor ?? Duration.minutes(15);
  const atMaxFor = options.atMaxReplicasFor ?? Duration.minutes(15);
  // Sized for a cold start from zero; QueueProcessingGpuService passes a shorter window when it keeps a worker warm.
  // Used on its own, this construct does not know minReplicas: users with a warm replica set `noConsumersFor`.
  const noConsumersFor = options.noConsumersFor ?? Duration.millis(unschedulableFor.toMilliseconds()
    + (workers.startupTimeout ?? Duration.minutes(10)).toMilliseconds({ integral: false }));
  const activation = options.activationBacklog ?? 0;
  if (!Number.isFinite(activation) || activation < 0) {
    invalidProp(CONSTRUCT, 'activationBacklog', `is ${activation}`, 'Use 0 or the autoscaler\'s activation backlog.');
  }
  const failureRatio = checkPositive(CONSTRUCT, 'failureRatio', options.failureRatio ?? 0.05);
  if (failureRatio >= 1) {
    invalidProp(CONSTRUCT, 'failureRatio', `is ${failureRatio}`, 'Give a share between 0 and 1, e.g. 0.05 for 5%.');
  }

  const queue = checkNonEmpty(CONSTRUCT, 'workers.queue', workers.queue);
  checkNonEmpty(CONSTRUCT, 'workers.deadLetterQueue', workers.deadLetterQueue);
  checkNonEmpty(CONSTRUCT, 'vhost', vhost);
  const ready = queueBacklogQuery(queue, vhost, BacklogMeasure.READY);
  const inQueue = queueSelector(queue, vhost);
  const workerPods = `namespace=${promqlString(namespace)},pod=~${promqlString(workerPodNamePattern(workers.name))}`;
  const failed = `${JobOutcome.rejected}|${JobOutcome.exhausted}`;
  const finished = `${JobOutcome.completed}|${failed}`;
  const jobRate = (outcomes: string) =>
    `sum by (namespace) (rate(${WorkerMetrics.jobsTotal}{${workerPods},outcome=~${promqlString(outcomes)}}[10m]))`;
  const where = `queue ${JSON.stringify(queue)} (vhost ${JSON.stringify(vhost)})`;

  const alerts: QueueWorkerAlert[] = [
    {
      alert: QueueWorkerAlertNames.backlogGrowing,
      expr: `(max by (${groupBy}) (deriv(${RabbitmqQueueSeries.messagesReady}{${inQueue}}[5m])) > 0) `
        + `and (${ready} > 0)`,
      for: growingFor,
      severity: 'warning',
      summary: `Jobs waiting in ${where} have grown for ${minutes(growingFor)}.`,
      description: 'Workers are not keeping up: check whether the autoscaler is at its maximum, whether new worker '
        + 'pods are pending for lack of GPU nodes, and the job duration of the running workers.',
    },
    {
      alert: QueueWorkerAlertNames.noConsumers,
      // Only above the activation backlog: below it, zero workers is what the autoscaler is asked for. With no
      // consumer nothing is unacknowledged, so the ready count is the backlog KEDA compares.
      expr: `(${ready} > ${activation}) and on (${groupBy}) `
        + `(max by (${groupBy}) (${RabbitmqQueueSeries.consumers}{${inQueue}}) == 0)`,
      for: noConsumersFor,
      severity: 'critical',
      summary: `Jobs wait in ${where} and no worker consumes it.`,
      description: `No consumer has been attached for ${minutes(noConsumersFor)} while jobs wait, longer than a `
        + `cold start takes. Check the ${namespace}/${workers.name} pods`
        + ' (pending, crash loops, broker credentials, readiness) and, with scale-to-zero, the KEDA operator.',
    },
    {
      alert: QueueWorkerAlertNames.podsUnschedulable,
      expr: `count by (namespace) (${KubeStateMetricsSeries.podUnschedulable}{${workerPods}} == 1) > 0`,
      for: unschedulableFor,
      severity: 'warning',
      summary: `Worker pods of ${namespace}/${workers.name} cannot be scheduled.`,
      description: 'No node has a free GPU and none has been added. Check the cluster autoscaler or Karpenter '
        + 'events (node group at its maximum, cloud quota or GPU stock-out) and the pods\' events.',
    },
    {
      alert: QueueWorkerAlertNames.deadLetterNotEmpty,
      expr: `${queueBacklogQuery(workers.deadLetterQueue, vhost, BacklogMeasure.READY_AND_UNACKED)} > 0`,
      for: Duration.minutes(5),
      severity: 'warning',
      summary: `Dead-lettered jobs wait in ${JSON.stringify(workers.deadLetterQueue)}.`,
      description: 'Jobs were rejected as malformed or failed on every delivery. Inspect them (the failed result '
        + 'names the reason), fix the producer or the model, then re-publish or purge.',
    },
    {
      alert: QueueWorkerAlertNames.jobsFailing,
      expr: `(${jobRate(failed)} / ${jobRate(finished)}) > ${failureRatio}`,
      for: Duration.minutes(10),
      severity: 'warning',
      summary: `More than ${failureRatio * 100}% of jobs fail in ${namespace}/${workers.name}.`,
      description: `Outcomes ${JobOutcome.rejected} (bad input) and ${JobOutcome.exhausted} (delivery limit reached) `
        + 'are a growing share of finished jobs. Check the workers\' logs by jobId and recent model or producer '
        + 'changes.',
    },
    {
      alert: QueueWorkerAlertNames.brokerDisconnected,
      expr: `max by (namespace, pod) (${WorkerMetrics.brokerConnected}{${workerPods}}) == 0`,
      for: Duration.minutes(5),
      severity: 'warning',
      summary: 'A worker has been disconnected from RabbitMQ for 5 minutes.',
      description: 'The worker keeps reconnecting with backoff; check broker health, network policies and the '
        + 'credentials in the RabbitMQ URL Secret.',
    },
  ];

  if (options.autoscalerName !== undefined) {
    const hpa = `namespace=${promqlString(namespace)},horizontalpodautoscaler=${promqlString(options.autoscalerName)}`;
    const byHpa = 'max by (namespace, horizontalpodautoscaler)';
    alerts.splice(2, 0, {
      alert: QueueWorkerAlertNames.autoscalerAtMax,
      expr: `(${byHpa} (${KubeStateMetricsSeries.hpaCurrentReplicas}{${hpa}}) `
        + `>= ${byHpa} (${KubeStateMetricsSeries.hpaMaxReplicas}{${hpa}})) and on () (${ready} > 0)`,
      for: atMaxFor,
      severity: 'warning',
      summary: `Autoscaler ${namespace}/${options.autoscalerName} is at its maximum while jobs wait.`,
      description: 'Demand exceeds the configured maximum replicas. Raise maxReplicas if the GPU budget allows, or '
        + 'accept the longer wait.',
    });
  }
  return alerts;
}

const groupBy = `${RabbitmqQueueLabels.vhost}, ${RabbitmqQueueLabels.queue}`;

/** The label matchers of one queue's series. */
function queueSelector(queue: string, vhost: string): string {
  return `${RabbitmqQueueLabels.vhost}=${promqlString(vhost)},${RabbitmqQueueLabels.queue}=${promqlString(queue)}`;
}

/**
 * Regular expression of a Deployment's pod names, `<deployment>-<pod-template-hash>-<random suffix>`: how the alerts
 * pick the workers' series (kube-state-metrics and the workers' own) without depending on how they are scraped.
 */
export function workerPodNamePattern(deploymentName: string): string {
  return `${deploymentName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-[a-z0-9]+-[a-z0-9]+`;
}

function minutes(duration: Duration): string {
  const value = duration.toMinutes({ integral: false });
  return `${value} minute${value === 1 ? '' : 's'}`;
}

/** Prometheus duration string of a Duration: whole minutes as `15m`, anything else in whole seconds. */
export function promDuration(duration: Duration): string {
  const seconds = Math.ceil(duration.toMilliseconds({ integral: false }) / 1000);
  return seconds % 60 === 0 && seconds > 0 ? `${seconds / 60}m` : `${seconds}s`;
}

/** Where RabbitMQ runs and how its built-in Prometheus endpoint is reached. */
export interface RabbitmqScrapeOptions {
  /**
   * Namespace of the RabbitMQ Service.
   * @default 'messaging'
   */
  readonly namespace?: string;

  /**
   * Labels of the RabbitMQ Service that exposes the plugin's port. The default matches the Service the RabbitMQ
   * Cluster Operator creates for every RabbitmqCluster in the namespace.
   * @default { 'app.kubernetes.io/component': 'rabbitmq' }
   */
  readonly serviceLabels?: Record<string, string>;

  /**
   * Name of the Service port of the `rabbitmq_prometheus` plugin (15692).
   * @default 'prometheus' (the RabbitMQ Cluster Operator's name)
   */
  readonly portName?: string;
}

/** Properties of a {@link QueueWorkerMonitoring}. */
export interface QueueWorkerMonitoringProps extends QueueWorkerAlertThresholds {
  /** The workers to scrape and alert on. */
  readonly workers: MonitoredQueueWorkers;

  /**
   * Virtual host of the job queue and its dead-letter queue.
   * @default '/'
   */
  readonly vhost?: string;

  /**
   * Name of the HorizontalPodAutoscaler of the workers, for the "at max replicas" alert.
   * @default - that alert is left out
   */
  readonly autoscalerName?: string;

  /**
   * Backlog up to which the autoscaler may keep zero workers (KEDA's `activationBacklog`). Jobs waiting with no
   * consumer are only alerted on above it.
   * @default 0
   */
  readonly activationBacklog?: number;

  /**
   * Prefix of the names of the ServiceMonitor (`<name>-rabbitmq`), PodMonitor (`<name>-workers`) and
   * PrometheusRule (`<name>`).
   * @default - derived from the construct path
   */
  readonly name?: string;

  /**
   * Labels the Prometheus operator's `serviceMonitorSelector`, `podMonitorSelector` and `ruleSelector` match.
   * kube-prometheus-stack selects `release: <Helm release name>` by default.
   * @default { release: 'kube-prometheus-stack' }
   */
  readonly prometheusSelectorLabels?: Record<string, string>;

  /**
   * Scrape RabbitMQ's per-queue endpoint. Turn it off for all but one monitoring construct per broker, or when
   * another ServiceMonitor already scrapes `/metrics/detailed` with the queue families.
   * @default - scrape with the defaults of {@link RabbitmqScrapeOptions}
   */
  readonly rabbitmq?: RabbitmqScrapeOptions | false;

  /**
   * Scrape interval of RabbitMQ and the workers. The backlog the autoscaler acts on is at most this old.
   * @default Duration.seconds(15)
   */
  readonly scrapeInterval?: Duration;

  /**
   * Emit the PrometheusRule with the alerts.
   * @default true
   */
  readonly alerts?: boolean;
}

/**
 * prometheus-operator objects for a RabbitMQ job queue and its GPU workers: a ServiceMonitor on RabbitMQ's
 * per-queue endpoint, a PodMonitor on the workers' metrics port, and a PrometheusRule with the alerts of
 * {@link queueWorkerAlerts}. The objects live in the chart's namespace (e.g. `monitoring`) and select RabbitMQ
 * and the workers in their own namespaces.
 */
export class QueueWorkerMonitoring extends Construct {
  /** The ServiceMonitor of RabbitMQ's `/metrics/detailed` endpoint, unless turned off. */
  public readonly rabbitmqServiceMonitor?: monitoring.ServiceMonitor;

  /** The PodMonitor of the workers' metrics port. */
  public readonly workerPodMonitor: monitoring.PodMonitor;

  /** The PrometheusRule, unless alerts are turned off. */
  public readonly prometheusRule?: monitoring.PrometheusRule;

  /** The alerts, as data (also in {@link prometheusRule}). */
  public readonly alerts: QueueWorkerAlert[];

  constructor(scope: Construct, id: string, props: QueueWorkerMonitoringProps) {
    super(scope, id);

    // Validate the props and resolve defaults; the alerts check the queue names, vhost and thresholds.
    const base = this.resolveName(props.name);
    const workers = checkWorkers(props.workers);
    this.alerts = queueWorkerAlerts({ ...props, workers, vhost: props.vhost ?? '/' });
    const labels = props.prometheusSelectorLabels ?? { release: 'kube-prometheus-stack' };
    const interval = props.scrapeInterval ?? Duration.seconds(15);
    if (interval.toMilliseconds({ integral: false }) < 1000) {
      invalidProp(CONSTRUCT, 'scrapeInterval', `is ${interval.toMilliseconds({ integral: false })} ms`,
        'Use at least 1 second.');
    }

    // Build each part: RabbitMQ's scrape, the workers' scrape, the alerts.
    if (props.rabbitmq !== false) {
      this.rabbitmqServiceMonitor = this.scrapeRabbitmq(props.rabbitmq ?? {}, `${base}-rabbitmq`, labels, interval);
    }
    this.workerPodMonitor = this.scrapeWorkers(workers, `${base}-workers`, labels, interval);
    if (props.alerts ?? true) {
      this.prometheusRule = this.createRule(base, labels);
    }
  }

  /** Prefix of the objects' names: the given `name`, or one derived from the construct path, checked to fit. */
  private resolveName(name: string | undefined): string {
    const base = name ?? Names.toDnsLabel(this, { maxLen: MAX_MONITORING_NAME });
    checkDnsLabel(CONSTRUCT, 'name', base);
    if (base.length > MAX_MONITORING_NAME) {
      invalidProp(CONSTRUCT, 'name', `(${base.length} characters) leaves no room for the "-rabbitmq" suffix within 63`,
        `Use at most ${MAX_MONITORING_NAME} characters.`);
    }
    return base;
  }

  /**
   * RabbitMQ: the detailed endpoint, asked for the per-queue families only.
   * Shortcoming: plain HTTP only; a TLS-only metrics listener needs `scheme` and `tlsConfig` patched onto
   * `rabbitmqServiceMonitor` by the user.
   */
  private scrapeRabbitmq(
    rabbit: RabbitmqScrapeOptions, name: string, labels: Record<string, string>, interval: Duration,
  ): monitoring.ServiceMonitor {
    const rabbitNamespace = checkDnsLabel(CONSTRUCT, 'rabbitmq.namespace', rabbit.namespace ?? 'messaging');
    const serviceLabels = rabbit.serviceLabels ?? { 'app.kubernetes.io/component': 'rabbitmq' };
    if (Object.keys(serviceLabels).length === 0) {
      invalidProp(CONSTRUCT, 'rabbitmq.serviceLabels', 'is empty and would select every Service in the namespace',
        'Give the labels of the RabbitMQ Service.');
    }
    return new monitoring.ServiceMonitor(this, 'Rabbitmq', {
      metadata: { name, labels },
      spec: {
        namespaceSelector: { matchNames: [rabbitNamespace] },
        selector: { matchLabels: serviceLabels },
        endpoints: [{
          port: checkNonEmpty(CONSTRUCT, 'rabbitmq.portName', rabbit.portName ?? 'prometheus'),
          path: RABBITMQ_DETAILED_METRICS_PATH,
          params: { family: [...RABBITMQ_DETAILED_FAMILIES] },
          interval: promDuration(interval),
        }],
      },
    });
  }

  /** Workers: the named metrics port of the contract, on the pods the workers' labels select. */
  private scrapeWorkers(
    workers: CheckedWorkers, name: string, labels: Record<string, string>, interval: Duration,
  ): monitoring.PodMonitor {
    return new monitoring.PodMonitor(this, 'Workers', {
      metadata: { name, labels },
      spec: {
        namespaceSelector: { matchNames: [workers.namespace] },
        selector: { matchLabels: { ...workers.podSelectorLabels } },
        podMetricsEndpoints: [{
          port: WorkerHttp.portName,
          path: WorkerHttp.metricsPath,
          interval: promDuration(interval),
        }],
      },
    });
  }

  /** The PrometheusRule: one group holding {@link alerts}. */
  private createRule(name: string, labels: Record<string, string>): monitoring.PrometheusRule {
    return new monitoring.PrometheusRule(this, 'Rules', {
      metadata: { name, labels },
      spec: {
        groups: [{
          name: `${name}.queue-workers`,
          rules: this.alerts.map((a) => ({
            alert: a.alert,
            expr: monitoring.PrometheusRuleSpecGroupsRulesExpr.fromString(a.expr),
            for: promDuration(a.for),
            labels: { severity: a.severity },
            annotations: { summary: a.summary, description: a.description },
          })),
        }],
      },
    });
  }

  /** Namespace the monitoring objects are created in. */
  public get namespace(): string | undefined {
    return ApiObject.of(this.workerPodMonitor).metadata.namespace;
  }
}

/** Workers known to have a namespace. */
type CheckedWorkers = MonitoredQueueWorkers & { readonly namespace: string };

/** The workers must have a namespace and pod labels that select only them. */
function checkWorkers(workers: MonitoredQueueWorkers): CheckedWorkers {
  if (workers.namespace === undefined) {
    invalidProp(CONSTRUCT, 'workers', 'has no namespace', 'Put the workers in a chart with a `namespace`.');
  }
  if (Object.keys(workers.podSelectorLabels).length === 0) {
    invalidProp(CONSTRUCT, 'workers.podSelectorLabels', 'is empty and would select every pod in the namespace',
      'Give the labels the worker pods carry.');
  }
  return workers as CheckedWorkers;
}

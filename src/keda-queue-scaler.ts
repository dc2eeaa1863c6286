/**
 * `KedaQueueScaler`: the KEDA backend of queue-driven scaling. The same intent as `QueueScaledHpa` becomes a
 * KEDA ScaledObject (and a TriggerAuthentication that reads the broker URL from the user's Secret), which can
 * scale the workers to zero when the queue is empty and back up when a job arrives.
 */
import { Duration } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import {
  claimTarget,
  QueueScalingProps,
  resolveQueueScaling,
  ResolvedQueueScaling,
  wholeSeconds,
} from './queue-scaling';
import { BacklogMeasure, promqlString, queueBacklogQuery } from './rabbitmq-metrics';
import { checkDnsSubdomain, checkInteger, checkNonEmpty, invalidProp, toQuantity } from './validation';
import * as keda from '../imports/keda.sh';

const SELF = 'KedaQueueScaler';

/** What the rabbitmq trigger measures. */
export enum RabbitmqTriggerMode {
  /** Messages in the queue (the backlog); the target is backlog per replica. */
  QUEUE_LENGTH = 'QueueLength',
  /** Messages published per second; the target is publish rate per replica. Needs the management API. */
  MESSAGE_RATE = 'MessageRate',
}

/** How KEDA talks to RabbitMQ. */
export enum RabbitmqProtocol {
  /**
   * The management HTTP API (port 15672). Counts ready and unacknowledged messages (or ready only), and is
   * the only protocol that supports `MessageRate`.
   */
  HTTP = 'http',
  /** AMQP (port 5672). A passive queue declare reports ready messages only. */
  AMQP = 'amqp',
}

/** The rabbitmq trigger: KEDA asks the broker itself for the queue's depth. */
export interface KedaRabbitmqTrigger {
  /**
   * The Secret key that holds the URL KEDA connects with, credentials included; it reaches KEDA only through
   * a TriggerAuthentication. For HTTP: the management API, e.g. `http://user:pass@rabbitmq.messaging:15672/`
   * (keep the trailing slash: KEDA takes what follows it as the vhost, which `vhost` already sets);
   * for AMQP: the URL the workers use, e.g. `amqp://user:pass@rabbitmq.messaging:5672/`.
   */
  readonly connection: kplus.SecretValue;

  /**
   * Protocol of the URL in `connection`.
   *
   * @default RabbitmqProtocol.HTTP, the only one that can count unacknowledged messages
   */
  readonly protocol?: RabbitmqProtocol;

  /**
   * What the trigger measures.
   *
   * @default RabbitmqTriggerMode.QUEUE_LENGTH
   */
  readonly mode?: RabbitmqTriggerMode;

  /**
   * With `MessageRate`: messages per second one replica handles.
   *
   * @default - required with MessageRate, unused otherwise
   */
  readonly messageRatePerReplica?: number;

  /**
   * Further trigger metadata KEDA documents for the rabbitmq scaler, e.g. `{ timeout: '5000' }`.
   * Credentials (`host`, `username`, `password`, URLs with a user) are refused: they belong in the Secret.
   *
   * @default - none
   */
  readonly extraMetadata?: Record<string, string>;
}

/** The prometheus trigger: KEDA runs the same backlog query as the HPA backend's prometheus-adapter. */
export interface KedaPrometheusTrigger {
  /** URL of the Prometheus server KEDA queries, e.g. `http://prometheus-operated.monitoring.svc:9090`. */
  readonly serverAddress: string;
}

/** Fallback when the metric source fails. */
export interface KedaFallback {
  /**
   * Replicas to run while the trigger fails; with the default behavior a larger current count is kept.
   *
   * @default - minReplicas, but at least 1 so that jobs keep flowing while the metric is blind
   */
  readonly replicas?: number;

  /**
   * Consecutive failed reads before the fallback applies.
   *
   * @default 3
   */
  readonly failureThreshold?: number;
}

/** Properties of {@link KedaQueueScaler}. */
export interface KedaQueueScalerProps extends QueueScalingProps {
  /**
   * Scale on the queue depth as RabbitMQ reports it.
   *
   * @default - no rabbitmq trigger; at least one of `rabbitmq` and `prometheus` is required
   */
  readonly rabbitmq?: KedaRabbitmqTrigger;

  /**
   * Scale on the backlog query in Prometheus (and, with `gpuUtilization`, on GPU utilization).
   *
   * @default - no prometheus trigger
   */
  readonly prometheus?: KedaPrometheusTrigger;

  /**
   * Backlog above which a scaled-to-zero workload wakes up. 0 wakes it for the first job.
   *
   * @default 0
   */
  readonly activationBacklog?: number;

  /**
   * How often KEDA checks the triggers while the workload is at zero (and refreshes its metric cache).
   *
   * @default Duration.seconds(15)
   */
  readonly pollingInterval?: Duration;

  /**
   * How long the triggers must stay inactive before KEDA scales the workload to zero.
   *
   * @default Duration.minutes(10)
   */
  readonly cooldownPeriod?: Duration;

  /**
   * Replicas while the metric source fails, or `false` for none (the HPA then keeps the current count).
   *
   * @default - minReplicas but at least 1, after 3 failures, never fewer than running now
   */
  readonly fallback?: KedaFallback | false;

  /**
   * The longest a job runs. Needed with `BacklogMeasure.READY` and `minReplicas: 0` to prove the cooldown
   * outlasts the last job, and checked against the target's grace period.
   *
   * @default - the target's `maxJobDuration` when it has one (GpuWorkerDeployment does)
   */
  readonly maxJobDuration?: Duration;

  /**
   * Name of the ScaledObject (KEDA names its HPA `keda-hpa-<name>` and labels it with this name, so at most
   * 63 characters).
   *
   * @default - the target Deployment's name
   */
  readonly name?: string;
}

/** Defaults of the KEDA backend, with the reasoning in the docs of each prop. */
export const KEDA_DEFAULTS = {
  /** A GPU worker takes minutes to start, so checking more often than this buys no latency; the broker API stays quiet. */
  pollingInterval: Duration.seconds(15),
  /** Short gaps between bursts should not cost a cold start of several minutes; a quiet night still costs nothing. */
  cooldownPeriod: Duration.minutes(10),
  activationBacklog: 0,
  fallbackFailureThreshold: 3,
} as const;

/** Metadata keys that carry credentials or a connection string; they belong in the Secret. */
const CREDENTIAL_KEYS = new Set(['host', 'username', 'password', 'apiHost', 'bearerToken', 'ca', 'cert', 'key']);

/** A URL with a user part, `scheme://user[:password]@host`. */
const URL_WITH_USER = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]+@/i;

/**
 * A KEDA ScaledObject that sizes a worker Deployment by the backlog of one RabbitMQ queue, down to zero
 * replicas when the queue is empty.
 *
 * KEDA scales between 0 and 1 itself (on the activation threshold) and hands 1..max to an HPA it manages,
 * configured with the same backlog-per-replica target and behavior as {@link QueueScaledHpa}.
 */
export class KedaQueueScaler extends Construct {
  /** The ScaledObject. */
  public readonly scaledObject: keda.ScaledObject;

  /** The TriggerAuthentication of the rabbitmq trigger, when there is one. */
  public readonly triggerAuthentication?: keda.TriggerAuthentication;

  /** The triggers as written into the ScaledObject. */
  public readonly triggers: keda.ScaledObjectSpecTriggers[];

  /** The intent with defaults applied. */
  public readonly scaling: ResolvedQueueScaling;

  /** The PromQL whose value is this workload's backlog: the prometheus trigger's query, and what the rabbitmq trigger counts. */
  public readonly backlogQuery: string;

  constructor(scope: Construct, id: string, props: KedaQueueScalerProps) {
    super(scope, id);

    // Validate, and resolve the defaults in one place.
    this.scaling = resolveQueueScaling(SELF, props, 0);
    const { minReplicas, maxReplicas, backlogPerReplica, targetRef, namespace } = this.scaling;
    if (!props.rabbitmq && !props.prometheus) {
      invalidProp(SELF, 'rabbitmq', 'and `prometheus` are both unset', 'Give at least one trigger: `rabbitmq` (broker API) or `prometheus` (backlog query).');
    }
    const name = checkScaledObjectName(props.name ?? targetRef.name);
    const activation = props.activationBacklog ?? KEDA_DEFAULTS.activationBacklog;
    toQuantity(SELF, 'activationBacklog', activation, 'decimal', { allowZero: true });
    if (activation > backlogPerReplica) {
      invalidProp(
        SELF,
        'activationBacklog',
        `(${activation}) is above \`backlogPerReplica\` (${backlogPerReplica}), so jobs would wait at zero workers for backlog one worker should already be handling`,
        'Set `activationBacklog` <= `backlogPerReplica`; 0 wakes the workload for the first job.',
      );
    }
    const pollingSeconds = wholeSeconds(SELF, 'pollingInterval', props.pollingInterval ?? KEDA_DEFAULTS.pollingInterval);
    checkInteger(SELF, 'pollingInterval', pollingSeconds, 1);
    const cooldownSeconds = wholeSeconds(SELF, 'cooldownPeriod', props.cooldownPeriod ?? KEDA_DEFAULTS.cooldownPeriod);
    this.checkNoKillMidJobLoop(props, cooldownSeconds);

    // The triggers; the broker credentials come from the user's Secret through a TriggerAuthentication.
    this.backlogQuery = queueBacklogQuery(this.scaling.queue, this.scaling.vhost, this.scaling.backlog);
    this.triggers = [];
    if (props.rabbitmq) {
      this.triggerAuthentication = new keda.TriggerAuthentication(this, 'TriggerAuthentication', {
        metadata: { name: `${name}-rabbitmq`, namespace },
        spec: { secretTargetRef: [{ parameter: 'host', name: props.rabbitmq.connection.secret.name, key: props.rabbitmq.connection.key }] },
      });
      this.triggers.push(rabbitmqQueueTrigger(this.triggerInputs(activation), props.rabbitmq, this.triggerAuthentication.name, {
        scalesToZero: minReplicas === 0,
        hasBacklogTrigger: props.prometheus !== undefined,
      }));
    }
    if (props.prometheus) {
      this.triggers.push(...this.prometheusTriggers(props.prometheus, activation));
    } else if (this.scaling.gpuUtilization) {
      invalidProp(SELF, 'gpuUtilization', 'needs a Prometheus to read GPU utilization from', 'Set `prometheus.serverAddress`, or drop `gpuUtilization`.');
    }

    this.scaledObject = new keda.ScaledObject(this, 'Resource', {
      metadata: { name, namespace },
      spec: {
        scaleTargetRef: targetRef,
        minReplicaCount: minReplicas,
        maxReplicaCount: maxReplicas,
        pollingInterval: pollingSeconds,
        cooldownPeriod: cooldownSeconds,
        fallback: this.fallback(props.fallback),
        advanced: { horizontalPodAutoscalerConfig: { behavior: this.scaling.behavior } },
        triggers: this.triggers,
      },
    });
    claimTarget(props.target, this);
  }

  /** The prometheus triggers: the backlog query, and GPU utilization when asked for. */
  private prometheusTriggers(prometheus: KedaPrometheusTrigger, activation: number): keda.ScaledObjectSpecTriggers[] {
    const triggers: keda.ScaledObjectSpecTriggers[] = [prometheusBacklogTrigger(this.triggerInputs(activation), prometheus)];
    const serverAddress = prometheus.serverAddress;

    const gpu = this.scaling.gpuUtilization;
    if (gpu) {
      triggers.push({
        type: 'prometheus',
        name: 'gpu-utilization',
        // Sum of per-pod averages with an AverageValue target: desired = ceil(sum / target), the same
        // arithmetic as a per-pod utilization target, and a metric type KEDA's fallback accepts.
        metricType: 'AverageValue',
        metadata: {
          serverAddress,
          query: this.gpuUtilizationQuery(),
          threshold: toQuantity(SELF, 'gpuUtilization.targetPercent', gpu.targetPercent, 'decimal'),
          // Never wakes the workload: whether to leave zero is the backlog's decision.
          activationThreshold: '100',
          // No pods, no series: that is 0 % utilization, not an outage.
          ignoreNullValues: 'true',
        },
      });
    }
    return triggers;
  }

  private triggerInputs(activation: number): QueueTriggerInputs {
    const { queue, vhost, backlog, backlogPerReplica } = this.scaling;
    return { construct: SELF, queue, vhost, backlog, target: backlogPerReplica, activation };
  }

  /** Sum over the target's pods of each pod's average GPU utilization. */
  public gpuUtilizationQuery(): string {
    const gpu = this.scaling.gpuUtilization;
    if (!gpu) throw new Error(`${SELF}: no gpuUtilization configured`);
    const { source } = gpu;
    // Pods of a Deployment are named <deployment>-<pod-template-hash>-<suffix>; PromQL regexes are anchored.
    // Known gap: another GPU pod in the namespace with a name of that shape (the pod of a Job named
    // <deployment>-<word>) would be counted too; dcgm-exporter gives no owner label to select on instead.
    const pods = `${this.scaling.targetRef.name}-[a-z0-9]+-[a-z0-9]+`;
    // No namespace means "wherever it is applied", which PromQL cannot know: guessing `default` would select
    // no series elsewhere, and with ignoreNullValues the trigger would then read 0 % forever.
    const namespace = this.scaling.namespace;
    if (namespace === undefined) {
      invalidProp(
        SELF,
        'namespace',
        'of the target is unset, so the GPU utilization query cannot select the target\'s pods',
        'Give the chart a `namespace` (or set `metadata.namespace` on the target), or drop `gpuUtilization`.',
      );
    }
    const selector = `${source.namespaceLabel}=${promqlString(namespace)},${source.podLabel}=~${promqlString(pods)}`;
    return `sum(avg by (${source.podLabel}) (${source.series}{${selector}}))`;
  }

  private fallback(fallback: KedaFallback | false | undefined): keda.ScaledObjectSpecFallback | undefined {
    if (fallback === false) return undefined;
    const replicas = checkInteger(SELF, 'fallback.replicas', fallback?.replicas ?? Math.max(this.scaling.minReplicas, 1), 0);
    if (replicas > this.scaling.maxReplicas) {
      invalidProp(SELF, 'fallback.replicas', `(${replicas}) is above \`maxReplicas\` (${this.scaling.maxReplicas})`, 'Use at most `maxReplicas`.');
    }
    return {
      failureThreshold: checkInteger(SELF, 'fallback.failureThreshold', fallback?.failureThreshold ?? KEDA_DEFAULTS.fallbackFailureThreshold, 1),
      replicas,
      // A monitoring outage must not remove workers that are busy: keep the current count when it is higher.
      // KEDA before 2.17 drops this field and falls back to exactly `replicas` (see docs/scaling.md).
      behavior: keda.ScaledObjectSpecFallbackBehavior.CURRENT_REPLICAS_IF_HIGHER,
    };
  }

  /**
   * Scale to zero must not kill a worker mid-job (the job returns to the queue, which wakes the workload
   * again, and round it goes). With the default backlog, a job in flight is unacknowledged and keeps the
   * trigger active, so the cooldown starts only after the last ack. Counting ready messages only, the
   * cooldown must outlast the longest job; and the grace period must let a job finish at any scale-down.
   */
  private checkNoKillMidJobLoop(props: KedaQueueScalerProps, cooldownSeconds: number): void {
    const fromTarget = props.target as unknown as { maxJobDuration?: Duration; terminationGracePeriod?: Duration };
    const maxJob = props.maxJobDuration ?? fromTarget.maxJobDuration;
    const maxJobSeconds = maxJob ? Math.ceil(maxJob.toMilliseconds() / 1000) : undefined;

    if (this.scaling.minReplicas === 0 && this.scaling.backlog === BacklogMeasure.READY) {
      if (maxJobSeconds === undefined) {
        invalidProp(
          SELF,
          'maxJobDuration',
          'is unknown, but with `backlog: READY` and `minReplicas: 0` running jobs do not keep the workload awake',
          'Set `maxJobDuration` so the cooldown can be checked against it, or keep the default backlog (ready + unacked).',
        );
      }
      if (cooldownSeconds < maxJobSeconds) {
        invalidProp(
          SELF,
          'cooldownPeriod',
          `(${cooldownSeconds}s) is shorter than \`maxJobDuration\` (${maxJobSeconds}s) while only ready messages count as backlog: the last workers would be scaled to zero mid-job`,
          'Set `cooldownPeriod` >= `maxJobDuration`, or keep the default backlog (ready + unacked).',
        );
      }
    }
    const grace = fromTarget.terminationGracePeriod;
    if (props.maxJobDuration && grace && grace.toMilliseconds() < props.maxJobDuration.toMilliseconds()) {
      invalidProp(
        SELF,
        'maxJobDuration',
        `(${props.maxJobDuration.toHumanString()}) is longer than the target's termination grace period (${grace.toHumanString()}): scale-downs would kill jobs`,
        'Raise the target\'s `maxJobDuration` instead, so that its grace period covers the longest job.',
      );
    }
  }
}

/** A KEDA trigger in the shape both ScaledObject and ScaledJob accept. */
export interface QueueTrigger {
  readonly type: string;
  readonly name: string;
  readonly metricType: string;
  readonly metadata: Record<string, string>;
  readonly authenticationRef?: { readonly name: string };
}

/** What a queue trigger is built from, for a ScaledObject (per replica) or a ScaledJob (per job). */
export interface QueueTriggerInputs {
  /** The construct, for error messages. */
  readonly construct: string;
  readonly queue: string;
  readonly vhost: string;
  readonly backlog: BacklogMeasure;
  /** Backlog per replica (ScaledObject) or messages per Job (ScaledJob). */
  readonly target: number;
  /** Backlog above which the trigger is active. */
  readonly activation: number;
}

/**
 * The rabbitmq trigger, with the protocol and `excludeUnacknowledged` that count the chosen backlog.
 * AMQP can only count ready messages; the management API counts both, and alone supports MessageRate.
 */
export function rabbitmqQueueTrigger(
  inputs: QueueTriggerInputs,
  trigger: KedaRabbitmqTrigger,
  authName: string,
  options: { scalesToZero: boolean; hasBacklogTrigger: boolean },
): QueueTrigger {
  const self = inputs.construct;
  const protocol = checkEnum(self, 'rabbitmq.protocol', trigger.protocol ?? RabbitmqProtocol.HTTP, RabbitmqProtocol);
  const mode = checkEnum(self, 'rabbitmq.mode', trigger.mode ?? RabbitmqTriggerMode.QUEUE_LENGTH, RabbitmqTriggerMode);
  checkNonEmpty(self, 'rabbitmq.connection.key', trigger.connection.key);
  checkNoLiteralCredentials(self, 'rabbitmq.extraMetadata', trigger.extraMetadata ?? {});

  if (protocol === RabbitmqProtocol.AMQP && inputs.backlog === BacklogMeasure.READY_AND_UNACKED) {
    invalidProp(
      self,
      'rabbitmq.protocol',
      'is amqp, which counts ready messages only, but the backlog is ready plus unacknowledged',
      'Use the management API (protocol http, a Secret key with http://user:pass@host:15672/), or set `backlog: BacklogMeasure.READY`.',
    );
  }
  let value = toQuantity(self, 'backlogPerReplica', inputs.target, 'decimal');
  if (mode === RabbitmqTriggerMode.MESSAGE_RATE) {
    if (protocol !== RabbitmqProtocol.HTTP) {
      invalidProp(self, 'rabbitmq.mode', 'is MessageRate, which KEDA reads from the management API only', 'Use protocol http.');
    }
    if (trigger.messageRatePerReplica === undefined) {
      invalidProp(self, 'rabbitmq.messageRatePerReplica', 'is unset', 'Give the messages per second one replica handles.');
    }
    value = toQuantity(self, 'rabbitmq.messageRatePerReplica', trigger.messageRatePerReplica, 'decimal');
    if (options.scalesToZero && !options.hasBacklogTrigger) {
      invalidProp(
        self,
        'rabbitmq.mode',
        'is MessageRate with minReplicas 0: when publishing stops, the workload would go to zero while jobs still wait',
        'Add the `prometheus` trigger (it scales on the backlog), use QueueLength, or keep `minReplicas` >= 1.',
      );
    }
  }

  const metadata: Record<string, string> = {
    ...trigger.extraMetadata,
    protocol,
    mode,
    value,
    activationValue: toQuantity(self, 'activationBacklog', inputs.activation, 'decimal', { allowZero: true }),
    queueName: inputs.queue,
    vhostName: inputs.vhost,
  };
  if (protocol === RabbitmqProtocol.HTTP && mode === RabbitmqTriggerMode.QUEUE_LENGTH) {
    // Make the count explicit rather than rely on KEDA's default: it must match `backlog`.
    metadata.excludeUnacknowledged = String(inputs.backlog === BacklogMeasure.READY);
  }
  return { type: 'rabbitmq', name: 'rabbitmq-backlog', metricType: 'AverageValue', metadata, authenticationRef: { name: authName } };
}

/** The prometheus trigger on the shared backlog query of the queue. */
export function prometheusBacklogTrigger(inputs: QueueTriggerInputs, prometheus: KedaPrometheusTrigger): QueueTrigger {
  const self = inputs.construct;
  const serverAddress = checkNonEmpty(self, 'prometheus.serverAddress', prometheus.serverAddress);
  if (!/^https?:\/\//.test(serverAddress)) {
    invalidProp(self, 'prometheus.serverAddress', `is ${JSON.stringify(serverAddress)}`, 'Use an http:// or https:// URL of the Prometheus server.');
  }
  checkNoLiteralCredentials(self, 'prometheus.serverAddress', { serverAddress });
  return {
    type: 'prometheus',
    name: 'prometheus-backlog',
    metricType: 'AverageValue',
    metadata: {
      serverAddress,
      query: queueBacklogQuery(inputs.queue, inputs.vhost, inputs.backlog),
      threshold: toQuantity(self, 'backlogPerReplica', inputs.target, 'decimal'),
      activationThreshold: toQuantity(self, 'activationBacklog', inputs.activation, 'decimal', { allowZero: true }),
      // An empty result means Prometheus lost the series, not an empty queue: fail (and fall back)
      // instead of reading 0 and scaling working pods to zero.
      ignoreNullValues: 'false',
    },
  };
}

/** A ScaledObject name: an object name that is also a valid label value (KEDA labels its HPA with it). */
function checkScaledObjectName(name: string): string {
  checkDnsSubdomain(SELF, 'name', name);
  if (name.length > 63) {
    invalidProp(SELF, 'name', `is ${name.length} characters long`, 'Use at most 63: KEDA puts the name in a label of the HPA it creates.');
  }
  return name;
}

/** A value of a string enum; JavaScript callers can pass anything. */
function checkEnum<T extends string>(construct: string, prop: string, value: T, allowed: Record<string, T>): T {
  const values = Object.values(allowed);
  if (!values.includes(value)) {
    invalidProp(construct, prop, `is ${JSON.stringify(value)}, an unknown value`, `Use one of ${values.join(', ')}.`);
  }
  return value;
}

/** Refuses credentials written into a manifest: they belong in a Secret read through a TriggerAuthentication. */
export function checkNoLiteralCredentials(construct: string, prop: string, metadata: Record<string, string>): void {
  for (const [key, value] of Object.entries(metadata)) {
    if (CREDENTIAL_KEYS.has(key) || URL_WITH_USER.test(value)) {
      const where = prop === 'prometheus.serverAddress' ? prop : `${prop}.${key}`;
      invalidProp(
        construct,
        where,
        'holds credentials as a literal, which would be stored in plain text in the manifest and in Git',
        where === 'prometheus.serverAddress'
          // Known gap: the prometheus trigger has no authentication option here yet (KEDA's authModes).
          ? 'Use the in-cluster address without a user; authenticated Prometheus servers are not supported by this construct yet.'
          : 'Put the URL or credential in a Secret and pass it as `rabbitmq.connection` (a Secret key).',
      );
    }
  }
}


/**
 * The scaling intent that both queue autoscalers share: which workload, which queue, how many jobs per
 * replica, the replica bounds and how fast the count may move. `QueueScaledHpa` (HPA + prometheus-adapter)
 * and `KedaQueueScaler` (KEDA) each resolve it here and build their own objects from the result.
 */
import { ApiObject, Chart, Duration } from 'cdk8s';
import { IScalable } from 'cdk8s-plus-27';
import { IConstruct } from 'constructs';
import { WORKER_DEFAULTS } from './contract';
import { GpuUtilizationSource } from './gpu-metrics';
import { BacklogMeasure } from './rabbitmq-metrics';
import { checkInteger, checkNonEmpty, checkPositive, checkRange, invalidProp, toQuantity } from './validation';

// ---------------------------------------------------------------------------------------------------------
// Behavior: how fast the replica count may move.
// ---------------------------------------------------------------------------------------------------------

/** How a scaling policy counts the change it allows. */
export enum ScalingPolicyType {
  /** A number of pods per period. */
  PODS = 'Pods',
  /** A percentage of the current replicas per period. */
  PERCENT = 'Percent',
}

/** Which policy wins when several allow different changes. */
export enum ScalingPolicySelect {
  /** The policy that allows the largest change. */
  MAX = 'Max',
  /** The policy that allows the smallest change. */
  MIN = 'Min',
  /** No scaling in this direction at all. */
  DISABLED = 'Disabled',
}

/**
 * The largest change the autoscaler may make within one period.
 *
 * @see https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#scaling-policies
 */
export interface ScalingPolicy {
  /** Pods or percent. */
  readonly type: ScalingPolicyType;

  /** How many pods, or what percentage, per period. A whole number above 0. */
  readonly value: number;

  /** The window the change is counted over; between 1 second and 30 minutes. */
  readonly period: Duration;
}

/**
 * Limits of one scaling direction. Every field left out takes this library's default for that direction.
 *
 * @see https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#configurable-scaling-behavior
 */
export interface ScalingRules {
  /**
   * The autoscaler acts on the most conservative recommendation of this window (the highest when scaling
   * down, the lowest when scaling up). Between 0 and 1 hour.
   *
   * @default - scale-up: 0 seconds; scale-down: 10 minutes
   */
  readonly stabilizationWindow?: Duration;

  /**
   * The policies that limit each step.
   *
   * @default - scale-up: 100 percent or 4 pods per 30 seconds, whichever is more;
   * scale-down: 25 percent or 2 pods per 2 minutes, whichever is more
   */
  readonly policies?: ScalingPolicy[];

  /**
   * Which policy applies when several do.
   *
   * @default ScalingPolicySelect.MAX
   */
  readonly selectPolicy?: ScalingPolicySelect;
}

/**
 * Scale-up default: react at once and allow doubling (or +4 pods) every 30 seconds. Jobs pile up quickly,
 * and a new GPU worker takes minutes (node provisioning, image pull, model load) before it takes work, so
 * waiting before asking for capacity only adds to that delay. The backlog per replica already says how
 * many workers are needed, so a fast step does not overshoot the way a utilization metric would.
 */
export const DEFAULT_SCALE_UP: Required<ScalingRules> = {
  stabilizationWindow: Duration.seconds(0),
  policies: [
    { type: ScalingPolicyType.PERCENT, value: 100, period: Duration.seconds(30) },
    { type: ScalingPolicyType.PODS, value: 4, period: Duration.seconds(30) },
  ],
  selectPolicy: ScalingPolicySelect.MAX,
};

/**
 * Scale-down default: act on the highest recommendation of the last 10 minutes, then remove a quarter of
 * the workers or 2 of them every 2 minutes, whichever is more. GPU capacity is slow to get back, so short
 * lulls between bursts should not cost it; that is the window's job. Once the queue has drained, the
 * policies only set how fast the GPUs are released: the HPA truncates a percentage (int32(40 × 0.75) = 30),
 * so 25 % alone shrinks a small fleet one pod per period (4→3→2→1) and holds idle GPUs through a long tail;
 * the 2-pod policy shortens that tail. From 40 workers: 40→30→22→16→12→9→6→4→2→1, the first step 10 minutes
 * after the queue drains and one every 2 minutes after that, so the last GPU but one goes after about
 * 26 minutes (25 % alone: 10 steps, 28 minutes), plus up to 15 seconds of controller sync per step.
 */
export const DEFAULT_SCALE_DOWN: Required<ScalingRules> = {
  stabilizationWindow: Duration.minutes(10),
  policies: [
    { type: ScalingPolicyType.PERCENT, value: 25, period: Duration.minutes(2) },
    { type: ScalingPolicyType.PODS, value: 2, period: Duration.minutes(2) },
  ],
  selectPolicy: ScalingPolicySelect.MAX,
};

/** A `behavior` direction in the Kubernetes API's own shape; also what KEDA's horizontalPodAutoscalerConfig takes. */
export interface HpaScalingRulesJson {
  readonly stabilizationWindowSeconds: number;
  readonly selectPolicy: string;
  readonly policies: { type: string; value: number; periodSeconds: number }[];
}

/** The behavior of an autoscaler, with every default filled in and every value checked. */
export function resolveBehavior(
  construct: string,
  scaleUp: ScalingRules = {},
  scaleDown: ScalingRules = {},
): { scaleUp: HpaScalingRulesJson; scaleDown: HpaScalingRulesJson } {
  return {
    scaleUp: resolveDirection(construct, 'scaleUp', scaleUp, DEFAULT_SCALE_UP),
    scaleDown: resolveDirection(construct, 'scaleDown', scaleDown, DEFAULT_SCALE_DOWN),
  };
}

function resolveDirection(construct: string, prop: string, rules: ScalingRules, defaults: Required<ScalingRules>): HpaScalingRulesJson {
  const window = wholeSeconds(construct, `${prop}.stabilizationWindow`, rules.stabilizationWindow ?? defaults.stabilizationWindow);
  if (window > 3600) {
    invalidProp(construct, `${prop}.stabilizationWindow`, `is ${window} seconds`, 'Use at most 1 hour (3600 seconds).');
  }

  const policies = rules.policies ?? defaults.policies;
  if (policies.length === 0) {
    invalidProp(construct, `${prop}.policies`, 'is empty', `Give at least one policy, or set \`${prop}.selectPolicy\` to Disabled.`);
  }

  return {
    stabilizationWindowSeconds: window,
    selectPolicy: rules.selectPolicy ?? defaults.selectPolicy,
    policies: policies.map((policy, i) => {
      const where = `${prop}.policies[${i}]`;
      checkInteger(construct, `${where}.value`, policy.value, 1);
      const period = wholeSeconds(construct, `${where}.period`, policy.period);
      if (period < 1 || period > 1800) {
        invalidProp(construct, `${where}.period`, `is ${period} seconds`, 'Use between 1 second and 30 minutes (1800 seconds).');
      }
      return { type: policy.type, value: policy.value, periodSeconds: period };
    }),
  };
}

/** A Duration as whole seconds; a fraction of a second is an error, not a silent rounding. */
export function wholeSeconds(construct: string, prop: string, duration: Duration): number {
  const ms = duration.toMilliseconds();
  if (!Number.isFinite(ms) || ms < 0 || ms % 1000 !== 0) {
    invalidProp(construct, prop, `is ${duration.toHumanString()}`, 'Use a whole, non-negative number of seconds.');
  }
  return ms / 1000;
}

// ---------------------------------------------------------------------------------------------------------
// The scaling intent shared by both backends.
// ---------------------------------------------------------------------------------------------------------

/** Per-pod GPU utilization as a second scaling signal: the autoscaler takes the larger of both proposals. */
export interface GpuUtilizationMetric {
  /** Where the series comes from, e.g. `DcgmExporter.gpuUtilization` or `DCGM_GPU_UTILIZATION`. */
  readonly source: GpuUtilizationSource;

  /**
   * Average GPU utilization per pod to aim for, in percent (1–100).
   *
   * @default 80
   */
  readonly targetPercent?: number;
}

/** Default average GPU utilization per pod, percent: busy, with headroom for the next batch. */
export const DEFAULT_GPU_TARGET_PERCENT = 80;

/** A workload a queue autoscaler can size: a cdk8s-plus `Deployment`, or a construct that wraps one. */
export type QueueScalingTarget = IScalable & IConstruct;

/** What to scale and on which queue: the props both backends share. */
export interface QueueScalingProps {
  /**
   * The Deployment to scale. It must not set fixed `replicas`: the autoscaler owns the count, and a
   * Deployment that carries one would be reset by every GitOps sync.
   */
  readonly target: QueueScalingTarget;

  /** Name of the RabbitMQ queue whose backlog drives the replica count. */
  readonly queue: string;

  /**
   * RabbitMQ virtual host of the queue.
   *
   * @default "/"
   */
  readonly vhost?: string;

  /**
   * What counts as backlog. Ready plus unacknowledged keeps counting a job until a worker acks it, so
   * workers that are busy with a job are not removed, and the queue being drained into prefetch buffers does
   * not look like a falling backlog.
   *
   * @default BacklogMeasure.READY_AND_UNACKED
   */
  readonly backlog?: BacklogMeasure;

  /**
   * Jobs of backlog one replica is expected to carry: desired replicas = ceil(backlog / backlogPerReplica).
   * Set it to the number of jobs one worker holds at once (its prefetch), so that a worker busy with a full
   * batch counts as exactly one worker's worth of backlog.
   *
   * @default - the worker's default batch size, 8
   */
  readonly backlogPerReplica?: number;

  /**
   * Fewest replicas.
   *
   * @default - 1 with the HPA backend, 0 with KEDA
   */
  readonly minReplicas?: number;

  /** Most replicas; usually the GPUs the workload may use. */
  readonly maxReplicas: number;

  /**
   * Also scale on per-pod GPU utilization.
   *
   * @default - backlog only
   */
  readonly gpuUtilization?: GpuUtilizationMetric;

  /**
   * Scale-up limits; fields left out take the defaults.
   *
   * @default - see DEFAULT_SCALE_UP
   */
  readonly scaleUp?: ScalingRules;

  /**
   * Scale-down limits; fields left out take the defaults.
   *
   * @default - see DEFAULT_SCALE_DOWN
   */
  readonly scaleDown?: ScalingRules;
}

/** The intent with defaults applied and checked; what both backends build from. */
export interface ResolvedQueueScaling {
  readonly target: QueueScalingTarget;
  readonly targetRef: { readonly apiVersion: string; readonly kind: string; readonly name: string };
  readonly namespace: string | undefined;
  readonly queue: string;
  readonly vhost: string;
  readonly backlog: BacklogMeasure;
  readonly backlogPerReplica: number;
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly gpuUtilization?: { readonly source: GpuUtilizationSource; readonly targetPercent: number };
  readonly behavior: { scaleUp: HpaScalingRulesJson; scaleDown: HpaScalingRulesJson };
}

// Workloads that already have a queue autoscaler, so that one workload never gets two (HPA and KEDA would
// fight over the replica count).
const claimedTargets = new WeakMap<IConstruct, string>();

/** Values that people write to mean "any queue"; none of them is selected literally by mistake. */
const WILDCARD_QUEUES = new Set(['*', '#', '.*', '.+', '^.*$', '%']);

/**
 * Checks the shared props and applies the defaults. Both backends call this first, and {@link claimTarget}
 * once their objects exist.
 */
export function resolveQueueScaling(construct: string, props: QueueScalingProps, defaultMinReplicas: number): ResolvedQueueScaling {
  const queue = checkNonEmpty(construct, 'queue', props.queue);
  if (WILDCARD_QUEUES.has(queue)) {
    invalidProp(
      construct,
      'queue',
      `is ${JSON.stringify(queue)}, which reads as a pattern that could match every queue`,
      'Name the one queue the workers consume; scale each queue\'s workers with their own autoscaler.',
    );
  }
  const vhost = checkNonEmpty(construct, 'vhost', props.vhost ?? '/');

  const minReplicas = checkInteger(construct, 'minReplicas', props.minReplicas ?? defaultMinReplicas, 0);
  const maxReplicas = checkInteger(construct, 'maxReplicas', props.maxReplicas, 1);
  checkRange(construct, 'minReplicas', minReplicas, 'maxReplicas', maxReplicas);
  const backlogPerReplica = checkPositive(construct, 'backlogPerReplica', props.backlogPerReplica ?? WORKER_DEFAULTS.maxBatchSize);
  // Both backends write it as a quantity: refuse here what neither could write exactly.
  toQuantity(construct, 'backlogPerReplica', backlogPerReplica, 'decimal');

  let gpuUtilization: ResolvedQueueScaling['gpuUtilization'];
  if (props.gpuUtilization) {
    const targetPercent = props.gpuUtilization.targetPercent ?? DEFAULT_GPU_TARGET_PERCENT;
    if (!Number.isInteger(targetPercent) || targetPercent < 1 || targetPercent > 100) {
      invalidProp(construct, 'gpuUtilization.targetPercent', `is ${targetPercent}`, 'Use a whole percentage from 1 to 100.');
    }
    gpuUtilization = { source: props.gpuUtilization.source, targetPercent };
  }

  const scalingTarget = props.target.toScalingTarget();
  if (scalingTarget.replicas !== undefined) {
    invalidProp(
      construct,
      'target',
      `(${scalingTarget.kind} ${scalingTarget.name}) sets fixed replicas (${scalingTarget.replicas})`,
      'Leave `replicas` unset on a Deployment that an autoscaler sizes; set `minReplicas` here instead.',
    );
  }
  const claimedBy = claimedTargets.get(props.target);
  if (claimedBy !== undefined) {
    invalidProp(
      construct,
      'target',
      `(${scalingTarget.kind} ${scalingTarget.name}) is already scaled by ${claimedBy}`,
      'Give a workload one autoscaler: either the HPA backend (QueueScaledHpa) or KEDA (KedaQueueScaler), never both.',
    );
  }
  if (claimedBy === undefined && props.target.hasAutoscaler) {
    invalidProp(
      construct,
      'target',
      `(${scalingTarget.kind} ${scalingTarget.name}) already has an autoscaler (e.g. a cdk8s-plus HorizontalPodAutoscaler)`,
      'Give a workload one autoscaler: remove the other one, or do not add this one.',
    );
  }

  return {
    target: props.target,
    targetRef: { apiVersion: scalingTarget.apiVersion, kind: scalingTarget.kind, name: scalingTarget.name },
    namespace: namespaceOf(props.target),
    queue,
    vhost,
    backlog: props.backlog ?? BacklogMeasure.READY_AND_UNACKED,
    backlogPerReplica,
    minReplicas,
    maxReplicas,
    gpuUtilization,
    behavior: resolveBehavior(construct, props.scaleUp, props.scaleDown),
  };
}

/** Records that `scaler` sizes `target`, and removes `spec.replicas` from the target's manifest. */
export function claimTarget(target: QueueScalingTarget, scaler: IConstruct): void {
  claimedTargets.set(target, scaler.node.path);
  target.markHasAutoscaler();
}

/** Namespace of the target's object: its own metadata, else its chart's. */
function namespaceOf(target: QueueScalingTarget): string | undefined {
  // A cdk8s-plus workload has `metadata.namespace`; a wrapper such as GpuWorkerDeployment has `namespace`.
  const shaped = target as unknown as { metadata?: { namespace?: string }; namespace?: unknown };
  const own = shaped.metadata?.namespace ?? (typeof shaped.namespace === 'string' ? shaped.namespace : undefined);
  if (own) return own;
  const apiObject = target.node.findAll().find((c): c is ApiObject => c instanceof ApiObject);
  return apiObject?.metadata.namespace ?? Chart.of(target).namespace;
}

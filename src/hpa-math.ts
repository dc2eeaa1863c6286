/**
 * What would the HorizontalPodAutoscaler do? The replica calculation of the Kubernetes HPA controller
 * (autoscaling/v2), for one sync, written once so that users, docs and the live-signal suite agree on it.
 *
 * The controller computes one proposal per metric and takes the largest:
 *
 * - a per-pod ratio: `desiredReplicas = ceil(currentReplicas × currentValue / desiredValue)`, unless the ratio
 *   is within the tolerance (0.1 by default) of 1.0, in which case the replica count stays as it is;
 * - an External metric with an `AverageValue` target: `ceil(total / averageValue)`, where `total` is the sum
 *   of every series the metric selector returns (the tolerance is checked against `total / (target × current)`);
 * - an External metric with a `Value` target: the ratio `total / value` applied to the current replicas.
 *
 * The result is then clamped to `[minReplicas, maxReplicas]`.
 *
 * Not modelled (plain words, since users may read this as the whole truth): the `behavior` section — the
 * scale-down stabilization window (300 s by default) and the rate-limit policies (by default at most
 * max(4 pods, 100 %) more per 15 s) — decides how fast the HPA walks towards this number; and pods that are
 * not ready or have no metric yet are not treated specially (the controller assumes 0 or 100 % for them).
 *
 * Quantities follow the API: the controller works in milli-units (`5` is 5000m), so fractions finer than
 * 0.001 are dropped exactly as the Kubernetes Quantity would drop them.
 *
 * @see https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details
 */
import { invalidProp } from './validation';

/** The tolerance of the HPA controller (`--horizontal-pod-autoscaler-tolerance`), 10 %. */
export const HPA_DEFAULT_TOLERANCE = 0.1;

/** An External metric with an `AverageValue` target: backlog per replica, the target of queue scaling. */
export interface ExternalAverageValueSample {
  readonly type: 'ExternalAverageValue';

  /** Name shown in the result, e.g. the external metric name. */
  readonly name?: string;

  /** Value of every series the metric selector matched; the HPA sums them. */
  readonly values: readonly number[];

  /** `target.averageValue`: the value each replica should carry, e.g. 5 jobs. */
  readonly averageValue: number;
}

/** An External metric with a `Value` target: the whole metric should equal this value. */
export interface ExternalValueSample {
  readonly type: 'ExternalValue';

  /** Name shown in the result. */
  readonly name?: string;

  /** Value of every series the metric selector matched; the HPA sums them. */
  readonly values: readonly number[];

  /** `target.value`. */
  readonly value: number;
}

/** A Pods metric with an `AverageValue` target, e.g. GPU utilization per pod. */
export interface PodsAverageValueSample {
  readonly type: 'PodsAverageValue';

  /** Name shown in the result. */
  readonly name?: string;

  /** The metric of each pod of the workload; the HPA averages them. */
  readonly podValues: readonly number[];

  /** `target.averageValue`, e.g. 80 (% GPU utilization). */
  readonly averageValue: number;
}

/**
 * A current and a desired value per pod (Resource utilization, or any per-pod average): the formula of the
 * Kubernetes documentation, applied to the current replica count.
 */
export interface RatioSample {
  readonly type: 'Ratio';

  /** Name shown in the result. */
  readonly name?: string;

  /** Current per-pod value, e.g. 200 (m CPU) or 305 (% of request). */
  readonly currentValue: number;

  /** Desired per-pod value, e.g. 100 (m CPU) or 50 (% of request). */
  readonly desiredValue: number;
}

/** One metric as the HPA controller sees it in one sync. */
export type HpaMetricSample = ExternalAverageValueSample | ExternalValueSample | PodsAverageValueSample | RatioSample;

/** Input of {@link hpaDesiredReplicas}. */
export interface HpaReplicaInput {
  /** Replicas the scale target has now (`status.replicas`, equal to the ready pods here). */
  readonly currentReplicas: number;

  /**
   * `spec.minReplicas`.
   * @default 1
   */
  readonly minReplicas?: number;

  /** `spec.maxReplicas`. */
  readonly maxReplicas: number;

  /** The HPA's metrics with their current values; at least one. */
  readonly metrics: readonly HpaMetricSample[];

  /**
   * The controller's tolerance: ratios within it of 1.0 leave the replica count unchanged.
   * @default 0.1
   */
  readonly tolerance?: number;
}

/** The proposal of one metric. */
export interface HpaMetricProposal {
  /** The metric's name, or its type and position when it has none. */
  readonly metric: string;

  /** Replicas this metric asks for, before clamping. */
  readonly replicas: number;

  /** The usage ratio the tolerance was checked against. */
  readonly usageRatio: number;

  /** True when the ratio was within the tolerance and the current count was kept. */
  readonly withinTolerance: boolean;
}

/** Why the result is what it is, in the words of the HPA's own conditions. */
export type HpaDecision =
  /** The largest proposal, within bounds. */
  | 'DesiredWithinRange'
  /** The largest proposal was below minReplicas. */
  | 'TooFewReplicas'
  /** The largest proposal was above maxReplicas. */
  | 'TooManyReplicas'
  /** The scale target has 0 replicas while minReplicas > 0: the HPA does not act (ScalingDisabled). */
  | 'ScalingDisabled';

/** Result of {@link hpaDesiredReplicas}. */
export interface HpaReplicaResult {
  /** Replicas the HPA recommends after clamping to `[minReplicas, maxReplicas]`. */
  readonly desiredReplicas: number;

  /** Why. */
  readonly decision: HpaDecision;

  /** Each metric's proposal; the largest one wins. */
  readonly proposals: readonly HpaMetricProposal[];
}

const CONSTRUCT = 'hpaDesiredReplicas';

/** A target in milli-units, as `resource.Quantity.MilliValue()` returns it (rounded up). */
function milli(value: number): number {
  return Math.ceil(Math.round(value * 1e6) / 1e3);
}

/** A metric value in milli-units, as the metrics adapters hand it over (`int64(value * 1000)`: truncated). */
function milliSample(value: number): number {
  return Math.trunc(value * 1000);
}

function withinTolerance(usageRatio: number, tolerance: number): boolean {
  return Math.abs(1 - usageRatio) <= tolerance;
}

/** Ratio applied to the pods that report; from 0 replicas the HPA scales straight to ceil(ratio). */
function ratioProposal(usageRatio: number, currentReplicas: number, readyPods: number, tolerance: number): [number, boolean] {
  if (currentReplicas === 0) return [Math.ceil(usageRatio), false];
  if (withinTolerance(usageRatio, tolerance)) return [currentReplicas, true];
  return [Math.ceil(usageRatio * readyPods), false];
}

function checkSample(sample: HpaMetricSample, index: number): string {
  const label = sample.name ?? `metrics[${index}] (${sample.type})`;
  const prop = `metrics[${index}]`;
  const positive = (field: string, v: number) => {
    if (!Number.isFinite(v) || v <= 0) invalidProp(CONSTRUCT, `${prop}.${field}`, `is ${v}`, 'Give the target as a number greater than 0.');
  };
  const values = (field: string, vs: readonly number[]) => {
    vs.forEach((v, i) => {
      if (!Number.isFinite(v) || v < 0) {
        invalidProp(CONSTRUCT, `${prop}.${field}[${i}]`, `is ${v}`, 'Metric values are finite numbers of at least 0.');
      }
    });
  };
  switch (sample.type) {
    case 'ExternalAverageValue': positive('averageValue', sample.averageValue); values('values', sample.values); break;
    case 'ExternalValue': positive('value', sample.value); values('values', sample.values); break;
    case 'PodsAverageValue':
      positive('averageValue', sample.averageValue);
      values('podValues', sample.podValues);
      if (sample.podValues.length === 0) {
        invalidProp(CONSTRUCT, `${prop}.podValues`, 'is empty', 'Give the metric of at least one pod; the HPA cannot average nothing.');
      }
      break;
    case 'Ratio': positive('desiredValue', sample.desiredValue); values('currentValue', [sample.currentValue]); break;
    default: invalidProp(CONSTRUCT, `${prop}.type`, `is ${JSON.stringify((sample as any).type)}`, 'Use ExternalAverageValue, ExternalValue, PodsAverageValue or Ratio.');
  }
  return label;
}

/** The proposal of one metric, computed in milli-units like the controller. */
function propose(sample: HpaMetricSample, label: string, current: number, tolerance: number): HpaMetricProposal {
  const sum = (vs: readonly number[]) => vs.reduce((total, v) => total + milliSample(v), 0);

  switch (sample.type) {
    case 'ExternalAverageValue': {
      const total = sum(sample.values);
      const target = milli(sample.averageValue);
      const usageRatio = current > 0 ? total / (target * current) : Infinity;
      const keep = current > 0 && withinTolerance(usageRatio, tolerance);
      return { metric: label, usageRatio, withinTolerance: keep, replicas: keep ? current : Math.ceil(total / target) };
    }
    case 'ExternalValue': {
      const usageRatio = sum(sample.values) / milli(sample.value);
      const [replicas, keep] = ratioProposal(usageRatio, current, current, tolerance);
      return { metric: label, usageRatio, withinTolerance: keep, replicas };
    }
    case 'PodsAverageValue': {
      // The controller averages in whole milli-units (integer division).
      const average = Math.trunc(sum(sample.podValues) / sample.podValues.length);
      const usageRatio = average / milli(sample.averageValue);
      const [replicas, keep] = ratioProposal(usageRatio, current, sample.podValues.length, tolerance);
      return { metric: label, usageRatio, withinTolerance: keep, replicas };
    }
    case 'Ratio': {
      const usageRatio = milliSample(sample.currentValue) / milli(sample.desiredValue);
      const [replicas, keep] = ratioProposal(usageRatio, current, current, tolerance);
      return { metric: label, usageRatio, withinTolerance: keep, replicas };
    }
  }
}

/**
 * The replica count the HPA controller would recommend in one sync, from the current values of its metrics.
 *
 * @example
 * // 23 jobs waiting, 5 jobs per worker, 2 workers running: the HPA asks for ceil(23 / 5) = 5.
 * hpaDesiredReplicas({
 *   currentReplicas: 2, minReplicas: 1, maxReplicas: 10,
 *   metrics: [{ type: 'ExternalAverageValue', values: [23], averageValue: 5 }],
 * }).desiredReplicas; // 5
 */
export function hpaDesiredReplicas(input: HpaReplicaInput): HpaReplicaResult {
  const tolerance = input.tolerance ?? HPA_DEFAULT_TOLERANCE;
  const minReplicas = input.minReplicas ?? 1;
  const current = input.currentReplicas;

  if (!Number.isInteger(current) || current < 0) {
    invalidProp(CONSTRUCT, 'currentReplicas', `is ${current}`, 'Give the current replica count as a whole number of at least 0.');
  }
  if (!Number.isInteger(minReplicas) || minReplicas < 0) {
    invalidProp(CONSTRUCT, 'minReplicas', `is ${minReplicas}`, 'Use a whole number of at least 0 (0 needs the HPAScaleToZero feature gate).');
  }
  if (!Number.isInteger(input.maxReplicas) || input.maxReplicas < 1) {
    invalidProp(CONSTRUCT, 'maxReplicas', `is ${input.maxReplicas}`, 'Use a whole number of at least 1.');
  }
  if (minReplicas > input.maxReplicas) {
    invalidProp(CONSTRUCT, 'minReplicas', `(${minReplicas}) is greater than \`maxReplicas\` (${input.maxReplicas})`, 'Set `minReplicas` <= `maxReplicas`.');
  }
  if (!Number.isFinite(tolerance) || tolerance < 0) {
    invalidProp(CONSTRUCT, 'tolerance', `is ${tolerance}`, 'Use a fraction of at least 0, e.g. 0.1 for the default 10 %.');
  }
  if (input.metrics.length === 0) {
    invalidProp(CONSTRUCT, 'metrics', 'is empty', 'Give at least one metric with its current value.');
  }

  // The controller leaves a target that was scaled to 0 by hand alone unless scale-to-zero is allowed.
  if (current === 0 && minReplicas > 0) {
    return { desiredReplicas: 0, decision: 'ScalingDisabled', proposals: [] };
  }

  const labels = input.metrics.map(checkSample);
  const proposals = input.metrics.map((sample, i) => propose(sample, labels[i], current, tolerance));
  const largest = Math.max(...proposals.map((p) => p.replicas));

  if (largest > input.maxReplicas) return { desiredReplicas: input.maxReplicas, decision: 'TooManyReplicas', proposals };
  if (largest < minReplicas) return { desiredReplicas: minReplicas, decision: 'TooFewReplicas', proposals };
  return { desiredReplicas: largest, decision: 'DesiredWithinRange', proposals };
}

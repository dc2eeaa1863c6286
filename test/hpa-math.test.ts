import { HPA_DEFAULT_TOLERANCE, hpaDesiredReplicas, InvalidPropError } from '../src';

// The worked examples are those of the Kubernetes documentation:
// https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details
// https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale-walkthrough/
describe('hpaDesiredReplicas: the documented formula ceil(current × currentValue / desiredValue)', () => {
  const ratio = (currentReplicas: number, currentValue: number, desiredValue: number) =>
    hpaDesiredReplicas({
      currentReplicas,
      maxReplicas: 100,
      metrics: [{ type: 'Ratio', currentValue, desiredValue }],
    });

  test('200m current against 100m desired doubles the replicas', () => {
    expect(ratio(3, 0.2, 0.1).desiredReplicas).toBe(6);
  });

  test('50m current against 100m desired halves the replicas', () => {
    expect(ratio(4, 0.05, 0.1).desiredReplicas).toBe(2);
  });

  test('the walkthrough: 1 php-apache pod at 305 % CPU against a 50 % target becomes 7', () => {
    const result = ratio(1, 305, 50);
    expect(result.desiredReplicas).toBe(7);
    expect(result.proposals[0].usageRatio).toBeCloseTo(6.1, 10);
  });

  test('the result is rounded up: 3 pods at 110 % of 75 need ceil(4.4) = 5', () => {
    expect(ratio(3, 110, 75).desiredReplicas).toBe(5);
  });
});

describe('hpaDesiredReplicas: the 0.1 tolerance', () => {
  test('is the documented default', () => {
    expect(HPA_DEFAULT_TOLERANCE).toBe(0.1);
  });

  test('a ratio within 10 % of 1.0 keeps the replica count', () => {
    // 108 / 100 = 1.08: a naive ceil(5 × 1.08) would say 6.
    const result = hpaDesiredReplicas({ currentReplicas: 5, maxReplicas: 10, metrics: [{ type: 'Ratio', currentValue: 108, desiredValue: 100 }] });
    expect(result.desiredReplicas).toBe(5);
    expect(result.proposals[0].withinTolerance).toBe(true);
  });

  test('exactly 10 % away still counts as within (the controller compares with <=)', () => {
    const result = hpaDesiredReplicas({ currentReplicas: 4, maxReplicas: 10, metrics: [{ type: 'Ratio', currentValue: 90, desiredValue: 100 }] });
    expect(result.desiredReplicas).toBe(4);
  });

  test('just outside the tolerance scales', () => {
    const result = hpaDesiredReplicas({ currentReplicas: 5, maxReplicas: 10, metrics: [{ type: 'Ratio', currentValue: 111, desiredValue: 100 }] });
    expect(result.desiredReplicas).toBe(6);
    expect(result.proposals[0].withinTolerance).toBe(false);
  });

  test('a custom tolerance is honoured', () => {
    const result = hpaDesiredReplicas({
      currentReplicas: 5, maxReplicas: 10, tolerance: 0.05, metrics: [{ type: 'Ratio', currentValue: 108, desiredValue: 100 }],
    });
    expect(result.desiredReplicas).toBe(6);
  });
});

describe('hpaDesiredReplicas: External metric with an AverageValue target = ceil(total / target)', () => {
  const backlog = (currentReplicas: number, values: number[], averageValue = 30, maxReplicas = 20, minReplicas = 1) =>
    hpaDesiredReplicas({ currentReplicas, minReplicas, maxReplicas, metrics: [{ type: 'ExternalAverageValue', name: 'queue', values, averageValue }] });

  test('the walkthrough queue: 95 messages at 30 per replica need 4 replicas, whatever runs now', () => {
    expect(backlog(1, [95]).desiredReplicas).toBe(4);
    expect(backlog(9, [95]).desiredReplicas).toBe(4);
  });

  test('the series the selector returns are summed', () => {
    expect(backlog(1, [40, 50, 5]).desiredReplicas).toBe(4);
  });

  test('the tolerance is checked against total / (target × current): 62 jobs on 2 replicas of 30 stay 2', () => {
    // 62 / 60 = 1.033, within 10 %; ceil(62 / 30) would be 3.
    const result = backlog(2, [62]);
    expect(result.desiredReplicas).toBe(2);
    expect(result.proposals[0].usageRatio).toBeCloseTo(62 / 60, 10);
  });

  test('an empty queue falls to minReplicas', () => {
    const result = backlog(5, [0], 30, 20, 2);
    expect(result.desiredReplicas).toBe(2);
    expect(result.decision).toBe('TooFewReplicas');
  });

  test('a flood is clamped to maxReplicas', () => {
    const result = backlog(2, [10_000], 30, 20);
    expect(result.desiredReplicas).toBe(20);
    expect(result.decision).toBe('TooManyReplicas');
    expect(result.proposals[0].replicas).toBe(334);
  });

  test('from zero replicas with scale-to-zero allowed, the backlog alone decides', () => {
    expect(backlog(0, [61], 30, 20, 0).desiredReplicas).toBe(3);
    expect(backlog(0, [0], 30, 20, 0).desiredReplicas).toBe(0);
  });

  test('a target scaled to zero by hand is left alone when minReplicas > 0', () => {
    const result = backlog(0, [500], 30, 20, 1);
    expect(result).toEqual({ desiredReplicas: 0, decision: 'ScalingDisabled', proposals: [] });
  });

  test('values are taken in milli-units like the metrics API: 0.0004 jobs count as nothing', () => {
    expect(backlog(1, [0.0004], 1, 10, 0).proposals[0].replicas).toBe(0);
  });
});

describe('hpaDesiredReplicas: External Value and Pods AverageValue targets', () => {
  test('External Value: the ratio total / value applies to the current replicas', () => {
    const result = hpaDesiredReplicas({ currentReplicas: 2, maxReplicas: 10, metrics: [{ type: 'ExternalValue', values: [300], value: 100 }] });
    expect(result.desiredReplicas).toBe(6);
  });

  test('Pods AverageValue: GPU utilization 90 % and 100 % against 80 % on 2 pods needs ceil(2 × 95/80) = 3', () => {
    const result = hpaDesiredReplicas({ currentReplicas: 2, maxReplicas: 10, metrics: [{ type: 'PodsAverageValue', podValues: [90, 100], averageValue: 80 }] });
    expect(result.desiredReplicas).toBe(3);
  });
});

describe('hpaDesiredReplicas: several metrics', () => {
  test('the largest proposal wins', () => {
    const result = hpaDesiredReplicas({
      currentReplicas: 2,
      maxReplicas: 10,
      metrics: [
        { type: 'ExternalAverageValue', name: 'backlog', values: [12], averageValue: 4 },
        { type: 'PodsAverageValue', name: 'gpu', podValues: [95, 95], averageValue: 80 },
      ],
    });
    expect(result.proposals.map((p) => [p.metric, p.replicas])).toEqual([['backlog', 3], ['gpu', 3]]);
    expect(result.desiredReplicas).toBe(3);

    const busier = hpaDesiredReplicas({
      currentReplicas: 2,
      maxReplicas: 10,
      metrics: [
        { type: 'ExternalAverageValue', name: 'backlog', values: [40], averageValue: 4 },
        { type: 'PodsAverageValue', name: 'gpu', podValues: [20, 30], averageValue: 80 },
      ],
    });
    expect(busier.desiredReplicas).toBe(10);
    expect(busier.decision).toBe('DesiredWithinRange');
  });
});

describe('hpaDesiredReplicas: bad input names the field and the fix', () => {
  const base = { currentReplicas: 1, maxReplicas: 5, metrics: [{ type: 'ExternalAverageValue' as const, values: [1], averageValue: 1 }] };

  test.each([
    ['maxReplicas 0', { ...base, maxReplicas: 0 }, /`maxReplicas` is 0/],
    ['minReplicas above maxReplicas', { ...base, minReplicas: 6 }, /`minReplicas` \(6\) is greater than `maxReplicas` \(5\)/],
    ['fractional currentReplicas', { ...base, currentReplicas: 1.5 }, /`currentReplicas` is 1.5/],
    ['negative tolerance', { ...base, tolerance: -0.1 }, /`tolerance` is -0.1/],
    ['no metrics', { ...base, metrics: [] }, /`metrics` is empty/],
    ['zero target', { ...base, metrics: [{ type: 'ExternalAverageValue' as const, values: [1], averageValue: 0 }] }, /`metrics\[0\].averageValue` is 0/],
    ['NaN value', { ...base, metrics: [{ type: 'ExternalAverageValue' as const, values: [NaN], averageValue: 1 }] }, /`metrics\[0\].values\[0\]` is NaN/],
    ['no pod values', { ...base, metrics: [{ type: 'PodsAverageValue' as const, podValues: [], averageValue: 1 }] }, /`metrics\[0\].podValues` is empty/],
  ])('%s', (_case, input, message) => {
    expect(() => hpaDesiredReplicas(input)).toThrow(InvalidPropError);
    expect(() => hpaDesiredReplicas(input)).toThrow(message);
  });
});

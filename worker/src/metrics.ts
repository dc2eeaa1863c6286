/**
 * The worker's Prometheus metrics. Names come from {@link WorkerMetrics} in the shared contract, which the
 * monitoring constructs build their alerts from; label values of the outcome counter from {@link JobOutcome}.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { JobOutcome, WorkerMetrics } from './contract';

export type JobOutcomeName = (typeof JobOutcome)[keyof typeof JobOutcome];

/** Seconds, from a fast single-pass call on a GPU (a few ms) to a long generation job (minutes). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Powers of two up to `maxBatchSize`, and `maxBatchSize` itself, so a full batch is its own bucket. */
export function batchSizeBuckets(maxBatchSize: number): number[] {
  const buckets = new Set<number>();
  for (let b = 1; b < maxBatchSize; b *= 2) buckets.add(b);
  buckets.add(maxBatchSize);
  return [...buckets].sort((a, b) => a - b);
}

/** The metrics of one worker process, in their own registry (tests create several side by side). */
export class WorkerMetricsRegistry {
  readonly registry = new Registry();

  readonly jobsTotal: Counter<'outcome'>;
  readonly jobDuration: Histogram;
  readonly inferenceDuration: Histogram;
  readonly batchSize: Histogram;
  readonly jobsInFlight: Gauge;
  readonly brokerReconnects: Counter;
  readonly brokerConnected: Gauge;
  readonly executionProvider: Gauge<'provider'>;

  constructor(options: { maxBatchSize: number; defaultMetrics?: boolean }) {
    const registers = [this.registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });

    this.jobsTotal = new Counter({
      name: WorkerMetrics.jobsTotal,
      help: 'Deliveries finished by the worker, by outcome.',
      labelNames: ['outcome'],
      registers,
    });
    // Every outcome exists from the start, so rate() and absence-based alerts see 0 rather than no series.
    for (const outcome of Object.values(JobOutcome)) this.jobsTotal.inc({ outcome }, 0);

    this.jobDuration = new Histogram({
      name: WorkerMetrics.jobDurationSeconds,
      help: 'Time from receiving a job to acknowledging or rejecting it, in seconds.',
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.inferenceDuration = new Histogram({
      name: WorkerMetrics.inferenceDurationSeconds,
      help: 'Duration of one model call (a whole batch), in seconds.',
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.batchSize = new Histogram({
      name: WorkerMetrics.batchSize,
      help: 'Jobs in each model call.',
      buckets: batchSizeBuckets(options.maxBatchSize),
      registers,
    });
    this.jobsInFlight = new Gauge({
      name: WorkerMetrics.jobsInFlight,
      help: 'Jobs received and not yet acknowledged or rejected.',
      registers,
    });
    this.brokerReconnects = new Counter({
      name: WorkerMetrics.brokerReconnectsTotal,
      help: 'Broker reconnections after a lost connection or channel.',
      registers,
    });
    this.brokerConnected = new Gauge({
      name: WorkerMetrics.brokerConnected,
      help: '1 while the broker connection and channel are open, else 0.',
      registers,
    });
    this.executionProvider = new Gauge({
      name: WorkerMetrics.executionProviderInfo,
      help: 'Always 1; the provider label names the onnxruntime execution provider in use.',
      labelNames: ['provider'],
      registers,
    });
  }

  /** Records one finished delivery. */
  jobFinished(outcome: JobOutcomeName, seconds: number): void {
    this.jobsTotal.inc({ outcome });
    this.jobDuration.observe(seconds);
  }

  /** Records one model call; hand this to the inference engine's observer hook. */
  modelCall(batchSize: number, seconds: number): void {
    this.batchSize.observe(batchSize);
    this.inferenceDuration.observe(seconds);
  }

  setProvider(provider: string): void {
    this.executionProvider.reset();
    this.executionProvider.set({ provider }, 1);
  }
}

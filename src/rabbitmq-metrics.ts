/**
 * How RabbitMQ exposes per-queue depth to Prometheus, in one place for the scrape objects, the
 * adapter rules, the KEDA Prometheus trigger and the alerts.
 *
 * RabbitMQ's built-in `rabbitmq_prometheus` plugin (port 15692) aggregates its default `/metrics`
 * endpoint over all queues, so it has no per-queue depth. The `/metrics/detailed` endpoint returns
 * per-queue series for the metric families asked for in its `family` query parameter (RabbitMQ 3.10
 * and later), at a fraction of the cost of `/metrics/per-object`. The `queue_coarse_metrics` family
 * holds the depth series used here, labelled `vhost` and `queue`.
 */

/** The plugin that serves the metrics; it must be enabled on the broker (`rabbitmq-plugins enable rabbitmq_prometheus`). */
export const RABBITMQ_PROMETHEUS_PLUGIN = 'rabbitmq_prometheus';

/** The plugin's default listener port. */
export const RABBITMQ_PROMETHEUS_PORT = 15692;

/** Path of the per-object endpoint that honours `family` and `vhost` parameters. */
export const RABBITMQ_DETAILED_METRICS_PATH = '/metrics/detailed';

/** Metric families requested from the detailed endpoint: queue depth and consumer count per queue. */
export const RABBITMQ_DETAILED_FAMILIES = ['queue_coarse_metrics', 'queue_consumer_count'] as const;

/** Per-queue series of the detailed endpoint, labelled `vhost` and `queue`. */
export const RabbitmqQueueSeries = {
  /** Messages waiting to be delivered to a consumer. */
  messagesReady: 'rabbitmq_detailed_queue_messages_ready',
  /** Messages delivered to a consumer and not yet acknowledged: jobs being worked on (or prefetched). */
  messagesUnacked: 'rabbitmq_detailed_queue_messages_unacked',
  /** Ready plus unacknowledged: all jobs present in the queue. */
  messages: 'rabbitmq_detailed_queue_messages',
  /** Consumers attached to the queue (family `queue_consumer_count`). */
  consumers: 'rabbitmq_detailed_queue_consumers',
} as const;

/** Labels of the per-queue series. */
export const RabbitmqQueueLabels = { vhost: 'vhost', queue: 'queue' } as const;

/**
 * What counts as backlog when scaling on a queue.
 *
 * - `READY_AND_UNACKED` (default): jobs waiting plus jobs being worked on. Workers that have taken a job
 *   keep counting until they ack it, so the desired replica count does not fall the moment the queue is
 *   emptied into prefetch buffers, and the autoscaler does not remove pods that still hold work.
 * - `READY`: only jobs no worker has taken yet. Reacts faster to a drained queue, and is right when jobs
 *   are short and prefetch is small; with long jobs it scales down while workers are still busy.
 */
export enum BacklogMeasure {
  READY_AND_UNACKED = 'ready-and-unacked',
  READY = 'ready',
}

/** The series that measures a backlog. */
export function backlogSeries(measure: BacklogMeasure): string {
  return measure === BacklogMeasure.READY ? RabbitmqQueueSeries.messagesReady : RabbitmqQueueSeries.messages;
}

/** A PromQL string literal: the value in double quotes, with backslashes and quotes escaped. */
export function promqlString(value: string): string {
  return JSON.stringify(value);
}

/**
 * PromQL for the backlog of one queue, as one series labelled `vhost` and `queue`.
 *
 * `max by` rather than `sum by`: in a RabbitMQ cluster each queue is reported once, by the node that
 * hosts its leader, but a series from a previous leader can linger for a scrape after a leader change.
 */
export function queueBacklogQuery(queue: string, vhost: string, measure = BacklogMeasure.READY_AND_UNACKED): string {
  const selector = `${RabbitmqQueueLabels.vhost}=${promqlString(vhost)},${RabbitmqQueueLabels.queue}=${promqlString(queue)}`;
  return `max by (${RabbitmqQueueLabels.vhost}, ${RabbitmqQueueLabels.queue}) (${backlogSeries(measure)}{${selector}})`;
}

/**
 * What KEDA's scalers read, for the triggers of a synthesized ScaledObject, from the real servers.
 *
 * Facts carried over from KEDA (pkg/scalers/prometheus_scaler.go, rabbitmq_scaler.go; keda.sh scaler docs):
 * - prometheus: an instant query of `metadata.query`; an empty result is 0 when `ignoreNullValues` is true
 *   (the default) and an error otherwise; more than one element is an error; else the first element's value.
 * - rabbitmq over `http`: GET `<host>/api/queues/<vhost>/<queue>` on the management API, where `vhostName`
 *   overrides the vhost of the host URL; the queue length is `messages` (ready + unacknowledged), or
 *   `messages_ready` with `excludeUnacknowledged: "true"`. Over `amqp`: a passive queue declare, whose message
 *   count is the ready messages.
 *
 * Not implemented, named: `useRegex`/`operation` over several queues, `MessageRate`, TLS and the `auto` protocol
 * detection (the suite's triggers state their protocol).
 */
import { PrometheusServer } from './prometheus';

/** One trigger of a ScaledObject manifest. */
export interface KedaTrigger {
  readonly type: string;
  readonly name?: string;
  readonly metricType?: string;
  readonly metadata: Record<string, string>;
}

/** The value KEDA's prometheus scaler reads for a trigger, from this Prometheus instead of `serverAddress`. */
export async function kedaPrometheusValue(prometheus: PrometheusServer, trigger: KedaTrigger): Promise<number> {
  const samples = await prometheus.query(trigger.metadata.query);
  const ignoreNull = (trigger.metadata.ignoreNullValues ?? 'true') === 'true';
  if (samples.length === 0) {
    if (ignoreNull) return 0;
    throw new Error(`prometheus trigger ${trigger.name}: query returned no result and ignoreNullValues is false`);
  }
  if (samples.length > 1) {
    throw new Error(`prometheus trigger ${trigger.name}: query returned ${samples.length} elements; KEDA refuses more than one`);
  }
  return samples[0].value;
}

/**
 * The queue length KEDA's rabbitmq scaler reads over the management API. `host` is what the trigger's Secret
 * would hold, e.g. `http://guest:guest@127.0.0.1:15672/`.
 */
export async function kedaRabbitmqHttpQueueLength(host: string, trigger: KedaTrigger): Promise<number> {
  const { metadata } = trigger;
  if (metadata.protocol !== 'http') throw new Error(`rabbitmq trigger ${trigger.name} uses protocol ${metadata.protocol}; this reads http only`);
  if ((metadata.mode ?? 'QueueLength') !== 'QueueLength') throw new Error(`rabbitmq trigger ${trigger.name}: mode ${metadata.mode} is not read here`);
  const url = new URL(host);
  const vhost = metadata.vhostName ?? (decodeURIComponent(url.pathname.replace(/^\//, '')) || '/');
  const credentials = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
  const endpoint = `${url.protocol}//${url.host}/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(metadata.queueName)}`;
  const response = await fetch(endpoint, { headers: { authorization: `Basic ${credentials}` } }).catch((error: Error) => {
    throw new Error(`RabbitMQ management API not reachable at ${url.host} (${error.message}): enable rabbitmq_management (.ci/run does)`);
  });
  if (!response.ok) throw new Error(`GET ${endpoint}: ${response.status} ${await response.text()}`);
  const queue = (await response.json()) as { messages?: number; messages_ready?: number };
  const value = metadata.excludeUnacknowledged === 'true' ? queue.messages_ready : queue.messages;
  if (value === undefined) throw new Error(`GET ${endpoint}: no message counts yet (the management plugin publishes them every few seconds)`);
  return value;
}

/**
 * The broker side of the benchmark: a private copy of the worker's topology per run, filling its job queue,
 * and the broker limit — a bare consumer that only acknowledges.
 */
import { once } from 'events';
import { randomUUID } from 'crypto';
import { performance } from 'perf_hooks';
import * as amqp from 'amqplib';
import { WORKER_DEFAULTS } from '../src/contract';
import { assertTopology, TopologyNames } from '../src/topology';
import { JobMessage, PUBLISHED_AT_HEADER } from './models';
import { CoresUsed, CpuTimeline, findBrokerPid } from './proc';

/** Where the local RabbitMQ listens; override with RABBITMQ_URL. */
export const BROKER_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/**
 * Socket options of every connection the harness opens. TCP_NODELAY matches the worker's own connection, so that
 * the bare consumer's acks and the harness's publishes are not held back by Nagle's algorithm any more than the
 * worker's are. `BENCH_NODELAY=0` turns it off.
 */
export const SOCKET_OPTIONS = { noDelay: process.env.BENCH_NODELAY !== '0' };

/** Opens a connection to the local broker with the harness's socket options. */
export function connectBroker(): Promise<amqp.ChannelModel> {
  return amqp.connect(BROKER_URL, SOCKET_OPTIONS);
}

/** Names of one run's broker objects, unique so that runs (and other users of the broker) never meet. */
export function uniqueTopology(label: string): TopologyNames {
  const base = `bench.${label}.${randomUUID().slice(0, 8)}`;
  return {
    jobQueue: `${base}.jobs`,
    resultsExchange: `${base}.results`,
    deadLetterExchange: `${base}.dlx`,
    deadLetterQueue: `${base}.dead-letter`,
    deliveryLimit: WORKER_DEFAULTS.deliveryLimit,
  };
}

/** Declares the topology exactly as the worker does (same queue type and arguments). */
export async function declareTopology(names: TopologyNames): Promise<void> {
  await withChannel((channel) => assertTopology(channel, names));
}

/** Deletes everything {@link declareTopology} created, plus `extraQueues`. Never throws. */
export async function deleteTopology(names: TopologyNames, extraQueues: readonly string[] = []): Promise<void> {
  await withChannel(async (channel) => {
    for (const queue of [names.jobQueue, names.deadLetterQueue, ...extraQueues]) await channel.deleteQueue(queue);
    for (const exchange of [names.resultsExchange, names.deadLetterExchange]) await channel.deleteExchange(exchange);
  }).catch((err: Error) => console.error(`warning: could not delete the benchmark's broker objects: ${err.message}`));
}

/**
 * Publishes `count` persistent jobs to `queue` and waits until the broker has confirmed every one, so the
 * queue holds them all before a consumer starts. Returns the seconds it took.
 */
export async function fillQueue(queue: string, count: number, makeJob: (i: number) => JobMessage): Promise<number> {
  const started = performance.now();
  const connection = await connectBroker();
  try {
    const channel = await connection.createConfirmChannel();
    for (let i = 0; i < count; i++) {
      if (!publish(channel, queue, makeJob(i))) await once(channel, 'drain');
      // Bounded outstanding confirms keep the broker's and our buffers small for large messages.
      if (i % 256 === 255) await channel.waitForConfirms();
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
  return (performance.now() - started) / 1000;
}

/** Publishes one job on a confirm channel, stamped with its publish time. Returns false when amqplib's buffer is full. */
export function publish(channel: amqp.ConfirmChannel, queue: string, job: JobMessage, onConfirm?: (err: unknown) => void): boolean {
  const headers = { ...job.options.headers, [PUBLISHED_AT_HEADER]: Date.now() };
  return channel.publish('', queue, job.content, { ...job.options, headers }, onConfirm);
}

/** What the bare consumer measured. */
export interface DrainResult {
  readonly messages: number;
  readonly seconds: number;
  /** Messages per second between the first and the last delivery. */
  readonly perSecond: number;
  /** CPU used by the broker and this harness while draining, in cores. */
  readonly cores: CoresUsed;
}

/**
 * The broker limit: a consumer that does nothing but acknowledge, with the worker's prefetch and manual acks,
 * draining `count` messages that are already in `queue`. Timed from the first delivery to the last.
 */
export async function drainWithBareConsumer(queue: string, count: number, prefetch: number): Promise<DrainResult> {
  const connection = await connectBroker();
  const cpu = new CpuTimeline({ broker: findBrokerPid() });
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(prefetch);
    let received = 0;
    let first = 0;
    let last = 0;
    const done = new Promise<void>((resolveDone, reject) => {
      channel.on('close', () => reject(new Error('channel closed while draining')));
      void channel
        .consume(queue, (message) => {
          if (message === null) return reject(new Error(`consumer of ${queue} was cancelled by the broker`));
          last = performance.now();
          if (received === 0) first = last;
          channel.ack(message);
          if (++received === count) resolveDone();
        }, { noAck: false })
        .catch(reject);
    });
    await done;
    cpu.sample();
    const seconds = (last - first) / 1000;
    return { messages: received, seconds, perSecond: seconds > 0 ? (received - 1) / seconds : 0, cores: cpu.coresBetween(first, last) };
  } finally {
    cpu.stop();
    await connection.close().catch(() => undefined);
  }
}

async function withChannel<T>(use: (channel: amqp.Channel) => Promise<T>): Promise<T> {
  const connection = await connectBroker();
  try {
    const channel = await connection.createChannel();
    return await use(channel);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

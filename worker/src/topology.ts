/**
 * The broker objects the worker relies on, declared at every (re)connect. Declaring is idempotent: RabbitMQ
 * accepts a declaration that matches what exists and refuses one that differs (406 PRECONDITION_FAILED), which
 * {@link assertTopology} turns into an error saying which object differs and what to do about it.
 */
import type { Channel } from 'amqplib';
import { WorkerEnv } from './contract';

/** Names of the topology, from the worker configuration. */
export interface TopologyNames {
  readonly jobQueue: string;
  readonly resultsExchange: string;
  readonly deadLetterExchange: string;
  readonly deadLetterQueue: string;
  readonly deliveryLimit: number;
}

/** The exchange type of the results exchange; routing keys are the result's message type. */
export const RESULTS_EXCHANGE_TYPE = 'topic';

/** Arguments of the job queue. Any other declaration of the same queue must use exactly these. */
export function jobQueueArguments(names: TopologyNames): Record<string, unknown> {
  return {
    // Replicated and durable: a broker node restart loses no job.
    'x-queue-type': 'quorum',
    // The broker's own backstop against a job that crashes every worker that takes it: after this many
    // redeliveries it dead-letters the message even if no worker lives long enough to do so. Shortcoming: such a
    // job gets no AIGenerationJobFailed result, since no worker survived to publish one.
    'x-delivery-limit': names.deliveryLimit,
    'x-dead-letter-exchange': names.deadLetterExchange,
    // At-least-once dead-lettering keeps a rejected job until the dead-letter queue has confirmed it,
    // instead of dropping it if that queue is unavailable at the moment. RabbitMQ requires reject-publish
    // overflow for this strategy.
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  };
}

/** Raised when an existing broker object was declared differently by someone else. */
export class TopologyMismatchError extends Error {
  constructor(
    readonly objectDescription: string,
    brokerMessage: string,
  ) {
    super(
      `${objectDescription} already exists with different settings (${brokerMessage}). The worker will not change ` +
        'or delete it: delete the object so the worker can declare it, or make the other declaration match ' +
        `the worker's (queue arguments: x-queue-type=quorum, x-delivery-limit from ${WorkerEnv.DELIVERY_LIMIT}, ` +
        'x-dead-letter-exchange, x-dead-letter-strategy=at-least-once, x-overflow=reject-publish)',
    );
    this.name = 'TopologyMismatchError';
  }
}

/**
 * Declares the dead-letter exchange and queue, the job queue and the results exchange. A refusal closes the
 * channel, so the error names the first object that differs.
 */
export async function assertTopology(channel: Channel, names: TopologyNames): Promise<void> {
  // Fanout: every dead-lettered job lands in the dead-letter queue, whatever routing key it was published with.
  await declare(`exchange '${names.deadLetterExchange}' (${WorkerEnv.DEAD_LETTER_EXCHANGE})`, () =>
    channel.assertExchange(names.deadLetterExchange, 'fanout', { durable: true }),
  );
  await declare(`queue '${names.deadLetterQueue}' (${WorkerEnv.DEAD_LETTER_QUEUE})`, () =>
    channel.assertQueue(names.deadLetterQueue, { durable: true, arguments: { 'x-queue-type': 'quorum' } }),
  );
  await channel.bindQueue(names.deadLetterQueue, names.deadLetterExchange, '');

  await declare(`queue '${names.jobQueue}' (${WorkerEnv.JOB_QUEUE})`, () =>
    channel.assertQueue(names.jobQueue, { durable: true, arguments: jobQueueArguments(names) }),
  );
  await declare(`exchange '${names.resultsExchange}' (${WorkerEnv.RESULTS_EXCHANGE})`, () =>
    channel.assertExchange(names.resultsExchange, RESULTS_EXCHANGE_TYPE, { durable: true }),
  );
}

async function declare(description: string, action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (err) {
    if (isPreconditionFailed(err)) throw new TopologyMismatchError(description, (err as Error).message);
    throw err;
  }
}

/** AMQP reply code 406: the broker refused a declaration that differs from what exists. */
export function isPreconditionFailed(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 406;
}

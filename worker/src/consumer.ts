/**
 * The consumer loop: takes jobs from the job queue, runs them, publishes their results and only then
 * acknowledges them.
 *
 * The promise this file keeps is that a job is never lost and never stuck:
 * - a job is acked only after its result is confirmed by the broker (confirm channel), so a crash at any point
 *   means redelivery, never loss; the price is that a job may be answered twice (`jobId` is the idempotency key);
 * - a job that can never succeed (a {@link JobRejection}) gets a failed result and is dead-lettered at once;
 * - a job whose inference fails is requeued until its delivery count reaches the delivery limit, then gets a
 *   failed result and is dead-lettered;
 * - a delivery tag belongs to its channel: after the channel or connection is lost, jobs received on it are
 *   never acked on its successor. The broker has already put them back in the queue.
 */
import { randomUUID } from 'node:crypto';
import * as amqp from 'amqplib';
import type { ConfirmChannel, ConsumeMessage, MessageProperties, Options } from 'amqplib';
import { redactUrl, WorkerConfig } from './config';
import { JobOutcome, MessageType, WorkerEnv } from './contract';
import { JobRejection, JobWithdrawn } from './errors';
import { jobLogger, Logger } from './logger';
import { JobOutcomeName, WorkerMetricsRegistry } from './metrics';
import { assertTopology, TopologyMismatchError } from './topology';

/** What the consumer needs from the inference side; main.ts adapts messages.ts and inference.ts to it. */
export interface JobHandler<Job> {
  /** Turns a delivery into a validated job, or throws a {@link JobRejection} (with the jobId when it was readable). */
  parse(content: Buffer, properties: MessageProperties): Job | Promise<Job>;
  /** The job's id: the idempotency key, and the key of every log line about it. */
  jobId(job: Job): string;
  /** Runs the job and resolves with the body of its `AIGenerationJobCompleted` result. */
  run(job: Job, context: JobContext): Promise<object>;
  /** The body of an `AIGenerationJobFailed` result for `error`; `jobId` is undefined when none could be read. */
  failed(jobId: string | undefined, error: unknown, context: JobContext, options?: { code?: string; retryable?: boolean }): object;
  /**
   * At shutdown: makes every job not yet started reject with {@link JobWithdrawn} (and every later run() too), so
   * the consumer can hand it back at once, except the jobs whose id `keep` accepts: those still run. Returns how
   * many were withdrawn. Without it, every received job runs.
   */
  withdrawWaiting?(keep: (jobId: string) => boolean): number;
}

/** Facts about one delivery that results report. */
export interface JobContext {
  readonly workerId: string;
  /** When the worker received the message (ms since the epoch). */
  readonly receivedAt: number;
  /** Broker's count of earlier deliveries of this message (quorum queue `x-delivery-count`). */
  readonly deliveryCount: number;
}

/** One connection's channel and consumer. Replaced wholesale on reconnect. */
interface Session {
  readonly channel: ConfirmChannel;
  consumerTag?: string;
  /** False from the moment the channel closes; acks are never sent on a closed session. */
  open: boolean;
}

/** A message received and not yet settled. */
interface Delivery {
  readonly session: Session;
  readonly message: ConsumeMessage;
  readonly context: JobContext;
  jobId?: string;
}

interface ReconnectTuning {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Retries before the first connection succeeds; after it, the worker retries for as long as it runs. */
  readonly initialMaxRetries: number;
}

/**
 * Exponential backoff from 200 ms to 15 s with ±50 % jitter, so that a fleet of replicas that lost the broker
 * together does not reconnect in lockstep. A worker that never reached the broker gives up after about a minute
 * and exits non-zero, so a wrong URL or credential shows up as a crash-looping pod, not a silent one.
 */
export const DEFAULT_RECONNECT: ReconnectTuning = { initialDelayMs: 200, maxDelayMs: 15_000, initialMaxRetries: 10 };

/**
 * How a delivery is settled. Failures use basic.reject, which every RabbitMQ version counts in the quorum queue's
 * delivery count (from 4.3, basic.nack with requeue no longer does, so a job that always fails would never reach
 * the delivery limit). `release` uses basic.nack: back to the queue, not counted as a failure where the broker
 * tells the two apart; it is for jobs handed back unstarted at shutdown.
 */
type SettleAction = 'ack' | 'dead-letter' | 'requeue' | 'release';

/**
 * How often a result the broker refused (basic.nack, e.g. a results queue full with `x-overflow: reject-publish`)
 * is published again before the delivery is given up. The job stays unacked meanwhile and the same result is sent
 * each time, so a computed result is never computed again within one delivery. Refusals are usually a full or
 * limited queue that drains within seconds; after the last try the delivery limit takes over (see settle()).
 */
export const RESULT_PUBLISH_RETRY = { attempts: 5, initialDelayMs: 200, maxDelayMs: 5_000 } as const;

/** How long a clean close waits for the broker to confirm the channel is closed. */
const CHANNEL_CLOSE_TIMEOUT_MS = 2_000;

export interface JobConsumerOptions<Job> {
  readonly config: WorkerConfig;
  readonly logger: Logger;
  readonly metrics: WorkerMetricsRegistry;
  readonly handler: JobHandler<Job>;
  readonly reconnect?: ReconnectTuning;
  /** Called once when the consumer cannot go on (topology mismatch, broker unreachable for good). */
  readonly onFatal?: (err: Error) => void;
}

export class JobConsumer<Job> {
  private connection?: amqp.RecoveringChannelModel;
  private session?: Session;
  private readonly inFlight = new Set<Delivery>();
  private idleWaiters: Array<() => void> = [];
  private stopping = false;
  private connectedOnce = false;
  private fatal?: Error;

  constructor(private readonly options: JobConsumerOptions<Job>) {}

  /** True while a channel is open and consuming, and the worker has not begun to shut down. */
  get consuming(): boolean {
    return !this.stopping && this.session?.open === true && this.session.consumerTag !== undefined;
  }

  /** Jobs received and not yet settled. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Connects (retrying), declares the topology and starts consuming. Rejects if the broker cannot be used. */
  async start(): Promise<void> {
    const { config, logger } = this.options;
    const tuning = this.options.reconnect ?? DEFAULT_RECONNECT;

    const connection = await amqp.connect(config.rabbitmqUrl, {
      // Names the connection in the management UI and `rabbitmqctl list_connections`.
      clientProperties: { connection_name: `ai-worker ${config.workerId}` },
      // TCP_NODELAY: acks, confirms and the tail frame of a result are small writes; with Nagle's algorithm on
      // (amqplib's default) they can wait for the peer's delayed ACK, which held PP-OCRv4 detection jobs ~20 ms
      // each between result and ack (see docs/performance.md).
      noDelay: true,
      recovery: {
        initialDelay: tuning.initialDelayMs,
        maxDelay: tuning.maxDelayMs,
        factor: 2,
        jitter: 0.5,
        maxRetries: Infinity,
        initialMaxRetries: tuning.initialMaxRetries,
        waitForConnect: false,
        setup: (model: amqp.ChannelModel) => this.openSession(model),
      },
    });
    this.connection = connection;

    connection.on('connect', () => {
      this.options.metrics.brokerConnected.set(1);
      if (this.connectedOnce) {
        this.options.metrics.brokerReconnects.inc();
        logger.info({ queue: config.jobQueue }, 'reconnected to the broker; consuming again');
      } else {
        logger.info({ url: redactUrl(config.rabbitmqUrl), queue: config.jobQueue, prefetch: config.prefetch }, 'consuming');
      }
      this.connectedOnce = true;
    });
    connection.on('disconnect', (err: Error) => {
      this.options.metrics.brokerConnected.set(0);
      if (!this.stopping) logger.warn({ err: err.message }, 'lost the broker connection; reconnecting');
    });
    connection.on('connect-failed', (err: Error) => {
      if (err instanceof TopologyMismatchError) this.die(err);
    });
    connection.on('reconnect-scheduled', ({ attempt, delay, error }: { attempt: number; delay: number; error: Error }) => {
      logger.warn({ attempt, delayMs: delay, err: error.message }, 'broker connection attempt failed; retrying');
    });
    connection.on('reconnect-failed', (err: Error) => {
      this.die(new Error(`cannot connect to the broker at ${redactUrl(config.rabbitmqUrl)}: ${err.message}`, { cause: err }));
    });
    // A broker under a memory or disk alarm stops accepting publishes: results wait, and so do their acks.
    connection.on('blocked', (reason: string) => {
      logger.warn({ reason }, 'the broker blocked publishing; results wait until it unblocks');
    });
    connection.on('unblocked', () => logger.info('the broker unblocked publishing'));
    // Errors also arrive as close/disconnect; a listener keeps EventEmitter from throwing them.
    connection.on('error', (err: Error) => logger.debug({ err: err.message }, 'broker connection error'));

    try {
      await connection.waitForConnect();
    } catch (err) {
      throw this.fatal ?? err;
    }
  }

  /**
   * Stops taking jobs at once (basic.cancel), hands back the jobs that have not started on the model, waits up to
   * `timeoutMs` for the started ones to be settled, then closes the connection. Resolves with the ids of jobs left
   * unfinished; the broker redelivers them.
   */
  async stop(timeoutMs: number): Promise<{ unfinished: string[] }> {
    this.stopping = true;
    const deadline = Date.now() + timeoutMs;
    const session = this.session;

    // Prefetched jobs still waiting for the model go back to the queue now (basic.nack, see release()), for
    // another worker to start at once, rather than running here one after another past the deadline. Jobs on
    // their last allowed delivery still run: a hand-back counts as a delivery on RabbitMQ before 4.3, so it would
    // push them past the delivery limit and the broker would dead-letter them without a result.
    const onLastAttempt = (jobId: string) => [...this.inFlight].some((d) => d.jobId === jobId && this.isLastAttempt(d));
    const withdrawn = this.options.handler.withdrawWaiting?.(onLastAttempt) ?? 0;
    if (withdrawn > 0) this.options.logger.info({ withdrawn }, 'handing back jobs that had not started');

    if (session?.open && session.consumerTag !== undefined) {
      // Bounded: on a half-open TCP connection the broker's reply might only come after a heartbeat timeout.
      const cancelled = session.channel.cancel(session.consumerTag).then(
        () => this.options.logger.debug({ inFlight: this.inFlight.size }, 'consumer cancelled; no new jobs will arrive'),
        (err: Error) => this.options.logger.debug({ err: err.message }, 'cancel failed; the channel is already closed'),
      );
      await Promise.race([cancelled, sleep(timeoutMs)]);
    }

    const drained = await this.waitForIdle(Math.max(0, deadline - Date.now()));
    const unfinished = drained ? [] : [...this.inFlight].map((d) => d.jobId ?? d.message.properties.messageId ?? '(unknown)');
    await this.close();
    return { unfinished };
  }

  /** Closes the connection at once. Unacked jobs go back to the queue. */
  async close(): Promise<void> {
    this.stopping = true;
    // amqplib queues each channel's frames separately, so a connection.close sent right after the last acks can
    // reach the broker before them, and the broker would requeue jobs already answered. Closing the channel first
    // goes through the channel's own queue, behind the acks, and its reply proves they arrived.
    const session = this.session;
    if (session?.open) {
      await Promise.race([session.channel.close().catch(() => undefined), sleep(CHANNEL_CLOSE_TIMEOUT_MS)]);
    }
    await this.connection?.close().catch(() => undefined);
    this.options.metrics.brokerConnected.set(0);
  }

  /** Runs on every (re)connect, before the recovering connection reports itself connected. */
  private async openSession(model: amqp.ChannelModel): Promise<void> {
    const { config, logger } = this.options;
    const channel = await model.createConfirmChannel();
    const session: Session = { channel, open: true };

    channel.on('error', (err: Error) => logger.warn({ err: err.message }, 'broker channel error'));
    channel.on('close', () => {
      session.open = false;
      this.options.metrics.brokerConnected.set(0);
      // A channel can die alone (e.g. the results exchange was deleted under us). Closing the connection hands
      // the problem to connection recovery, which opens a fresh channel and declares the topology again.
      if (!this.stopping && this.session === session) model.close().catch(() => undefined);
    });

    await assertTopology(channel, config);
    // Per-consumer limit: the broker pushes at most this many unacked jobs to this worker.
    await channel.prefetch(config.prefetch);
    this.session = session;
    if (this.stopping) return;

    const { consumerTag } = await channel.consume(config.jobQueue, (msg) => this.onDelivery(session, msg), { noAck: false });
    session.consumerTag = consumerTag;
    logger.debug({ consumerTag }, 'consumer registered');
  }

  private onDelivery(session: Session, message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled our consumer (the queue was deleted or its leader moved away). Start over.
      this.options.logger.warn({ queue: this.options.config.jobQueue }, 'the broker cancelled the consumer; reconnecting');
      if (!this.stopping) session.channel.close().catch(() => undefined);
      return;
    }

    const delivery: Delivery = {
      session,
      message,
      context: {
        workerId: this.options.config.workerId,
        receivedAt: Date.now(),
        deliveryCount: deliveryCount(message),
      },
    };
    this.inFlight.add(delivery);
    this.options.metrics.jobsInFlight.inc();

    this.process(delivery)
      .catch((err) => this.options.logger.error({ err, jobId: delivery.jobId }, 'unexpected error while settling a job'))
      .finally(() => {
        this.inFlight.delete(delivery);
        this.options.metrics.jobsInFlight.dec();
        if (this.inFlight.size === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
      });
  }

  private async process(delivery: Delivery): Promise<void> {
    const { handler, logger } = this.options;
    const { message, context } = delivery;

    let job: Job;
    try {
      job = await handler.parse(message.content, message.properties);
    } catch (err) {
      await this.reject(delivery, asRejection(err, message));
      return;
    }
    delivery.jobId = handler.jobId(job);
    const log = jobLogger(logger, delivery.jobId, { deliveryCount: context.deliveryCount });
    log.debug({ bytes: message.content.length }, 'job received');

    // A job that arrives while the worker shuts down was never started: hand it back like the waiting ones
    // (unless it is on its last allowed delivery, see stop()).
    if (this.stopping && !this.isLastAttempt(delivery)) {
      await this.release(delivery, log);
      return;
    }

    let completed: object;
    try {
      completed = await handler.run(job, context);
    } catch (err) {
      if (err instanceof JobWithdrawn) await this.release(delivery, log);
      else if (err instanceof JobRejection) await this.reject(delivery, err.withJobId(delivery.jobId));
      else await this.retryOrGiveUp(delivery, err as Error, log);
      return;
    }

    if (await this.settle(delivery, log, { type: MessageType.jobCompleted, body: completed }, 'ack', JobOutcome.completed)) {
      log.debug({ seconds: secondsSince(context.receivedAt) }, 'job completed');
    }
  }

  /** Whether the broker dead-letters this job if it comes back once more (quorum queue delivery limit). */
  private isLastAttempt(delivery: Delivery): boolean {
    return delivery.context.deliveryCount >= this.options.config.deliveryLimit;
  }

  /** Bad input: failed result, then dead-letter. The job can never succeed, so it is not requeued. */
  private async reject(delivery: Delivery, rejection: JobRejection): Promise<void> {
    delivery.jobId = rejection.jobId ?? delivery.jobId;
    const { properties, fields } = delivery.message;
    // A message too broken to name its job is still traceable by its delivery.
    const log = this.options.logger.child({
      jobId: delivery.jobId ?? null,
      deliveryCount: delivery.context.deliveryCount,
      ...(delivery.jobId === undefined ? { messageId: properties.messageId, deliveryTag: fields.deliveryTag } : {}),
    });
    const body = this.options.handler.failed(delivery.jobId, rejection, delivery.context, { retryable: false });

    if (await this.settle(delivery, log, { type: MessageType.jobFailed, body }, 'dead-letter', JobOutcome.rejected)) {
      log.warn({ code: rejection.code, reason: rejection.reason }, 'job rejected and dead-lettered');
    }
  }

  /**
   * Shutdown, job not started: back to the queue with basic.nack, which RabbitMQ >= 4.3 does not count as a failed
   * attempt (older versions count every return). Not a finished job, so no outcome is counted.
   */
  private async release(delivery: Delivery, log: Logger): Promise<void> {
    if (await this.settle(delivery, log, undefined, 'release', undefined)) log.info('job handed back unstarted for another worker');
  }

  /** Inference failed: back to the queue while deliveries remain, then a failed result and dead-letter. */
  private async retryOrGiveUp(delivery: Delivery, err: Error, log: Logger): Promise<void> {
    const { config, handler } = this.options;
    const attempts = delivery.context.deliveryCount + 1;

    // The broker dead-letters on its own once the count passes the limit; on the last delivery it allows, the
    // worker does it instead, so that the producer also gets a failed result.
    if (!this.isLastAttempt(delivery)) {
      if (await this.settle(delivery, log, undefined, 'requeue', JobOutcome.retried)) {
        log.warn({ err, attempts }, 'inference failed; job requeued for another attempt');
      }
      return;
    }

    const reason = new Error(
      `inference failed on all ${attempts} deliveries (${WorkerEnv.DELIVERY_LIMIT}=${config.deliveryLimit}); ` +
        `last error: ${err.message}`,
    );
    // Retryable: nothing says the job is wrong, so a producer may send it again once the cause is fixed.
    const body = handler.failed(delivery.jobId, reason, delivery.context, { code: 'delivery_limit', retryable: true });
    if (await this.settle(delivery, log, { type: MessageType.jobFailed, body }, 'dead-letter', JobOutcome.exhausted)) {
      log.error({ err, attempts }, 'inference kept failing; job dead-lettered');
    }
  }

  /**
   * Publishes the result (when there is one) and waits for the broker's confirm, then settles the delivery on the
   * channel it came from. Returns false when the job was left for the broker to redeliver.
   */
  private async settle(
    delivery: Delivery,
    log: Logger,
    result: { type: string; body: object } | undefined,
    action: SettleAction,
    outcome: JobOutcomeName | undefined,
  ): Promise<boolean> {
    const { session, message } = delivery;

    if (result !== undefined) {
      const published = await this.publishWithRetry(delivery, log, result);
      if (published === 'channel-closed') {
        log.warn('result not confirmed before the channel closed; the broker will redeliver the job');
        return false;
      }
      if (published === 'refused') {
        // The result cannot be delivered. Holding the job forever would stall this worker's prefetch, and
        // basic.nack would loop forever on RabbitMQ >= 4.3 (not counted), re-running the model each time. So the
        // delivery is rejected like a failed attempt: the delivery limit bounds it, and on the last allowed
        // delivery the message is dead-lettered. A bad job's message is dead-lettered as it would have been.
        const lastDelivery = this.isLastAttempt(delivery);
        if (action !== 'dead-letter') {
          action = lastDelivery ? 'dead-letter' : 'requeue';
          outcome = lastDelivery ? JobOutcome.exhausted : JobOutcome.retried;
        }
        log.error(
          { attempts: RESULT_PUBLISH_RETRY.attempts, deliveryCount: delivery.context.deliveryCount, action },
          lastDelivery || action === 'dead-letter'
            ? 'the broker kept refusing the result; job dead-lettered without a result'
            : 'the broker kept refusing the result; job requeued, counted toward the delivery limit',
        );
      }
    }

    if (!session.open || this.session !== session) {
      log.warn('channel closed before the job was settled; the broker will redeliver it');
      return false;
    }
    try {
      if (action === 'ack') session.channel.ack(message);
      else if (action === 'release') session.channel.nack(message, false, true);
      else session.channel.reject(message, action === 'requeue');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not settle the job; the broker will redeliver it');
      return false;
    }
    if (outcome !== undefined) this.options.metrics.jobFinished(outcome, secondsSince(delivery.context.receivedAt));
    return true;
  }

  /**
   * Publishes one result until the broker confirms it, with backoff while the broker refuses it (basic.nack) and
   * the channel stays open. Every try sends the same message (same message id), so consumers can de-duplicate a
   * copy that reached some queues before another queue refused it.
   */
  private async publishWithRetry(
    delivery: Delivery,
    log: Logger,
    result: { type: string; body: object },
  ): Promise<'confirmed' | 'refused' | 'channel-closed'> {
    const { session, message } = delivery;
    const outgoing = this.resultMessage(message, result.type, result.body);
    let delayMs: number = RESULT_PUBLISH_RETRY.initialDelayMs;

    for (let attempt = 1; ; attempt++) {
      try {
        await this.publishResult(session, message, outgoing);
        return 'confirmed';
      } catch (err) {
        if (!session.open) return 'channel-closed';
        if (attempt >= RESULT_PUBLISH_RETRY.attempts) return 'refused';
        log.warn({ err: (err as Error).message, attempt, retryInMs: delayMs }, 'the broker refused the result; publishing it again');
      }
      await sleep(delayMs);
      if (!session.open) return 'channel-closed';
      delayMs = Math.min(delayMs * 2, RESULT_PUBLISH_RETRY.maxDelayMs);
    }
  }

  /** The result message: built once per result, so a retried publish sends exactly the same message. */
  private resultMessage(job: ConsumeMessage, type: string, body: object): { content: Buffer; options: Options.Publish } {
    return {
      content: Buffer.from(JSON.stringify(body)),
      options: {
        contentType: 'application/json',
        type,
        messageId: randomUUID(),
        // The usual request/reply convention: the job's correlation id, else its message id.
        correlationId: job.properties.correlationId ?? job.properties.messageId,
        timestamp: Math.floor(Date.now() / 1000),
        persistent: true,
        appId: 'ai-worker',
      },
    };
  }

  /** Publishes to the results exchange, and to `reply_to` when the job asked for it; resolves once both are confirmed. */
  private async publishResult(session: Session, job: ConsumeMessage, outgoing: { content: Buffer; options: Options.Publish }): Promise<void> {
    const { content, options } = outgoing;
    const type = options.type!;
    // Unconfirmed results are bounded by the prefetch count, so amqplib's write buffer stays bounded too.
    const confirms = [confirmPublish(session.channel, this.options.config.resultsExchange, type, content, options)];
    const replyTo = job.properties.replyTo;
    if (typeof replyTo === 'string' && replyTo !== '') {
      confirms.push(confirmPublish(session.channel, '', replyTo, content, options));
    }
    await Promise.all(confirms);
  }

  private waitForIdle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private die(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    this.stopping = true;
    void this.connection?.close().catch(() => undefined);
    this.options.onFatal?.(err);
  }
}

function confirmPublish(channel: ConfirmChannel, exchange: string, routingKey: string, content: Buffer, options: Options.Publish) {
  return new Promise<void>((resolve, reject) => {
    try {
      channel.publish(exchange, routingKey, content, options, (err) => {
        if (err) reject(toError(err, 'publish nacked by the broker'));
        else resolve();
      });
    } catch (err) {
      reject(err);
    }
  });
}

/** Earlier deliveries of this message; RabbitMQ quorum queues count them in `x-delivery-count`. */
export function deliveryCount(message: ConsumeMessage): number {
  const raw = message.properties.headers?.['x-delivery-count'];
  const n = typeof raw === 'number' ? raw : Number(raw ?? 0);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

/** A parse failure that is not a JobRejection is still the message's fault: it can never parse. */
function asRejection(err: unknown, message: ConsumeMessage): JobRejection {
  if (err instanceof JobRejection) return err;
  const reason = `the message could not be read: ${(err as Error)?.message ?? String(err)}`;
  const messageId = message.properties.messageId;
  return new JobRejection('schema', reason, typeof messageId === 'string' ? messageId : undefined);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function secondsSince(ms: number): number {
  return (Date.now() - ms) / 1000;
}

function toError(err: unknown, fallback: string): Error {
  return err instanceof Error ? err : new Error(err ? String(err) : fallback);
}

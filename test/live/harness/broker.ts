/**
 * The real RabbitMQ on 127.0.0.1:5672, with a virtual host of the suite's own so that nothing it creates can
 * collide with other tests, and so that one `delete_vhost` removes every queue it made.
 */
import { spawnSync } from 'child_process';
import { randomBytes } from 'crypto';
import * as amqp from 'amqplib';
import { RABBITMQ_PROMETHEUS_PLUGIN, RABBITMQ_PROMETHEUS_PORT } from '../../../src';

export const BROKER_HOST = '127.0.0.1';
export const BROKER_PORT = 5672;

/** Runs rabbitmqctl / rabbitmq-plugins; throws with its output when it fails. */
export function rabbitmqCli(tool: 'rabbitmqctl' | 'rabbitmq-plugins' | 'rabbitmq-diagnostics', args: string[]): string {
  const result = spawnSync(tool, args, { encoding: 'utf8', timeout: 30_000 });
  if (result.error) throw new Error(`${tool} ${args.join(' ')}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${result.status}: ${result.stderr || result.stdout}`);
  return result.stdout;
}

/** Whether the broker runs the Prometheus plugin (what the library's docs tell users to enable). */
export function prometheusPluginEnabled(): boolean {
  const out = rabbitmqCli('rabbitmq-plugins', ['list', '--enabled', '--minimal']);
  return out.split('\n').map((l) => l.trim()).includes(RABBITMQ_PROMETHEUS_PLUGIN);
}

/** The plugin's scrape address on this machine. */
export const RABBITMQ_METRICS_ADDRESS = `${BROKER_HOST}:${RABBITMQ_PROMETHEUS_PORT}`;

export class LiveBroker {
  /** Creates a fresh virtual host with full permissions for guest. */
  public static async create(prefix: string): Promise<LiveBroker> {
    const vhost = `${prefix}-${randomBytes(3).toString('hex')}`;
    rabbitmqCli('rabbitmqctl', ['-q', 'add_vhost', vhost]);
    rabbitmqCli('rabbitmqctl', ['-q', 'set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
    const broker = new LiveBroker(vhost);
    broker.connection = await amqp.connect(broker.url, { clientProperties: { connection_name: `live-signal ${vhost}` } });
    return broker;
  }

  /** AMQP URL of a virtual host of the local broker, as guest. */
  public static urlFor(vhost: string): string {
    return `amqp://guest:guest@${BROKER_HOST}:${BROKER_PORT}/${encodeURIComponent(vhost)}`;
  }

  private connection?: amqp.ChannelModel;
  private readonly extraQueues: Array<{ vhost: string; queue: string }> = [];

  private constructor(public readonly vhost: string) {}

  /** AMQP URL of the suite's virtual host, as a worker's RABBITMQ_URL Secret would hold it. */
  public get url(): string {
    return LiveBroker.urlFor(this.vhost);
  }

  /** A channel on the suite's virtual host; closed with the broker. */
  public async channel(): Promise<amqp.Channel> {
    return this.connection!.createChannel();
  }

  /** Declares a classic queue (a queue nobody consumes, for the "other queue" of the scenario). */
  public async declareQueue(queue: string): Promise<void> {
    const ch = await this.channel();
    await ch.assertQueue(queue, { durable: false, autoDelete: false });
    await ch.close();
  }

  /** Puts `count` opaque messages on a queue of the suite's virtual host, with publisher confirms. */
  public async fill(queue: string, count: number, body = '{"filler":true}'): Promise<void> {
    await fillQueue(this.connection!, queue, count, body);
  }

  /**
   * Puts `count` messages on a queue of ANOTHER virtual host (e.g. "/"): a decoy with the same queue name, so a
   * query that does not pin the vhost visibly returns the wrong figure. Deleted in {@link close}.
   */
  public async fillDecoy(vhost: string, queue: string, count: number): Promise<void> {
    const connection = await amqp.connect(LiveBroker.urlFor(vhost));
    try {
      const ch = await connection.createChannel();
      await ch.assertQueue(queue, { durable: false, autoDelete: false });
      await ch.close();
      this.extraQueues.push({ vhost, queue });
      await fillQueue(connection, queue, count, '{"decoy":true}');
    } finally {
      await connection.close();
    }
  }

  /** Ready messages of a queue, as a passive declare reports them (what KEDA's AMQP mode reads). */
  public async readyCount(queue: string): Promise<{ messageCount: number; consumerCount: number }> {
    const ch = await this.channel();
    try {
      const ok = await ch.checkQueue(queue);
      return { messageCount: ok.messageCount, consumerCount: ok.consumerCount };
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Closes the connection and deletes the virtual host (and every queue in it) and the decoys. */
  public async close(): Promise<void> {
    await this.connection?.close().catch(() => undefined);
    this.connection = undefined;
    for (const { vhost, queue } of this.extraQueues.splice(0)) {
      const connection = await amqp.connect(LiveBroker.urlFor(vhost)).catch(() => undefined);
      if (connection) {
        const ch = await connection.createChannel();
        await ch.deleteQueue(queue).catch(() => undefined);
        await connection.close().catch(() => undefined);
      }
    }
    try {
      rabbitmqCli('rabbitmqctl', ['-q', 'delete_vhost', this.vhost]);
    } catch {
      // already gone
    }
  }
}

async function fillQueue(connection: amqp.ChannelModel, queue: string, count: number, body: string): Promise<void> {
  const ch = await connection.createConfirmChannel();
  try {
    for (let i = 0; i < count; i++) ch.sendToQueue(queue, Buffer.from(body), { persistent: false, contentType: 'application/json' });
    await ch.waitForConfirms();
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/**
 * `KedaQueueJobs`: KEDA's ScaledJob mode, one Kubernetes Job per queued message, for jobs so long that a
 * Deployment's scale-down (even with a long grace period) is the wrong tool.
 */
import { ApiObject, App, Chart, Duration } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import {
  checkNoLiteralCredentials,
  KEDA_DEFAULTS,
  KedaPrometheusTrigger,
  KedaRabbitmqTrigger,
  prometheusBacklogTrigger,
  QueueTriggerInputs,
  rabbitmqQueueTrigger,
  RabbitmqTriggerMode,
} from './keda-queue-scaler';
import { wholeSeconds } from './queue-scaling';
import { BacklogMeasure } from './rabbitmq-metrics';
import { checkDnsSubdomain, checkInteger, checkNonEmpty, invalidProp } from './validation';
import * as keda from '../imports/keda.sh';

const SELF = 'KedaQueueJobs';

/** Properties of {@link KedaQueueJobs}. */
export interface KedaQueueJobsProps {
  /**
   * Builds the Job that each message gets, in a scope of its own that is never synthesized: only its spec
   * is copied into the ScaledJob. Its container must consume ONE message (prefetch 1), ack it and exit 0.
   *
   * @example (scope) => new kplus.Job(scope, 'Job', { containers: [{ image: 'my-worker:1.0', ... }] })
   */
  readonly job: (scope: Construct) => kplus.Job;

  /** Name of the RabbitMQ queue; one Job is started per waiting message. */
  readonly queue: string;

  /**
   * RabbitMQ virtual host of the queue.
   *
   * @default "/"
   */
  readonly vhost?: string;

  /**
   * What counts as waiting messages. With ready + unacked, KEDA subtracts the running Jobs (each holds one
   * unacked message); with ready only, it does not (strategy `accurate`).
   *
   * @default BacklogMeasure.READY_AND_UNACKED
   */
  readonly backlog?: BacklogMeasure;

  /** Most Jobs running at once; usually the GPUs the workload may use. */
  readonly maxParallelJobs: number;

  /**
   * Read the queue depth from RabbitMQ.
   *
   * @default - none; at least one of `rabbitmq` and `prometheus` is required
   */
  readonly rabbitmq?: KedaRabbitmqTrigger;

  /**
   * Read the backlog query from Prometheus.
   *
   * @default - none
   */
  readonly prometheus?: KedaPrometheusTrigger;

  /**
   * How often KEDA checks the queue for new messages.
   *
   * @default Duration.seconds(15)
   */
  readonly pollingInterval?: Duration;

  /**
   * Finished Jobs kept for inspection.
   *
   * @default - 5 successful, 10 failed
   */
  readonly jobsHistoryLimit?: { readonly successful?: number; readonly failed?: number };

  /**
   * Name of the ScaledJob.
   *
   * @default - generated from the construct path
   */
  readonly name?: string;
}

/**
 * A KEDA ScaledJob that starts one Job per message of a RabbitMQ queue.
 *
 * Prefer it over {@link KedaQueueScaler} when a single job runs for a long time (tens of minutes or more):
 * a Job is never scaled down mid-run, because nothing scales it down; it ends when its message is done.
 * The cost is a cold start (GPU node, image, model load) for every message, so it suits few, long jobs.
 *
 * Defaults that keep jobs alive: rollouts are `gradual` (changing the ScaledJob does not delete running
 * Jobs) and `backoffLimit` is always 0, whatever the template Job says (a failed pod's message is
 * redelivered by the broker, which dead-letters it after its delivery limit, so Kubernetes must not retry
 * it as well).
 *
 * Known gap: the worker of this repository (worker/) consumes until it is stopped and has no "exit after
 * one job" setting yet, so with it every Job would run forever. Until it has one, use this construct with a
 * worker image that exits after its message.
 */
export class KedaQueueJobs extends Construct {
  /**
   * The ScaledJob. A plain ApiObject with the ScaledJob's kind: the generated class would pass the copied Job
   * spec through converters written for its own typed fields, which drop resource quantities given as strings.
   */
  public readonly scaledJob: ApiObject;

  /** The TriggerAuthentication of the rabbitmq trigger, when there is one. */
  public readonly triggerAuthentication?: keda.TriggerAuthentication;

  /** The triggers as written into the ScaledJob. */
  public readonly triggers: keda.ScaledJobSpecTriggers[];

  constructor(scope: Construct, id: string, props: KedaQueueJobsProps) {
    super(scope, id);

    // Validate and resolve defaults.
    const queue = checkNonEmpty(SELF, 'queue', props.queue);
    const vhost = checkNonEmpty(SELF, 'vhost', props.vhost ?? '/');
    const backlog = props.backlog ?? BacklogMeasure.READY_AND_UNACKED;
    const maxParallelJobs = checkInteger(SELF, 'maxParallelJobs', props.maxParallelJobs, 1);
    if (!props.rabbitmq && !props.prometheus) {
      invalidProp(SELF, 'rabbitmq', 'and `prometheus` are both unset', 'Give at least one trigger: `rabbitmq` (broker API) or `prometheus` (backlog query).');
    }
    if (props.rabbitmq?.mode !== undefined && props.rabbitmq.mode !== RabbitmqTriggerMode.QUEUE_LENGTH) {
      invalidProp(SELF, 'rabbitmq.mode', `is ${JSON.stringify(props.rabbitmq.mode)}`, 'A ScaledJob starts one Job per waiting message: use QueueLength.');
    }
    const pollingSeconds = checkInteger(SELF, 'pollingInterval', wholeSeconds(SELF, 'pollingInterval', props.pollingInterval ?? KEDA_DEFAULTS.pollingInterval), 1);
    const successful = checkInteger(SELF, 'jobsHistoryLimit.successful', props.jobsHistoryLimit?.successful ?? 5, 0);
    const failed = checkInteger(SELF, 'jobsHistoryLimit.failed', props.jobsHistoryLimit?.failed ?? 10, 0);
    const name = props.name === undefined ? undefined : checkDnsSubdomain(SELF, 'name', props.name);
    const namespace = Chart.of(this).namespace;
    const jobSpec = templateJobSpec(props.job);

    // One message per Job: target 1, active from the first message.
    const inputs: QueueTriggerInputs = { construct: SELF, queue, vhost, backlog, target: 1, activation: 0 };
    this.triggers = [];
    if (props.rabbitmq) {
      checkNoLiteralCredentials(SELF, 'rabbitmq.extraMetadata', props.rabbitmq.extraMetadata ?? {});
      this.triggerAuthentication = new keda.TriggerAuthentication(this, 'TriggerAuthentication', {
        metadata: { namespace },
        spec: { secretTargetRef: [{ parameter: 'host', name: props.rabbitmq.connection.secret.name, key: props.rabbitmq.connection.key }] },
      });
      const authName = this.triggerAuthentication.name;
      this.triggers.push(rabbitmqQueueTrigger(inputs, props.rabbitmq, authName, { scalesToZero: true, hasBacklogTrigger: true }));
    }
    if (props.prometheus) {
      this.triggers.push(prometheusBacklogTrigger(inputs, props.prometheus));
    }

    const spec: Omit<keda.ScaledJobSpec, 'jobTargetRef'> & { jobTargetRef: Record<string, unknown> } = {
      // backoffLimit 0 whatever the template says: a failed pod's message is redelivered by the broker, which
      // dead-letters it after its delivery limit; Kubernetes retries on top would multiply the attempts.
      jobTargetRef: { ...jobSpec, backoffLimit: 0 },
      maxReplicaCount: maxParallelJobs,
      pollingInterval: pollingSeconds,
      successfulJobsHistoryLimit: successful,
      failedJobsHistoryLimit: failed,
      rollout: { strategy: keda.ScaledJobSpecRolloutStrategy.GRADUAL },
      scalingStrategy: {
        // Running Jobs hold their message unacknowledged: subtract them only when they are counted.
        strategy: backlog === BacklogMeasure.READY
          ? keda.ScaledJobSpecScalingStrategyStrategy.ACCURATE
          : keda.ScaledJobSpecScalingStrategyStrategy.DEFAULT,
      },
      triggers: this.triggers,
    };
    this.scaledJob = new ApiObject(this, 'Resource', { ...keda.ScaledJob.GVK, metadata: { name, namespace }, spec });
  }
}

/** The spec of the Job the factory builds, synthesized in a throwaway app so the Job itself is never emitted. */
function templateJobSpec(factory: (scope: Construct) => kplus.Job): Record<string, unknown> {
  const scratch = new Chart(new App(), 'job-template');
  const job = factory(scratch);
  let spec: Record<string, any> | undefined;
  try {
    spec = ApiObject.of(job).toJson().spec;
  } catch (error) {
    invalidProp(SELF, 'job', `builds a Job that cannot be synthesized (${(error as Error).message})`, 'Give the Job a complete pod: at least the worker container.');
  }
  if (!spec?.template?.spec?.containers?.length) {
    invalidProp(SELF, 'job', 'builds a Job without containers', 'Give the Job the worker container.');
  }
  return spec;
}

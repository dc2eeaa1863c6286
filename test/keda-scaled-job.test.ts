import { Chart, Duration } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { RabbitmqTriggerMode } from '../src/keda-queue-scaler';
import { KedaQueueJobs, KedaQueueJobsProps } from '../src/keda-scaled-job';
import { BacklogMeasure } from '../src/rabbitmq-metrics';
import { all, invalidPropError, only, synthValid, testChart } from './util/manifests';

function connection(chart: Chart): kplus.SecretValue {
  const secret = (chart.node.tryFindChild('RabbitSecret') as kplus.ISecret | undefined)
    ?? kplus.Secret.fromSecretName(chart, 'RabbitSecret', 'rabbitmq-credentials');
  return { secret, key: 'management-url' };
}

const job = (scope: any) => new kplus.Job(scope, 'Job', {
  containers: [{ image: 'ghcr.io/example/one-shot-worker:1.0.0', securityContext: { ensureNonRoot: false } }],
  activeDeadline: Duration.hours(3),
});

function jobs(chart: Chart, props: Partial<KedaQueueJobsProps> = {}): KedaQueueJobs {
  return new KedaQueueJobs(chart, 'Jobs', {
    job,
    queue: 'video-renders',
    maxParallelJobs: 6,
    rabbitmq: { connection: connection(chart) },
    ...props,
  });
}

function expectInvalid(fn: () => unknown, message: RegExp): void {
  expect(invalidPropError(fn).message).toMatch(message);
}

describe('KedaQueueJobs', () => {
  test('one Job per message, gradual rollouts, no Kubernetes retries, and the template Job is not emitted', () => {
    const chart = testChart();
    jobs(chart);
    const manifests = synthValid(chart);
    expect(manifests).toMatchSnapshot();
    expect(all(manifests, 'Job')).toHaveLength(0);

    const scaledJob = only(manifests, 'ScaledJob');
    expect(scaledJob.metadata.namespace).toBe('ai-workers');
    expect(scaledJob.spec).toMatchObject({
      maxReplicaCount: 6,
      pollingInterval: 15,
      successfulJobsHistoryLimit: 5,
      failedJobsHistoryLimit: 10,
      rollout: { strategy: 'gradual' },
      scalingStrategy: { strategy: 'default' },
    });
    expect(scaledJob.spec.jobTargetRef.backoffLimit).toBe(0);
    expect(scaledJob.spec.jobTargetRef.activeDeadlineSeconds).toBe(3 * 3600);
    expect(scaledJob.spec.jobTargetRef.template.spec.containers[0].image).toBe('ghcr.io/example/one-shot-worker:1.0.0');

    const [trigger] = scaledJob.spec.triggers;
    expect(trigger.metadata).toMatchObject({ mode: 'QueueLength', value: '1', activationValue: '0', queueName: 'video-renders', excludeUnacknowledged: 'false' });
    expect(trigger.authenticationRef.name).toBe(only(manifests, 'TriggerAuthentication').metadata.name);
  });

  test('ready-only backlog uses the accurate strategy (running Jobs are not in the count)', () => {
    const chart = testChart();
    jobs(chart, { backlog: BacklogMeasure.READY });
    const scaledJob = only(synthValid(chart), 'ScaledJob');
    expect(scaledJob.spec.scalingStrategy).toEqual({ strategy: 'accurate' });
    expect(scaledJob.spec.triggers[0].metadata.excludeUnacknowledged).toBe('true');
  });

  test('prometheus trigger alone', () => {
    const chart = testChart();
    jobs(chart, { rabbitmq: undefined, prometheus: { serverAddress: 'http://prometheus-operated.monitoring.svc:9090' } });
    const manifests = synthValid(chart);
    expect(all(manifests, 'TriggerAuthentication')).toHaveLength(0);
    expect(only(manifests, 'ScaledJob').spec.triggers[0].metadata).toMatchObject({
      query: 'max by (vhost, queue) (rabbitmq_detailed_queue_messages{vhost="/",queue="video-renders"})',
      threshold: '1',
    });
  });

  test('bad input', () => {
    expectInvalid(() => jobs(testChart(), { maxParallelJobs: 0 }), /`maxParallelJobs` is 0/);
    expectInvalid(() => jobs(testChart(), { queue: '' }), /`queue` is ""/);
    expectInvalid(() => jobs(testChart(), { rabbitmq: undefined }), /both unset/);
    const rate = testChart();
    expectInvalid(
      () => jobs(rate, { rabbitmq: { connection: connection(rate), mode: RabbitmqTriggerMode.MESSAGE_RATE, messageRatePerReplica: 1 } }),
      /`rabbitmq.mode` is "MessageRate"/,
    );
    const literal = testChart();
    expectInvalid(
      () => jobs(literal, { rabbitmq: { connection: connection(literal), extraMetadata: { host: 'amqp://u:p@rabbit:5672/' } } }),
      /holds credentials as a literal/,
    );
    expectInvalid(() => jobs(testChart(), { job: (scope) => new kplus.Job(scope, 'Empty') }), /`job` builds a Job (without containers|that cannot be synthesized)/);
  });
});

import { App, Chart, Duration, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { DEFAULT_WORKER_IMAGE, WORKER_DEFAULTS, WorkerEnv, WorkerHttp } from '../src/contract';
import { GPU_TOLERATION } from '../src/gpu-node-labels';
import {
  GPU_WORKER_COMPONENT,
  GpuWorkerDeployment,
  GpuWorkerDeploymentProps,
  ModelSource,
  WORKER_CONTAINER_NAME,
} from '../src/gpu-worker-deployment';
import { KedaQueueScaler } from '../src/keda-queue-scaler';
import { QueueScaledHpa } from '../src/queue-scaled-hpa';
import { InvalidPropError } from '../src/validation';
import { invalidPropError, Manifest, only, synthValid, testChart } from './util/manifests';

function workers(chart: Chart, props: Partial<GpuWorkerDeploymentProps> = {}, id = 'Workers'): GpuWorkerDeployment {
  return new GpuWorkerDeployment(chart, id, {
    name: 'ocr-workers',
    rabbitmqUrl: { secret: kplus.Secret.fromSecretName(chart, `${id}Amqp`, 'rabbitmq-worker'), key: 'url' },
    model: ModelSource.fromPersistentVolumeClaim('ocr-models'),
    maxJobDuration: Duration.minutes(2),
    ...props,
  });
}

function workerContainer(deployment: Manifest): any {
  return deployment.spec.template.spec.containers.find((c: any) => c.name === WORKER_CONTAINER_NAME);
}

function env(container: any): Record<string, any> {
  return Object.fromEntries(container.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
}

/** Builds a deployment with bad props and returns the error it throws. */
function errorOf(props: Partial<GpuWorkerDeploymentProps>): InvalidPropError {
  return invalidPropError(() => workers(testChart(), props));
}

describe('GpuWorkerDeployment', () => {
  test('synthesizes a Deployment and a PodDisruptionBudget that validate', () => {
    const chart = testChart();
    workers(chart);
    const manifests = synthValid(chart);
    expect(manifests).toMatchSnapshot();
    expect(manifests.map((m) => m.kind).sort()).toEqual(['Deployment', 'PodDisruptionBudget']);
  });

  test('the selector, pod labels and budget selector are the same labels', () => {
    const chart = testChart();
    const worker = workers(chart);
    const manifests = synthValid(chart);
    const deployment = only(manifests, 'Deployment');
    const budget = only(manifests, 'PodDisruptionBudget');

    expect(worker.podSelectorLabels).toEqual({ 'app.kubernetes.io/name': 'ocr-workers', 'app.kubernetes.io/component': GPU_WORKER_COMPONENT });
    expect(deployment.spec.selector).toEqual({ matchLabels: worker.podSelectorLabels });
    expect(deployment.spec.template.metadata.labels).toMatchObject(worker.podSelectorLabels);
    expect(budget.spec.selector).toEqual({ matchLabels: worker.podSelectorLabels });
    expect(budget.spec.maxUnavailable).toBe(1);
    expect(budget.spec.unhealthyPodEvictionPolicy).toBe('AlwaysAllow');
    expect(deployment.metadata).toMatchObject({ name: 'ocr-workers', namespace: 'ai-workers' });
    expect(worker.namespace).toBe('ai-workers');
  });

  test('requests and limits whole GPUs as an extended resource, equal in both', () => {
    const chart = testChart();
    workers(chart, { gpuCount: 2 });
    const resources = workerContainer(only(synthValid(chart), 'Deployment')).resources;
    expect(resources.limits['nvidia.com/gpu']).toBe('2');
    expect(resources.requests['nvidia.com/gpu']).toBe('2');
    expect(resources.requests.cpu).toBe('2');
    expect(resources.requests.memory).toBe('8192Mi');
    expect(resources.limits.memory).toBe('8192Mi');
    expect(resources.limits.cpu).toBeUndefined();
  });

  test('accepts a MIG profile as the GPU resource', () => {
    const chart = testChart();
    workers(chart, { gpuResourceName: 'nvidia.com/mig-1g.5gb' });
    const resources = workerContainer(only(synthValid(chart), 'Deployment')).resources;
    expect(resources.limits['nvidia.com/mig-1g.5gb']).toBe('1');
    expect(resources.limits['nvidia.com/gpu']).toBeUndefined();
  });

  test('tolerates the GPU taint, and requires the GPU node labels when given', () => {
    const chart = testChart();
    workers(chart, { gpuNodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-A10G' }, runtimeClassName: 'nvidia' });
    const pod = only(synthValid(chart), 'Deployment').spec.template.spec;
    expect(pod.tolerations).toEqual([{ key: GPU_TOLERATION.key, operator: GPU_TOLERATION.operator, effect: GPU_TOLERATION.effect }]);
    expect(pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms).toEqual([
      { matchExpressions: [{ key: 'nvidia.com/gpu.product', operator: 'In', values: ['NVIDIA-A10G'] }] },
    ]);
    expect(pod.runtimeClassName).toBe('nvidia');
  });

  test('no node affinity and no runtime class by default; toleration can be turned off', () => {
    const chart = testChart();
    workers(chart, { tolerateGpuTaint: false });
    const pod = only(synthValid(chart), 'Deployment').spec.template.spec;
    expect(pod.affinity).toBeUndefined();
    expect(pod.runtimeClassName).toBeUndefined();
    expect(pod.tolerations).toBeUndefined();
  });

  test('takes the AMQP URL from the Secret only, and sets the rest of the contract', () => {
    const chart = testChart();
    workers(chart, { queue: 'ocr-jobs', maxBatchSize: 4, prefetch: 6, maxBatchWait: Duration.millis(20) });
    const manifests = synthValid(chart);
    const container = workerContainer(only(manifests, 'Deployment'));
    const vars = env(container);

    expect(vars[WorkerEnv.RABBITMQ_URL]).toEqual({ secretKeyRef: { name: 'rabbitmq-worker', key: 'url' } });
    expect(JSON.stringify(manifests)).not.toMatch(/amqps?:\/\//);
    expect(vars[WorkerEnv.JOB_QUEUE]).toBe('ocr-jobs');
    expect(vars[WorkerEnv.PREFETCH]).toBe('6');
    expect(vars[WorkerEnv.MAX_BATCH_SIZE]).toBe('4');
    expect(vars[WorkerEnv.MAX_BATCH_WAIT_MS]).toBe('20');
    expect(vars[WorkerEnv.MODEL_PATH]).toBe(WORKER_DEFAULTS.modelPath);
    expect(vars[WorkerEnv.DEAD_LETTER_QUEUE]).toBe(WORKER_DEFAULTS.deadLetterQueue);
    expect(vars[WorkerEnv.EXECUTION_PROVIDER]).toBe('cuda');
    expect(vars[WorkerEnv.HTTP_PORT]).toBe(String(WorkerHttp.port));
    expect(vars[WorkerEnv.WORKER_ID]).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
    // Every variable the construct sets is one the worker reads.
    expect(Object.keys(vars).every((name) => Object.values(WorkerEnv).includes(name as any))).toBe(true);
    expect(Object.keys(vars).sort()).toEqual(Object.values(WorkerEnv).sort());
    expect(container.image).toBe(DEFAULT_WORKER_IMAGE);
  });

  test('probes the contract paths on the named metrics port', () => {
    const chart = testChart();
    workers(chart, { startupTimeout: Duration.minutes(15) });
    const container = workerContainer(only(synthValid(chart), 'Deployment'));

    expect(container.ports).toEqual([{ containerPort: WorkerHttp.port, name: WorkerHttp.portName, protocol: 'TCP' }]);
    expect(container.startupProbe.httpGet).toMatchObject({ path: WorkerHttp.readyPath, port: WorkerHttp.port });
    expect(container.readinessProbe.httpGet).toMatchObject({ path: WorkerHttp.readyPath, port: WorkerHttp.port });
    expect(container.livenessProbe.httpGet).toMatchObject({ path: WorkerHttp.healthPath, port: WorkerHttp.port });
    // The startup window covers the model load: 15 minutes of 10-second probes.
    expect(container.startupProbe.periodSeconds * container.startupProbe.failureThreshold).toBe(900);
  });

  test('derives the grace period from maxJobDuration, and the worker gives up before the kubelet kills it', () => {
    const chart = testChart();
    const worker = workers(chart, { maxJobDuration: Duration.minutes(5), shutdownMargin: Duration.seconds(45) });
    const deployment = only(synthValid(chart), 'Deployment');
    const grace = deployment.spec.template.spec.terminationGracePeriodSeconds;
    const shutdownMs = Number(env(workerContainer(deployment))[WorkerEnv.SHUTDOWN_TIMEOUT_MS]);

    expect(grace).toBe(345);
    expect(shutdownMs).toBe(300_000);
    expect(shutdownMs).toBeLessThan(grace * 1000);
    expect(worker.terminationGracePeriod.toSeconds()).toBe(345);
  });

  test('rounds a fractional grace period up to whole seconds', () => {
    const chart = testChart();
    workers(chart, { maxJobDuration: Duration.millis(1500), shutdownMargin: Duration.seconds(1) });
    expect(only(synthValid(chart), 'Deployment').spec.template.spec.terminationGracePeriodSeconds).toBe(3);
  });

  test('runs with the Pod Security "restricted" profile and a read-only root filesystem', () => {
    const chart = testChart();
    workers(chart);
    const pod = only(synthValid(chart), 'Deployment').spec.template.spec;
    const container = workerContainer({ spec: { template: { spec: pod } } } as any);

    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } });
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.hostNetwork).toBe(false);
    // Writable scratch space where the root filesystem is not.
    const mounts = Object.fromEntries(container.volumeMounts.map((m: any) => [m.mountPath, m]));
    const volumes = Object.fromEntries(pod.volumes.map((v: any) => [v.name, v]));
    expect(volumes[mounts['/tmp'].name].emptyDir).toEqual({ sizeLimit: '1024Mi' });
    expect(volumes[mounts['/dev/shm'].name].emptyDir).toEqual({ medium: 'Memory', sizeLimit: '1024Mi' });
    expect(mounts['/models']).toMatchObject({ readOnly: true });
    expect(volumes[mounts['/models'].name].persistentVolumeClaim).toEqual({ claimName: 'ocr-models', readOnly: true });
  });

  test('an init container can fetch the model into an emptyDir, under the same restrictions', () => {
    const chart = testChart();
    workers(chart, {
      modelPath: '/opt/model/ocr.onnx',
      model: ModelSource.fromInitContainer({
        image: 'amazon/aws-cli:2.17.0',
        command: ['sh', '-c', 'aws s3 cp s3://models/ocr.onnx "$MODEL_DIR/ocr.onnx"'],
        size: Size.gibibytes(4),
      }),
    });
    const pod = only(synthValid(chart), 'Deployment').spec.template.spec;
    const [init] = pod.initContainers;
    expect(init.image).toBe('amazon/aws-cli:2.17.0');
    expect(init.env).toContainEqual({ name: 'MODEL_DIR', value: '/opt/model' });
    expect(init.volumeMounts).toEqual([{ mountPath: '/opt/model', name: 'model' }]);
    expect(init.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(pod.volumes.find((v: any) => v.name === 'model').emptyDir).toEqual({ sizeLimit: '4096Mi' });
    expect(env(workerContainer({ spec: { template: { spec: pod } } } as any))[WorkerEnv.MODEL_PATH]).toBe('/opt/model/ocr.onnx');
  });

  test('a host path model is mounted read-only', () => {
    const chart = testChart();
    workers(chart, { model: ModelSource.fromHostPath('/var/lib/models') });
    const pod = only(synthValid(chart), 'Deployment').spec.template.spec;
    expect(pod.volumes.find((v: any) => v.name === 'model').hostPath).toEqual({ path: '/var/lib/models', type: 'Directory' });
  });

  test('priority class and topology spread are passed through', () => {
    const chart = testChart();
    const worker = workers(chart, {
      priorityClassName: 'gpu-batch',
      topologySpread: [{ topologyKey: 'topology.kubernetes.io/zone', maxSkew: 2 }],
    });
    const pod = only(synthValid(chart), 'Deployment').spec.template.spec;
    expect(pod.priorityClassName).toBe('gpu-batch');
    expect(pod.topologySpreadConstraints).toEqual([{
      topologyKey: 'topology.kubernetes.io/zone',
      maxSkew: 2,
      whenUnsatisfiable: 'ScheduleAnyway',
      matchLabelKeys: ['pod-template-hash'],
      labelSelector: { matchLabels: worker.podSelectorLabels },
    }]);
  });

  describe('replicas and autoscaling', () => {
    test('an autoscaled deployment carries no spec.replicas', () => {
      const chart = testChart();
      const worker = workers(chart);
      worker.markHasAutoscaler();
      const deployment = only(synthValid(chart), 'Deployment');
      expect(worker.hasAutoscaler).toBe(true);
      expect('replicas' in deployment.spec).toBe(false);
      expect(worker.toScalingTarget()).toMatchObject({ kind: 'Deployment', apiVersion: 'apps/v1', name: 'ocr-workers', replicas: undefined });
    });

    test('cdk8s-plus autoscalers see it as a valid target', () => {
      const chart = testChart();
      const worker = workers(chart);
      new kplus.HorizontalPodAutoscaler(chart, 'Hpa', { target: worker, maxReplicas: 4 });
      const deployment = only(synthValid(chart), 'Deployment');
      expect(deployment.spec.replicas).toBeUndefined();
      expect(only(synthValid(chart), 'HorizontalPodAutoscaler').spec.scaleTargetRef.name).toBe('ocr-workers');
    });

    test('a fixed replica count is kept when nothing autoscales', () => {
      const chart = testChart();
      workers(chart, { replicas: 3 });
      expect(only(synthValid(chart), 'Deployment').spec.replicas).toBe(3);
    });

    test('fixed replicas on an autoscaling target is an error', () => {
      const worker = workers(testChart(), { replicas: 3 });
      expect(() => worker.markHasAutoscaler()).toThrow(/`replicas` is fixed at 3, but an autoscaler targets this deployment\. Remove `replicas`/);
      expect(worker.toScalingTarget().replicas).toBe(3);
    });

    test('QueueScaledHpa and KEDA refuse a deployment with fixed replicas, and empty spec.replicas otherwise', () => {
      const chart = testChart();
      const fixed = workers(chart, { replicas: 3 }, 'Fixed');
      expect(() => new QueueScaledHpa(chart, 'FixedHpa', { target: fixed, queue: fixed.queue, maxReplicas: 4 }))
        .toThrow(/sets fixed replicas \(3\)/);
      const connection = { secret: kplus.Secret.fromSecretName(chart, 'Mgmt', 'rabbitmq-management'), key: 'url' };
      expect(() => new KedaQueueScaler(chart, 'FixedKeda', { target: fixed, queue: fixed.queue, maxReplicas: 4, rabbitmq: { connection } }))
        .toThrow(/sets fixed replicas \(3\)/);

      const scaled = workers(chart, { name: 'scaled-workers' }, 'Scaled');
      new KedaQueueScaler(chart, 'Keda', { target: scaled, queue: scaled.queue, maxReplicas: 4, rabbitmq: { connection } });
      const deployment = only(synthValid(chart), 'Deployment', 'scaled-workers');
      expect('replicas' in deployment.spec).toBe(false);
    });

    test('fixed replicas is caught at synthesis when the inner Deployment was marked directly', () => {
      const chart = testChart();
      const worker = workers(chart, { replicas: 3 });
      worker.deployment.markHasAutoscaler();
      expect(() => Testing.synth(chart)).toThrow(/`replicas` is fixed at 3/);
    });
  });

  describe('names', () => {
    test('a name derived from a long construct path is a valid, 63-character-bounded label', () => {
      const app = new App();
      const chart = new Chart(app, 'a-very-long-chart-name-for-the-inference-platform', { namespace: 'ai-workers' });
      const worker = new GpuWorkerDeployment(chart, 'TheOcrGpuWorkersThatConsumeTheJobQueueOfTheDocumentPipeline', {
        rabbitmqUrl: { secret: kplus.Secret.fromSecretName(chart, 'Amqp', 'rabbitmq-worker'), key: 'url' },
        model: ModelSource.fromPersistentVolumeClaim('ocr-models'),
        maxJobDuration: Duration.minutes(1),
      });
      const deployment = only(synthValid(chart), 'Deployment');
      expect(worker.name.length).toBeLessThanOrEqual(63);
      expect(deployment.metadata.name).toBe(worker.name);
      expect(deployment.spec.template.metadata.labels['app.kubernetes.io/name']).toBe(worker.name);
    });

    test.each([
      ['upper case', 'OCR-Workers'],
      ['too long', 'w'.repeat(64)],
      ['a dot', 'ocr.workers'],
      ['trailing dash', 'ocr-'],
    ])('an explicit name with %s is an error', (_, name) => {
      expect(errorOf({ name }).prop).toBe('name');
    });
  });

  describe('bad input', () => {
    test.each([0, -1, 1.5, Number.NaN])('gpuCount %p is an error', (gpuCount) => {
      const error = errorOf({ gpuCount });
      expect(error.prop).toBe('gpuCount');
      expect(error.message).toMatch(/Use a whole number of at least 1/);
    });

    test.each(['gpu', 'kubernetes.io/gpu', 'nvidia.com/', 'nvidia.com/gpu/x', 'NVIDIA.com/gpu'])('gpuResourceName %p is an error', (gpuResourceName) => {
      expect(errorOf({ gpuResourceName }).prop).toBe('gpuResourceName');
    });

    test.each(['', '  ', ' jobs'])('queue %p is an error', (queue) => {
      const error = errorOf({ queue });
      expect(error.prop).toBe('queue');
      expect(error.message).toMatch(/non-empty/);
    });

    test('a queue name reserved by the broker is an error', () => {
      expect(errorOf({ queue: 'amq.jobs' }).message).toMatch(/reserved/);
    });

    test.each([Duration.seconds(0), Duration.millis(0)])('maxJobDuration %p is an error', (maxJobDuration) => {
      const error = errorOf({ maxJobDuration });
      expect(error.prop).toBe('maxJobDuration');
      expect(error.message).toMatch(/positive duration/);
    });

    test('values outside the ranges the worker accepts are errors, not crash-looping pods', () => {
      expect(errorOf({ deliveryLimit: 1001 }).prop).toBe('deliveryLimit');
      expect(errorOf({ maxBatchSize: 2048, prefetch: 4096 }).prop).toBe('maxBatchSize');
      expect(errorOf({ prefetch: 70_000 }).prop).toBe('prefetch');
      expect(errorOf({ maxBatchWait: Duration.minutes(2) }).prop).toBe('maxBatchWait (ms)');
      expect(errorOf({ maxBatchWait: Duration.millis(2.5) }).prop).toBe('maxBatchWait (ms)');
      expect(errorOf({ maxMessageSize: Size.kibibytes(0.5) }).prop).toBe('maxMessageSize (bytes)');
      expect(errorOf({ maxMessageSize: Size.gibibytes(1) }).prop).toBe('maxMessageSize (bytes)');
      expect(errorOf({ maxJobDuration: Duration.hours(25) }).message).toMatch(/24-hour shutdown limit/);
    });

    test('a dead-letter queue or exchange that is the job queue or results exchange is an error', () => {
      expect(errorOf({ queue: 'jobs', deadLetterQueue: 'jobs' }).prop).toBe('deadLetterQueue');
      expect(errorOf({ resultsExchange: 'results', deadLetterExchange: 'results' }).prop).toBe('deadLetterExchange');
    });

    test('prefetch below the batch size is an error naming both', () => {
      const error = errorOf({ prefetch: 2, maxBatchSize: 8 });
      expect(error.prop).toBe('prefetch');
      expect(error.message).toMatch(/`maxBatchSize`/);
    });

    test('shared memory as large as the memory limit is an error naming the default and both ways out', () => {
      const given = errorOf({ memory: Size.gibibytes(2), sharedMemorySize: Size.gibibytes(2) });
      expect(given.prop).toBe('sharedMemorySize');
      expect(given.message).toContain('(2048 MiB) is not smaller than `memory` (2048 MiB)');
      const defaulted = errorOf({ memory: Size.mebibytes(768) });
      expect(defaulted.prop).toBe('sharedMemorySize');
      expect(defaulted.message).toContain('(the default 1 GiB) is not smaller than `memory` (768 MiB)');
      expect(defaulted.message).toMatch(/Lower `sharedMemorySize` \(default 1 GiB\) or raise `memory`/);
    });

    test.each(['models/model.onnx', '/model.onnx', '/tmp/model.onnx', '/models/'])('modelPath %p is an error', (modelPath) => {
      expect(errorOf({ modelPath }).prop).toBe('modelPath');
    });

    test('an invalid Secret key is an error', () => {
      const chart = testChart();
      expect(() => workers(chart, { rabbitmqUrl: { secret: kplus.Secret.fromSecretName(chart, 'Bad', 'rabbitmq'), key: 'url/amqp' } }))
        .toThrow(/`rabbitmqUrl.key`/);
    });

    test.each<[string, unknown]>([
      ['a literal URL string', 'amqp://user:password@rabbitmq:5672/%2f'],
      ['a reference without a secret', { secret: undefined, key: 'url' }],
      ['a reference without a key', { secret: { name: 'rabbitmq-worker' } }],
      ['null', null],
    ])('rabbitmqUrl given as %s is an error asking for a Secret, not a TypeError', (_, rabbitmqUrl) => {
      const chart = testChart();
      const error = invalidPropError(() => workers(chart, { rabbitmqUrl: rabbitmqUrl as kplus.SecretValue }));
      expect(error.prop).toBe('rabbitmqUrl');
      expect(error.message).toContain('must be a Secret reference `{ secret, key }`');
      expect(error.message).toMatch(/put the AMQP URL \(it holds credentials\) in a Secret/i);
      // The credentials in a literal URL must not be echoed into build logs.
      expect(error.message).not.toContain('password');
    });

    test('invalid node labels, runtime class and priority class are errors', () => {
      expect(errorOf({ gpuNodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA A10G' } }).prop).toMatch(/^gpuNodeSelector/);
      expect(errorOf({ runtimeClassName: 'NVIDIA' }).prop).toBe('runtimeClassName');
      expect(errorOf({ priorityClassName: 'gpu_batch' }).prop).toBe('priorityClassName');
    });

    test('replicas, maxUnavailable and topology skew must be whole numbers', () => {
      expect(errorOf({ replicas: 1.5 }).prop).toBe('replicas');
      expect(errorOf({ maxUnavailable: 0 }).prop).toBe('maxUnavailable');
      expect(errorOf({ topologySpread: [{ topologyKey: 'topology.kubernetes.io/zone', maxSkew: 0 }] }).prop).toBe('topologySpread[0].maxSkew');
    });

    test('an unknown execution provider or log level is an error', () => {
      expect(errorOf({ executionProvider: 'rocm' as any }).prop).toBe('executionProvider');
      expect(errorOf({ logLevel: 'verbose' as any }).prop).toBe('logLevel');
    });

    test.each(['/ocr', '../ocr', 'models/../../etc', ''])('a claim subPath %p is an error', (subPath) => {
      expect(() => ModelSource.fromPersistentVolumeClaim('ocr-models', { subPath })).toThrow(/`model.subPath`/);
    });

    test('an init-container model source without a command is an error', () => {
      expect(() => ModelSource.fromInitContainer({ image: 'curlimages/curl:8.8.0', command: [] })).toThrow(/`model.command`/);
    });
  });
});

import { posix } from 'path';
import { ApiObject, Duration, JsonPatch, Names, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import {
  DEFAULT_WORKER_IMAGE,
  defaultPrefetch,
  EXECUTION_PROVIDERS,
  ExecutionProviderChoice,
  WORKER_DEFAULTS,
  WORKER_LIMITS,
  WorkerEnv,
  WorkerHttp,
} from './contract';
import { GPU_TOLERATION, NVIDIA_GPU_RESOURCE } from './gpu-node-labels';
import { checkDnsLabel, checkDnsSubdomain, checkInteger, checkNonEmpty, invalidProp } from './validation';
import * as k8s from '../imports/k8s';

const CONSTRUCT = 'GpuWorkerDeployment';

/** Name of the worker container in the pod. */
export const WORKER_CONTAINER_NAME = 'worker';

/** Value of the `app.kubernetes.io/component` label on worker pods. */
export const GPU_WORKER_COMPONENT = 'gpu-worker';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/** A pino log level the worker accepts in `LOG_LEVEL`. */
export type WorkerLogLevel = (typeof LOG_LEVELS)[number];

/** What a {@link ModelSource} adds to the pod: the volume mounted at the model directory, and maybe an init step. */
export interface ModelSourceBinding {
  /** The volume that holds the model file. */
  readonly volume: kplus.Volume;

  /** Whether the worker mounts the volume read-only. */
  readonly readOnly: boolean;

  /** Directory inside the volume to mount instead of its root. */
  readonly subPath?: string;

  /** An init container that fills the volume before the worker starts. */
  readonly initContainer?: kplus.ContainerProps;
}

/** Options for {@link ModelSource.fromPersistentVolumeClaim}. */
export interface PersistentVolumeClaimModelOptions {
  /**
   * Directory inside the claim to mount instead of its root.
   * @default - the root of the claim
   */
  readonly subPath?: string;
}

/** Options for {@link ModelSource.fromInitContainer}. */
export interface InitContainerModelOptions {
  /** Image of the step that fetches the model, e.g. an S3 or GCS CLI image. */
  readonly image: string;

  /**
   * Entrypoint of the step. It must write the model to the directory given to it in `MODEL_DIR`, under the file
   * name of the worker's `modelPath`.
   */
  readonly command: string[];

  /**
   * Arguments of the step.
   * @default - none
   */
  readonly args?: string[];

  /**
   * Extra environment of the step, e.g. bucket credentials from a Secret.
   * @default - only `MODEL_DIR`
   */
  readonly envVariables?: Record<string, kplus.EnvValue>;

  /**
   * Space the downloaded model may use on the node's disk (emptyDir size limit).
   * A pod exceeding it is evicted, so give room for the largest model version you expect.
   * @default Size.gibibytes(20)
   */
  readonly size?: Size;

  /**
   * CPU and memory of the step.
   * @default - 500m CPU and 512 MiB memory requested, the memory also as limit
   */
  readonly resources?: kplus.ContainerResources;
}

/**
 * Where the worker's ONNX model comes from. The model directory (the directory of `modelPath`) is mounted from it.
 */
export abstract class ModelSource {
  /**
   * A PersistentVolumeClaim (for example a ReadOnlyMany volume that a job filled once), mounted read-only.
   * Model loads then cost one volume read per pod and no download.
   */
  public static fromPersistentVolumeClaim(
    claimName: string,
    options: PersistentVolumeClaimModelOptions = {},
  ): ModelSource {
    return new PvcModelSource(claimName, options);
  }

  /**
   * A directory on the node, mounted read-only: for nodes whose image bakes in the models.
   *
   * Caveat: hostPath volumes are forbidden by the Pod Security "baseline" and "restricted" profiles, so a namespace
   * that enforces either rejects these pods. Use it only in namespaces labelled `privileged`.
   */
  public static fromHostPath(path: string): ModelSource {
    return new HostPathModelSource(path);
  }

  /**
   * An init container that fetches the model into an emptyDir before the worker starts. Every new pod downloads
   * the model again, which lengthens scale-up by the download time: size `startupTimeout` for it.
   */
  public static fromInitContainer(options: InitContainerModelOptions): ModelSource {
    return new InitContainerModelSource(options);
  }

  /** Creates the volume (and init container) for a worker whose model directory is `modelDir`. */
  public abstract bind(scope: Construct, modelDir: string): ModelSourceBinding;
}

class PvcModelSource extends ModelSource {
  constructor(private readonly claimName: string, private readonly options: PersistentVolumeClaimModelOptions) {
    super();
    checkDnsSubdomain(CONSTRUCT, 'model (claim name)', claimName);
    const subPath = options.subPath;
    if (subPath !== undefined && (subPath === '' || posix.isAbsolute(subPath) || subPath.split('/').includes('..'))) {
      invalidProp(CONSTRUCT, 'model.subPath', `is ${JSON.stringify(subPath)}`,
        'Give a relative directory inside the claim, without "..": the API server refuses anything else.');
    }
  }

  public bind(scope: Construct, _modelDir: string): ModelSourceBinding {
    const claim = kplus.PersistentVolumeClaim.fromClaimName(scope, 'ModelClaim', this.claimName);
    const volume = kplus.Volume.fromPersistentVolumeClaim(scope, 'ModelVolume', claim, {
      name: 'model',
      readOnly: true,
    });
    return { volume, readOnly: true, subPath: this.options.subPath };
  }
}

class HostPathModelSource extends ModelSource {
  constructor(private readonly path: string) {
    super();
    if (!posix.isAbsolute(path)) {
      invalidProp(CONSTRUCT, 'model (host path)', `is ${JSON.stringify(path)}, not an absolute path`,
        'Give the absolute path of the directory on the node.');
    }
  }

  public bind(scope: Construct, _modelDir: string): ModelSourceBinding {
    const volume = kplus.Volume.fromHostPath(scope, 'ModelVolume', 'model', {
      path: this.path,
      type: kplus.HostPathVolumeType.DIRECTORY,
    });
    return { volume, readOnly: true };
  }
}

class InitContainerModelSource extends ModelSource {
  constructor(private readonly options: InitContainerModelOptions) {
    super();
    checkNonEmpty(CONSTRUCT, 'model.image', options.image);
    if (options.command.length === 0) {
      invalidProp(CONSTRUCT, 'model.command', 'is empty', 'Give the command that writes the model into $MODEL_DIR.');
    }
    if (options.size !== undefined && options.size.toKibibytes() <= 0) {
      invalidProp(CONSTRUCT, 'model.size', 'is not positive',
        'Give the disk space the model needs, e.g. Size.gibibytes(20).');
    }
  }

  public bind(scope: Construct, modelDir: string): ModelSourceBinding {
    const volume = kplus.Volume.fromEmptyDir(scope, 'ModelVolume', 'model', {
      sizeLimit: this.options.size ?? Size.gibibytes(20),
    });
    const memory = Size.mebibytes(512);
    const initContainer: kplus.ContainerProps = {
      name: 'fetch-model',
      image: this.options.image,
      command: this.options.command,
      args: this.options.args,
      envVariables: { MODEL_DIR: kplus.EnvValue.fromValue(modelDir), ...this.options.envVariables },
      volumeMounts: [{ path: modelDir, volume }],
      resources: this.options.resources ?? {
        cpu: { request: kplus.Cpu.millis(500) },
        memory: { request: memory, limit: memory },
      },
      securityContext: restrictedContainerSecurity(),
    };
    return { volume, readOnly: true, initContainer };
  }
}

/** A spread of the worker pods over a topology domain (zone, node). */
export interface WorkerTopologySpread {
  /**
   * The node label that defines the domain.
   * @example 'topology.kubernetes.io/zone'
   */
  readonly topologyKey: string;

  /**
   * Largest allowed difference in pod count between two domains.
   * @default 1
   */
  readonly maxSkew?: number;

  /**
   * Whether a pod that would break the skew stays pending (`DoNotSchedule`) or is placed anyway (`ScheduleAnyway`).
   * GPU capacity is often in one zone only, so the default never blocks a worker from starting.
   * @default 'ScheduleAnyway'
   */
  readonly whenUnsatisfiable?: 'DoNotSchedule' | 'ScheduleAnyway';
}

/** Properties of a {@link GpuWorkerDeployment}. */
export interface GpuWorkerDeploymentProps {
  /**
   * Name of the Deployment, its PodDisruptionBudget and the `app.kubernetes.io/name` label of its pods.
   * An RFC 1123 label, because it also becomes a label value and the prefix of every pod name.
   * @default - derived from the construct path, shortened with a hash to 63 characters
   */
  readonly name?: string;

  /**
   * The worker image.
   * @default DEFAULT_WORKER_IMAGE (the image built from worker/Dockerfile)
   */
  readonly image?: string;

  /**
   * When the kubelet pulls the image. A pinned tag never changes, so pulling again only slows scale-up.
   * @default kplus.ImagePullPolicy.IF_NOT_PRESENT
   */
  readonly imagePullPolicy?: kplus.ImagePullPolicy;

  /**
   * The Secret key that holds the AMQP URL with credentials (`amqp://user:pass@host:5672/vhost`). The URL is
   * never written into the manifest; the worker reads it from `RABBITMQ_URL`.
   */
  readonly rabbitmqUrl: kplus.SecretValue;

  /**
   * Queue the workers consume `AIGenerationJobRequested` messages from.
   * @default WORKER_DEFAULTS.jobQueue ('ai-generation-jobs')
   */
  readonly queue?: string;

  /**
   * Exchange the results are published to.
   * @default WORKER_DEFAULTS.resultsExchange
   */
  readonly resultsExchange?: string;

  /**
   * Exchange rejected jobs are dead-lettered to.
   * @default WORKER_DEFAULTS.deadLetterExchange
   */
  readonly deadLetterExchange?: string;

  /**
   * Queue bound to the dead-letter exchange.
   * @default WORKER_DEFAULTS.deadLetterQueue
   */
  readonly deadLetterQueue?: string;

  /**
   * Deliveries of one job before the broker dead-letters it.
   * @default WORKER_DEFAULTS.deliveryLimit (3)
   */
  readonly deliveryLimit?: number;

  /**
   * Largest number of jobs run as one inference call.
   * @default WORKER_DEFAULTS.maxBatchSize (8)
   */
  readonly maxBatchSize?: number;

  /**
   * How long a partial batch waits for more jobs.
   * @default Duration.millis(WORKER_DEFAULTS.maxBatchWaitMs) (5 ms)
   */
  readonly maxBatchWait?: Duration;

  /**
   * Unacknowledged jobs the broker may push to one worker. At least `maxBatchSize`, or batches never fill.
   * Kept equal to it by default: jobs prefetched by one pod are invisible to the others, so a larger prefetch
   * only makes a busy pod hoard work that an idle pod could start.
   * @default - `maxBatchSize`
   */
  readonly prefetch?: number;

  /**
   * Largest accepted message body; larger jobs fail as oversize.
   * @default Size.mebibytes(16)
   */
  readonly maxMessageSize?: Size;

  /** Where the model comes from; mounted at the directory of `modelPath`. */
  readonly model: ModelSource;

  /**
   * Path of the ONNX model file inside the container.
   * @default WORKER_DEFAULTS.modelPath ('/models/model.onnx')
   */
  readonly modelPath?: string;

  /**
   * onnxruntime execution provider. `cuda` on GPU nodes, so that a pod whose GPU or CUDA libraries are missing
   * fails at start-up instead of silently running on CPU a hundred times slower.
   * @default 'cuda'
   */
  readonly executionProvider?: ExecutionProviderChoice;

  /**
   * Longest time one job (or one batch) takes from receipt to acknowledgement. The pod's termination grace period
   * is derived from it, so that a scale-down lets the running job finish instead of killing it.
   */
  readonly maxJobDuration: Duration;

  /**
   * Time added to `maxJobDuration` for the worker to publish the last result, ack it and close its connection.
   * `terminationGracePeriodSeconds` = `maxJobDuration` + `shutdownMargin`; the worker's own deadline
   * (`SHUTDOWN_TIMEOUT_MS`) is `maxJobDuration`, so it gives up before the kubelet kills it.
   * @default Duration.seconds(30)
   */
  readonly shutdownMargin?: Duration;

  /**
   * How long a new pod may take to load its model and connect before it is restarted: the startup probe's window.
   * Model load includes reading a multi-gigabyte file and initialising CUDA; with `ModelSource.fromInitContainer`
   * the download happens before this window starts.
   * @default Duration.minutes(10)
   */
  readonly startupTimeout?: Duration;

  /**
   * GPUs per pod. Whole numbers only: extended resources cannot be shared fractionally; use a MIG or
   * time-slicing resource name for a share of a GPU.
   * @default 1
   */
  readonly gpuCount?: number;

  /**
   * The extended resource requested, e.g. `nvidia.com/mig-1g.5gb` for a MIG profile.
   * @default NVIDIA_GPU_RESOURCE ('nvidia.com/gpu')
   */
  readonly gpuResourceName?: string;

  /**
   * Node labels the pods require (node affinity), e.g. `{ 'nvidia.com/gpu.product': 'NVIDIA-A10G' }`.
   * Not set by default: the GPU request already limits the pods to nodes that advertise the resource, and a
   * required label that a scaled-to-zero node group does not declare stops the cluster autoscaler from ever
   * adding a node for them.
   * @default - none
   */
  readonly gpuNodeSelector?: Record<string, string>;

  /**
   * Tolerate the `nvidia.com/gpu` NoSchedule taint that GPU node groups carry to keep other pods off.
   * @default true
   */
  readonly tolerateGpuTaint?: boolean;

  /**
   * RuntimeClass of the pods, e.g. `nvidia` where the NVIDIA container runtime is not the node default.
   * @see https://kubernetes.io/docs/concepts/containers/runtime-class/
   * @default - the node's default runtime
   */
  readonly runtimeClassName?: string;

  /**
   * PriorityClass of the pods.
   * @see https://kubernetes.io/docs/concepts/scheduling-eviction/pod-priority-preemption/
   * @default - the cluster default
   */
  readonly priorityClassName?: string;

  /**
   * Topology spread constraints of the pods.
   * @see https://kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/
   * @default - none
   */
  readonly topologySpread?: WorkerTopologySpread[];

  /**
   * Size of `/dev/shm`, a memory-backed emptyDir. Counts against the memory limit.
   * @default Size.gibibytes(1)
   */
  readonly sharedMemorySize?: Size;

  /**
   * Size of the writable `/tmp` (the root filesystem is read-only).
   * @default Size.gibibytes(1)
   */
  readonly tmpSize?: Size;

  /**
   * CPU requested per pod, for decoding inputs and encoding results. No CPU limit is set: a throttled worker
   * leaves its GPU idle.
   * @default kplus.Cpu.units(2)
   */
  readonly cpuRequest?: kplus.Cpu;

  /**
   * Memory requested per pod; also its limit, so the pod is never the first evicted under memory pressure.
   * @default Size.gibibytes(8)
   */
  readonly memory?: Size;

  /**
   * User and group the container runs as (non-root).
   * @default 10001
   */
  readonly runAsUser?: number;

  /**
   * pino log level of the worker.
   * @default 'info'
   */
  readonly logLevel?: WorkerLogLevel;

  /**
   * A fixed number of pods, for a deployment that no autoscaler manages. Leave it unset when an autoscaler
   * (`QueueScaledHpa`, KEDA) targets this deployment: giving both is an error.
   * @default - none when autoscaled; 2 otherwise (cdk8s-plus default), so one eviction never stops processing
   */
  readonly replicas?: number;

  /**
   * Largest number of pods a voluntary disruption (node drain, cluster autoscaler scale-down) may take at once.
   * An absolute number rather than `minAvailable`, so that a single-replica deployment can still be drained.
   * @default 1
   */
  readonly maxUnavailable?: number;

  /**
   * Pod-level ServiceAccount.
   * @default - the namespace's default ServiceAccount, with no API token mounted
   */
  readonly serviceAccount?: kplus.IServiceAccount;
}

/**
 * GPU inference workers that consume a RabbitMQ queue: a Deployment (cdk8s-plus) with a GPU limit, the worker's
 * environment contract, probes, a grace period sized for the longest job, the Pod Security "restricted" profile,
 * and a PodDisruptionBudget.
 *
 * It is a scaling target ({@link kplus.IScalable}): an autoscaler calls `markHasAutoscaler()`, after which the
 * Deployment carries no `spec.replicas`.
 */
export class GpuWorkerDeployment extends Construct implements kplus.IScalable {
  /** The cdk8s-plus Deployment underneath. */
  public readonly deployment: kplus.Deployment;

  /** The worker container. */
  public readonly container: kplus.Container;

  /** The PodDisruptionBudget of the worker pods. */
  public readonly podDisruptionBudget: k8s.KubePodDisruptionBudget;

  /** Name of the Deployment (and of the PodDisruptionBudget). */
  public readonly name: string;

  /** Namespace of the Deployment: the chart's namespace, undefined when the chart sets none. */
  public readonly namespace?: string;

  /** Labels every worker pod carries, and the Deployment's selector. PodMonitors select the pods by them. */
  public readonly podSelectorLabels: Record<string, string>;

  /** Queue the workers consume. */
  public readonly queue: string;

  /** Queue that rejected jobs are dead-lettered to. */
  public readonly deadLetterQueue: string;

  /** Unacknowledged jobs the broker may push to one worker. */
  public readonly prefetch: number;

  /** Largest number of jobs run as one inference call. */
  public readonly maxBatchSize: number;

  /** Longest job, as given. */
  public readonly maxJobDuration: Duration;

  /** Longest a worker pod may take to become ready: the startup probe's window. */
  public readonly startupTimeout: Duration;

  /** The pods' termination grace period: `maxJobDuration` + `shutdownMargin`. */
  public readonly terminationGracePeriod: Duration;

  /** The extended resource requested per pod, and how many. */
  public readonly gpu: { readonly resourceName: string; readonly count: number };

  private readonly fixedReplicas?: number;

  constructor(scope: Construct, id: string, props: GpuWorkerDeploymentProps) {
    super(scope, id);

    // Validate the props and resolve every default, in one place (see the resolve* functions below the class).
    const queues = resolveQueues(props);
    const batching = resolveBatching(props);
    const timing = resolveTiming(props);
    const pod = resolvePod(props);
    this.name = checkDnsLabel(CONSTRUCT, 'name', props.name ?? Names.toDnsLabel(this));
    this.queue = queues.jobQueue;
    this.deadLetterQueue = queues.deadLetterQueue;
    this.prefetch = batching.prefetch;
    this.maxBatchSize = batching.maxBatchSize;
    this.maxJobDuration = props.maxJobDuration;
    this.startupTimeout = Duration.millis(timing.startupMs);
    this.terminationGracePeriod = timing.gracePeriod;
    this.gpu = pod.gpu;
    this.fixedReplicas = pod.fixedReplicas;
    // Labels chosen here rather than cdk8s-plus's generated one, so that monitors can select the pods by name.
    this.podSelectorLabels = {
      'app.kubernetes.io/name': this.name,
      'app.kubernetes.io/component': GPU_WORKER_COMPONENT,
    };

    // Build each part: the pods, the worker container, GPU placement, and the disruption budget.
    const modelDir = posix.dirname(pod.modelPath);
    const model = props.model.bind(this, modelDir);
    this.deployment = this.createDeployment(props, pod, timing, model);
    this.container = this.addWorkerContainer(props, { queues, batching, timing, pod }, modelDir, model);
    this.placeOnGpuNodes(props, pod);
    this.podDisruptionBudget = this.createDisruptionBudget(pod);
    this.namespace = ApiObject.of(this.deployment).metadata.namespace;

    // A fixed replica count on an autoscaling target is caught here too if the autoscaler marked the inner Deployment.
    this.node.addValidation({
      validate: () => (this.deployment.hasAutoscaler && this.fixedReplicas !== undefined
        ? [fixedReplicasMessage(this.fixedReplicas)] : []),
    });
  }

  /** The Deployment and its pod template, selected by {@link podSelectorLabels}. */
  private createDeployment(
    props: GpuWorkerDeploymentProps, pod: ResolvedPod, timing: ResolvedTiming, model: ModelSourceBinding,
  ): kplus.Deployment {
    const deployment = new kplus.Deployment(this, 'Deployment', {
      metadata: { name: this.name, labels: this.podSelectorLabels },
      select: false,
      replicas: this.fixedReplicas,
      terminationGracePeriod: this.terminationGracePeriod,
      // A rollout is only stuck once new pods had their whole start-up window.
      progressDeadline: Duration.seconds(Math.max(600, Math.ceil(timing.startupMs / 1000) + 300)),
      securityContext: {
        ensureNonRoot: true,
        user: pod.runAsUser,
        group: pod.runAsUser,
        fsGroup: pod.runAsUser,
        // A model volume holds few, large files; a recursive chown on every mount would only slow start-up.
        fsGroupChangePolicy: kplus.FsGroupChangePolicy.ON_ROOT_MISMATCH,
      },
      serviceAccount: props.serviceAccount,
      automountServiceAccountToken: false,
      initContainers: model.initContainer ? [model.initContainer] : undefined,
    });
    deployment.select(kplus.LabelSelector.of({ labels: this.podSelectorLabels }));
    Object.entries(this.podSelectorLabels).forEach(([key, value]) => deployment.podMetadata.addLabel(key, value));
    return deployment;
  }

  /** The worker container, its part of the environment contract, and its volumes (model, /tmp, /dev/shm). */
  private addWorkerContainer(
    props: GpuWorkerDeploymentProps,
    resolved: { queues: ResolvedQueues; batching: ResolvedBatching; timing: ResolvedTiming; pod: ResolvedPod },
    modelDir: string,
    model: ModelSourceBinding,
  ): kplus.Container {
    const { queues, batching, timing, pod } = resolved;
    const container = this.deployment.addContainer({
      name: WORKER_CONTAINER_NAME,
      image: props.image ?? DEFAULT_WORKER_IMAGE,
      imagePullPolicy: props.imagePullPolicy ?? kplus.ImagePullPolicy.IF_NOT_PRESENT,
      ports: [{ number: WorkerHttp.port, name: WorkerHttp.portName, protocol: kplus.Protocol.TCP }],
      envVariables: workerEnv(props.rabbitmqUrl, queues, batching, timing, pod),
      resources: {
        cpu: { request: props.cpuRequest ?? kplus.Cpu.units(2) },
        memory: { request: pod.memory, limit: pod.memory },
      },
      securityContext: { ...restrictedContainerSecurity(), user: pod.runAsUser, group: pod.runAsUser },
      ...workerProbes(timing.startupMs),
    });
    container.mount(modelDir, model.volume, { readOnly: model.readOnly, subPath: model.subPath });
    container.mount('/tmp', kplus.Volume.fromEmptyDir(this, 'TmpVolume', 'tmp', { sizeLimit: pod.tmpSize }));
    container.mount('/dev/shm', kplus.Volume.fromEmptyDir(this, 'ShmVolume', 'dshm', {
      medium: kplus.EmptyDirMedium.MEMORY,
      sizeLimit: pod.sharedMemory,
    }));
    return container;
  }

  /** The GPU toleration and node labels, then what cdk8s-plus cannot express, patched onto the pod spec. */
  private placeOnGpuNodes(props: GpuWorkerDeploymentProps, pod: ResolvedPod): void {
    // The toleration through cdk8s-plus, the node labels as required node affinity.
    if (props.tolerateGpuTaint ?? true) {
      this.deployment.scheduling.tolerate(kplus.Node.tainted(
        kplus.NodeTaintQuery.exists(GPU_TOLERATION.key, { effect: GPU_TOLERATION.effect as kplus.TaintEffect }),
      ));
    }
    const nodeQueries = Object.entries(props.gpuNodeSelector ?? {})
      .map(([key, value]) => kplus.NodeLabelQuery.is(key, value));
    if (nodeQueries.length > 0) this.deployment.scheduling.attract(kplus.Node.labeled(...nodeQueries));

    // What cdk8s-plus 27 cannot express: extended resources, seccomp, runtime and priority class, topology spread.
    // Shortcoming: these are JSON patches on the synthesized Deployment, so `deployment.addContainer()` after this
    // point adds containers without a GPU (only container 0 gets one), and a cdk8s-plus upgrade that writes the
    // same fields itself would need the patches removed.
    this.patchPodSpec({
      gpuResource: this.gpu.resourceName,
      gpuCount: this.gpu.count,
      runtimeClassName: pod.runtimeClassName,
      priorityClassName: pod.priorityClassName,
      spreads: pod.spreads,
    });
  }

  /** Voluntary disruptions take at most `maxUnavailable` pods; crash-looping pods never block a node drain. */
  private createDisruptionBudget(pod: ResolvedPod): k8s.KubePodDisruptionBudget {
    return new k8s.KubePodDisruptionBudget(this, 'Budget', {
      metadata: { name: this.name, labels: this.podSelectorLabels },
      spec: {
        maxUnavailable: k8s.IntOrString.fromNumber(pod.maxUnavailable),
        selector: { matchLabels: this.podSelectorLabels },
        unhealthyPodEvictionPolicy: 'AlwaysAllow',
      },
    });
  }

  /** Whether an autoscaler targets this deployment. */
  public get hasAutoscaler(): boolean {
    return this.deployment.hasAutoscaler;
  }

  /**
   * Called by an autoscaler (HPA, KEDA) that targets this deployment: the Deployment then omits `spec.replicas`,
   * so the autoscaler and a GitOps sync never fight over it. Throws if `replicas` was fixed.
   */
  public markHasAutoscaler(): void {
    if (this.fixedReplicas !== undefined) {
      throw new Error(fixedReplicasMessage(this.fixedReplicas));
    }
    this.deployment.markHasAutoscaler();
  }

  /** The `scaleTargetRef` of an autoscaler: kind, apiVersion and name of the Deployment. */
  public toScalingTarget(): kplus.ScalingTarget {
    return {
      kind: 'Deployment',
      apiVersion: 'apps/v1',
      name: this.name,
      containers: this.deployment.containers,
      replicas: this.fixedReplicas,
    };
  }

  /** Adds the pod spec fields cdk8s-plus has no API for, as JSON patches on the Deployment. */
  private patchPodSpec(options: {
    gpuResource: string;
    gpuCount: number;
    runtimeClassName?: string;
    priorityClassName?: string;
    spreads: k8s.TopologySpreadConstraint[];
  }): void {
    const api = ApiObject.of(this.deployment);
    const pod = '/spec/template/spec';
    const resource = options.gpuResource.replace(/~/g, '~0').replace(/\//g, '~1');
    // Extended resources cannot be overcommitted: request and limit must be equal. The patched document still goes
    // through cdk8s-plus's typed serializer, which reads resource amounts as Quantity objects, hence the Quantity.
    const gpus = k8s.Quantity.fromString(String(options.gpuCount));
    api.addJsonPatch(
      JsonPatch.add(`${pod}/containers/0/resources/limits/${resource}`, gpus),
      JsonPatch.add(`${pod}/containers/0/resources/requests/${resource}`, gpus),
      JsonPatch.add(`${pod}/securityContext/seccompProfile`, { type: 'RuntimeDefault' }),
    );
    if (options.runtimeClassName) api.addJsonPatch(JsonPatch.add(`${pod}/runtimeClassName`, options.runtimeClassName));
    if (options.priorityClassName) {
      api.addJsonPatch(JsonPatch.add(`${pod}/priorityClassName`, options.priorityClassName));
    }
    if (options.spreads.length > 0) {
      const constraints = options.spreads.map((s) => ({
        ...k8s.toJson_TopologySpreadConstraint(s),
        labelSelector: { matchLabels: this.podSelectorLabels },
      }));
      api.addJsonPatch(JsonPatch.add(`${pod}/topologySpreadConstraints`, constraints));
    }
  }
}

/** Queue topology of the worker, checked. */
interface ResolvedQueues {
  readonly jobQueue: string;
  readonly deadLetterQueue: string;
  readonly resultsExchange: string;
  readonly deadLetterExchange: string;
  readonly deliveryLimit: number;
}

function resolveQueues(props: GpuWorkerDeploymentProps): ResolvedQueues {
  const jobQueue = checkQueueName('queue', props.queue ?? WORKER_DEFAULTS.jobQueue);
  const deadLetterQueue = checkQueueName('deadLetterQueue', props.deadLetterQueue ?? WORKER_DEFAULTS.deadLetterQueue);
  const resultsExchange = checkQueueName('resultsExchange', props.resultsExchange ?? WORKER_DEFAULTS.resultsExchange);
  const deadLetterExchange = checkQueueName('deadLetterExchange',
    props.deadLetterExchange ?? WORKER_DEFAULTS.deadLetterExchange);
  if (jobQueue === deadLetterQueue) {
    invalidProp(CONSTRUCT, 'deadLetterQueue',
      `is the job queue (${JSON.stringify(jobQueue)}), so dead-lettered jobs would be consumed again`,
      'Give the dead-letter queue its own name.');
  }
  if (resultsExchange === deadLetterExchange) {
    invalidProp(CONSTRUCT, 'deadLetterExchange', `is the results exchange (${JSON.stringify(resultsExchange)})`,
      'Give the dead-letter exchange its own name, so rejected jobs are not mixed with results.');
  }
  const deliveryLimit = checkBetween('deliveryLimit', props.deliveryLimit ?? WORKER_DEFAULTS.deliveryLimit,
    WORKER_LIMITS.deliveryLimit);
  return { jobQueue, deadLetterQueue, resultsExchange, deadLetterExchange, deliveryLimit };
}

/** How the worker takes and batches jobs, checked. */
interface ResolvedBatching {
  readonly maxBatchSize: number;
  readonly prefetch: number;
  readonly maxBatchWaitMs: number;
  readonly maxMessageBytes: number;
}

function resolveBatching(props: GpuWorkerDeploymentProps): ResolvedBatching {
  const maxBatchSize = checkBetween('maxBatchSize', props.maxBatchSize ?? WORKER_DEFAULTS.maxBatchSize,
    WORKER_LIMITS.maxBatchSize);
  const prefetch = checkBetween('prefetch', props.prefetch ?? defaultPrefetch(maxBatchSize), WORKER_LIMITS.prefetch);
  if (prefetch < maxBatchSize) {
    invalidProp(CONSTRUCT, 'prefetch',
      `(${prefetch}) is less than \`maxBatchSize\` (${maxBatchSize}), so batches never fill`,
      'Set `prefetch` >= `maxBatchSize`, or lower `maxBatchSize`.');
  }
  const wait = props.maxBatchWait ?? Duration.millis(WORKER_DEFAULTS.maxBatchWaitMs);
  const waitMs = checkDurationMs('maxBatchWait', wait, 0);
  const messageSize = props.maxMessageSize ?? Size.kibibytes(WORKER_DEFAULTS.maxMessageBytes / 1024);
  return {
    maxBatchSize,
    prefetch,
    maxBatchWaitMs: checkBetween('maxBatchWait (ms)', waitMs, WORKER_LIMITS.maxBatchWaitMs),
    maxMessageBytes: checkBetween('maxMessageSize (bytes)', Math.floor(checkSizeBytes('maxMessageSize', messageSize)),
      WORKER_LIMITS.maxMessageBytes),
  };
}

/** Start-up and shutdown times, checked. */
interface ResolvedTiming {
  /** The worker's own shutdown deadline: `maxJobDuration`. */
  readonly shutdownTimeoutMs: number;
  /** `maxJobDuration` + `shutdownMargin`, in whole seconds. */
  readonly gracePeriod: Duration;
  readonly startupMs: number;
}

function resolveTiming(props: GpuWorkerDeploymentProps): ResolvedTiming {
  const maxJobMs = Math.ceil(checkDurationMs('maxJobDuration', props.maxJobDuration, 1));
  if (maxJobMs > WORKER_LIMITS.shutdownTimeoutMs.max) {
    invalidProp(CONSTRUCT, 'maxJobDuration',
      `is ${props.maxJobDuration.toHumanString()}, longer than the worker's 24-hour shutdown limit`,
      'Split the work into shorter jobs, or run it as Kubernetes Jobs (KEDA ScaledJob) instead.');
  }
  const marginMs = checkDurationMs('shutdownMargin', props.shutdownMargin ?? Duration.seconds(30), 1);
  return {
    shutdownTimeoutMs: maxJobMs,
    gracePeriod: Duration.seconds(Math.ceil((maxJobMs + marginMs) / 1000)),
    startupMs: checkDurationMs('startupTimeout', props.startupTimeout ?? Duration.minutes(10), 10_000),
  };
}

/** What the pod asks of its node and the cluster, checked. */
interface ResolvedPod {
  readonly modelPath: string;
  readonly executionProvider: ExecutionProviderChoice;
  readonly logLevel: WorkerLogLevel;
  readonly gpu: { readonly resourceName: string; readonly count: number };
  readonly memory: Size;
  readonly sharedMemory: Size;
  readonly tmpSize: Size;
  readonly runAsUser: number;
  readonly runtimeClassName?: string;
  readonly priorityClassName?: string;
  readonly spreads: k8s.TopologySpreadConstraint[];
  readonly fixedReplicas?: number;
  readonly maxUnavailable: number;
}

function resolvePod(props: GpuWorkerDeploymentProps): ResolvedPod {
  const executionProvider = props.executionProvider ?? 'cuda';
  if (!EXECUTION_PROVIDERS.includes(executionProvider)) {
    invalidProp(CONSTRUCT, 'executionProvider', `is ${JSON.stringify(executionProvider)}`,
      `Use one of ${EXECUTION_PROVIDERS.join(', ')}.`);
  }
  const logLevel = props.logLevel ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    invalidProp(CONSTRUCT, 'logLevel', `is ${JSON.stringify(logLevel)}`, `Use one of ${LOG_LEVELS.join(', ')}.`);
  }
  const memory = props.memory ?? Size.gibibytes(8);
  const sharedMemory = props.sharedMemorySize ?? Size.gibibytes(1);
  const sharedMemoryBytes = checkSizeBytes('sharedMemorySize', sharedMemory);
  const memoryBytes = checkSizeBytes('memory', memory);
  if (sharedMemoryBytes >= memoryBytes) {
    const given = props.sharedMemorySize === undefined ? 'the default 1 GiB' : mebibytes(sharedMemoryBytes);
    invalidProp(CONSTRUCT, 'sharedMemorySize',
      `(${given}) is not smaller than \`memory\` (${mebibytes(memoryBytes)}); /dev/shm is charged to the memory limit`,
      'Lower `sharedMemorySize` (default 1 GiB) or raise `memory`.');
  }
  const tmpSize = props.tmpSize ?? Size.gibibytes(1);
  checkSizeBytes('tmpSize', tmpSize);
  checkSecretKey(props.rabbitmqUrl);
  if (props.runtimeClassName !== undefined) checkDnsSubdomain(CONSTRUCT, 'runtimeClassName', props.runtimeClassName);
  if (props.priorityClassName !== undefined) checkDnsSubdomain(CONSTRUCT, 'priorityClassName', props.priorityClassName);
  Object.entries(props.gpuNodeSelector ?? {}).forEach(([key, value]) => checkNodeLabel(key, value));
  return {
    modelPath: checkModelPath(props.modelPath ?? WORKER_DEFAULTS.modelPath),
    executionProvider,
    logLevel,
    gpu: {
      resourceName: checkExtendedResourceName(props.gpuResourceName ?? NVIDIA_GPU_RESOURCE),
      count: checkInteger(CONSTRUCT, 'gpuCount', props.gpuCount ?? 1),
    },
    memory,
    sharedMemory,
    tmpSize,
    runAsUser: checkInteger(CONSTRUCT, 'runAsUser', props.runAsUser ?? 10001),
    runtimeClassName: props.runtimeClassName,
    priorityClassName: props.priorityClassName,
    spreads: (props.topologySpread ?? []).map((s, i) => checkSpread(s, i)),
    fixedReplicas: props.replicas === undefined ? undefined : checkInteger(CONSTRUCT, 'replicas', props.replicas, 0),
    maxUnavailable: checkInteger(CONSTRUCT, 'maxUnavailable', props.maxUnavailable ?? 1),
  };
}

/** Every variable of the worker's environment contract. */
function workerEnv(
  rabbitmqUrl: kplus.SecretValue,
  queues: ResolvedQueues,
  batching: ResolvedBatching,
  timing: ResolvedTiming,
  pod: ResolvedPod,
): Record<string, kplus.EnvValue> {
  const value = (v: string | number) => kplus.EnvValue.fromValue(String(v));
  return {
    [WorkerEnv.RABBITMQ_URL]: kplus.EnvValue.fromSecretValue(rabbitmqUrl),
    [WorkerEnv.JOB_QUEUE]: value(queues.jobQueue),
    [WorkerEnv.RESULTS_EXCHANGE]: value(queues.resultsExchange),
    [WorkerEnv.DEAD_LETTER_EXCHANGE]: value(queues.deadLetterExchange),
    [WorkerEnv.DEAD_LETTER_QUEUE]: value(queues.deadLetterQueue),
    [WorkerEnv.DELIVERY_LIMIT]: value(queues.deliveryLimit),
    [WorkerEnv.PREFETCH]: value(batching.prefetch),
    [WorkerEnv.MAX_BATCH_SIZE]: value(batching.maxBatchSize),
    [WorkerEnv.MAX_BATCH_WAIT_MS]: value(batching.maxBatchWaitMs),
    [WorkerEnv.MAX_MESSAGE_BYTES]: value(batching.maxMessageBytes),
    [WorkerEnv.MODEL_PATH]: value(pod.modelPath),
    [WorkerEnv.EXECUTION_PROVIDER]: value(pod.executionProvider),
    [WorkerEnv.HTTP_PORT]: value(WorkerHttp.port),
    [WorkerEnv.SHUTDOWN_TIMEOUT_MS]: value(timing.shutdownTimeoutMs),
    [WorkerEnv.WORKER_ID]: kplus.EnvValue.fromFieldRef(kplus.EnvFieldPaths.POD_NAME),
    [WorkerEnv.LOG_LEVEL]: value(pod.logLevel),
  };
}

/**
 * The worker's probes on its one HTTP port. Startup and readiness both wait for the model and the broker (the
 * startup window sized for a model load); liveness only asks whether the process answers.
 */
function workerProbes(startupMs: number): Pick<kplus.ContainerProps, 'startup' | 'readiness' | 'liveness'> {
  const period = Duration.seconds(10);
  const probe = (path: string, failureThreshold: number) => kplus.Probe.fromHttpGet(path, {
    port: WorkerHttp.port,
    periodSeconds: period,
    failureThreshold,
    timeoutSeconds: Duration.seconds(5),
  });
  return {
    startup: probe(WorkerHttp.readyPath, Math.ceil(startupMs / period.toMilliseconds())),
    readiness: probe(WorkerHttp.readyPath, 3),
    liveness: probe(WorkerHttp.healthPath, 3),
  };
}

/** The container security context of the Pod Security "restricted" profile, with a read-only root filesystem. */
function restrictedContainerSecurity(): kplus.ContainerSecurityContextProps {
  return {
    ensureNonRoot: true,
    privileged: false,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    // cdk8s-plus's Capability enum lists single capabilities only; "ALL" is what the API and the profile expect.
    capabilities: { drop: ['ALL' as kplus.Capability] },
  };
}

function fixedReplicasMessage(replicas: number): string {
  return `${CONSTRUCT}: \`replicas\` is fixed at ${replicas}, but an autoscaler targets this deployment. `
    + 'Remove `replicas`: the autoscaler owns the replica count, and a fixed one would be reset on every sync.';
}

function checkBetween(prop: string, value: number, { min, max }: { min: number; max: number }): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    invalidProp(CONSTRUCT, prop, `is ${value}`,
      `Use a whole number from ${min} to ${max}, the range the worker accepts.`);
  }
  return value;
}

function checkQueueName(prop: string, value: string): string {
  checkNonEmpty(CONSTRUCT, prop, value);
  if (Buffer.byteLength(value) > 255) {
    invalidProp(CONSTRUCT, prop, 'is longer than 255 bytes, the AMQP limit', 'Use a shorter name.');
  }
  if (value.startsWith('amq.')) {
    invalidProp(CONSTRUCT, prop, `is ${JSON.stringify(value)}; names starting with "amq." are reserved by the broker`,
      'Choose another name.');
  }
  return value;
}

function checkDurationMs(prop: string, value: Duration, minMs: number): number {
  const ms = value.toMilliseconds({ integral: false });
  if (!Number.isFinite(ms) || ms < minMs) {
    const fix = minMs === 0 ? 'Use a duration of 0 or more.' : `Use a duration of at least ${minMs} ms.`;
    invalidProp(CONSTRUCT, prop, `is ${ms} ms`, minMs === 1 ? 'Use a positive duration.' : fix);
  }
  return ms;
}

function checkSizeBytes(prop: string, value: Size): number {
  const bytes = value.toKibibytes() * 1024;
  if (!Number.isFinite(bytes) || bytes <= 0) {
    invalidProp(CONSTRUCT, prop, 'is not a positive size', 'Give a size greater than zero, e.g. Size.gibibytes(1).');
  }
  return bytes;
}

/** A byte count as MiB for error messages, e.g. "512 MiB" or "0.5 MiB". */
function mebibytes(bytes: number): string {
  return `${Number((bytes / 2 ** 20).toFixed(2))} MiB`;
}

function checkModelPath(value: string): string {
  const dir = posix.dirname(value);
  if (!posix.isAbsolute(value) || value.endsWith('/') || dir === '/' || ['/tmp', '/dev', '/dev/shm'].includes(dir)) {
    invalidProp(CONSTRUCT, 'modelPath', `is ${JSON.stringify(value)}`,
      'Give an absolute file path in a directory of its own, e.g. /models/model.onnx; '
        + 'that directory is mounted from `model`.');
  }
  return value;
}

const QUALIFIED_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

function checkExtendedResourceName(value: string): string {
  const [prefix, name, extra] = value.split('/');
  const valid = extra === undefined && name !== undefined && name.length <= 63 && QUALIFIED_NAME.test(name)
    && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(prefix)
    && !prefix.endsWith('kubernetes.io') && prefix !== 'requests';
  if (!valid) {
    invalidProp(CONSTRUCT, 'gpuResourceName', `is ${JSON.stringify(value)}, not an extended resource name`,
      'Use `<vendor domain>/<name>` outside kubernetes.io, e.g. nvidia.com/gpu or nvidia.com/mig-1g.5gb.');
  }
  return value;
}

function checkNodeLabel(key: string, value: string): void {
  const parts = key.split('/');
  const name = parts[parts.length - 1];
  const prefixOk = parts.length === 1 || (parts.length === 2 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(parts[0]));
  if (!prefixOk || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    invalidProp(CONSTRUCT, `gpuNodeSelector[${JSON.stringify(key)}]`, 'is not a valid label key',
      'Use `[prefix/]name` with a name of at most 63 characters.');
  }
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    invalidProp(CONSTRUCT, `gpuNodeSelector[${JSON.stringify(key)}]`,
      `has value ${JSON.stringify(value)}, not a valid label value`,
      'Use at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit.');
  }
}

function checkSecretKey(ref: kplus.SecretValue): void {
  // The type says `{ secret, key }`, but JavaScript callers and `as any` can pass a literal URL or a half-filled ref.
  const candidate = ref as unknown;
  const secret = typeof candidate === 'object' && candidate !== null
    ? (candidate as { secret?: unknown }).secret : undefined;
  const secretName = typeof secret === 'object' && secret !== null ? (secret as { name?: unknown }).name : undefined;
  if (typeof secretName !== 'string' || typeof (candidate as { key?: unknown }).key !== 'string') {
    invalidProp(CONSTRUCT, 'rabbitmqUrl', 'must be a Secret reference `{ secret, key }`',
      'Put the AMQP URL (it holds credentials) in a Secret and pass `{ secret, key }`; a literal URL is never accepted.');
  }
  checkDnsSubdomain(CONSTRUCT, 'rabbitmqUrl.secret', secretName);
  if (!/^[-._a-zA-Z0-9]+$/.test(ref.key) || ref.key.length > 253) {
    invalidProp(CONSTRUCT, 'rabbitmqUrl.key', `is ${JSON.stringify(ref.key)}, not a valid Secret key`,
      'Use the key of the Secret entry that holds the URL: letters, digits, "-", "_" or ".".');
  }
}

function checkSpread(spread: WorkerTopologySpread, index: number): k8s.TopologySpreadConstraint {
  checkNonEmpty(CONSTRUCT, `topologySpread[${index}].topologyKey`, spread.topologyKey);
  return {
    topologyKey: spread.topologyKey,
    maxSkew: checkInteger(CONSTRUCT, `topologySpread[${index}].maxSkew`, spread.maxSkew ?? 1),
    whenUnsatisfiable: spread.whenUnsatisfiable ?? 'ScheduleAnyway',
    // Count only the pods of the current ReplicaSet, so a rolling update does not skew the spread.
    matchLabelKeys: ['pod-template-hash'],
  };
}

import { ApiObject, Duration, JsonPatch, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import * as yaml from 'yaml';
import * as k8s from '../imports/k8s';
import * as monitoring from '../imports/monitoring.coreos.com';
import { GpuNodeGroup, NodeGroup, ResolvedGpuNodeGroup, checkSizes, resolveGpuNodeGroup } from './cluster-autoscaler/node-groups';
import {
  CLUSTER_AUTOSCALER_PROVIDERS,
  ClusterAutoscalerProvider,
  NodeGroupCloudSettings,
  ProviderSetup,
  clusterApiAnnotations,
} from './cluster-autoscaler/providers';
import { clusterRules, namespaceRules, PRIORITY_EXPANDER_CONFIGMAP } from './cluster-autoscaler/rbac';
import { CLUSTER_AUTOSCALER_IMAGE_REPOSITORY, CLUSTER_AUTOSCALER_TAGS, kubernetesMinor } from './cluster-autoscaler/versions';
import { NVIDIA_GPU_RESOURCE } from './gpu-node-labels';
import { invalidProp } from './validation';

export * from './cluster-autoscaler/node-groups';
export * from './cluster-autoscaler/providers';
export * from './cluster-autoscaler/rbac';
export * from './cluster-autoscaler/versions';

const CONSTRUCT = 'ClusterAutoscalerConfig';

/** The namespace the autoscaler runs in, as upstream deploys it. */
export const CLUSTER_AUTOSCALER_NAMESPACE = 'kube-system';

/**
 * Pod annotation the autoscaler reads: `"false"` stops it from evicting the pod to remove its node. Put it on pods
 * that must not be moved mid-job; the autoscaler's own pod carries it so its node is not drained under it.
 */
export const SAFE_TO_EVICT_ANNOTATION = 'cluster-autoscaler.kubernetes.io/safe-to-evict';

/** The port of the autoscaler's metrics and health endpoint. */
export const CLUSTER_AUTOSCALER_METRICS_PORT = 8085;

/** How the autoscaler picks the node group to grow when several fit the pending pods. */
export enum GpuExpander {
  /**
   * Highest `priority` first (a ConfigMap lists the groups by priority), least waste among equals. Lets cheaper
   * or more available GPU types be tried first.
   */
  PRIORITY = 'priority',

  /** The group that leaves the least CPU and memory idle after the pods are placed. */
  LEAST_WASTE = 'least-waste',
}

/** What the autoscaler needs to know of a GPU workload to check it against the node groups (a GpuWorkerDeployment fits). */
export interface GpuWorkload {
  /** Name, for the error message. */
  readonly name: string;

  /** The pods' termination grace period: how long a drained pod may take to finish its jobs. */
  readonly terminationGracePeriod: Duration;

  /** The extended resource and count each pod requests. */
  readonly gpu: { readonly resourceName: string; readonly count: number };
}

/** Props of {@link ClusterAutoscalerConfig}. */
export interface ClusterAutoscalerConfigProps {
  /** Cloud provider and its credentials, e.g. `ClusterAutoscalerProvider.aws({ clusterName, region, credentials })`. */
  readonly provider: ClusterAutoscalerProvider;

  /**
   * Kubernetes minor version of the cluster, e.g. `1.31`; picks the autoscaler release of the same minor.
   * @see CLUSTER_AUTOSCALER_TAGS
   */
  readonly kubernetesVersion: string;

  /** The GPU node groups, each with its GPU type, count per node, sizes, labels and taints. */
  readonly gpuNodeGroups: GpuNodeGroup[];

  /**
   * Node groups without GPUs, for providers whose groups are listed explicitly (`--nodes`).
   * @default - none
   */
  readonly nodeGroups?: NodeGroup[];

  /**
   * Autoscaler image, replacing the one picked from `kubernetesVersion` (a mirror, or a patch release newer than
   * this library's table).
   * @default - registry.k8s.io/autoscaling/cluster-autoscaler at the tag for `kubernetesVersion`
   */
  readonly image?: string;

  /**
   * How to pick the group to grow.
   * @default GpuExpander.PRIORITY
   */
  readonly expander?: GpuExpander;

  /**
   * How long a node must be unneeded before it is removed. Longer than upstream's 10 minutes: a GPU node takes
   * minutes to boot, load drivers and pull a model image, so one released too early costs more than it saves.
   * @default Duration.minutes(15)
   */
  readonly scaleDownUnneededTime?: Duration;

  /**
   * How long after a scale-up the autoscaler waits before it considers scaling down at all, so that new GPU nodes
   * get their pods before they look empty.
   * @default Duration.minutes(15)
   */
  readonly scaleDownDelayAfterAdd?: Duration;

  /**
   * A GPU node whose pods request less than this share of its GPUs may be drained and removed (`0` to `1`). Low,
   * so that a node running one job on a multi-GPU machine is not drained to move that job: the move means a model
   * reload elsewhere. Empty nodes are removed regardless.
   * @default 0.3
   */
  readonly scaleDownGpuUtilizationThreshold?: number;

  /**
   * How long a new node may take to join and become ready before the autoscaler gives up on it. GPU nodes install
   * drivers and start the device plugin before they are useful; upstream's 15 minutes is tight for that.
   * @default Duration.minutes(20)
   */
  readonly maxNodeProvisionTime?: Duration;

  /**
   * How long the autoscaler lets a pod terminate when it drains a node. Must be at least the workers'
   * termination grace period, or a job cut off at this limit is lost; upstream's default is 10 minutes.
   * @default Duration.hours(1)
   */
  readonly maxGracefulTermination?: Duration;

  /**
   * Spread scale-ups evenly over groups with the same instance type, labels and taints (e.g. one group per zone).
   * @default true
   */
  readonly balanceSimilarNodeGroups?: boolean;

  /**
   * Further flags, `{ 'scan-interval': '20s' }` → `--scan-interval=20s`; a flag given here replaces the same flag
   * set by this construct.
   * @default - none
   */
  readonly extraArgs?: Record<string, string>;

  /**
   * Resources of the autoscaler container.
   * @default - 100m CPU and 600 MiB memory requested, memory limited to the same (upstream's figures)
   */
  readonly resources?: kplus.ContainerResources;

  /**
   * Have the Prometheus operator scrape the autoscaler's metrics (`cluster_autoscaler_*`: unschedulable pods,
   * failed scale-ups, node group sizes): a Service and a ServiceMonitor carrying these labels, the ones your
   * Prometheus selects (e.g. `{ release: 'kube-prometheus-stack' }`).
   * @default - no scrape objects
   */
  readonly serviceMonitorLabels?: Record<string, string>;

  /**
   * GPU workloads to check against this autoscaler: each must fit a node of some group, and its grace period
   * must fit within `maxGracefulTermination`, or a drain would cut its jobs off. More can be added with
   * {@link ClusterAutoscalerConfig.checkWorkload}.
   * @default - none
   */
  readonly workloads?: GpuWorkload[];
}

/**
 * The Kubernetes Cluster Autoscaler set up for GPU node groups, as upstream deploys it: ServiceAccount, ClusterRole
 * and Role with upstream's rules and their bindings, a Deployment in kube-system at the release that matches the
 * cluster, a PodDisruptionBudget, and (priority expander) the expander's ConfigMap.
 *
 * What the manifests cannot carry — the cloud-side template of a group at zero nodes — is in {@link scaleFromZero},
 * ready to copy into the cloud's tags or templates ({@link renderScaleFromZero} prints it).
 */
export class ClusterAutoscalerConfig extends Construct {
  /** The GPU node groups with every default applied (labels and taints their nodes will carry). */
  public readonly gpuNodeGroups: readonly ResolvedGpuNodeGroup[];

  /** Per GPU node group, what must be set on the cloud side for it to scale from zero. */
  public readonly scaleFromZero: readonly NodeGroupCloudSettings[];

  /** The autoscaler's command line, flags in the order rendered. */
  public readonly args: readonly string[];

  /** The image run. */
  public readonly image: string;

  /** The autoscaler Deployment. */
  public readonly deployment: kplus.Deployment;

  /** The autoscaler's ServiceAccount. */
  public readonly serviceAccount: kplus.ServiceAccount;

  /** The cluster-wide permissions. */
  public readonly clusterRole: k8s.KubeClusterRole;

  /** The permissions in kube-system. */
  public readonly role: k8s.KubeRole;

  /** The PodDisruptionBudget of the autoscaler. */
  public readonly podDisruptionBudget: k8s.KubePodDisruptionBudget;

  /** The priority expander's ConfigMap (priority expander only). */
  public readonly priorityExpanderConfigMap?: k8s.KubeConfigMap;

  /** The ServiceMonitor of the autoscaler's metrics (with `serviceMonitorLabels` only). */
  public readonly serviceMonitor?: monitoring.ServiceMonitor;

  /** How long the autoscaler lets a pod terminate when it drains a node. */
  public readonly maxGracefulTermination: Duration;

  constructor(scope: Construct, id: string, props: ClusterAutoscalerConfigProps) {
    super(scope, id);

    // Validate the provider and the node groups before anything is created.
    const provider = checkProvider(props.provider);
    provider.validate(CONSTRUCT);
    this.image = resolveImage(props);
    this.gpuNodeGroups = resolveGroups(provider, props);
    const otherGroups = props.nodeGroups ?? [];
    const setup = provider.setup(CONSTRUCT, [...this.gpuNodeGroups], otherGroups);
    this.scaleFromZero = this.gpuNodeGroups.map((g) => provider.cloudSettings(g));

    const expander = props.expander ?? GpuExpander.PRIORITY;
    if (!Object.values(GpuExpander).includes(expander)) {
      invalidProp(CONSTRUCT, 'expander', `is ${JSON.stringify(expander)}`, 'Use GpuExpander.PRIORITY or GpuExpander.LEAST_WASTE.');
    }
    this.maxGracefulTermination = props.maxGracefulTermination ?? Duration.hours(1);
    this.args = renderArgs(provider, setup, expander, this.gpuNodeGroups, props);
    for (const workload of props.workloads ?? []) this.checkWorkload(workload);

    const labels = { 'app.kubernetes.io/name': 'cluster-autoscaler', 'app.kubernetes.io/instance': 'cluster-autoscaler' };
    const metadata = (name: string) => ({ name, namespace: CLUSTER_AUTOSCALER_NAMESPACE, labels });

    // Identity and permissions: upstream's rules, bound to the autoscaler's ServiceAccount.
    this.serviceAccount = new kplus.ServiceAccount(this, 'service-account', {
      metadata: { ...metadata('cluster-autoscaler'), annotations: setup.serviceAccountAnnotations },
      automountToken: true,
    });
    const subjects = [{ kind: 'ServiceAccount', name: this.serviceAccount.name, namespace: CLUSTER_AUTOSCALER_NAMESPACE }];
    const minor = kubernetesMinor(props.kubernetesVersion)!;
    this.clusterRole = new k8s.KubeClusterRole(this, 'cluster-role', {
      metadata: { name: 'cluster-autoscaler', labels },
      rules: clusterRules({ dra: minor >= 32, clusterApi: setup.clusterApiRbac }),
    });
    const clusterRoleBinding = new k8s.KubeClusterRoleBinding(this, 'cluster-role-binding', {
      metadata: { name: 'cluster-autoscaler', labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: this.clusterRole.name },
      subjects,
    });
    clusterScoped(this.clusterRole);
    clusterScoped(clusterRoleBinding);
    this.role = new k8s.KubeRole(this, 'role', { metadata: metadata('cluster-autoscaler'), rules: namespaceRules() });
    new k8s.KubeRoleBinding(this, 'role-binding', {
      metadata: metadata('cluster-autoscaler'),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: this.role.name },
      subjects,
    });

    // The priority expander reads its ConfigMap by a fixed name in its own namespace.
    if (expander === GpuExpander.PRIORITY) {
      this.priorityExpanderConfigMap = new k8s.KubeConfigMap(this, 'priority-expander', {
        metadata: metadata(PRIORITY_EXPANDER_CONFIGMAP),
        data: { priorities: renderPriorities(provider, this.gpuNodeGroups, otherGroups) },
      });
    }

    this.deployment = this.createDeployment(props, setup, labels);

    // Voluntary disruptions may move the autoscaler (its node can drain); one replica is all there is.
    this.podDisruptionBudget = new k8s.KubePodDisruptionBudget(this, 'pdb', {
      metadata: metadata('cluster-autoscaler'),
      spec: { maxUnavailable: k8s.IntOrString.fromNumber(1), selector: { matchLabels: labels } },
    });

    // Metrics: a Service in front of the pod and a ServiceMonitor for the user's Prometheus.
    if (props.serviceMonitorLabels) {
      new k8s.KubeService(this, 'metrics-service', {
        metadata: metadata('cluster-autoscaler-metrics'),
        spec: {
          selector: labels,
          ports: [{ name: 'metrics', port: CLUSTER_AUTOSCALER_METRICS_PORT, targetPort: k8s.IntOrString.fromString('metrics') }],
        },
      });
      this.serviceMonitor = new monitoring.ServiceMonitor(this, 'service-monitor', {
        metadata: { name: 'cluster-autoscaler', namespace: CLUSTER_AUTOSCALER_NAMESPACE, labels: { ...labels, ...props.serviceMonitorLabels } },
        spec: {
          selector: { matchLabels: labels },
          namespaceSelector: { matchNames: [CLUSTER_AUTOSCALER_NAMESPACE] },
          endpoints: [{ port: 'metrics', path: '/metrics', interval: '30s' }],
        },
      });
    }

    // Cluster API keeps node group sizes and capacity on its own objects: annotate those defined in this app.
    for (const [i, group] of (props.gpuNodeGroups ?? []).entries()) {
      const target = group.machineDeployment;
      if (target && provider.name !== 'clusterapi') {
        invalidProp(CONSTRUCT, `gpuNodeGroups[${i}].machineDeployment`, `is set, but the provider is ${provider.name}`,
          'Only Cluster API node groups are MachineDeployments; remove it.');
      }
      if (target) {
        for (const [key, value] of Object.entries(clusterApiAnnotations(this.gpuNodeGroups[i]))) target.metadata.addAnnotation(key, value);
      }
    }
  }

  /**
   * Checks that a GPU workload fits this autoscaler: some node group offers as many GPUs per node as one pod
   * requests (else its pods stay pending and no scale-up helps), and a drain gives its pods their full grace
   * period (else a job still running at `maxGracefulTermination` is killed).
   */
  public checkWorkload(workload: GpuWorkload): void {
    const grace = workload.terminationGracePeriod.toMilliseconds() / 1000;
    const limit = this.maxGracefulTermination.toMilliseconds() / 1000;
    if (grace > limit) {
      invalidProp(CONSTRUCT, 'maxGracefulTermination', `(${limit} s) is shorter than the grace period of ${workload.name} (${grace} s)`,
        `Set maxGracefulTermination to at least Duration.seconds(${grace}), or the autoscaler kills those pods mid-job when it drains a node.`);
    }
    if (workload.gpu.resourceName === NVIDIA_GPU_RESOURCE) {
      const largest = Math.max(...this.gpuNodeGroups.map((g) => g.gpusPerNode));
      if (workload.gpu.count > largest) {
        invalidProp(CONSTRUCT, 'gpuNodeGroups', `offer at most ${largest} GPUs per node, but each pod of ${workload.name} requests ${workload.gpu.count}`,
          'Add a node group with enough GPUs per node, or request fewer GPUs per pod.');
      }
    }
  }

  /** The scale-from-zero values as text to copy: one block per node group. */
  public renderScaleFromZero(): string {
    return yaml.stringify(this.scaleFromZero.map((s) => ({ nodeGroup: s.nodeGroup, setOn: s.target, values: s.values, notes: s.notes })));
  }

  /** The Deployment: one replica in kube-system, restricted security, critical priority, never evicted by itself. */
  private createDeployment(props: ClusterAutoscalerConfigProps, setup: ProviderSetup, labels: Record<string, string>): kplus.Deployment {
    const deployment = new kplus.Deployment(this, 'deployment', {
      metadata: { name: 'cluster-autoscaler', namespace: CLUSTER_AUTOSCALER_NAMESPACE, labels },
      podMetadata: {
        labels: { ...labels, ...setup.podLabels },
        annotations: { [SAFE_TO_EVICT_ANNOTATION]: 'false' },
      },
      // Two autoscalers would fight over node group sizes; leader election covers a brief overlap in a rollout.
      replicas: 1,
      select: false,
      serviceAccount: this.serviceAccount,
      automountServiceAccountToken: true,
      securityContext: { ensureNonRoot: true, user: 65534, group: 65534 },
    });
    deployment.select(kplus.LabelSelector.of({ labels }));

    const container = deployment.addContainer({
      name: 'cluster-autoscaler',
      image: this.image,
      imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
      command: ['./cluster-autoscaler', ...this.args],
      ports: [{ name: 'metrics', number: CLUSTER_AUTOSCALER_METRICS_PORT }],
      envVariables: Object.fromEntries(setup.env.map((e) => [e.name, 'value' in e
        ? kplus.EnvValue.fromValue(e.value)
        : kplus.EnvValue.fromSecretValue({ secret: kplus.Secret.fromSecretName(this, `secret-${e.name}`, e.secretName), key: e.secretKey })])),
      securityContext: {
        ensureNonRoot: true,
        user: 65534,
        group: 65534,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ['ALL' as kplus.Capability] },
      },
      resources: props.resources ?? {
        cpu: { request: kplus.Cpu.millis(100) },
        memory: { request: Size.mebibytes(600), limit: Size.mebibytes(600) },
      },
      liveness: kplus.Probe.fromHttpGet('/health-check', {
        port: CLUSTER_AUTOSCALER_METRICS_PORT,
        initialDelaySeconds: Duration.seconds(30),
        periodSeconds: Duration.seconds(10),
      }),
    });
    if (setup.secretVolume) {
      const secret = kplus.Secret.fromSecretName(this, 'credentials-secret', setup.secretVolume.secretName);
      container.mount(setup.secretVolume.mountPath, kplus.Volume.fromSecret(this, 'credentials', secret, { name: 'credentials' }), { readOnly: true });
    }

    // Fields cdk8s-plus does not model: the priority class and the seccomp profile.
    const object = ApiObject.of(deployment);
    object.addJsonPatch(JsonPatch.add('/spec/template/spec/priorityClassName', 'system-cluster-critical'));
    object.addJsonPatch(JsonPatch.add('/spec/template/spec/securityContext/seccompProfile', { type: 'RuntimeDefault' }));
    return deployment;
  }
}

/** Drops the namespace a namespaced chart gives every object from an object that has none (ClusterRole, ...). */
export function clusterScoped(object: ApiObject): void {
  if (object.metadata.namespace !== undefined) object.addJsonPatch(JsonPatch.remove('/metadata/namespace'));
}

/** Rejects anything but a provider made by the factories (e.g. a plain object from JavaScript). */
function checkProvider(provider: ClusterAutoscalerProvider): ClusterAutoscalerProvider {
  if (!(provider instanceof ClusterAutoscalerProvider)) {
    const name = (provider as { name?: unknown } | undefined)?.name;
    invalidProp(CONSTRUCT, 'provider', `is ${name === undefined ? 'missing' : `the unknown provider ${JSON.stringify(name)}`}`,
      `Use ClusterAutoscalerProvider.aws(), .gce(), .azure() or .clusterApi() (${CLUSTER_AUTOSCALER_PROVIDERS.join(', ')}).`);
  }
  return provider;
}

/** The image for the cluster's minor version, or the user's. */
function resolveImage(props: ClusterAutoscalerConfigProps): string {
  const minor = kubernetesMinor(props.kubernetesVersion ?? '');
  if (minor === undefined) {
    invalidProp(CONSTRUCT, 'kubernetesVersion', `is ${JSON.stringify(props.kubernetesVersion)}`, 'Give the cluster\'s minor version, e.g. \'1.31\'.');
  }
  if (props.image !== undefined) return props.image;
  const tag = CLUSTER_AUTOSCALER_TAGS[props.kubernetesVersion];
  if (!tag) {
    invalidProp(CONSTRUCT, 'kubernetesVersion', `is ${props.kubernetesVersion}, which has no autoscaler release in this library's table`,
      `Use one of ${Object.keys(CLUSTER_AUTOSCALER_TAGS).join(', ')}, or give \`image\` with the release for your minor version.`);
  }
  return `${CLUSTER_AUTOSCALER_IMAGE_REPOSITORY}:${tag}`;
}

/** Checks every group (sizes, names for the provider, duplicates) and resolves the GPU groups' labels and taints. */
function resolveGroups(provider: ClusterAutoscalerProvider, props: ClusterAutoscalerConfigProps): ResolvedGpuNodeGroup[] {
  if (!props.gpuNodeGroups || props.gpuNodeGroups.length === 0) {
    invalidProp(CONSTRUCT, 'gpuNodeGroups', 'is empty', 'Describe at least one GPU node group: name, minSize, maxSize, gpuType, gpusPerNode.');
  }
  const seen = new Set<string>();
  const checkName = (prop: string, name: string) => {
    provider.checkNodeGroupName(CONSTRUCT, prop, name);
    if (seen.has(name)) invalidProp(CONSTRUCT, prop, `repeats the node group ${JSON.stringify(name)}`, 'Give each node group once.');
    seen.add(name);
  };
  const groups = props.gpuNodeGroups.map((group, i) => {
    checkName(`gpuNodeGroups[${i}].name`, group.name);
    return resolveGpuNodeGroup(CONSTRUCT, `gpuNodeGroups[${i}]`, group, provider.gpuLabel);
  });
  for (const [i, group] of (props.nodeGroups ?? []).entries()) {
    checkName(`nodeGroups[${i}].name`, group.name);
    checkSizes(CONSTRUCT, `nodeGroups[${i}]`, group);
  }
  return groups;
}

/** The command line: provider flags, then the GPU-tuned scaling flags, then the user's overrides. */
function renderArgs(
  provider: ClusterAutoscalerProvider,
  setup: ProviderSetup,
  expander: GpuExpander,
  groups: readonly ResolvedGpuNodeGroup[],
  props: ClusterAutoscalerConfigProps,
): string[] {
  const threshold = props.scaleDownGpuUtilizationThreshold ?? 0.3;
  if (!(threshold >= 0 && threshold <= 1)) {
    invalidProp(CONSTRUCT, 'scaleDownGpuUtilizationThreshold', `is ${threshold}`, 'Use a share between 0 and 1, e.g. 0.3.');
  }
  const seconds = (prop: string, value: Duration | undefined, fallback: Duration) => {
    const s = (value ?? fallback).toMilliseconds() / 1000;
    if (!Number.isInteger(s) || s <= 0) invalidProp(CONSTRUCT, prop, `is ${s} seconds`, 'Use a whole, positive number of seconds.');
    return s;
  };
  const duration = (prop: string, value: Duration | undefined, fallback: Duration) => goDuration(seconds(prop, value, fallback));

  const flags: Array<[string, string]> = [
    ['expander', expander === GpuExpander.PRIORITY ? 'priority,least-waste' : 'least-waste'],
    ['balance-similar-node-groups', String(props.balanceSimilarNodeGroups ?? true)],
    ['scale-down-unneeded-time', duration('scaleDownUnneededTime', props.scaleDownUnneededTime, Duration.minutes(15))],
    ['scale-down-delay-after-add', duration('scaleDownDelayAfterAdd', props.scaleDownDelayAfterAdd, Duration.minutes(15))],
    ['scale-down-gpu-utilization-threshold', String(threshold)],
    ['max-node-provision-time', duration('maxNodeProvisionTime', props.maxNodeProvisionTime, Duration.minutes(20))],
    ['max-graceful-termination-sec', String(seconds('maxGracefulTermination', props.maxGracefulTermination, Duration.hours(1)))],
    // Workers keep models and batches in emptyDir volumes; without this no GPU node running one could ever go.
    ['skip-nodes-with-local-storage', 'false'],
    // A node being removed takes no new pods, so a worker is not scheduled onto it and evicted again.
    ['cordon-node-before-terminating', 'true'],
  ];
  if (provider.supportsGpuTotal) {
    // Cluster-wide GPU ceiling per type, the sum of the groups' maxima (upstream honours it on GCE only).
    const totals = new Map<string, number>();
    for (const g of groups) totals.set(g.gpuType, (totals.get(g.gpuType) ?? 0) + g.maxSize * g.gpusPerNode);
    for (const [type, max] of totals) flags.push(['gpu-total', `${type}:0:${max}`]);
  }

  // User flags replace ours by name; several occurrences (e.g. gpu-total) are all replaced.
  const extra = Object.entries(props.extraArgs ?? {});
  for (const [name] of extra) {
    if (!/^[a-z][a-z0-9-]*$/.test(name)) {
      invalidProp(CONSTRUCT, `extraArgs[${name}]`, 'is not a flag name', 'Give the flag without leading dashes, e.g. { \'scan-interval\': \'20s\' }.');
    }
  }
  const overridden = new Set(extra.map(([name]) => name));
  const rendered = flags.filter(([name]) => !overridden.has(name)).map(([name, value]) => `--${name}=${value}`);
  return ['--v=2', ...setup.args, ...rendered, ...extra.map(([name, value]) => `--${name}=${value}`)];
}

/** The priority expander's config: priority → regexes of node group ids, plus a lowest catch-all. */
function renderPriorities(provider: ClusterAutoscalerProvider, gpu: readonly ResolvedGpuNodeGroup[], other: readonly NodeGroup[]): string {
  const byPriority = new Map<number, string[]>();
  const add = (priority: number, name: string) => byPriority.set(priority, [...(byPriority.get(priority) ?? []), provider.priorityPattern(name)]);
  for (const g of gpu) add(g.priority, g.name);
  for (const g of other) add(g.priority ?? 1, g.name);
  // Groups found by discovery but not listed stay usable, below every listed one (listed priorities are >= 1).
  byPriority.set(0, ['.*']);
  // Integer keys: the expander reads a map from int to regexes, and a quoted "10" would not parse.
  const ordered = new Map([...byPriority.entries()].sort((a, b) => b[0] - a[0]));
  return yaml.stringify(ordered);
}

/** A Go duration string: whole minutes as `15m`, otherwise seconds. */
function goDuration(seconds: number): string {
  return seconds % 60 === 0 ? `${seconds / 60}m` : `${seconds}s`;
}

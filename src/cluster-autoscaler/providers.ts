/**
 * Cloud providers of the Cluster Autoscaler: the flags that find the node groups, where credentials come from, the
 * GPU node label each provider's autoscaler code reads, the names each cloud accepts for a group, and what the cloud
 * side must carry so a group at zero nodes can still be scaled up.
 */
import { NVIDIA_GPU_RESOURCE } from '../gpu-node-labels';
import { checkDnsLabel, checkDnsSubdomain, checkNonEmpty, invalidProp } from '../validation';
import { NodeGroup, ResolvedGpuNodeGroup, taintString } from './node-groups';

/** An environment variable of the autoscaler container: a plain value or a key of the user's Secret. */
export type ProviderEnv =
  | { readonly name: string; readonly value: string }
  | { readonly name: string; readonly secretName: string; readonly secretKey: string };

/** What a provider adds to the autoscaler Deployment. */
export interface ProviderSetup {
  /** `--cloud-provider` and the node group flags. */
  readonly args: string[];

  /** Environment of the container. */
  readonly env: ProviderEnv[];

  /** Annotations of the ServiceAccount (workload identity bindings). */
  readonly serviceAccountAnnotations: Record<string, string>;

  /** Labels of the pod (workload identity webhooks select pods by label). */
  readonly podLabels: Record<string, string>;

  /** A Secret mounted as files (a GCP service-account key). */
  readonly secretVolume?: { readonly secretName: string; readonly mountPath: string };

  /** Whether the autoscaler needs the Cluster API permissions. */
  readonly clusterApiRbac: boolean;
}

/**
 * What one node group needs on the cloud side (or on its Cluster API object) so that the autoscaler knows what a
 * node of it would offer while the group has no node: GPUs, labels, taints.
 */
export interface NodeGroupCloudSettings {
  /** The node group. */
  readonly nodeGroup: string;

  /** Where the values go, e.g. `tags of the Auto Scaling group`. */
  readonly target: string;

  /** The key/value pairs to set there, ready to copy. */
  readonly values: Record<string, string>;

  /** What else must hold on the cloud side. */
  readonly notes: string[];
}

/** The names the autoscaler accepts for `--cloud-provider` here. */
export const CLUSTER_AUTOSCALER_PROVIDERS = ['aws', 'gce', 'azure', 'clusterapi'] as const;

/** One of {@link CLUSTER_AUTOSCALER_PROVIDERS}. */
export type ClusterAutoscalerProviderName = (typeof CLUSTER_AUTOSCALER_PROVIDERS)[number];

/** A cloud provider of the Cluster Autoscaler; create one with the static factories. */
export abstract class ClusterAutoscalerProvider {
  /** AWS: EC2 Auto Scaling groups, found by tags (default) or listed. */
  public static aws(options: AwsProviderOptions): ClusterAutoscalerProvider {
    return new AwsProvider(options);
  }

  /** GCE: managed instance groups, found by name prefix (one prefix per node group). */
  public static gce(options: GceProviderOptions): ClusterAutoscalerProvider {
    return new GceProvider(options);
  }

  /** Azure: virtual machine scale sets, listed with their sizes. */
  public static azure(options: AzureProviderOptions): ClusterAutoscalerProvider {
    return new AzureProvider(options);
  }

  /** Cluster API: MachineDeployments/MachineSets of one workload cluster, found by cluster name. */
  public static clusterApi(options: ClusterApiProviderOptions): ClusterAutoscalerProvider {
    return new ClusterApiProvider(options);
  }

  /** Value of `--cloud-provider`. */
  public abstract readonly name: ClusterAutoscalerProviderName;

  /** The node label this provider's autoscaler code reads to recognise GPU nodes. */
  public abstract readonly gpuLabel: string;

  /** Whether `--gpu-total` is honoured (upstream: GCE only). */
  public readonly supportsGpuTotal: boolean = false;

  /** Checks provider-specific props; throws an InvalidPropError naming the prop and the fix. */
  public abstract validate(construct: string): void;

  /** Checks a node group name against the cloud's naming rules. */
  public abstract checkNodeGroupName(construct: string, prop: string, name: string): void;

  /** The flags and environment for these node groups. */
  public abstract setup(construct: string, gpuGroups: ResolvedGpuNodeGroup[], otherGroups: NodeGroup[]): ProviderSetup;

  /** The cloud-side values a group needs to scale from zero. */
  public abstract cloudSettings(group: ResolvedGpuNodeGroup): NodeGroupCloudSettings;

  /**
   * Regex matching the group's id as the priority expander sees it (ids differ per provider, names are inside).
   * Known shortcoming: `.*name.*` also matches a group whose name contains this one (`gpu-l4` in `gpu-l4-large`);
   * give such groups the same priority or names that do not contain each other.
   */
  public priorityPattern(name: string): string {
    return `.*${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*`;
  }
}

// ---------------------------------------------------------------------------------------------------------- AWS

/** Where the AWS autoscaler gets its credentials. */
export class AwsCredentials {
  /** IAM Roles for Service Accounts: the ServiceAccount is annotated with the role to assume. */
  public static irsa(roleArn: string): AwsCredentials {
    return new AwsCredentials('irsa', { roleArn });
  }

  /** EKS Pod Identity: an association on the cluster side maps the ServiceAccount to a role; nothing in manifests. */
  public static podIdentity(): AwsCredentials {
    return new AwsCredentials('pod-identity', {});
  }

  /** Access keys from the user's Secret. */
  public static fromSecret(secretName: string, keys: { accessKeyId?: string; secretAccessKey?: string } = {}): AwsCredentials {
    return new AwsCredentials('secret', {
      secretName,
      accessKeyIdKey: keys.accessKeyId ?? 'AWS_ACCESS_KEY_ID',
      secretAccessKeyKey: keys.secretAccessKey ?? 'AWS_SECRET_ACCESS_KEY',
    });
  }

  private constructor(
    /** How credentials are obtained. */
    public readonly kind: 'irsa' | 'pod-identity' | 'secret',
    /** Settings of that kind. */
    public readonly settings: Record<string, string>,
  ) {}
}

/** Options of {@link ClusterAutoscalerProvider.aws}. */
export interface AwsProviderOptions {
  /** Name of the EKS (or self-managed) cluster; the discovery tag `k8s.io/cluster-autoscaler/<name>` carries it. */
  readonly clusterName: string;

  /** AWS region of the Auto Scaling groups, e.g. `eu-west-1`. */
  readonly region: string;

  /** Credentials: IRSA, EKS Pod Identity or the user's Secret. Never literal keys. */
  readonly credentials: AwsCredentials;

  /**
   * `tags`: the autoscaler manages every Auto Scaling group tagged for this cluster (sizes come from the groups).
   * `static`: it manages exactly the listed groups, with the listed sizes (`--nodes=min:max:name`).
   * @default 'tags'
   */
  readonly discovery?: 'tags' | 'static';
}

const AWS_ASG_NAME = /^[A-Za-z0-9][A-Za-z0-9._\-]{0,254}$/;
const AWS_REGION = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$/;
const TAG_PREFIX = 'k8s.io/cluster-autoscaler';

class AwsProvider extends ClusterAutoscalerProvider {
  public readonly name = 'aws';
  public readonly gpuLabel = 'k8s.amazonaws.com/accelerator';

  constructor(private readonly options: AwsProviderOptions) {
    super();
  }

  public validate(construct: string): void {
    if (!this.options.clusterName) {
      invalidProp(construct, 'provider.clusterName', 'is missing', 'AWS tag discovery needs the cluster name: ClusterAutoscalerProvider.aws({ clusterName: ... }).');
    }
    checkNonEmpty(construct, 'provider.clusterName', this.options.clusterName);
    if (!AWS_REGION.test(this.options.region ?? '')) {
      invalidProp(construct, 'provider.region', `is ${JSON.stringify(this.options.region)}`, 'Give the region of the Auto Scaling groups, e.g. eu-west-1.');
    }
    checkCredentials(construct, this.options.credentials, AwsCredentials, 'AwsCredentials.irsa(roleArn), AwsCredentials.podIdentity() or AwsCredentials.fromSecret(name)');
    const { kind, settings } = this.options.credentials;
    if (kind === 'irsa' && !/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/.test(settings.roleArn)) {
      invalidProp(construct, 'provider.credentials', `has the role ARN ${JSON.stringify(settings.roleArn)}`, 'Give an IAM role ARN, arn:aws:iam::<account>:role/<name>.');
    }
    if (kind === 'secret') checkDnsSubdomain(construct, 'provider.credentials.secretName', settings.secretName);
  }

  public checkNodeGroupName(construct: string, prop: string, name: string): void {
    if (!AWS_ASG_NAME.test(name)) {
      invalidProp(construct, prop, `is ${JSON.stringify(name)}, not an Auto Scaling group name the autoscaler can take`,
        'Use 1 to 255 letters, digits, ".", "_" or "-", starting with a letter or digit.');
    }
  }

  public setup(construct: string, gpuGroups: ResolvedGpuNodeGroup[], otherGroups: NodeGroup[]): ProviderSetup {
    const discovery = this.options.discovery ?? 'tags';
    let args: string[];
    if (discovery === 'tags') {
      if (otherGroups.length > 0) {
        invalidProp(construct, 'nodeGroups', 'lists groups, but AWS tag discovery takes every tagged group and reads sizes from it',
          'Tag those Auto Scaling groups (see scaleFromZero) or use discovery: \'static\'.');
      }
      args = [`--node-group-auto-discovery=asg:tag=${TAG_PREFIX}/enabled,${TAG_PREFIX}/${this.options.clusterName}`];
    } else if (discovery === 'static') {
      args = [...gpuGroups, ...otherGroups].map((g) => `--nodes=${g.minSize}:${g.maxSize}:${g.name}`);
    } else {
      invalidProp(construct, 'provider.discovery', `is ${JSON.stringify(discovery)}`, 'Use \'tags\' or \'static\'.');
    }

    const { kind, settings } = this.options.credentials;
    const env: ProviderEnv[] = [{ name: 'AWS_REGION', value: this.options.region }];
    if (kind === 'secret') {
      env.push(
        { name: 'AWS_ACCESS_KEY_ID', secretName: settings.secretName, secretKey: settings.accessKeyIdKey },
        { name: 'AWS_SECRET_ACCESS_KEY', secretName: settings.secretName, secretKey: settings.secretAccessKeyKey },
      );
    }
    return {
      args: ['--cloud-provider=aws', ...args],
      env,
      serviceAccountAnnotations: kind === 'irsa' ? { 'eks.amazonaws.com/role-arn': settings.roleArn } : {},
      podLabels: {},
      clusterApiRbac: false,
    };
  }

  public cloudSettings(group: ResolvedGpuNodeGroup): NodeGroupCloudSettings {
    const values: Record<string, string> = {};
    if ((this.options.discovery ?? 'tags') === 'tags') {
      values[`${TAG_PREFIX}/enabled`] = 'true';
      values[`${TAG_PREFIX}/${this.options.clusterName}`] = 'owned';
    }
    values[`${TAG_PREFIX}/node-template/resources/${NVIDIA_GPU_RESOURCE}`] = String(group.gpusPerNode);
    for (const [key, value] of Object.entries(group.labels)) values[`${TAG_PREFIX}/node-template/label/${key}`] = value;
    for (const taint of group.taints) values[`${TAG_PREFIX}/node-template/taint/${taint.key}`] = `${taint.value ?? ''}:${taint.effect}`;
    return {
      nodeGroup: group.name,
      target: 'tags of the Auto Scaling group (PropagateAtLaunch not needed)',
      values,
      notes: [
        `Set the group's MinSize=${group.minSize} and MaxSize=${group.maxSize}.`,
        'Nodes must register with the same labels and taints (EKS node group labels/taints or kubelet --node-labels and --register-with-taints).',
        `Node labels: ${labelList(group.labels)}`,
        `Node taints: ${group.taints.map(taintString).join(',')}`,
      ],
    };
  }
}

// ---------------------------------------------------------------------------------------------------------- GCE

/** Where the GCE autoscaler gets its credentials. */
export class GceCredentials {
  /** Workload Identity: the ServiceAccount is annotated with the Google service account to act as. */
  public static workloadIdentity(googleServiceAccount: string): GceCredentials {
    return new GceCredentials('workload-identity', { googleServiceAccount });
  }

  /**
   * The node's own service account, through the metadata server: self-managed clusters on GCE, where Workload
   * Identity (a GKE feature) is not available. Nothing goes into the manifests; the instances' service account
   * needs the Compute permissions on the instance groups.
   */
  public static instanceServiceAccount(): GceCredentials {
    return new GceCredentials('instance', {});
  }

  /** A service-account key file from the user's Secret. */
  public static fromSecret(secretName: string, key = 'key.json'): GceCredentials {
    return new GceCredentials('secret', { secretName, key });
  }

  private constructor(
    /** How credentials are obtained. */
    public readonly kind: 'workload-identity' | 'instance' | 'secret',
    /** Settings of that kind. */
    public readonly settings: Record<string, string>,
  ) {}
}

/** Options of {@link ClusterAutoscalerProvider.gce}. */
export interface GceProviderOptions {
  /** Credentials: Workload Identity, the instances' service account, or a key file from the user's Secret. */
  readonly credentials: GceCredentials;
}

const GCE_MIG_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const GCE_KEY_DIR = '/var/secrets/google';

class GceProvider extends ClusterAutoscalerProvider {
  public readonly name = 'gce';
  public readonly gpuLabel = 'cloud.google.com/gke-accelerator';
  public readonly supportsGpuTotal = true;

  constructor(private readonly options: GceProviderOptions) {
    super();
  }

  public validate(construct: string): void {
    checkCredentials(construct, this.options.credentials, GceCredentials, 'GceCredentials.workloadIdentity(email), GceCredentials.instanceServiceAccount() or GceCredentials.fromSecret(name)');
    const { kind, settings } = this.options.credentials;
    if (kind === 'workload-identity' && !/^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$/.test(settings.googleServiceAccount)) {
      invalidProp(construct, 'provider.credentials', `names ${JSON.stringify(settings.googleServiceAccount)}`,
        'Give the Google service account email, <name>@<project>.iam.gserviceaccount.com.');
    }
    if (kind === 'secret') checkDnsSubdomain(construct, 'provider.credentials.secretName', settings.secretName);
  }

  public checkNodeGroupName(construct: string, prop: string, name: string): void {
    if (!GCE_MIG_NAME.test(name)) {
      invalidProp(construct, prop, `is ${JSON.stringify(name)}, not a managed instance group name prefix`,
        'Use 1 to 63 lower-case letters, digits or "-", starting with a letter and not ending with "-".');
    }
  }

  public setup(_construct: string, gpuGroups: ResolvedGpuNodeGroup[], otherGroups: NodeGroup[]): ProviderSetup {
    // One discovery spec per group: the group name is the MIG name prefix, so each group keeps its own sizes.
    const args = [...gpuGroups, ...otherGroups].map(
      (g) => `--node-group-auto-discovery=mig:namePrefix=${g.name},min=${g.minSize},max=${g.maxSize}`,
    );
    const { kind, settings } = this.options.credentials;
    const secret = kind === 'secret';
    return {
      args: ['--cloud-provider=gce', ...args],
      env: secret ? [{ name: 'GOOGLE_APPLICATION_CREDENTIALS', value: `${GCE_KEY_DIR}/${settings.key}` }] : [],
      serviceAccountAnnotations: kind === 'workload-identity' ? { 'iam.gke.io/gcp-service-account': settings.googleServiceAccount } : {},
      podLabels: {},
      secretVolume: secret ? { secretName: settings.secretName, mountPath: GCE_KEY_DIR } : undefined,
      clusterApiRbac: false,
    };
  }

  // Known shortcoming: the kube-env format is taken from the autoscaler's GCE template code and has not been tried
  // against a real instance template here.
  public cloudSettings(group: ResolvedGpuNodeGroup): NodeGroupCloudSettings {
    const labels = Object.entries(group.labels).map(([k, v]) => `${k}=${v}`).join(',');
    const taints = group.taints.map(taintString).join(',');
    return {
      nodeGroup: group.name,
      target: 'instance template of each managed instance group named with this prefix: metadata `kube-env`',
      values: { AUTOSCALER_ENV_VARS: `node_labels=${labels};node_taints=${taints}` },
      notes: [
        `Attach ${group.gpusPerNode} × ${group.gpuType} as guest accelerators in the instance template; the autoscaler reads the GPU count from it.`,
        `The autoscaler keeps each group between ${group.minSize} and ${group.maxSize} nodes (from the discovery flag).`,
        'Nodes must register with the same labels and taints (kubelet --node-labels and --register-with-taints).',
      ],
    };
  }
}

// -------------------------------------------------------------------------------------------------------- Azure

/** Where the Azure autoscaler gets its credentials. */
export class AzureCredentials {
  /**
   * Microsoft Entra Workload ID: the ServiceAccount carries the managed identity's client id, the pod opts in to
   * the webhook, and the ids of the subscription and resource group (identifiers, not secrets) are given here.
   */
  public static workloadIdentity(options: { clientId: string; tenantId: string; subscriptionId: string; resourceGroup: string }): AzureCredentials {
    return new AzureCredentials('workload-identity', { ...options });
  }

  /**
   * A service principal from the user's Secret, with the keys upstream's examples use: `SubscriptionID`,
   * `ResourceGroup`, `TenantID`, `ClientID`, `ClientSecret`.
   */
  public static fromSecret(secretName: string): AzureCredentials {
    return new AzureCredentials('secret', { secretName });
  }

  private constructor(
    /** How credentials are obtained. */
    public readonly kind: 'workload-identity' | 'secret',
    /** Settings of that kind. */
    public readonly settings: Record<string, string>,
  ) {}
}

/** Options of {@link ClusterAutoscalerProvider.azure}. */
export interface AzureProviderOptions {
  /** Credentials: workload identity or a service principal from the user's Secret. Never literal secrets. */
  readonly credentials: AzureCredentials;
}

const AZURE_VMSS_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9_])?$/;
const AZURE_TAG_PREFIX = 'k8s.io_cluster-autoscaler_node-template';
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

class AzureProvider extends ClusterAutoscalerProvider {
  public readonly name = 'azure';
  public readonly gpuLabel = 'kubernetes.azure.com/accelerator';

  constructor(private readonly options: AzureProviderOptions) {
    super();
  }

  public validate(construct: string): void {
    checkCredentials(construct, this.options.credentials, AzureCredentials, 'AzureCredentials.workloadIdentity({...}) or AzureCredentials.fromSecret(name)');
    const { kind, settings } = this.options.credentials;
    if (kind === 'workload-identity') {
      for (const key of ['clientId', 'tenantId', 'subscriptionId']) {
        if (!UUID.test(settings[key] ?? '')) {
          invalidProp(construct, `provider.credentials.${key}`, `is ${JSON.stringify(settings[key])}`, 'Give the GUID Azure shows for it.');
        }
      }
      checkNonEmpty(construct, 'provider.credentials.resourceGroup', settings.resourceGroup ?? '');
    } else {
      checkDnsSubdomain(construct, 'provider.credentials.secretName', settings.secretName);
    }
  }

  public checkNodeGroupName(construct: string, prop: string, name: string): void {
    if (!AZURE_VMSS_NAME.test(name)) {
      invalidProp(construct, prop, `is ${JSON.stringify(name)}, not a VM scale set name`,
        'Use 1 to 64 letters, digits, "_", "." or "-", starting with a letter or digit and ending with a letter, digit or "_".');
    }
  }

  public setup(_construct: string, gpuGroups: ResolvedGpuNodeGroup[], otherGroups: NodeGroup[]): ProviderSetup {
    const args = [...gpuGroups, ...otherGroups].map((g) => `--nodes=${g.minSize}:${g.maxSize}:${g.name}`);
    const { kind, settings } = this.options.credentials;
    const env: ProviderEnv[] = [{ name: 'ARM_VM_TYPE', value: 'vmss' }];
    if (kind === 'secret') {
      const fromSecret = (name: string, key: string): ProviderEnv => ({ name, secretName: settings.secretName, secretKey: key });
      env.push(
        fromSecret('ARM_SUBSCRIPTION_ID', 'SubscriptionID'),
        fromSecret('ARM_RESOURCE_GROUP', 'ResourceGroup'),
        fromSecret('ARM_TENANT_ID', 'TenantID'),
        fromSecret('ARM_CLIENT_ID', 'ClientID'),
        fromSecret('ARM_CLIENT_SECRET', 'ClientSecret'),
      );
    } else {
      env.push(
        { name: 'ARM_SUBSCRIPTION_ID', value: settings.subscriptionId },
        { name: 'ARM_RESOURCE_GROUP', value: settings.resourceGroup },
        { name: 'ARM_TENANT_ID', value: settings.tenantId },
        { name: 'ARM_USE_WORKLOAD_IDENTITY_EXTENSION', value: 'true' },
      );
    }
    return {
      args: ['--cloud-provider=azure', ...args],
      env,
      serviceAccountAnnotations: kind === 'workload-identity' ? { 'azure.workload.identity/client-id': settings.clientId } : {},
      podLabels: kind === 'workload-identity' ? { 'azure.workload.identity/use': 'true' } : {},
      clusterApiRbac: false,
    };
  }

  public cloudSettings(group: ResolvedGpuNodeGroup): NodeGroupCloudSettings {
    // Azure tag names cannot hold "/": the autoscaler reads "_" as "/" and "~2" as "_".
    // Known shortcoming: taken from the autoscaler's Azure template code, not tried against a real scale set here.
    const tagKey = (key: string) => key.replace(/_/g, '~2').replace(/\//g, '_');
    const values: Record<string, string> = {
      [`${AZURE_TAG_PREFIX}_resources_${tagKey(NVIDIA_GPU_RESOURCE)}`]: String(group.gpusPerNode),
    };
    for (const [key, value] of Object.entries(group.labels)) values[`${AZURE_TAG_PREFIX}_label_${tagKey(key)}`] = value;
    for (const taint of group.taints) values[`${AZURE_TAG_PREFIX}_taint_${tagKey(taint.key)}`] = `${taint.value ?? ''}:${taint.effect}`;
    return {
      nodeGroup: group.name,
      target: 'tags of the VM scale set',
      values,
      notes: [
        `The autoscaler keeps the scale set between ${group.minSize} and ${group.maxSize} instances (from the --nodes flag).`,
        'On AKS node pools, set the labels and taints on the node pool itself (--labels, --node-taints); AKS builds the template from them.',
        'Nodes must register with the same labels and taints.',
      ],
    };
  }
}

// -------------------------------------------------------------------------------------------------- Cluster API

/** Options of {@link ClusterAutoscalerProvider.clusterApi}. */
export interface ClusterApiProviderOptions {
  /** Name of the workload cluster (the `cluster.x-k8s.io/cluster-name` of its MachineDeployments). */
  readonly clusterName: string;

  /** Namespace of the cluster's Cluster API objects in the management cluster. */
  readonly namespace: string;
}

/** Annotation keys the Cluster API provider of the autoscaler reads on a MachineDeployment or MachineSet. */
export const CLUSTER_API_ANNOTATIONS = {
  minSize: 'cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size',
  maxSize: 'cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size',
  cpu: 'capacity.cluster-autoscaler.kubernetes.io/cpu',
  memory: 'capacity.cluster-autoscaler.kubernetes.io/memory',
  gpuType: 'capacity.cluster-autoscaler.kubernetes.io/gpu-type',
  gpuCount: 'capacity.cluster-autoscaler.kubernetes.io/gpu-count',
  labels: 'capacity.cluster-autoscaler.kubernetes.io/labels',
  taints: 'capacity.cluster-autoscaler.kubernetes.io/taints',
} as const;

class ClusterApiProvider extends ClusterAutoscalerProvider {
  public readonly name = 'clusterapi';
  public readonly gpuLabel = 'cluster-api/accelerator';

  constructor(private readonly options: ClusterApiProviderOptions) {
    super();
  }

  public validate(construct: string): void {
    if (!this.options.clusterName) {
      invalidProp(construct, 'provider.clusterName', 'is missing', 'Name the workload cluster: ClusterAutoscalerProvider.clusterApi({ clusterName, namespace }).');
    }
    checkDnsSubdomain(construct, 'provider.clusterName', this.options.clusterName);
    if (!this.options.namespace) {
      invalidProp(construct, 'provider.namespace', 'is missing', 'Give the namespace of the cluster\'s MachineDeployments.');
    }
    checkDnsLabel(construct, 'provider.namespace', this.options.namespace);
  }

  public checkNodeGroupName(construct: string, prop: string, name: string): void {
    checkDnsSubdomain(construct, prop, name);
  }

  public setup(construct: string, gpuGroups: ResolvedGpuNodeGroup[]): ProviderSetup {
    // Scaling from zero needs the node's capacity in annotations; Cluster API has no other source here.
    for (const [i, group] of gpuGroups.entries()) {
      if (group.minSize === 0 && (group.cpu === undefined || group.memory === undefined)) {
        invalidProp(construct, `gpuNodeGroups[${i}].cpu`, 'and `memory` are needed for a Cluster API group at minSize 0',
          'Give the node\'s CPU count and memory: the capacity annotations must state them for scale from zero.');
      }
    }
    const discovery = `clusterapi:namespace=${this.options.namespace},clusterName=${this.options.clusterName}`;
    return {
      args: ['--cloud-provider=clusterapi', `--node-group-auto-discovery=${discovery}`],
      env: [],
      serviceAccountAnnotations: {},
      podLabels: {},
      clusterApiRbac: true,
    };
  }

  public cloudSettings(group: ResolvedGpuNodeGroup): NodeGroupCloudSettings {
    return {
      nodeGroup: group.name,
      target: `annotations of MachineDeployment ${this.options.namespace}/${group.name}`,
      values: clusterApiAnnotations(group),
      notes: [
        'Leave spec.replicas unset (or the Cluster topology\'s replicas) so the autoscaler owns the size.',
        `Nodes must register with the same labels and taints (${this.gpuLabel}=${group.gpuType} among them).`,
      ],
    };
  }

  public priorityPattern(name: string): string {
    // Cluster API node group ids are "MachineDeployment/<namespace>/<name>".
    return `.*/${this.options.namespace}/${name.replace(/\./g, '\\.')}$`;
  }
}

/** The annotations that size a Cluster API node group and describe its nodes for scale from zero. */
export function clusterApiAnnotations(group: ResolvedGpuNodeGroup | (NodeGroup & Partial<ResolvedGpuNodeGroup>)): Record<string, string> {
  const values: Record<string, string> = {
    [CLUSTER_API_ANNOTATIONS.minSize]: String(group.minSize),
    [CLUSTER_API_ANNOTATIONS.maxSize]: String(group.maxSize),
  };
  if (group.cpu !== undefined) values[CLUSTER_API_ANNOTATIONS.cpu] = String(group.cpu);
  if (group.memory !== undefined) values[CLUSTER_API_ANNOTATIONS.memory] = `${group.memory.toMebibytes()}Mi`;
  if (group.gpusPerNode !== undefined) {
    values[CLUSTER_API_ANNOTATIONS.gpuType] = NVIDIA_GPU_RESOURCE;
    values[CLUSTER_API_ANNOTATIONS.gpuCount] = String(group.gpusPerNode);
  }
  if (group.labels) values[CLUSTER_API_ANNOTATIONS.labels] = labelList(group.labels);
  if (group.taints) values[CLUSTER_API_ANNOTATIONS.taints] = group.taints.map(taintString).join(',');
  return values;
}

// ------------------------------------------------------------------------------------------------------ helpers

function labelList(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
}

function checkCredentials(construct: string, credentials: unknown, type: Function, fix: string): void {
  if (!(credentials instanceof type)) {
    invalidProp(construct, 'provider.credentials', credentials === undefined ? 'is missing' : 'is not a credentials source',
      `Use ${fix}; credentials never go into the manifests as literals.`);
  }
}

/**
 * Node groups as ClusterAutoscalerConfig takes them, and their checks that do not depend on the provider.
 */
import { ApiObject, Size } from 'cdk8s';
import { GpuNodeTaint, gpuNodeLabels, gpuNodeTaints } from '../gpu-node-labels';
import { checkInteger, checkRange, invalidProp } from '../validation';

/** A group of identical GPU nodes the autoscaler may grow and shrink. */
export interface GpuNodeGroup {
  /**
   * The group's name at the cloud provider: the Auto Scaling group (AWS), the managed instance group name prefix
   * (GCE), the VM scale set (Azure) or the MachineDeployment (Cluster API).
   */
  readonly name: string;

  /** Fewest nodes; 0 lets the group scale to zero (see the scale-from-zero values). */
  readonly minSize: number;

  /** Most nodes. */
  readonly maxSize: number;

  /**
   * GPU model, written as the value of the provider's GPU node label (`k8s.amazonaws.com/accelerator`,
   * `cloud.google.com/gke-accelerator`, `kubernetes.azure.com/accelerator`, `cluster-api/accelerator`), e.g.
   * `nvidia-tesla-t4` or `nvidia-l4`. The autoscaler uses that label to know a new node will have GPUs before the
   * device plugin reports them, so it does not add a second node while the first one is still starting.
   */
  readonly gpuType: string;

  /** GPUs per node (`nvidia.com/gpu` capacity), e.g. 1 for g5.xlarge, 4 for g5.12xlarge. */
  readonly gpusPerNode: number;

  /**
   * Further node labels. The GPU node label (`nvidia.com/gpu.present=true`) and the provider's GPU label are
   * always added.
   * @default - none
   */
  readonly labels?: Record<string, string>;

  /**
   * Further node taints. The GPU taint (`nvidia.com/gpu=present:NoSchedule`) is always added unless a taint on
   * the same key and effect is given here.
   * @default - none
   */
  readonly taints?: GpuNodeTaint[];

  /**
   * Priority of this group for the priority expander: the autoscaler grows the highest-priority group that fits
   * the pending pods, and chooses by least waste among equals.
   * @default 10
   */
  readonly priority?: number;

  /**
   * CPUs per node. Required by Cluster API to scale from zero (capacity annotations), optional elsewhere.
   * @default - not declared
   */
  readonly cpu?: number;

  /**
   * Memory per node. Required by Cluster API to scale from zero (capacity annotations), optional elsewhere.
   * @default - not declared
   */
  readonly memory?: Size;

  /**
   * Cluster API only: the group's MachineDeployment (or MachineSet) when this app defines it; it gets the size
   * and capacity annotations directly.
   * @default - the annotations are only listed in `scaleFromZero`
   */
  readonly machineDeployment?: ApiObject;
}

/** A group of nodes without GPUs, listed only when the provider's groups are given explicitly (`--nodes`). */
export interface NodeGroup {
  /** The group's name at the cloud provider. */
  readonly name: string;

  /** Fewest nodes. */
  readonly minSize: number;

  /** Most nodes. */
  readonly maxSize: number;

  /**
   * Priority for the priority expander.
   * @default 1
   */
  readonly priority?: number;
}

/** A GPU node group with every default applied: the labels and taints its nodes will carry. */
export interface ResolvedGpuNodeGroup extends GpuNodeGroup {
  readonly labels: Record<string, string>;
  readonly taints: GpuNodeTaint[];
  readonly priority: number;
}

const LABEL_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** Checks sizes, labels and taints of one group and applies the GPU label, provider GPU label and GPU taint. */
export function resolveGpuNodeGroup(construct: string, prop: string, group: GpuNodeGroup, gpuLabel: string): ResolvedGpuNodeGroup {
  checkSizes(construct, prop, group);
  checkInteger(construct, `${prop}.gpusPerNode`, group.gpusPerNode, 1);
  checkLabelValue(construct, `${prop}.gpuType`, group.gpuType);
  if (group.gpuType === '') invalidProp(construct, `${prop}.gpuType`, 'is empty', 'Name the GPU model, e.g. nvidia-tesla-t4.');
  if (group.cpu !== undefined) checkInteger(construct, `${prop}.cpu`, group.cpu, 1);
  if (group.memory !== undefined && !(group.memory.toMebibytes() > 0)) {
    invalidProp(construct, `${prop}.memory`, 'is not positive', 'Give the node memory, e.g. Size.gibibytes(64).');
  }

  for (const [key, value] of Object.entries(group.labels ?? {})) {
    checkLabelKey(construct, `${prop}.labels`, key);
    checkLabelValue(construct, `${prop}.labels[${key}]`, value);
  }
  for (const [i, taint] of (group.taints ?? []).entries()) {
    checkLabelKey(construct, `${prop}.taints[${i}].key`, taint.key);
    checkLabelValue(construct, `${prop}.taints[${i}].value`, taint.value ?? '');
    if (!['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(taint.effect)) {
      invalidProp(construct, `${prop}.taints[${i}].effect`, `is ${JSON.stringify(taint.effect)}`, 'Use NoSchedule, PreferNoSchedule or NoExecute.');
    }
  }

  const priority = group.priority ?? 10;
  checkInteger(construct, `${prop}.priority`, priority, 1);
  return {
    ...group,
    labels: gpuNodeLabels({ [gpuLabel]: group.gpuType, ...group.labels }),
    taints: gpuNodeTaints(group.taints),
    priority,
  };
}

/** Checks the sizes of any node group. */
export function checkSizes(construct: string, prop: string, group: { minSize: number; maxSize: number }): void {
  checkInteger(construct, `${prop}.minSize`, group.minSize, 0);
  checkInteger(construct, `${prop}.maxSize`, group.maxSize, 1);
  checkRange(construct, `${prop}.minSize`, group.minSize, `${prop}.maxSize`, group.maxSize);
}

function checkLabelKey(construct: string, prop: string, key: string): void {
  const [prefix, name] = key.includes('/') ? key.split('/', 2) : ['', key];
  if (!LABEL_NAME.test(key) || prefix.length > 253 || name.length > 63) {
    invalidProp(construct, prop, `has the key ${JSON.stringify(key)}, not a valid label or taint key`,
      'Use an optional DNS-subdomain prefix and "/", then up to 63 letters, digits, "-", "_" or ".".');
  }
}

function checkLabelValue(construct: string, prop: string, value: string): void {
  if (!LABEL_VALUE.test(value)) {
    invalidProp(construct, prop, `is ${JSON.stringify(value)}, not a valid label value`,
      'Use up to 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit.');
  }
}

/** `key=value:Effect` (or `key:Effect`), the notation of kubelet's --register-with-taints and of the autoscaler. */
export function taintString(taint: GpuNodeTaint): string {
  return `${taint.key}${taint.value ? `=${taint.value}` : ''}:${taint.effect}`;
}

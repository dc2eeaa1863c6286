/**
 * How a GPU node is recognised and kept for GPU work, written once for every construct that places pods on GPU
 * nodes (GpuWorkerDeployment, DcgmExporter) or describes the nodes themselves (ClusterAutoscalerConfig node groups,
 * KarpenterGpuNodePool). If the node groups carry these and the pods select and tolerate these, they meet.
 */

/** The extended resource NVIDIA's device plugin advertises; a pod asks for whole GPUs with it. */
export const NVIDIA_GPU_RESOURCE = 'nvidia.com/gpu';

/**
 * The label every GPU node carries.
 *
 * `nvidia.com/gpu.present=true` is the label NVIDIA's GPU Feature Discovery (and so the GPU Operator) puts on GPU
 * nodes. The node groups of this library also set it at registration, so a node has it before any NVIDIA add-on
 * runs and the Cluster Autoscaler sees it on nodes that do not exist yet (scale from zero). Both write the same
 * value, so neither overwrites the other with something different.
 */
export const GPU_NODE_LABEL = { key: 'nvidia.com/gpu.present', value: 'true' } as const;

/**
 * The taint that keeps pods which do not need a GPU off GPU nodes, so those nodes can empty and scale down.
 *
 * The value is `present`, the one GKE applies to its GPU node pools; the toleration below matches any value.
 */
export const GPU_NODE_TAINT = { key: NVIDIA_GPU_RESOURCE, value: 'present', effect: 'NoSchedule' } as const;

/** Toleration of {@link GPU_NODE_TAINT} whatever its value (GKE writes `present`, many EKS setups `true`). */
export const GPU_TOLERATION = { key: GPU_NODE_TAINT.key, operator: 'Exists', effect: GPU_NODE_TAINT.effect } as const;

/** A node taint as node groups declare it. */
export interface GpuNodeTaint {
  /** Taint key, e.g. `nvidia.com/gpu`. */
  readonly key: string;

  /** Taint value; empty for a key-only taint. */
  readonly value?: string;

  /** `NoSchedule`, `PreferNoSchedule` or `NoExecute`. */
  readonly effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

/** Labels a GPU node group always carries, merged under the user's own. */
export function gpuNodeLabels(extra: Record<string, string> = {}): Record<string, string> {
  return { [GPU_NODE_LABEL.key]: GPU_NODE_LABEL.value, ...extra };
}

/** Taints a GPU node group always carries, followed by the user's own (a user taint on the same key wins). */
export function gpuNodeTaints(extra: readonly GpuNodeTaint[] = []): GpuNodeTaint[] {
  const own = extra.some((t) => t.key === GPU_NODE_TAINT.key && t.effect === GPU_NODE_TAINT.effect);
  return own ? [...extra] : [{ ...GPU_NODE_TAINT }, ...extra];
}

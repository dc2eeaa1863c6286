/**
 * Cluster Autoscaler releases by Kubernetes minor version. The autoscaler embeds the scheduler of its minor version
 * to simulate where pending pods would fit, so its minor must match the cluster's; the patch is the newest release
 * of that line known when this table was written.
 */

/** The autoscaler image repository upstream publishes to. */
export const CLUSTER_AUTOSCALER_IMAGE_REPOSITORY = 'registry.k8s.io/autoscaling/cluster-autoscaler';

/**
 * Image tag per Kubernetes minor version (`1.31` → `v1.31.2`).
 * Known shortcoming: a fixed table goes stale as upstream ships patches and minors; `image` overrides it.
 */
export const CLUSTER_AUTOSCALER_TAGS: { readonly [kubernetesMinor: string]: string } = {
  '1.27': 'v1.27.7',
  '1.28': 'v1.28.4',
  '1.29': 'v1.29.2',
  '1.30': 'v1.30.4',
  '1.31': 'v1.31.2',
  '1.32': 'v1.32.5',
  '1.33': 'v1.33.5',
  '1.34': 'v1.34.4',
  '1.35': 'v1.35.1',
};

/** `1.31` → 31; undefined unless the string is `1.<minor>`. */
export function kubernetesMinor(version: string): number | undefined {
  const match = /^1\.(\d+)$/.exec(version);
  return match ? Number(match[1]) : undefined;
}

/**
 * GPU telemetry as the scaling side consumes it: which dcgm-exporter series carries GPU utilization,
 * and which of its labels name the pod using the GPU. `DcgmExporter` produces a {@link GpuUtilizationSource};
 * `QueueScaledHpa` consumes one, so the series name is written once.
 */

/** dcgm-exporter's default metrics port. */
export const DCGM_EXPORTER_PORT = 9400;

/** The DCGM field of GPU utilization in percent (0–100), exported under the same name. */
export const DCGM_GPU_UTIL_FIELD = 'DCGM_FI_DEV_GPU_UTIL';

/**
 * Labels that dcgm-exporter adds in Kubernetes mode (`DCGM_EXPORTER_KUBERNETES=true`, with the kubelet
 * pod-resources socket mounted) to name the pod a GPU is assigned to. They collide with the target labels
 * Prometheus adds for the exporter's own pod, so its scrape must honour them (`honorLabels: true`).
 */
export const DcgmPodLabels = { namespace: 'namespace', pod: 'pod', container: 'container' } as const;

/** Where per-pod GPU utilization comes from, for a Pods metric of the HorizontalPodAutoscaler. */
export interface GpuUtilizationSource {
  /** Prometheus series name, e.g. `DCGM_FI_DEV_GPU_UTIL`. */
  readonly series: string;

  /** Label that holds the namespace of the pod using the GPU. */
  readonly namespaceLabel: string;

  /** Label that holds the name of the pod using the GPU. */
  readonly podLabel: string;

  /** Name under which prometheus-adapter serves the series as a custom (pods) metric. */
  readonly customMetricName: string;
}

/** The GPU utilization series of a standard dcgm-exporter (own DaemonSet or the GPU Operator's). */
export const DCGM_GPU_UTILIZATION: GpuUtilizationSource = {
  series: DCGM_GPU_UTIL_FIELD,
  namespaceLabel: DcgmPodLabels.namespace,
  podLabel: DcgmPodLabels.pod,
  customMetricName: 'dcgm_gpu_utilization',
};

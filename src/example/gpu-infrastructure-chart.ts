import { Chart, ChartProps } from 'cdk8s';
import { Construct } from 'constructs';
import * as k8s from '../../imports/k8s';
import { AwsCredentials, ClusterAutoscalerConfig, ClusterAutoscalerProvider, clusterScoped, GpuWorkload } from '../cluster-autoscaler-config';
import { DcgmExporter } from '../dcgm-exporter';
import { KUBERNETES_VERSION } from './cluster-chart';

/** Namespace of the GPU telemetry. */
export const GPU_MONITORING_NAMESPACE = 'gpu-monitoring';

/**
 * What makes the loop work past one node, on an EKS cluster: GPU telemetry on every GPU node, and the Cluster
 * Autoscaler growing the GPU node groups when worker pods are pending.
 *
 * - `gpu-monitoring`: dcgm-exporter, scraped by kube-prometheus-stack's Prometheus (`release: kube-prometheus-stack`).
 *   Its namespace admits privileged pods: the exporter runs as root with `SYS_ADMIN` and a host path, which the
 *   `restricted` and `baseline` Pod Security profiles refuse.
 * - `kube-system`: the Cluster Autoscaler for two GPU node groups (L4 first, A10G when no L4 is to be had), both
 *   from zero, found by their Auto Scaling group tags, with credentials from IRSA.
 *
 * Created outside this app: the IAM role `cluster-autoscaler` (autoscaling:SetDesiredCapacity and
 * TerminateInstanceInAutoScalingGroup on the tagged groups, Describe* on groups, launch templates and instance
 * types) and the node groups with the tags `autoscaler.scaleFromZero` lists (see docs/gpu-infrastructure.md).
 */
export class GpuInfrastructureChart extends Chart {
  /** The GPU exporter; its `gpuUtilization` names the series an HPA can scale on. */
  public readonly exporter: DcgmExporter;

  private clusterAutoscaler?: ClusterAutoscalerConfig;

  constructor(scope: Construct, id: string, props: ChartProps = {}) {
    super(scope, id, { namespace: GPU_MONITORING_NAMESPACE, ...props });

    const namespace = new k8s.KubeNamespace(this, 'GpuMonitoring', {
      metadata: {
        name: GPU_MONITORING_NAMESPACE,
        labels: { 'pod-security.kubernetes.io/enforce': 'privileged' },
      },
    });
    clusterScoped(namespace);

    this.exporter = new DcgmExporter(this, 'dcgm-exporter', {
      namespace: GPU_MONITORING_NAMESPACE,
      serviceMonitorLabels: { release: 'kube-prometheus-stack' },
    });
  }

  /** The Cluster Autoscaler, once added; `scaleFromZero` holds the Auto Scaling group tags to set. */
  public get autoscaler(): ClusterAutoscalerConfig | undefined {
    return this.clusterAutoscaler;
  }

  /**
   * Adds the Cluster Autoscaler for the GPU workers it must serve, each checked to fit a node and to get its full
   * grace period on a drain. A separate step because the workers scale on this chart's exporter, so they are built
   * after it and before the autoscaler.
   */
  public addClusterAutoscaler(workloads: GpuWorkload[]): ClusterAutoscalerConfig {
    if (this.clusterAutoscaler) throw new Error('GpuInfrastructureChart: the Cluster Autoscaler was already added.');
    this.clusterAutoscaler = new ClusterAutoscalerConfig(this, 'ClusterAutoscaler', {
      provider: ClusterAutoscalerProvider.aws({
        clusterName: 'ai-platform',
        region: 'eu-west-1',
        credentials: AwsCredentials.irsa('arn:aws:iam::123456789012:role/cluster-autoscaler'),
      }),
      kubernetesVersion: KUBERNETES_VERSION,
      gpuNodeGroups: [
        // g6.2xlarge: one L4 (24 GB), 8 vCPU, 32 GiB; room for one OCR worker (12 GiB) and the node's daemons.
        { name: 'gpu-l4', minSize: 0, maxSize: 24, gpuType: 'nvidia-l4', gpusPerNode: 1, priority: 50 },
        // g5.2xlarge: one A10G, the fallback when L4 capacity runs out in the region.
        { name: 'gpu-a10g', minSize: 0, maxSize: 16, gpuType: 'nvidia-a10g', gpusPerNode: 1, priority: 10 },
      ],
      serviceMonitorLabels: { release: 'kube-prometheus-stack' },
      workloads,
    });
    return this.clusterAutoscaler;
  }
}

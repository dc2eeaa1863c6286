import { Chart, ChartProps } from 'cdk8s';
import { Construct } from 'constructs';
import * as k8s from '../../imports/k8s';

/**
 * Kubernetes minor version of the example cluster, as `major.minor`: the version the generated imports are for
 * (k8s 1.27, cdk8s-plus-27), written once for Pod Security admission and the Cluster Autoscaler's image.
 */
export const KUBERNETES_VERSION = '1.27';

/** Name of the PriorityClass of the GPU workers. */
export const GPU_INFERENCE_PRIORITY_CLASS = 'gpu-inference';

/**
 * Cluster-scoped objects of the example, in a chart without a namespace so that none of them carries one: the
 * `ai-workers` namespace, restricted by Pod Security admission, and the workers' PriorityClass.
 */
export class ClusterChart extends Chart {
  constructor(scope: Construct, id: string, props: ChartProps = {}) {
    super(scope, id, { ...props, namespace: undefined });

    // Pods that break the "restricted" profile are refused at admission, not discovered in an audit.
    new k8s.KubeNamespace(this, 'AiWorkers', {
      metadata: {
        name: 'ai-workers',
        labels: {
          'pod-security.kubernetes.io/enforce': 'restricted',
          'pod-security.kubernetes.io/enforce-version': `v${KUBERNETES_VERSION}`,
        },
      },
    });

    // Above ordinary workloads, so a pending worker may preempt best-effort pods from a GPU node; well above the
    // cluster autoscaler's cut-off (-10), below which pending pods never trigger a scale-up.
    new k8s.KubePriorityClass(this, 'GpuInference', {
      metadata: { name: GPU_INFERENCE_PRIORITY_CLASS },
      value: 100_000,
      globalDefault: false,
      description: 'GPU inference workers that drain job queues.',
    });
  }
}

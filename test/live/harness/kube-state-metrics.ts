/**
 * kube-state-metrics, which the autoscaler-at-max and unschedulable-pods alerts read, as a page of its exposition
 * format generated for a given cluster state, and scraped the way kube-prometheus-stack scrapes it.
 *
 * There is no cluster here, so the page stands in for one: the state is set by the test (the HPA at its maximum,
 * a worker pod that cannot be scheduled) and changed between scrapes. Series names and labels are those of
 * kube-state-metrics v2 (`namespace`, `horizontalpodautoscaler`, `pod`, `uid`); its ServiceMonitor is the one the
 * kube-prometheus-stack chart ships (port `http`, `honorLabels: true`, `jobLabel: app.kubernetes.io/name`),
 * which keeps the `namespace` and `pod` labels of the objects described instead of kube-state-metrics' own.
 */
import { createHash } from 'crypto';
import { SimulatedPod, SimulatedService } from './scrape-config';
import { KubeStateMetricsSeries } from '../../../src/queue-worker-monitoring';
import { Manifest } from '../../util/manifests';

export interface KubeStateMetricsState {
  readonly hpas: ReadonlyArray<{ readonly namespace: string; readonly name: string; readonly current: number; readonly max: number }>;
  readonly unschedulablePods: ReadonlyArray<{ readonly namespace: string; readonly pod: string }>;
}

const uid = (text: string) => {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
};

/** The page kube-state-metrics would serve for this state (only the families the alerts read). */
export function kubeStateMetricsPage(state: KubeStateMetricsState): string {
  const lines: string[] = [];
  const family = (name: string, help: string, samples: string[]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...samples);
  };
  const hpa = (h: KubeStateMetricsState['hpas'][number]) => `namespace="${h.namespace}",horizontalpodautoscaler="${h.name}"`;
  family(KubeStateMetricsSeries.hpaMaxReplicas,
    'Upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas.',
    state.hpas.map((h) => `${KubeStateMetricsSeries.hpaMaxReplicas}{${hpa(h)}} ${h.max}`));
  family(KubeStateMetricsSeries.hpaCurrentReplicas, 'Current number of replicas of pods managed by this autoscaler.',
    state.hpas.map((h) => `${KubeStateMetricsSeries.hpaCurrentReplicas}{${hpa(h)}} ${h.current}`));
  family(KubeStateMetricsSeries.podUnschedulable, 'Describes the unschedulable status for the pod.',
    state.unschedulablePods.map((p) => `${KubeStateMetricsSeries.podUnschedulable}{namespace="${p.namespace}",pod="${p.pod}",uid="${uid(p.pod)}"} 1`));
  return `${lines.join('\n')}\n`;
}

/** kube-state-metrics as kube-prometheus-stack installs it in `namespace`: its ServiceMonitor, Service and pod. */
export function kubeStateMetricsObjects(namespace: string, release: string, address: string): {
  serviceMonitor: Manifest;
  service: SimulatedService;
  pod: SimulatedPod;
} {
  const labels = { 'app.kubernetes.io/name': 'kube-state-metrics', 'app.kubernetes.io/instance': release };
  const name = `${release}-kube-state-metrics`;
  return {
    serviceMonitor: {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'ServiceMonitor',
      metadata: { name, namespace, labels: { ...labels, release } },
      spec: {
        jobLabel: 'app.kubernetes.io/name',
        selector: { matchLabels: labels },
        endpoints: [{ port: 'http', honorLabels: true }],
      },
    },
    service: { name, namespace, labels, selector: labels, ports: [{ name: 'http', port: 8080, targetPort: 8080 }] },
    pod: {
      name: `${name}-7c5d8f9b6d-m4kzt`,
      namespace,
      labels,
      containers: [{ name: 'kube-state-metrics', ports: [{ name: 'http', containerPort: 8080, address }] }],
    },
  };
}

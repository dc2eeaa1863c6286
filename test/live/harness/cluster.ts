/**
 * The simulated cluster that service discovery sees: pods and Services built from the synthesized manifests
 * (their labels, container names and named ports), each port pointing at something real on loopback.
 *
 * RabbitMQ is the one workload the library does not synthesize; it is described here the way the RabbitMQ
 * Cluster Operator creates it (Service `<cluster>` and pods `<cluster>-server-N` labelled
 * `app.kubernetes.io/name=<cluster>`, `app.kubernetes.io/component=rabbitmq`, `app.kubernetes.io/part-of=rabbitmq`,
 * the plugin's port named `prometheus`), backed by the broker running on this machine.
 */
import { SimulatedPod, SimulatedService } from './scrape-config';
import { RABBITMQ_PROMETHEUS_PORT } from '../../../src';
import { Manifest } from '../../util/manifests';

/**
 * Pods of a Deployment or DaemonSet: the pod template's labels and containers, under the given pod names. Each
 * container port is reachable at `address(podName, containerPort)`; ports without an address are left out.
 */
export function podsOf(
  workload: Manifest,
  podNames: readonly string[],
  address: (podName: string, containerPort: number) => string | undefined,
  namespace = workload.metadata.namespace,
): SimulatedPod[] {
  if (!namespace) throw new Error(`${workload.kind} ${workload.metadata.name} has no namespace`);
  const template = workload.spec.template;
  return podNames.map((name) => ({
    name,
    namespace,
    labels: { ...(template.metadata?.labels ?? {}) },
    containers: (template.spec.containers as any[]).map((c) => ({
      name: c.name,
      ports: (c.ports ?? [])
        .map((p: any) => ({ name: p.name, containerPort: p.containerPort, address: address(name, p.containerPort) }))
        .filter((p: any) => p.address !== undefined),
    })),
  }));
}

/** A Service manifest as discovery sees it. */
export function serviceOf(service: Manifest, namespace = service.metadata.namespace): SimulatedService {
  if (!namespace) throw new Error(`Service ${service.metadata.name} has no namespace`);
  return {
    name: service.metadata.name!,
    namespace,
    labels: { ...(service.metadata.labels ?? {}) },
    selector: { ...(service.spec.selector ?? {}) },
    ports: (service.spec.ports as any[]).map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort })),
  };
}

/** A RabbitmqCluster as the RabbitMQ Cluster Operator deploys it, its metrics port backed by `metricsAddress`. */
export function rabbitmqClusterOperatorObjects(
  namespace: string,
  cluster: string,
  metricsAddress: string,
): { service: SimulatedService; pod: SimulatedPod } {
  const labels = {
    'app.kubernetes.io/name': cluster,
    'app.kubernetes.io/component': 'rabbitmq',
    'app.kubernetes.io/part-of': 'rabbitmq',
  };
  return {
    service: {
      name: cluster,
      namespace,
      labels,
      selector: { 'app.kubernetes.io/name': cluster },
      ports: [
        { name: 'amqp', port: 5672, targetPort: 5672 },
        { name: 'management', port: 15672, targetPort: 15672 },
        { name: 'prometheus', port: RABBITMQ_PROMETHEUS_PORT, targetPort: RABBITMQ_PROMETHEUS_PORT },
      ],
    },
    pod: {
      name: `${cluster}-server-0`,
      namespace,
      labels,
      containers: [{
        name: 'rabbitmq',
        // Only the metrics port needs to answer here; the others are not scraped.
        ports: [{ name: 'prometheus', containerPort: RABBITMQ_PROMETHEUS_PORT, address: metricsAddress }],
      }],
    },
  };
}

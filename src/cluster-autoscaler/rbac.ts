/**
 * The Cluster Autoscaler's permissions as upstream grants them (the cloud provider examples of kubernetes/autoscaler and
 * its Helm chart), and no wider: every rule names its resources and verbs.
 */
import * as k8s from '../../imports/k8s';

/** Name of the ConfigMap the priority expander reads; fixed by the autoscaler. */
export const PRIORITY_EXPANDER_CONFIGMAP = 'cluster-autoscaler-priority-expander';

/** Name of the ConfigMap the autoscaler writes its status to; fixed by the autoscaler. */
export const STATUS_CONFIGMAP = 'cluster-autoscaler-status';

/** The lease (and legacy endpoints object) the autoscaler's leader election holds. */
export const LEADER_ELECTION_NAME = 'cluster-autoscaler';

const READ = ['watch', 'list', 'get'];

/** Cluster-wide rules of every provider. `dra` adds the dynamic resource allocation objects read since 1.32. */
export function clusterRules(options: { dra: boolean; clusterApi: boolean }): k8s.PolicyRule[] {
  const rules: k8s.PolicyRule[] = [
    { apiGroups: [''], resources: ['events', 'endpoints'], verbs: ['create', 'patch'] },
    { apiGroups: [''], resources: ['pods/eviction'], verbs: ['create'] },
    { apiGroups: [''], resources: ['pods/status'], verbs: ['update'] },
    { apiGroups: [''], resources: ['endpoints'], resourceNames: [LEADER_ELECTION_NAME], verbs: ['get', 'update'] },
    { apiGroups: [''], resources: ['nodes'], verbs: ['watch', 'list', 'get', 'update'] },
    {
      apiGroups: [''],
      resources: ['namespaces', 'pods', 'services', 'replicationcontrollers', 'persistentvolumeclaims', 'persistentvolumes'],
      verbs: READ,
    },
    { apiGroups: ['extensions'], resources: ['replicasets', 'daemonsets'], verbs: READ },
    { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: ['watch', 'list'] },
    { apiGroups: ['apps'], resources: ['statefulsets', 'replicasets', 'daemonsets'], verbs: READ },
    {
      apiGroups: ['storage.k8s.io'],
      resources: ['storageclasses', 'csinodes', 'csidrivers', 'csistoragecapacities', 'volumeattachments'],
      verbs: READ,
    },
    { apiGroups: ['batch', 'extensions'], resources: ['jobs'], verbs: ['get', 'list', 'watch', 'patch'] },
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [LEADER_ELECTION_NAME], verbs: ['get', 'update'] },
  ];
  if (options.dra) {
    rules.push({ apiGroups: ['resource.k8s.io'], resources: ['resourceslices', 'resourceclaims', 'deviceclasses'], verbs: READ });
  }
  if (options.clusterApi) {
    // The Cluster API provider scales MachineDeployments/MachinePools through their scale subresource.
    // Known shortcoming: scale from zero through an infrastructure provider's own machine templates (instead of
    // the capacity annotations) also needs get/list on those templates; their kinds differ per provider and are
    // not granted here, so such users must add a ClusterRole for them.
    rules.push(
      {
        apiGroups: ['cluster.x-k8s.io'],
        resources: ['machinedeployments', 'machinepools', 'machines', 'machinesets'],
        verbs: ['get', 'list', 'update', 'watch'],
      },
      {
        apiGroups: ['cluster.x-k8s.io'],
        resources: ['machinedeployments/scale', 'machinepools/scale'],
        verbs: ['get', 'patch', 'update'],
      },
    );
  }
  return rules;
}

/** Rules in the autoscaler's own namespace: its status and priority-expander ConfigMaps. */
export function namespaceRules(): k8s.PolicyRule[] {
  return [
    { apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'list', 'watch'] },
    {
      apiGroups: [''],
      resources: ['configmaps'],
      resourceNames: [STATUS_CONFIGMAP, PRIORITY_EXPANDER_CONFIGMAP],
      verbs: ['delete', 'get', 'update', 'watch'],
    },
  ];
}

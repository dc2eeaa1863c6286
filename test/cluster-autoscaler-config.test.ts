import { ApiObject, Duration, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import * as yaml from 'yaml';
import {
  AwsCredentials,
  AzureCredentials,
  CLUSTER_API_ANNOTATIONS,
  ClusterAutoscalerConfig,
  ClusterAutoscalerConfigProps,
  ClusterAutoscalerProvider,
  GceCredentials,
  GpuExpander,
  GpuNodeGroup,
  SAFE_TO_EVICT_ANNOTATION,
} from '../src/cluster-autoscaler-config';
import { DcgmExporter } from '../src/dcgm-exporter';
import { GPU_NODE_LABEL, GPU_NODE_TAINT } from '../src/gpu-node-labels';
import { GpuWorkerDeployment, ModelSource } from '../src/gpu-worker-deployment';
import { expectInvalidProp, Manifest, only, synthValid, testChart, validateManifest } from './util/manifests';

const AWS = ClusterAutoscalerProvider.aws({
  clusterName: 'ai-platform',
  region: 'eu-west-1',
  credentials: AwsCredentials.irsa('arn:aws:iam::123456789012:role/cluster-autoscaler'),
});

const GROUPS: GpuNodeGroup[] = [
  { name: 'gpu-l4', minSize: 0, maxSize: 6, gpuType: 'nvidia-l4', gpusPerNode: 1, priority: 50 },
  { name: 'gpu-a10g-x4', minSize: 0, maxSize: 2, gpuType: 'nvidia-a10g', gpusPerNode: 4, labels: { 'workload-class': 'batch' } },
];

function props(overrides: Partial<ClusterAutoscalerConfigProps> = {}): ClusterAutoscalerConfigProps {
  return { provider: AWS, kubernetesVersion: '1.31', gpuNodeGroups: GROUPS, ...overrides };
}

function synthAutoscaler(overrides: Partial<ClusterAutoscalerConfigProps> = {}): { ca: ClusterAutoscalerConfig; manifests: Manifest[] } {
  const chart = testChart('ai-workers');
  const ca = new ClusterAutoscalerConfig(chart, 'cluster-autoscaler', props(overrides));
  return { ca, manifests: synthValid(chart) };
}

function container(manifests: Manifest[]): any {
  return only(manifests, 'Deployment').spec.template.spec.containers[0];
}

function expectInvalid(overrides: Partial<ClusterAutoscalerConfigProps>, prop: string, fix: RegExp): void {
  expectInvalidProp(() => new ClusterAutoscalerConfig(testChart(), 'cluster-autoscaler', props(overrides)), prop, fix);
}

/** Whether a pod toleration list tolerates a node taint (Kubernetes' matching rules). */
function tolerates(tolerations: any[], taint: { key: string; value?: string; effect: string }): boolean {
  return tolerations.some((t) =>
    (t.effect === undefined || t.effect === taint.effect) &&
    (t.operator === 'Exists' ? t.key === undefined || t.key === taint.key : t.key === taint.key && (t.value ?? '') === (taint.value ?? '')));
}

describe('ClusterAutoscalerConfig on AWS (tag discovery)', () => {
  const { ca, manifests } = synthAutoscaler();

  test('synthesizes upstream\'s objects, namespaced ones in kube-system', () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual([
      'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'ServiceAccount',
    ]);
    for (const m of manifests.filter((o) => !o.kind.startsWith('Cluster'))) expect(m.metadata.namespace).toBe('kube-system');
    // Cluster-scoped objects carry no namespace, although the chart has one.
    for (const m of manifests.filter((o) => o.kind.startsWith('Cluster'))) expect(m.metadata.namespace).toBeUndefined();
    expect(manifests).toMatchSnapshot();
  });

  test('renders the flags exactly', () => {
    expect(container(manifests).command).toEqual([
      './cluster-autoscaler',
      '--v=2',
      '--cloud-provider=aws',
      '--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/ai-platform',
      '--expander=priority,least-waste',
      '--balance-similar-node-groups=true',
      '--scale-down-unneeded-time=15m',
      '--scale-down-delay-after-add=15m',
      '--scale-down-gpu-utilization-threshold=0.3',
      '--max-node-provision-time=20m',
      '--max-graceful-termination-sec=3600',
      '--skip-nodes-with-local-storage=false',
      '--cordon-node-before-terminating=true',
    ]);
    expect(container(manifests).env).toEqual([{ name: 'AWS_REGION', value: 'eu-west-1' }]);
  });

  test('runs the autoscaler release of the cluster\'s minor version', () => {
    expect(container(manifests).image).toBe('registry.k8s.io/autoscaling/cluster-autoscaler:v1.31.2');
    expect(ca.image).toBe(container(manifests).image);
  });

  test('deploys as upstream does: critical priority, requests, not evictable by itself, PDB, restricted security', () => {
    const deployment = only(manifests, 'Deployment');
    const pod = deployment.spec.template.spec;
    expect(deployment.spec.replicas).toBe(1);
    expect(pod.priorityClassName).toBe('system-cluster-critical');
    expect(deployment.spec.template.metadata.annotations).toEqual({ [SAFE_TO_EVICT_ANNOTATION]: 'false' });
    expect(container(manifests).resources).toEqual({ requests: { cpu: '100m', memory: '600Mi' }, limits: { memory: '600Mi' } });
    expect(container(manifests).securityContext).toMatchObject({
      runAsNonRoot: true, runAsUser: 65534, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] },
    });
    expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    const pdb = only(manifests, 'PodDisruptionBudget');
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(deployment.spec.template.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
    expect(deployment.spec.selector.matchLabels).toEqual(pdb.spec.selector.matchLabels);
  });

  test('IRSA: the ServiceAccount names the role, the pod uses the ServiceAccount and its token', () => {
    const sa = only(manifests, 'ServiceAccount');
    expect(sa.metadata.annotations).toEqual({ 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/cluster-autoscaler' });
    expect(only(manifests, 'Deployment').spec.template.spec.serviceAccountName).toBe(sa.metadata.name);
    expect(only(manifests, 'Deployment').spec.template.spec.automountServiceAccountToken).toBe(true);
  });

  test('RBAC: upstream\'s rules, bound to the ServiceAccount, no wildcards anywhere', () => {
    const clusterRole = only(manifests, 'ClusterRole');
    const role = only(manifests, 'Role');
    for (const rule of [...clusterRole.rules, ...role.rules]) {
      expect(rule.verbs).not.toContain('*');
      expect(rule.resources).not.toContain('*');
      expect(rule.apiGroups).not.toContain('*');
    }
    expect(clusterRole.rules).toContainEqual({ apiGroups: [''], resources: ['pods/eviction'], verbs: ['create'] });
    expect(clusterRole.rules).toContainEqual({ apiGroups: [''], resources: ['nodes'], verbs: ['watch', 'list', 'get', 'update'] });
    expect(clusterRole.rules).toContainEqual({
      apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['cluster-autoscaler'], verbs: ['get', 'update'],
    });
    // Writes are limited to what the autoscaler changes: events, node taints, pod status, evictions, jobs, its lease.
    const writes = clusterRole.rules.filter((r: any) => r.verbs.some((v: string) => !['get', 'list', 'watch'].includes(v)));
    expect(writes.flatMap((r: any) => r.resources).sort()).toEqual(
      ['endpoints', 'endpoints', 'events', 'jobs', 'leases', 'leases', 'nodes', 'pods/eviction', 'pods/status'],
    );
    expect(clusterRole.rules.some((r: any) => r.apiGroups.includes('cluster.x-k8s.io'))).toBe(false);
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'list', 'watch'] },
      {
        apiGroups: [''],
        resources: ['configmaps'],
        resourceNames: ['cluster-autoscaler-status', 'cluster-autoscaler-priority-expander'],
        verbs: ['delete', 'get', 'update', 'watch'],
      },
    ]);
    const subject = { kind: 'ServiceAccount', name: 'cluster-autoscaler', namespace: 'kube-system' };
    expect(only(manifests, 'ClusterRoleBinding')).toMatchObject({ roleRef: { kind: 'ClusterRole', name: clusterRole.metadata.name }, subjects: [subject] });
    expect(only(manifests, 'RoleBinding')).toMatchObject({ roleRef: { kind: 'Role', name: role.metadata.name }, subjects: [subject] });
  });

  test('priority expander ConfigMap ranks the groups, with a catch-all below', () => {
    const configMap = only(manifests, 'ConfigMap');
    expect(configMap.metadata.name).toBe('cluster-autoscaler-priority-expander');
    expect(configMap.data.priorities).toBe('50:\n  - .*gpu-l4.*\n10:\n  - .*gpu-a10g-x4.*\n0:\n  - .*\n');
    const priorities = yaml.parse(configMap.data.priorities);
    expect(Object.keys(priorities).map(Number).sort((a, b) => a - b)).toEqual([0, 10, 50]);
    expect(new RegExp(`^${priorities[50][0]}$`).test('eks-gpu-l4-20240101-abcd')).toBe(true);
    expect(new RegExp(`^${priorities[50][0]}$`).test('eks-gpu-a10g-x4-1234')).toBe(false);
  });

  test('scale from zero: the ASG tags to copy, with the GPU count, labels and taints', () => {
    expect(ca.scaleFromZero[1].values).toEqual({
      'k8s.io/cluster-autoscaler/enabled': 'true',
      'k8s.io/cluster-autoscaler/ai-platform': 'owned',
      'k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu': '4',
      'k8s.io/cluster-autoscaler/node-template/label/nvidia.com/gpu.present': 'true',
      'k8s.io/cluster-autoscaler/node-template/label/k8s.amazonaws.com/accelerator': 'nvidia-a10g',
      'k8s.io/cluster-autoscaler/node-template/label/workload-class': 'batch',
      'k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu': 'present:NoSchedule',
    });
    expect(ca.scaleFromZero[1].notes[0]).toBe('Set the group\'s MinSize=0 and MaxSize=2.');
    const rendered = yaml.parse(ca.renderScaleFromZero());
    expect(rendered.map((r: any) => r.nodeGroup)).toEqual(['gpu-l4', 'gpu-a10g-x4']);
    expect(rendered[0].values).toEqual(ca.scaleFromZero[0].values);
  });
});

describe('GPU placement agrees between node groups, the exporter and the workers', () => {
  const chart = testChart('ai-workers');
  const ca = new ClusterAutoscalerConfig(chart, 'cluster-autoscaler', props());
  new DcgmExporter(chart, 'dcgm-exporter', { namespace: 'gpu-monitoring' });
  new GpuWorkerDeployment(chart, 'workers', {
    name: 'ocr-workers',
    rabbitmqUrl: { secret: kplus.Secret.fromSecretName(chart, 'amqp', 'rabbitmq-worker'), key: 'url' },
    model: ModelSource.fromPersistentVolumeClaim('ocr-models'),
    maxJobDuration: Duration.minutes(2),
  });
  const manifests = synthValid(chart);
  const worker = (chart.node.findChild('workers') as GpuWorkerDeployment);
  const exporterPod = only(manifests, 'DaemonSet').spec.template.spec;
  const workerPod = only(manifests, 'Deployment', 'ocr-workers').spec.template.spec;

  test('every GPU group carries the GPU label and taint', () => {
    for (const group of ca.gpuNodeGroups) {
      expect(group.labels[GPU_NODE_LABEL.key]).toBe(GPU_NODE_LABEL.value);
      expect(group.labels['k8s.amazonaws.com/accelerator']).toBe(group.gpuType);
      expect(group.taints).toContainEqual(GPU_NODE_TAINT);
    }
  });

  test('the exporter selects the groups\' nodes and tolerates their taints', () => {
    const expression = exporterPod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0];
    for (const group of ca.gpuNodeGroups) {
      expect(expression.values).toContain(group.labels[expression.key]);
      for (const taint of group.taints) expect(tolerates(exporterPod.tolerations, taint)).toBe(true);
    }
  });

  test('the autoscaler accepts the workers: they fit a node and a drain gives them their grace period', () => {
    expect(() => ca.checkWorkload(worker)).not.toThrow();
    expect(worker.terminationGracePeriod.toSeconds()).toBeLessThanOrEqual(ca.maxGracefulTermination.toSeconds());
  });

  test('the workers tolerate the groups\' taints and fit their GPUs', () => {
    const gpus = Number(workerPod.containers.find((c: any) => c.resources?.limits?.['nvidia.com/gpu']).resources.limits['nvidia.com/gpu']);
    for (const group of ca.gpuNodeGroups) {
      for (const taint of group.taints) expect(tolerates(workerPod.tolerations, taint)).toBe(true);
      expect(gpus).toBeLessThanOrEqual(group.gpusPerNode);
    }
  });
});

describe('ClusterAutoscalerConfig providers', () => {
  test('AWS static groups: --nodes=min:max:name for GPU and other groups', () => {
    const { ca, manifests } = synthAutoscaler({
      provider: ClusterAutoscalerProvider.aws({
        clusterName: 'ai-platform', region: 'us-east-1', credentials: AwsCredentials.podIdentity(), discovery: 'static',
      }),
      nodeGroups: [{ name: 'cpu-general', minSize: 1, maxSize: 10 }],
    });
    const args = container(manifests).command;
    expect(args.filter((a: string) => a.startsWith('--nodes='))).toEqual(['--nodes=0:6:gpu-l4', '--nodes=0:2:gpu-a10g-x4', '--nodes=1:10:cpu-general']);
    expect(args.some((a: string) => a.startsWith('--node-group-auto-discovery'))).toBe(false);
    expect(only(manifests, 'ServiceAccount').metadata.annotations).toBeUndefined();
    // Listed groups need no discovery tags, only the template.
    expect(ca.scaleFromZero[0].values['k8s.io/cluster-autoscaler/enabled']).toBeUndefined();
    expect(yaml.parse(only(manifests, 'ConfigMap').data.priorities)[1]).toEqual(['.*cpu-general.*']);
  });

  test('AWS keys come from the user\'s Secret, never as literals', () => {
    const { manifests } = synthAutoscaler({
      provider: ClusterAutoscalerProvider.aws({ clusterName: 'ai', region: 'eu-west-1', credentials: AwsCredentials.fromSecret('ca-aws') }),
    });
    expect(container(manifests).env).toEqual([
      { name: 'AWS_REGION', value: 'eu-west-1' },
      { name: 'AWS_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: 'ca-aws', key: 'AWS_ACCESS_KEY_ID' } } },
      { name: 'AWS_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: 'ca-aws', key: 'AWS_SECRET_ACCESS_KEY' } } },
    ]);
    expect(manifests.filter((m) => m.kind === 'Secret')).toEqual([]);
  });

  test('GCE: one MIG prefix per group with its sizes, GPU totals, Workload Identity', () => {
    const { ca, manifests } = synthAutoscaler({
      provider: ClusterAutoscalerProvider.gce({ credentials: GceCredentials.workloadIdentity('ca@my-project.iam.gserviceaccount.com') }),
    });
    const args = container(manifests).command;
    expect(args.slice(2, 5)).toEqual([
      '--cloud-provider=gce',
      '--node-group-auto-discovery=mig:namePrefix=gpu-l4,min=0,max=6',
      '--node-group-auto-discovery=mig:namePrefix=gpu-a10g-x4,min=0,max=2',
    ]);
    expect(args.filter((a: string) => a.startsWith('--gpu-total='))).toEqual(['--gpu-total=nvidia-l4:0:6', '--gpu-total=nvidia-a10g:0:8']);
    expect(only(manifests, 'ServiceAccount').metadata.annotations).toEqual({ 'iam.gke.io/gcp-service-account': 'ca@my-project.iam.gserviceaccount.com' });
    expect(ca.gpuNodeGroups[0].labels['cloud.google.com/gke-accelerator']).toBe('nvidia-l4');
    expect(ca.scaleFromZero[0].values).toEqual({
      AUTOSCALER_ENV_VARS: 'node_labels=nvidia.com/gpu.present=true,cloud.google.com/gke-accelerator=nvidia-l4;node_taints=nvidia.com/gpu=present:NoSchedule',
    });
  });

  test('GCE with the instances\' own service account: no credentials in the manifests', () => {
    const { manifests } = synthAutoscaler({ provider: ClusterAutoscalerProvider.gce({ credentials: GceCredentials.instanceServiceAccount() }) });
    expect(container(manifests).env).toBeUndefined();
    expect(only(manifests, 'ServiceAccount').metadata.annotations).toBeUndefined();
    expect(only(manifests, 'Deployment').spec.template.spec.volumes).toBeUndefined();
  });

  test('GCE key file from the user\'s Secret, mounted read-only', () => {
    const { manifests } = synthAutoscaler({ provider: ClusterAutoscalerProvider.gce({ credentials: GceCredentials.fromSecret('ca-gcp') }) });
    expect(container(manifests).env).toEqual([{ name: 'GOOGLE_APPLICATION_CREDENTIALS', value: '/var/secrets/google/key.json' }]);
    expect(container(manifests).volumeMounts).toEqual([{ name: 'credentials', mountPath: '/var/secrets/google', readOnly: true }]);
    expect(only(manifests, 'Deployment').spec.template.spec.volumes).toEqual([{ name: 'credentials', secret: { secretName: 'ca-gcp' } }]);
  });

  test('Azure with workload identity: listed scale sets, ids as plain values, the webhook label', () => {
    const { ca, manifests } = synthAutoscaler({
      provider: ClusterAutoscalerProvider.azure({
        credentials: AzureCredentials.workloadIdentity({
          clientId: '11111111-2222-3333-4444-555555555555',
          tenantId: '66666666-7777-8888-9999-000000000000',
          subscriptionId: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
          resourceGroup: 'mc_ai_platform',
        }),
      }),
    });
    expect(container(manifests).command.filter((a: string) => a.startsWith('--nodes='))).toEqual(['--nodes=0:6:gpu-l4', '--nodes=0:2:gpu-a10g-x4']);
    expect(container(manifests).env).toContainEqual({ name: 'ARM_USE_WORKLOAD_IDENTITY_EXTENSION', value: 'true' });
    expect(only(manifests, 'Deployment').spec.template.metadata.labels).toMatchObject({ 'azure.workload.identity/use': 'true' });
    expect(only(manifests, 'ServiceAccount').metadata.annotations).toEqual({ 'azure.workload.identity/client-id': '11111111-2222-3333-4444-555555555555' });
    expect(ca.scaleFromZero[1].values).toEqual({
      'k8s.io_cluster-autoscaler_node-template_resources_nvidia.com_gpu': '4',
      'k8s.io_cluster-autoscaler_node-template_label_nvidia.com_gpu.present': 'true',
      'k8s.io_cluster-autoscaler_node-template_label_kubernetes.azure.com_accelerator': 'nvidia-a10g',
      'k8s.io_cluster-autoscaler_node-template_label_workload-class': 'batch',
      'k8s.io_cluster-autoscaler_node-template_taint_nvidia.com_gpu': 'present:NoSchedule',
    });
  });

  test('Azure service principal from the user\'s Secret', () => {
    const { manifests } = synthAutoscaler({ provider: ClusterAutoscalerProvider.azure({ credentials: AzureCredentials.fromSecret('ca-azure') }) });
    const env = container(manifests).env;
    expect(env.find((e: any) => e.name === 'ARM_CLIENT_SECRET')).toEqual({
      name: 'ARM_CLIENT_SECRET', valueFrom: { secretKeyRef: { name: 'ca-azure', key: 'ClientSecret' } },
    });
    expect(env.filter((e: any) => e.value !== undefined)).toEqual([{ name: 'ARM_VM_TYPE', value: 'vmss' }]);
  });

  test('Cluster API: discovery by cluster, scale permissions, capacity annotations on the MachineDeployment', () => {
    const chart = testChart('ai-workers');
    const machineDeployment = new ApiObject(chart, 'md', {
      apiVersion: 'cluster.x-k8s.io/v1beta1', kind: 'MachineDeployment', metadata: { name: 'gpu-l4', namespace: 'clusters' },
    });
    const ca = new ClusterAutoscalerConfig(chart, 'cluster-autoscaler', props({
      provider: ClusterAutoscalerProvider.clusterApi({ clusterName: 'ai-platform', namespace: 'clusters' }),
      gpuNodeGroups: [{ ...GROUPS[0], cpu: 8, memory: Size.gibibytes(32), machineDeployment }],
    }));
    const manifests = Testing.synth(chart) as Manifest[];
    manifests.filter((m) => m.kind !== 'MachineDeployment').forEach(validateManifest);

    expect(container(manifests).command.slice(2, 4)).toEqual([
      '--cloud-provider=clusterapi',
      '--node-group-auto-discovery=clusterapi:namespace=clusters,clusterName=ai-platform',
    ]);
    expect(only(manifests, 'ClusterRole').rules).toContainEqual({
      apiGroups: ['cluster.x-k8s.io'], resources: ['machinedeployments/scale', 'machinepools/scale'], verbs: ['get', 'patch', 'update'],
    });
    const annotations = only(manifests, 'MachineDeployment').metadata.annotations;
    expect(annotations).toEqual({
      [CLUSTER_API_ANNOTATIONS.minSize]: '0',
      [CLUSTER_API_ANNOTATIONS.maxSize]: '6',
      [CLUSTER_API_ANNOTATIONS.cpu]: '8',
      [CLUSTER_API_ANNOTATIONS.memory]: '32768Mi',
      [CLUSTER_API_ANNOTATIONS.gpuType]: 'nvidia.com/gpu',
      [CLUSTER_API_ANNOTATIONS.gpuCount]: '1',
      [CLUSTER_API_ANNOTATIONS.labels]: 'nvidia.com/gpu.present=true,cluster-api/accelerator=nvidia-l4',
      [CLUSTER_API_ANNOTATIONS.taints]: 'nvidia.com/gpu=present:NoSchedule',
    });
    expect(ca.scaleFromZero[0].values).toEqual(annotations);
    expect(yaml.parse(only(manifests, 'ConfigMap').data.priorities)[50]).toEqual(['.*/clusters/gpu-l4$']);
  });

  test('metrics scraped when asked: Service and ServiceMonitor in kube-system', () => {
    const { ca, manifests } = synthAutoscaler({ serviceMonitorLabels: { release: 'kube-prometheus-stack' } });
    const service = only(manifests, 'Service');
    const monitor = only(manifests, 'ServiceMonitor');
    expect(service.spec.ports).toEqual([{ name: 'metrics', port: 8085, targetPort: 'metrics' }]);
    expect(container(manifests).ports).toEqual([{ containerPort: 8085, name: 'metrics' }]);
    expect(only(manifests, 'Deployment').spec.template.metadata.labels).toMatchObject(service.spec.selector);
    expect(service.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(monitor.metadata.labels).toMatchObject({ release: 'kube-prometheus-stack' });
    expect(monitor.spec.namespaceSelector.matchNames).toEqual([service.metadata.namespace]);
    expect(monitor.spec.endpoints[0].port).toBe(service.spec.ports[0].name);
    expect(ca.serviceMonitor).toBeDefined();
  });

  test('least-waste expander: no priority ConfigMap', () => {
    const { manifests } = synthAutoscaler({ expander: GpuExpander.LEAST_WASTE });
    expect(manifests.filter((m) => m.kind === 'ConfigMap')).toEqual([]);
    expect(container(manifests).command).toContain('--expander=least-waste');
  });

  test('tuning props and extra flags; an extra flag replaces ours', () => {
    const { manifests } = synthAutoscaler({
      scaleDownUnneededTime: Duration.minutes(30),
      maxNodeProvisionTime: Duration.seconds(1530),
      maxGracefulTermination: Duration.minutes(20),
      scaleDownGpuUtilizationThreshold: 0.5,
      balanceSimilarNodeGroups: false,
      extraArgs: { 'scan-interval': '20s', 'cordon-node-before-terminating': 'false' },
    });
    const args = container(manifests).command;
    expect(args).toContain('--scale-down-unneeded-time=30m');
    expect(args).toContain('--max-node-provision-time=1530s');
    expect(args).toContain('--max-graceful-termination-sec=1200');
    expect(args).toContain('--scale-down-gpu-utilization-threshold=0.5');
    expect(args).toContain('--balance-similar-node-groups=false');
    expect(args.slice(-2)).toEqual(['--scan-interval=20s', '--cordon-node-before-terminating=false']);
    expect(args.filter((a: string) => a.startsWith('--cordon-node-before-terminating'))).toHaveLength(1);
  });

  test('Kubernetes 1.32 and later also read the DRA objects', () => {
    const { manifests } = synthAutoscaler({ kubernetesVersion: '1.33' });
    expect(container(manifests).image).toBe('registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.5');
    expect(only(manifests, 'ClusterRole').rules).toContainEqual({
      apiGroups: ['resource.k8s.io'], resources: ['resourceslices', 'resourceclaims', 'deviceclasses'], verbs: ['watch', 'list', 'get'],
    });
  });

  test('an image override serves a minor version the table does not know', () => {
    const { manifests } = synthAutoscaler({ kubernetesVersion: '1.36', image: 'mirror.example.com/cluster-autoscaler:v1.36.0' });
    expect(container(manifests).image).toBe('mirror.example.com/cluster-autoscaler:v1.36.0');
  });
});

describe('ClusterAutoscalerConfig bad input', () => {
  const group = (overrides: Partial<GpuNodeGroup>): GpuNodeGroup[] => [{ ...GROUPS[0], ...overrides }];

  test('min > max', () => expectInvalid({ gpuNodeGroups: group({ minSize: 5, maxSize: 2 }) }, 'gpuNodeGroups[0].minSize', /<=/));
  test('negative min size', () => expectInvalid({ gpuNodeGroups: group({ minSize: -1 }) }, 'gpuNodeGroups[0].minSize', /at least 0/));
  test('max size 0', () => expectInvalid({ gpuNodeGroups: group({ maxSize: 0 }) }, 'gpuNodeGroups[0].maxSize', /at least 1/));
  test('fractional GPU count', () => expectInvalid({ gpuNodeGroups: group({ gpusPerNode: 0.5 }) }, 'gpuNodeGroups[0].gpusPerNode', /whole number/));
  test('negative size of a non-GPU group', () => expectInvalid({
    provider: ClusterAutoscalerProvider.aws({ clusterName: 'ai', region: 'eu-west-1', credentials: AwsCredentials.podIdentity(), discovery: 'static' }),
    nodeGroups: [{ name: 'cpu', minSize: -2, maxSize: 3 }],
  }, 'nodeGroups[0].minSize', /at least 0/));
  test('no GPU node group', () => expectInvalid({ gpuNodeGroups: [] }, 'gpuNodeGroups', /at least one GPU node group/));
  test('same group twice', () => expectInvalid({ gpuNodeGroups: [GROUPS[0], GROUPS[0]] }, 'gpuNodeGroups[1].name', /each node group once/));

  test('unknown provider', () => expectInvalid({ provider: { name: 'digitalocean' } as any }, 'provider', /aws, gce, azure, clusterapi/));
  test('missing provider', () => expectInvalid({ provider: undefined as any }, 'provider', /ClusterAutoscalerProvider\.aws/));

  test('AWS without a cluster name', () => expectInvalid({
    provider: ClusterAutoscalerProvider.aws({ clusterName: '', region: 'eu-west-1', credentials: AwsCredentials.podIdentity() }),
  }, 'provider.clusterName', /cluster name/));
  test('AWS with a bad region', () => expectInvalid({
    provider: ClusterAutoscalerProvider.aws({ clusterName: 'ai', region: 'Ireland', credentials: AwsCredentials.podIdentity() }),
  }, 'provider.region', /eu-west-1/));
  test('AWS without credentials', () => expectInvalid({
    provider: ClusterAutoscalerProvider.aws({ clusterName: 'ai', region: 'eu-west-1', credentials: undefined as any }),
  }, 'provider.credentials', /never go into the manifests as literals/));
  test('AWS credentials as a literal object', () => expectInvalid({
    provider: ClusterAutoscalerProvider.aws({ clusterName: 'ai', region: 'eu-west-1', credentials: { accessKeyId: 'AKIA...', secret: 'x' } as any }),
  }, 'provider.credentials', /AwsCredentials\.fromSecret/));
  test('AWS IRSA with something that is not a role ARN', () => expectInvalid({
    provider: ClusterAutoscalerProvider.aws({ clusterName: 'ai', region: 'eu-west-1', credentials: AwsCredentials.irsa('cluster-autoscaler') }),
  }, 'provider.credentials', /arn:aws:iam/));
  test('AWS tag discovery with listed non-GPU groups', () => expectInvalid({ nodeGroups: [{ name: 'cpu', minSize: 1, maxSize: 3 }] },
    'nodeGroups', /discovery: 'static'/));
  test('Cluster API without the cluster name', () => expectInvalid({
    provider: ClusterAutoscalerProvider.clusterApi({ clusterName: '', namespace: 'clusters' }),
  }, 'provider.clusterName', /Name the workload cluster/));
  test('Cluster API group at zero without capacity', () => expectInvalid({
    provider: ClusterAutoscalerProvider.clusterApi({ clusterName: 'ai', namespace: 'clusters' }),
  }, 'gpuNodeGroups[0].cpu', /scale from zero/));
  test('Azure workload identity with a client id that is not a GUID', () => expectInvalid({
    provider: ClusterAutoscalerProvider.azure({
      credentials: AzureCredentials.workloadIdentity({ clientId: 'ca', tenantId: 'x', subscriptionId: 'y', resourceGroup: 'rg' }),
    }),
  }, 'provider.credentials.clientId', /GUID/));
  test('GCE Workload Identity with something that is not a service account email', () => expectInvalid({
    provider: ClusterAutoscalerProvider.gce({ credentials: GceCredentials.workloadIdentity('cluster-autoscaler') }),
  }, 'provider.credentials', /iam\.gserviceaccount\.com/));

  test('AWS group name with a space', () => expectInvalid({ gpuNodeGroups: group({ name: 'gpu pool' }) }, 'gpuNodeGroups[0].name', /Auto Scaling group/));
  test('GCE group name with capitals', () => expectInvalid({
    provider: ClusterAutoscalerProvider.gce({ credentials: GceCredentials.fromSecret('k') }), gpuNodeGroups: group({ name: 'GPU-L4' }),
  }, 'gpuNodeGroups[0].name', /managed instance group/));
  test('Azure group name longer than 64 characters', () => expectInvalid({
    provider: ClusterAutoscalerProvider.azure({ credentials: AzureCredentials.fromSecret('k') }), gpuNodeGroups: group({ name: 'g'.repeat(65) }),
  }, 'gpuNodeGroups[0].name', /VM scale set/));
  test('Cluster API group name that is not a Kubernetes name', () => expectInvalid({
    provider: ClusterAutoscalerProvider.clusterApi({ clusterName: 'ai', namespace: 'clusters' }), gpuNodeGroups: group({ name: 'Gpu_L4', cpu: 8, memory: Size.gibibytes(32) }),
  }, 'gpuNodeGroups[0].name', /RFC 1123/));

  test('GPU type that is not a label value', () => expectInvalid({ gpuNodeGroups: group({ gpuType: 'NVIDIA L4' }) }, 'gpuNodeGroups[0].gpuType', /label value/));
  test('bad taint effect', () => expectInvalid({ gpuNodeGroups: group({ taints: [{ key: 'dedicated', value: 'ml', effect: 'NoRun' as any }] }) },
    'gpuNodeGroups[0].taints[0].effect', /NoSchedule/));
  test('kubernetesVersion not in the table', () => expectInvalid({ kubernetesVersion: '1.26' }, 'kubernetesVersion', /give `image`/));
  test('kubernetesVersion not a minor version', () => expectInvalid({ kubernetesVersion: 'v1.31.4' }, 'kubernetesVersion', /'1\.31'/));
  test('GPU utilization threshold above 1', () => expectInvalid({ scaleDownGpuUtilizationThreshold: 1.5 }, 'scaleDownGpuUtilizationThreshold', /between 0 and 1/));
  test('extra flag with dashes', () => expectInvalid({ extraArgs: { '--scan-interval': '20s' } }, 'extraArgs[--scan-interval]', /without leading dashes/));
  test('MachineDeployment on a non-Cluster-API provider', () => {
    const chart = testChart();
    const md = new ApiObject(chart, 'md', { apiVersion: 'cluster.x-k8s.io/v1beta1', kind: 'MachineDeployment' });
    expect(() => new ClusterAutoscalerConfig(chart, 'ca', props({ gpuNodeGroups: group({ machineDeployment: md }) }))).toThrow(/Only Cluster API/);
  });
});


describe('ClusterAutoscalerConfig workload checks', () => {
  const workload = (grace: Duration, count: number) => ({ name: 'ocr-workers', terminationGracePeriod: grace, gpu: { resourceName: 'nvidia.com/gpu', count } });

  test('a worker grace period longer than the drain limit', () => {
    expectInvalid({ maxGracefulTermination: Duration.minutes(10), workloads: [workload(Duration.minutes(12), 1)] },
      'maxGracefulTermination', /at least Duration.seconds\(720\)/);
  });

  test('a worker that needs more GPUs per pod than any node has', () => {
    expectInvalid({ workloads: [workload(Duration.minutes(3), 8)] }, 'gpuNodeGroups', /offer at most 4 GPUs per node, but each pod of ocr-workers requests 8/);
  });

  test('a MIG resource is not compared with whole-GPU node groups', () => {
    const attempt = () => new ClusterAutoscalerConfig(testChart(), 'ca', props({
      workloads: [{ name: 'mig', terminationGracePeriod: Duration.minutes(3), gpu: { resourceName: 'nvidia.com/mig-1g.5gb', count: 7 } }],
    }));
    expect(attempt).not.toThrow();
  });
});

describe('ClusterAutoscalerConfig durations', () => {
  test('a duration that is not whole seconds', () => {
    expect(() => new ClusterAutoscalerConfig(testChart(), 'ca', props({ maxNodeProvisionTime: Duration.millis(1500) })))
      .toThrow(/`maxNodeProvisionTime` is 1.5 seconds. Use a whole, positive number of seconds./);
  });
});

import { Chart, Duration, Testing } from 'cdk8s';
import { DcgmExporter } from '../src/dcgm-exporter';
import { GPU_NODE_LABEL, GPU_NODE_TAINT, GPU_TOLERATION } from '../src/gpu-node-labels';
import { KarpenterGpuNodePool, KarpenterGpuNodePoolProps } from '../src/karpenter-gpu-node-pool';
import { expectInvalidProp, Manifest, only, synthValid } from './util/manifests';

const EC2_GPU_CLASS = { group: 'karpenter.k8s.aws', kind: 'EC2NodeClass', name: 'gpu' };

function synthPool(props: Partial<KarpenterGpuNodePoolProps> = {}, namespace?: string): { pool: KarpenterGpuNodePool; manifests: Manifest[] } {
  const chart = new Chart(Testing.app(), 'test', { namespace });
  const pool = new KarpenterGpuNodePool(chart, 'gpu-workers', { nodeClassRef: EC2_GPU_CLASS, gpuLimit: 16, ...props });
  return { pool, manifests: synthValid(chart) };
}

function expectInvalid(props: Partial<KarpenterGpuNodePoolProps>, prop: string, fix: RegExp): void {
  const pool = () => new KarpenterGpuNodePool(new Chart(Testing.app(), 'test'), 'gpu-workers', { nodeClassRef: EC2_GPU_CLASS, gpuLimit: 16, ...props });
  expectInvalidProp(pool, prop, fix);
}

describe('KarpenterGpuNodePool', () => {
  const { pool, manifests } = synthPool({ gpuNames: ['a10g', 'l4'] }, 'ai-workers');
  const nodePool = only(manifests, 'NodePool');

  test('a karpenter.sh/v1 NodePool, cluster-scoped, valid against the CRD schema', () => {
    expect(nodePool.apiVersion).toBe('karpenter.sh/v1');
    expect(nodePool.metadata).toEqual({ name: 'gpu-workers' });
    expect(manifests).toMatchSnapshot();
  });

  test('GPU instances only, on demand', () => {
    expect(nodePool.spec.template.spec.requirements).toEqual([
      { key: 'karpenter.k8s.aws/instance-gpu-manufacturer', operator: 'In', values: ['nvidia'] },
      { key: 'karpenter.k8s.aws/instance-gpu-name', operator: 'In', values: ['a10g', 'l4'] },
      { key: 'karpenter.sh/capacity-type', operator: 'In', values: ['on-demand'] },
    ]);
    expect(nodePool.spec.template.spec.nodeClassRef).toEqual(EC2_GPU_CLASS);
  });

  test('limits total GPUs', () => {
    expect(nodePool.spec.limits).toEqual({ 'nvidia.com/gpu': 16 });
  });

  test('nodes carry the GPU label and taint the exporter and workers expect', () => {
    expect(nodePool.spec.template.metadata.labels).toEqual({ [GPU_NODE_LABEL.key]: GPU_NODE_LABEL.value });
    expect(nodePool.spec.template.spec.taints).toEqual([GPU_NODE_TAINT]);
    expect(pool.taints).toEqual([GPU_NODE_TAINT]);

    const chart = new Chart(Testing.app(), 'exporter');
    new DcgmExporter(chart, 'dcgm-exporter');
    const exporterPod = only(synthValid(chart), 'DaemonSet').spec.template.spec;
    expect(exporterPod.tolerations).toEqual([GPU_TOLERATION]);
    const expression = exporterPod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0];
    expect(pool.labels[expression.key]).toBe(expression.values[0]);
  });

  test('disruption never stops a running job: empty nodes only, one at a time, no drain deadline', () => {
    expect(nodePool.spec.disruption).toEqual({
      consolidationPolicy: 'WhenEmpty',
      consolidateAfter: '10m',
      budgets: [{ nodes: '1' }],
    });
    expect(nodePool.spec.template.spec.expireAfter).toBe('720h');
    expect(nodePool.spec.template.spec.terminationGracePeriod).toBeUndefined();
  });
});

describe('KarpenterGpuNodePool options', () => {
  test('instance types, spot, extra labels and taints, budgets, expiry and weight', () => {
    const { manifests } = synthPool({
      name: 'gpu-spot',
      instanceTypes: ['g6.xlarge', 'g6.2xlarge'],
      capacityTypes: ['spot', 'on-demand'],
      labels: { 'workload-class': 'batch' },
      taints: [{ key: 'dedicated', value: 'inference', effect: 'NoSchedule' }],
      consolidateAfter: Duration.minutes(30),
      expireAfter: 'Never',
      terminationGracePeriod: Duration.hours(2),
      disruptionBudgets: [{ nodes: '10%' }, { nodes: '0', reasons: ['Drifted'], schedule: '0 9 * * 1-5', duration: Duration.hours(8) }],
      weight: 10,
    });
    const spec = only(manifests, 'NodePool').spec;
    expect(spec.template.spec.requirements).toEqual([
      { key: 'karpenter.k8s.aws/instance-gpu-manufacturer', operator: 'In', values: ['nvidia'] },
      { key: 'node.kubernetes.io/instance-type', operator: 'In', values: ['g6.xlarge', 'g6.2xlarge'] },
      { key: 'karpenter.sh/capacity-type', operator: 'In', values: ['spot', 'on-demand'] },
    ]);
    expect(spec.template.metadata.labels).toEqual({ 'nvidia.com/gpu.present': 'true', 'workload-class': 'batch' });
    expect(spec.template.spec.taints).toEqual([GPU_NODE_TAINT, { key: 'dedicated', value: 'inference', effect: 'NoSchedule' }]);
    expect(spec.template.spec.expireAfter).toBe('Never');
    expect(spec.template.spec.terminationGracePeriod).toBe('2h');
    expect(spec.disruption.consolidateAfter).toBe('30m');
    expect(spec.disruption.budgets).toEqual([{ nodes: '10%' }, { nodes: '0', reasons: ['Drifted'], schedule: '0 9 * * 1-5', duration: '8h' }]);
    expect(spec.weight).toBe(10);
  });

  test('outside AWS, instance types define the GPU instances', () => {
    const { manifests } = synthPool({
      nodeClassRef: { group: 'karpenter.azure.com', kind: 'AKSNodeClass', name: 'gpu' },
      instanceTypes: ['Standard_NC4as_T4_v3'],
    });
    expect(only(manifests, 'NodePool').spec.template.spec.requirements).toEqual([
      { key: 'node.kubernetes.io/instance-type', operator: 'In', values: ['Standard_NC4as_T4_v3'] },
      { key: 'karpenter.sh/capacity-type', operator: 'In', values: ['on-demand'] },
    ]);
  });
});

describe('KarpenterGpuNodePool bad input', () => {
  test('no GPU limit', () => expectInvalid({ gpuLimit: undefined as any }, 'gpuLimit', /without bound/));
  test('GPU limit 0', () => expectInvalid({ gpuLimit: 0 }, 'gpuLimit', /at least 1/));
  test('fractional GPU limit', () => expectInvalid({ gpuLimit: 2.5 }, 'gpuLimit', /whole number/));
  test('no node class', () => expectInvalid({ nodeClassRef: undefined as any }, 'nodeClassRef', /EC2NodeClass/));
  test('non-AWS pool without instance types', () => expectInvalid({ nodeClassRef: { group: 'karpenter.azure.com', kind: 'AKSNodeClass', name: 'gpu' } },
    'instanceTypes', /GPU instance types/));
  test('GPU names on a non-AWS node class', () => expectInvalid({
    nodeClassRef: { group: 'karpenter.azure.com', kind: 'AKSNodeClass', name: 'gpu' }, instanceTypes: ['Standard_NC4as_T4_v3'], gpuNames: ['t4'],
  }, 'gpuNames', /instanceTypes/));
  test('empty instance types', () => expectInvalid({ instanceTypes: [] }, 'instanceTypes', /at least one/));
  test('unknown capacity type', () => expectInvalid({ capacityTypes: ['preemptible' as any] }, 'capacityTypes[0]', /on-demand, spot or reserved/));
  test('budget that is not a count or share', () => expectInvalid({ disruptionBudgets: [{ nodes: 'one' }] }, 'disruptionBudgets[0].nodes', /10%/));
  test('budget schedule without duration', () => expectInvalid({ disruptionBudgets: [{ nodes: '0', schedule: '0 9 * * *' }] },
    'disruptionBudgets[0].schedule', /both/));
  test('fractional-minute consolidation delay', () => expectInvalid({ consolidateAfter: Duration.millis(1500) }, 'consolidateAfter', /whole/));
  test('name that is not a Kubernetes name', () => expectInvalid({ name: 'GPU Pool' }, 'name', /RFC 1123/));
});

import { Duration } from 'cdk8s';
import { DcgmExporter, DEFAULT_DCGM_COUNTERS, DCGM_EXPORTER_IMAGE, KUBELET_POD_RESOURCES_PATH } from '../src/dcgm-exporter';
import { KNOWN_DCGM_FIELDS } from '../src/dcgm-fields';
import { DCGM_EXPORTER_PORT, DCGM_GPU_UTIL_FIELD } from '../src/gpu-metrics';
import { GPU_NODE_LABEL, GPU_NODE_TAINT } from '../src/gpu-node-labels';
import { all, expectInvalidProp, Manifest, only, synthValid, testChart } from './util/manifests';

/** Synthesizes one exporter in a fresh chart in `gpu-monitoring`. */
function synthExporter(props: ConstructorParameters<typeof DcgmExporter>[2] = {}): { exporter: DcgmExporter; manifests: Manifest[] } {
  const chart = testChart('gpu-monitoring');
  const exporter = new DcgmExporter(chart, 'dcgm-exporter', props);
  return { exporter, manifests: synthValid(chart) };
}

function container(manifests: Manifest[]): any {
  return only(manifests, 'DaemonSet').spec.template.spec.containers[0];
}

function env(manifests: Manifest[]): Record<string, string> {
  return Object.fromEntries(container(manifests).env.map((e: any) => [e.name, e.value]));
}

/** The counter lines of the synthesized CSV, without comments: [field, type, help]. */
function csvLines(manifests: Manifest[]): string[][] {
  const csv: string = only(manifests, 'ConfigMap').data['counters.csv'];
  return csv.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(',').map((c) => c.trim()));
}

function expectInvalid(props: ConstructorParameters<typeof DcgmExporter>[2], prop: string, fix: RegExp): void {
  expectInvalidProp(() => new DcgmExporter(testChart('gpu-monitoring'), 'dcgm-exporter', props), prop, fix);
}

describe('DcgmExporter (own DaemonSet)', () => {
  const { exporter, manifests } = synthExporter({ serviceMonitorLabels: { release: 'kube-prometheus-stack' } });

  test('synthesizes the expected objects', () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual(['ConfigMap', 'DaemonSet', 'Service', 'ServiceAccount', 'ServiceMonitor']);
    expect(manifests).toMatchSnapshot();
  });

  test('runs on GPU nodes only and tolerates the GPU taint', () => {
    const pod = only(manifests, 'DaemonSet').spec.template.spec;
    const terms = pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
    expect(terms).toEqual([{ matchExpressions: [{ key: GPU_NODE_LABEL.key, operator: 'In', values: [GPU_NODE_LABEL.value] }] }]);
    expect(pod.tolerations).toEqual([{ key: GPU_NODE_TAINT.key, operator: 'Exists', effect: GPU_NODE_TAINT.effect }]);
  });

  test('listens on the shared port in Kubernetes mode, reading the generated counters file', () => {
    expect(container(manifests).ports).toEqual([{ containerPort: DCGM_EXPORTER_PORT, name: 'metrics' }]);
    expect(env(manifests)).toEqual({
      DCGM_EXPORTER_LISTEN: `:${DCGM_EXPORTER_PORT}`,
      DCGM_EXPORTER_KUBERNETES: 'true',
      DCGM_EXPORTER_COLLECTORS: '/etc/dcgm-exporter/custom/counters.csv',
      DCGM_EXPORTER_INTERVAL: '15000',
    });
    expect(container(manifests).image).toBe(DCGM_EXPORTER_IMAGE);
    expect(DCGM_EXPORTER_IMAGE).toMatch(/^nvcr\.io\/nvidia\/k8s\/dcgm-exporter:\d+\.\d+\.\d+-\d+\.\d+\.\d+-distroless$/);
  });

  test('mounts the kubelet pod-resources directory read-only', () => {
    const pod = only(manifests, 'DaemonSet').spec.template.spec;
    const volume = pod.volumes.find((v: any) => v.hostPath);
    expect(volume.hostPath).toEqual({ path: KUBELET_POD_RESOURCES_PATH, type: 'Directory' });
    const mount = container(manifests).volumeMounts.find((m: any) => m.name === volume.name);
    expect(mount).toEqual({ name: volume.name, mountPath: KUBELET_POD_RESOURCES_PATH, readOnly: true });
    // No other host path: the exporter sees nothing else of the node.
    expect(pod.volumes.filter((v: any) => v.hostPath)).toHaveLength(1);
    expect(pod.hostNetwork).toBe(false);
    expect(pod.hostPID).toBeUndefined();
  });

  test('adds SYS_ADMIN and nothing else, with a read-only root filesystem', () => {
    const sc = container(manifests).securityContext;
    expect(sc.capabilities).toEqual({ drop: ['ALL'], add: ['SYS_ADMIN'] });
    expect(sc.privileged).toBe(false);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    // The entrypoint script writes to the root filesystem, so the binary runs directly.
    expect(container(manifests).command).toEqual(['/usr/bin/dcgm-exporter']);
    const writable = container(manifests).volumeMounts.filter((m: any) => !m.readOnly).map((m: any) => m.mountPath);
    expect(writable.sort()).toEqual(['/tmp', '/var/log']);
  });

  test('needs no API access: no token, no RBAC objects', () => {
    expect(only(manifests, 'ServiceAccount').automountServiceAccountToken).toBe(false);
    expect(only(manifests, 'DaemonSet').spec.template.spec.automountServiceAccountToken).toBe(false);
    expect(only(manifests, 'DaemonSet').spec.template.spec.serviceAccountName).toBe(only(manifests, 'ServiceAccount').metadata.name);
    expect(manifests.filter((m) => /Role/.test(m.kind))).toEqual([]);
  });

  test('writes the default counters in dcgm-exporter CSV format', () => {
    const lines = csvLines(manifests);
    expect(lines.map((l) => l[0])).toEqual([...DEFAULT_DCGM_COUNTERS]);
    for (const [field, type, help] of lines) {
      expect(KNOWN_DCGM_FIELDS[field]).toBeDefined();
      expect(type).toBe(KNOWN_DCGM_FIELDS[field].type);
      expect(help.length).toBeGreaterThan(0);
    }
    expect(lines.find((l) => l[0] === DCGM_GPU_UTIL_FIELD)).toEqual([DCGM_GPU_UTIL_FIELD, 'gauge', 'GPU utilization (in %).']);
  });

  test('ServiceMonitor keeps the pod labels dcgm-exporter writes (honorLabels) and drops its own pod identity', () => {
    const monitor = only(manifests, 'ServiceMonitor');
    const [endpoint] = monitor.spec.endpoints;
    expect(endpoint.honorLabels).toBe(true);
    expect(endpoint.relabelings).toEqual([{ action: 'labeldrop', regex: '^(namespace|pod|container)$' }]);
    expect(endpoint.interval).toBe('15s');
    expect(monitor.metadata.labels).toMatchObject({ release: 'kube-prometheus-stack' });
  });

  test('ServiceMonitor → Service → pods: selectors, namespaces and port names line up', () => {
    const monitor = only(manifests, 'ServiceMonitor');
    const service = only(manifests, 'Service');
    const daemonSet = only(manifests, 'DaemonSet');
    expect(service.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(monitor.spec.namespaceSelector.matchNames).toEqual([service.metadata.namespace]);
    expect(service.spec.ports.map((p: any) => p.name)).toContain(monitor.spec.endpoints[0].port);
    expect(daemonSet.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    expect(daemonSet.spec.selector.matchLabels).toEqual(service.spec.selector);
    expect(service.spec.clusterIP).toBe('None');
    for (const m of manifests) expect(m.metadata.namespace).toBe('gpu-monitoring');
  });

  test('exposes the GPU utilization series by the shared name', () => {
    expect(exporter.gpuUtilization).toEqual({
      series: DCGM_GPU_UTIL_FIELD,
      namespaceLabel: 'namespace',
      podLabel: 'pod',
      customMetricName: 'dcgm_gpu_utilization',
    });
    // The labels an HPA selects by must be the ones honorLabels keeps.
    const dropped = only(manifests, 'ServiceMonitor').spec.endpoints[0].relabelings[0].regex;
    expect(dropped).toContain(exporter.gpuUtilization!.podLabel);
  });

  test('runs as a node-critical pod with bounded memory', () => {
    const pod = only(manifests, 'DaemonSet').spec.template.spec;
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(container(manifests).resources).toEqual({ requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '512Mi' } });
  });
});

describe('DcgmExporter options', () => {
  test('without profiling: no capability added', () => {
    const { manifests } = synthExporter({ profilingMetrics: false, counters: ['DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_FB_USED'] });
    expect(container(manifests).securityContext.capabilities).toEqual({ drop: ['ALL'], add: [] });
  });

  test('counters replace the defaults; additional counters extend them, without duplicates', () => {
    const { manifests, exporter } = synthExporter({
      counters: ['DCGM_FI_DEV_FB_USED'],
      additionalCounters: [{ field: 'DCGM_FI_DEV_SM_CLOCK', help: 'SM clock in MHz' }, 'DCGM_FI_DEV_FB_USED'],
    });
    expect(csvLines(manifests)).toEqual([
      ['DCGM_FI_DEV_FB_USED', 'gauge', 'Framebuffer memory used (in MiB).'],
      ['DCGM_FI_DEV_SM_CLOCK', 'gauge', 'SM clock in MHz'],
    ]);
    // GPU utilization is not collected, so there is nothing to scale on.
    expect(exporter.gpuUtilization).toBeUndefined();
  });

  test('additionalKnownFields admits a field newer than the shipped lists', () => {
    const { manifests } = synthExporter({
      additionalKnownFields: ['DCGM_FI_PROF_NVLINK_TX_BYTES'],
      additionalCounters: [{ field: 'DCGM_FI_PROF_NVLINK_TX_BYTES', type: 'counter', help: 'NVLink bytes sent' }],
    });
    expect(csvLines(manifests).pop()).toEqual(['DCGM_FI_PROF_NVLINK_TX_BYTES', 'counter', 'NVLink bytes sent']);
  });

  test('readOnlyRootFilesystem false keeps the image entrypoint and adds no scratch volumes', () => {
    const { manifests } = synthExporter({ readOnlyRootFilesystem: false });
    expect(container(manifests).command).toBeUndefined();
    expect(container(manifests).securityContext.readOnlyRootFilesystem).toBe(false);
    expect(only(manifests, 'DaemonSet').spec.template.spec.volumes.map((v: any) => v.name).sort()).toEqual(['counters', 'pod-resources']);
  });

  test('scrape interval drives the exporter sampling period too', () => {
    const { manifests } = synthExporter({ scrapeInterval: Duration.seconds(30) });
    expect(only(manifests, 'ServiceMonitor').spec.endpoints[0].interval).toBe('30s');
    expect(env(manifests).DCGM_EXPORTER_INTERVAL).toBe('30000');
  });

  test('custom pod-resources host path, same path inside the container', () => {
    const { manifests } = synthExporter({ podResourcesPath: '/var/lib/k0s/kubelet/pod-resources' });
    const pod = only(manifests, 'DaemonSet').spec.template.spec;
    expect(pod.volumes.find((v: any) => v.hostPath).hostPath.path).toBe('/var/lib/k0s/kubelet/pod-resources');
    expect(container(manifests).volumeMounts.find((m: any) => m.name === 'pod-resources').mountPath).toBe(KUBELET_POD_RESOURCES_PATH);
  });
});

describe('DcgmExporter in GPU-Operator mode', () => {
  const { exporter, manifests } = synthExporter({ gpuOperator: {} });

  test('emits only the scrape object, pointing at the operator exporter', () => {
    expect(manifests.map((m) => m.kind)).toEqual(['ServiceMonitor']);
    const monitor = only(manifests, 'ServiceMonitor');
    expect(monitor.metadata.namespace).toBe('gpu-monitoring');
    expect(monitor.spec.namespaceSelector.matchNames).toEqual(['gpu-operator']);
    expect(monitor.spec.selector.matchLabels).toEqual({ app: 'nvidia-dcgm-exporter' });
    expect(monitor.spec.endpoints[0]).toMatchObject({ port: 'gpu-metrics', honorLabels: true });
    expect(monitor.spec.endpoints[0].relabelings).toEqual([{ action: 'labeldrop', regex: '^(namespace|pod|container)$' }]);
    expect(manifests).toMatchSnapshot();
  });

  test('still names the GPU utilization series', () => {
    expect(exporter.gpuUtilization?.series).toBe(DCGM_GPU_UTIL_FIELD);
    expect(exporter.daemonSet).toBeUndefined();
    expect(all(manifests, 'DaemonSet')).toEqual([]);
  });

  test('operator namespace, labels and port can be changed', () => {
    const { manifests: m } = synthExporter({ gpuOperator: { namespace: 'nvidia', serviceLabels: { app: 'dcgm' }, portName: 'metrics' } });
    const monitor = only(m, 'ServiceMonitor');
    expect(monitor.spec.namespaceSelector.matchNames).toEqual(['nvidia']);
    expect(monitor.spec.selector.matchLabels).toEqual({ app: 'dcgm' });
    expect(monitor.spec.endpoints[0].port).toBe('metrics');
  });
});

describe('DcgmExporter bad input', () => {
  test('unknown counter name', () => {
    expectInvalid({ counters: ['DCGM_FI_DEV_GPU_UTILISATION'] }, 'counters[0]', /additionalKnownFields/);
  });

  test('unknown counter in additionalCounters', () => {
    expectInvalid({ additionalCounters: ['gpu_util'] }, 'additionalCounters[0]', /counter lists/);
  });

  test('profiling field while profiling is off', () => {
    expectInvalid({ profilingMetrics: false }, 'counters[3]', /profilingMetrics: true/);
  });

  test('empty counter set', () => {
    expectInvalid({ counters: [] }, 'counters', /at least one field/);
  });

  test('additionalKnownFields entry that is not a DCGM field name', () => {
    expectInvalid({ additionalKnownFields: ['nvlink_tx'] }, 'additionalKnownFields[0]', /DCGM_FI_DEV_GPU_UTIL/);
  });

  test('field outside the shipped lists without a type', () => {
    expectInvalid({ additionalKnownFields: ['DCGM_FI_DEV_NEW_THING'], additionalCounters: ['DCGM_FI_DEV_NEW_THING'] },
      'additionalCounters[0]', /Give `type`/);
  });

  test('help text with a comma, which dcgm-exporter would read as a fourth column', () => {
    expectInvalid({ additionalCounters: [{ field: 'DCGM_FI_DEV_SM_CLOCK', help: 'SM clock, MHz' }] }, 'additionalCounters[0]', /without commas/);
  });

  test('namespace that is not a DNS label', () => {
    expectInvalid({ namespace: 'GPU_Monitoring' }, 'namespace', /lower-case/);
  });

  test('scrape interval under a second', () => {
    expectInvalid({ scrapeInterval: Duration.millis(200) }, 'scrapeInterval', /at least 1 second/);
  });
});

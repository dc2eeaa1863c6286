// The live suite's ServiceMonitor/PodMonitor → scrape job conversion, without servers: the parts that must match
// what prometheus-operator writes, and the refusals.
import { monitorJobs, prometheusRuleGroups, sanitizeLabelName, SimulatedCluster } from './scrape-config';
import { Manifest } from '../../util/manifests';

const cluster: SimulatedCluster = {
  services: [{
    name: 'rabbitmq',
    namespace: 'messaging',
    labels: { 'app.kubernetes.io/component': 'rabbitmq' },
    selector: { app: 'rabbitmq' },
    ports: [{ name: 'prometheus', port: 15692, targetPort: 15692 }],
  }],
  pods: [
    { name: 'rabbitmq-server-0', namespace: 'messaging', labels: { app: 'rabbitmq' }, containers: [{ name: 'rabbitmq', ports: [{ name: 'prometheus', containerPort: 15692, address: '127.0.0.1:15692' }] }] },
    { name: 'w-1', namespace: 'ai-workers', labels: { app: 'w' }, containers: [{ name: 'worker', ports: [{ name: 'http', containerPort: 8080, address: '127.0.0.1:9001' }] }] },
    { name: 'other-1', namespace: 'elsewhere', labels: { app: 'w' }, containers: [{ name: 'worker', ports: [{ name: 'http', containerPort: 8080, address: '127.0.0.1:9002' }] }] },
  ],
};

const serviceMonitor: Manifest = {
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'ServiceMonitor',
  metadata: { name: 'rabbit', namespace: 'monitoring', labels: { release: 'kps' } },
  spec: {
    namespaceSelector: { matchNames: ['messaging'] },
    selector: { matchLabels: { 'app.kubernetes.io/component': 'rabbitmq' } },
    endpoints: [{ port: 'prometheus', path: '/metrics/detailed', params: { family: ['queue_coarse_metrics'] }, interval: '15s' }],
  },
};

const podMonitor: Manifest = {
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'PodMonitor',
  metadata: { name: 'workers', namespace: 'monitoring', labels: { release: 'kps' } },
  spec: {
    namespaceSelector: { matchNames: ['ai-workers'] },
    selector: { matchLabels: { app: 'w' } },
    podMetricsEndpoints: [{ port: 'http', honorLabels: true, relabelings: [{ action: 'LabelDrop', regex: 'container' }] }],
  },
};

const options = { testInterval: '1s', monitorSelector: { release: 'kps' } };

test('a ServiceMonitor endpoint becomes the operator\'s job: name, path, params, keep rules, target labels', () => {
  const [job] = monitorJobs(serviceMonitor, cluster, options);
  const config = job.config as any;
  expect(job.jobName).toBe('serviceMonitor/monitoring/rabbit/0');
  expect(job.declaredInterval).toBe('15s');
  expect(config).toMatchObject({ honor_labels: false, metrics_path: '/metrics/detailed', params: { family: ['queue_coarse_metrics'] }, scrape_interval: '1s' });
  expect(config.relabel_configs).toContainEqual({
    action: 'keep',
    source_labels: ['__meta_kubernetes_service_label_app_kubernetes_io_component', '__meta_kubernetes_service_labelpresent_app_kubernetes_io_component'],
    regex: '(rabbitmq);true',
  });
  expect(config.relabel_configs).toContainEqual({ action: 'keep', source_labels: ['__meta_kubernetes_endpoint_port_name'], regex: 'prometheus' });
  expect(config.relabel_configs).toContainEqual({ target_label: 'endpoint', replacement: 'prometheus' });
  expect(config.static_configs).toHaveLength(1);
  expect(config.static_configs[0].targets).toEqual(['127.0.0.1:15692']);
  expect(config.static_configs[0].labels.__meta_kubernetes_endpoint_address_target_name).toBe('rabbitmq-server-0');
});

test('a PodMonitor watches only its namespaces, sets job <ns>/<name>, and keeps the user\'s relabelings last, lower-cased', () => {
  const [job] = monitorJobs(podMonitor, cluster, options);
  const config = job.config as any;
  expect(config.honor_labels).toBe(true);
  expect(config.static_configs.map((t: any) => t.labels.__meta_kubernetes_pod_name)).toEqual(['w-1']);
  expect(config.relabel_configs).toContainEqual({ target_label: 'job', replacement: 'monitoring/workers' });
  expect(config.relabel_configs[config.relabel_configs.length - 1]).toEqual({ action: 'labeldrop', regex: 'container' });
});

test('a monitor the Prometheus resource would not select is an error, not a silent scrape', () => {
  expect(() => monitorJobs(serviceMonitor, cluster, { ...options, monitorSelector: { release: 'other' } }))
    .toThrow(/lacks the label\(s\) release=other/);
});

test('settings the harness does not render are refused', () => {
  const tls = JSON.parse(JSON.stringify(serviceMonitor));
  tls.spec.endpoints[0].tlsConfig = { insecureSkipVerify: true };
  expect(() => monitorJobs(tls, cluster, options)).toThrow(/sets tlsConfig/);
});

test('PrometheusRule groups become a rules file with the test interval', () => {
  const rule: Manifest = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'r' },
    spec: { groups: [{ name: 'g', interval: '1m', rules: [{ alert: 'A', expr: 'up == 0', for: '5m', labels: { severity: 'warning' } }] }] },
  };
  expect(prometheusRuleGroups(rule, '1s')).toEqual({
    groups: [{ name: 'g', interval: '1s', rules: [{ alert: 'A', expr: 'up == 0', for: '5m', labels: { severity: 'warning' } }] }],
  });
});

test('label names are sanitized as Kubernetes SD does', () => {
  expect(sanitizeLabelName('app.kubernetes.io/name')).toBe('app_kubernetes_io_name');
});

/**
 * ServiceMonitor / PodMonitor / PrometheusRule objects → Prometheus configuration, the way prometheus-operator
 * writes it, with a simulated cluster standing in for Kubernetes service discovery.
 *
 * The operator turns each monitor endpoint into one scrape job whose `relabel_configs` select the right
 * Services/Pods and ports and attach the target labels `job`, `namespace`, `service`, `pod`, `container`,
 * `endpoint`. Here, instead of `kubernetes_sd_configs`, each simulated pod becomes a static target that carries
 * exactly the `__meta_kubernetes_*` labels Kubernetes SD would give it, and the operator's relabelling is left
 * to the real Prometheus. So a monitor whose selector or port name does not match the workload it is meant for
 * loses its target here as it would in a cluster, and `honorLabels` decides label clashes in Prometheus itself.
 *
 * Facts carried over from prometheus-operator (pkg/prometheus/promcfg.go): job names
 * `serviceMonitor/<ns>/<name>/<i>` and `podMonitor/<ns>/<name>/<i>`; keep rules on
 * `__meta_kubernetes_{service,pod}_label_<l>` + `labelpresent`; the port filter on
 * `__meta_kubernetes_endpoint_port_name` (ServiceMonitor) or `__meta_kubernetes_pod_container_port_name`
 * (PodMonitor); `job` = service name (ServiceMonitor) or `<ns>/<name>` (PodMonitor), overridden by `jobLabel`;
 * `endpoint` = the port name; user relabelings after the operator's own; metricRelabelings as
 * `metric_relabel_configs`.
 *
 * Deliberate differences, named: the scrape interval (and a timeout that would exceed it) is replaced by a short
 * test interval so the suite runs in seconds; the declared values are returned for the test to check; TLS, auth
 * and sharding settings are not rendered (the suite's monitors use none of them, and an object that does is
 * rejected rather than half-converted).
 */
import { Manifest } from '../../util/manifests';

/** A container port of a simulated pod. */
export interface SimulatedPort {
  readonly name?: string;
  readonly containerPort: number;
  /** Where something real answers for this port on this machine, e.g. `127.0.0.1:15692`. */
  readonly address: string;
}

/** A pod of the simulated cluster. */
export interface SimulatedPod {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Record<string, string>;
  readonly containers: ReadonlyArray<{ readonly name: string; readonly ports: readonly SimulatedPort[] }>;
  /** @default 'Running' */
  readonly phase?: string;
}

/** A Service of the simulated cluster; its endpoints are the pods its selector matches. */
export interface SimulatedService {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Record<string, string>;
  readonly selector: Record<string, string>;
  readonly ports: ReadonlyArray<{ readonly name?: string; readonly port: number; readonly targetPort?: number | string }>;
}

/** What Kubernetes service discovery would see. */
export interface SimulatedCluster {
  readonly pods: readonly SimulatedPod[];
  readonly services: readonly SimulatedService[];
}

/** Options that stand for the Prometheus custom resource that loads the monitors. */
export interface ScrapeOptions {
  /** The interval used instead of the declared one, so that the suite needs seconds, not minutes. */
  readonly testInterval: string;

  /**
   * Labels the Prometheus resource selects monitors by (`serviceMonitorSelector` / `podMonitorSelector`),
   * e.g. `{ release: 'kube-prometheus-stack' }`. A monitor without them is never loaded: an error here.
   */
  readonly monitorSelector?: Record<string, string>;
}

/** One generated scrape job, with what the object declared where the test replaced it. */
export interface GeneratedScrapeJob {
  readonly config: Record<string, unknown>;
  readonly jobName: string;
  readonly declaredInterval?: string;
  readonly declaredScrapeTimeout?: string;
  /** Static targets given to Prometheus (before its relabelling keeps or drops them). */
  readonly candidateTargets: number;
}

const UNSUPPORTED_ENDPOINT_FIELDS = [
  'tlsConfig', 'bearerTokenFile', 'bearerTokenSecret', 'basicAuth', 'oauth2', 'authorization', 'proxyUrl',
];

/** `app.kubernetes.io/name` → `app_kubernetes_io_name`, as Kubernetes SD names meta labels. */
export function sanitizeLabelName(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, '_');
}

function labelMeta(prefix: string, labels: Record<string, string>): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const [key, value] of Object.entries(labels)) {
    meta[`${prefix}_label_${sanitizeLabelName(key)}`] = value;
    meta[`${prefix}_labelpresent_${sanitizeLabelName(key)}`] = 'true';
  }
  return meta;
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The namespaces a monitor's service discovery watches (`namespaceSelector`). */
function watchedNamespaces(monitor: Manifest): string[] | 'any' {
  const selector = monitor.spec.namespaceSelector ?? {};
  if (selector.any) return 'any';
  if (selector.matchNames?.length) return selector.matchNames;
  return [monitor.metadata.namespace ?? 'default'];
}

function inScope(scope: string[] | 'any', namespace: string): boolean {
  return scope === 'any' || scope.includes(namespace);
}

function checkSelected(monitor: Manifest, options: ScrapeOptions): void {
  const wanted = options.monitorSelector ?? {};
  const labels = monitor.metadata.labels ?? {};
  const missing = Object.entries(wanted).filter(([k, v]) => labels[k] !== v);
  if (missing.length > 0) {
    throw new Error(
      `${monitor.kind} ${monitor.metadata.namespace}/${monitor.metadata.name} lacks the label(s) ` +
        `${missing.map(([k, v]) => `${k}=${v}`).join(', ')} that the Prometheus resource selects monitors by: it would never be loaded`,
    );
  }
}

/** The operator's filters for a LabelSelector on Service or Pod labels. */
function selectorRelabelings(kind: 'service' | 'pod', selector: any): object[] {
  const rules: object[] = [];
  const meta = (k: string) => [`__meta_kubernetes_${kind}_label_${sanitizeLabelName(k)}`, `__meta_kubernetes_${kind}_labelpresent_${sanitizeLabelName(k)}`];
  const present = (k: string) => [`__meta_kubernetes_${kind}_labelpresent_${sanitizeLabelName(k)}`];
  for (const key of Object.keys(selector?.matchLabels ?? {}).sort()) {
    rules.push({ action: 'keep', source_labels: meta(key), regex: `(${selector.matchLabels[key]});true` });
  }
  for (const exp of selector?.matchExpressions ?? []) {
    switch (exp.operator) {
      case 'In': rules.push({ action: 'keep', source_labels: meta(exp.key), regex: `(${exp.values.join('|')});true` }); break;
      case 'NotIn': rules.push({ action: 'drop', source_labels: meta(exp.key), regex: `(${exp.values.join('|')});true` }); break;
      case 'Exists': rules.push({ action: 'keep', source_labels: present(exp.key), regex: 'true' }); break;
      case 'DoesNotExist': rules.push({ action: 'drop', source_labels: present(exp.key), regex: 'true' }); break;
      default: throw new Error(`unknown label selector operator ${exp.operator}`);
    }
  }
  return rules;
}

/** A RelabelConfig of the CRD (camelCase) as Prometheus reads it. */
function relabelConfig(rc: any): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (rc.sourceLabels?.length) out.source_labels = rc.sourceLabels;
  if (rc.separator !== undefined && rc.separator !== '') out.separator = rc.separator;
  if (rc.targetLabel) out.target_label = rc.targetLabel;
  if (rc.regex) out.regex = rc.regex;
  if (rc.modulus) out.modulus = rc.modulus;
  if (rc.replacement !== undefined && rc.replacement !== '') out.replacement = rc.replacement;
  if (rc.action) out.action = String(rc.action).toLowerCase();
  return out;
}

/** Scrape settings common to both monitor kinds, with the interval replaced by the test interval. */
function endpointSettings(monitor: Manifest, ep: any, i: number, options: ScrapeOptions) {
  for (const field of UNSUPPORTED_ENDPOINT_FIELDS) {
    if (ep[field] !== undefined) {
      throw new Error(`${monitor.kind} ${monitor.metadata.name} endpoint ${i} sets ${field}, which the live harness does not render`);
    }
  }
  const config: Record<string, unknown> = {};
  config.honor_labels = ep.honorLabels ?? false;
  if (ep.honorTimestamps !== undefined) config.honor_timestamps = ep.honorTimestamps;
  config.scrape_interval = options.testInterval;
  config.scrape_timeout = options.testInterval;
  if (ep.path) config.metrics_path = ep.path;
  if (ep.params) config.params = ep.params;
  if (ep.scheme) config.scheme = ep.scheme;
  if (ep.followRedirects !== undefined) config.follow_redirects = ep.followRedirects;
  return config;
}

/**
 * Scrape jobs for a ServiceMonitor (role `endpoints`): one target per (Service port, backing pod) in the
 * namespaces the monitor watches.
 */
export function serviceMonitorJobs(monitor: Manifest, cluster: SimulatedCluster, options: ScrapeOptions): GeneratedScrapeJob[] {
  if (monitor.kind !== 'ServiceMonitor') throw new Error(`expected a ServiceMonitor, got ${monitor.kind}`);
  checkSelected(monitor, options);
  const scope = watchedNamespaces(monitor);
  const ns = monitor.metadata.namespace;

  return (monitor.spec.endpoints as any[]).map((ep, i) => {
    const jobName = `serviceMonitor/${ns}/${monitor.metadata.name}/${i}`;

    // What Kubernetes SD (role endpoints) would list: every port of every Service, for every ready pod behind it.
    const targets: Array<{ targets: string[]; labels: Record<string, string> }> = [];
    for (const service of cluster.services.filter((s) => inScope(scope, s.namespace))) {
      const backing = cluster.pods.filter((p) => p.namespace === service.namespace && matches(service.selector, p.labels));
      for (const servicePort of service.ports) {
        for (const pod of backing) {
          const target = servicePort.targetPort ?? servicePort.port;
          for (const container of pod.containers) {
            const port = container.ports.find((p) => (typeof target === 'number' ? p.containerPort === target : p.name === target));
            if (!port) continue;
            targets.push({
              targets: [port.address],
              labels: {
                __meta_kubernetes_namespace: service.namespace,
                __meta_kubernetes_service_name: service.name,
                ...labelMeta('__meta_kubernetes_service', service.labels),
                __meta_kubernetes_endpoint_port_name: servicePort.name ?? '',
                __meta_kubernetes_endpoint_ready: 'true',
                __meta_kubernetes_endpoint_address_target_kind: 'Pod',
                __meta_kubernetes_endpoint_address_target_name: pod.name,
                ...podMeta(pod, container, port),
              },
            });
          }
        }
      }
    }

    const relabel: object[] = [{ source_labels: ['job'], target_label: '__tmp_prometheus_job_name' }];
    relabel.push(...selectorRelabelings('service', monitor.spec.selector));
    relabel.push(...portKeepRelabelings(ep, '__meta_kubernetes_endpoint_port_name'));
    const kindAndName = ['__meta_kubernetes_endpoint_address_target_kind', '__meta_kubernetes_endpoint_address_target_name'];
    relabel.push(
      { source_labels: kindAndName, separator: ';', regex: 'Node;(.*)', replacement: '${1}', target_label: 'node' },
      { source_labels: kindAndName, separator: ';', regex: 'Pod;(.*)', replacement: '${1}', target_label: 'pod' },
      { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
      { source_labels: ['__meta_kubernetes_service_name'], target_label: 'service' },
      { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
      { source_labels: ['__meta_kubernetes_pod_container_name'], target_label: 'container' },
      { action: 'drop', source_labels: ['__meta_kubernetes_pod_phase'], regex: '(Failed|Succeeded)' },
    );
    for (const l of monitor.spec.targetLabels ?? []) {
      relabel.push({ source_labels: [`__meta_kubernetes_service_label_${sanitizeLabelName(l)}`], target_label: sanitizeLabelName(l), regex: '(.+)', replacement: '${1}' });
    }
    relabel.push(...podTargetLabelRelabelings(monitor));
    relabel.push({ source_labels: ['__meta_kubernetes_service_name'], target_label: 'job', replacement: '${1}' });
    if (monitor.spec.jobLabel) {
      relabel.push({ source_labels: [`__meta_kubernetes_service_label_${sanitizeLabelName(monitor.spec.jobLabel)}`], target_label: 'job', regex: '(.+)', replacement: '${1}' });
    }
    return scrapeJob(monitor, ep, i, options, jobName, targets, relabel);
  });
}

/** Scrape jobs for a PodMonitor (role `pod`): one target per container port of each pod in scope. */
export function podMonitorJobs(monitor: Manifest, cluster: SimulatedCluster, options: ScrapeOptions): GeneratedScrapeJob[] {
  if (monitor.kind !== 'PodMonitor') throw new Error(`expected a PodMonitor, got ${monitor.kind}`);
  checkSelected(monitor, options);
  const scope = watchedNamespaces(monitor);
  const ns = monitor.metadata.namespace;

  return (monitor.spec.podMetricsEndpoints as any[]).map((ep, i) => {
    const jobName = `podMonitor/${ns}/${monitor.metadata.name}/${i}`;
    const targets: Array<{ targets: string[]; labels: Record<string, string> }> = [];
    for (const pod of cluster.pods.filter((p) => inScope(scope, p.namespace))) {
      for (const container of pod.containers) {
        for (const port of container.ports) {
          targets.push({
            targets: [port.address],
            labels: {
              __meta_kubernetes_namespace: pod.namespace,
              ...podMeta(pod, container, port),
            },
          });
        }
      }
    }

    const relabel: object[] = [{ source_labels: ['job'], target_label: '__tmp_prometheus_job_name' }];
    relabel.push({ action: 'drop', source_labels: ['__meta_kubernetes_pod_phase'], regex: '(Failed|Succeeded)' });
    relabel.push(...selectorRelabelings('pod', monitor.spec.selector));
    relabel.push(...portKeepRelabelings(ep, '__meta_kubernetes_pod_container_port_name'));
    relabel.push(
      { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
      { source_labels: ['__meta_kubernetes_pod_container_name'], target_label: 'container' },
      { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
    );
    relabel.push(...podTargetLabelRelabelings(monitor));
    relabel.push({ target_label: 'job', replacement: `${ns}/${monitor.metadata.name}` });
    if (monitor.spec.jobLabel) {
      relabel.push({ source_labels: [`__meta_kubernetes_pod_label_${sanitizeLabelName(monitor.spec.jobLabel)}`], target_label: 'job', regex: '(.+)', replacement: '${1}' });
    }
    return scrapeJob(monitor, ep, i, options, jobName, targets, relabel);
  });
}

/** The `__meta_kubernetes_pod_*` labels Kubernetes service discovery gives a target of this pod's container port. */
function podMeta(pod: SimulatedPod, container: { readonly name: string }, port: SimulatedPort): Record<string, string> {
  return {
    __meta_kubernetes_pod_name: pod.name,
    __meta_kubernetes_pod_phase: pod.phase ?? 'Running',
    __meta_kubernetes_pod_container_name: container.name,
    __meta_kubernetes_pod_container_port_name: port.name ?? '',
    __meta_kubernetes_pod_container_port_number: String(port.containerPort),
    ...labelMeta('__meta_kubernetes_pod', pod.labels),
  };
}

/** The keep rule that selects the endpoint's port: by name (`port`, through `nameLabel`), or `targetPort`. */
function portKeepRelabelings(ep: any, nameLabel: string): object[] {
  if (ep.port) return [{ action: 'keep', source_labels: [nameLabel], regex: ep.port }];
  if (ep.targetPort === undefined) return [];
  const byName = typeof ep.targetPort === 'string';
  return [{
    action: 'keep',
    source_labels: [byName ? '__meta_kubernetes_pod_container_port_name' : '__meta_kubernetes_pod_container_port_number'],
    regex: String(ep.targetPort),
  }];
}

/** Copies the monitor's `podTargetLabels` from the pod onto the target. */
function podTargetLabelRelabelings(monitor: Manifest): object[] {
  return (monitor.spec.podTargetLabels ?? []).map((l: string) => ({
    source_labels: [`__meta_kubernetes_pod_label_${sanitizeLabelName(l)}`],
    target_label: sanitizeLabelName(l),
    regex: '(.+)',
    replacement: '${1}',
  }));
}

/** The scrape job of one endpoint, finished the same way for both monitor kinds: endpoint label, user relabelings. */
function scrapeJob(
  monitor: Manifest, ep: any, i: number, options: ScrapeOptions, jobName: string,
  targets: Array<{ targets: string[]; labels: Record<string, string> }>, relabel: object[],
): GeneratedScrapeJob {
  if (ep.port) relabel.push({ target_label: 'endpoint', replacement: ep.port });
  else if (ep.targetPort !== undefined) relabel.push({ target_label: 'endpoint', replacement: String(ep.targetPort) });
  relabel.push(...(ep.relabelings ?? []).map(relabelConfig));

  return {
    jobName,
    declaredInterval: ep.interval,
    declaredScrapeTimeout: ep.scrapeTimeout,
    candidateTargets: targets.length,
    config: {
      job_name: jobName,
      ...endpointSettings(monitor, ep, i, options),
      static_configs: targets,
      relabel_configs: relabel,
      metric_relabel_configs: (ep.metricRelabelings ?? []).map(relabelConfig),
    },
  };
}

/** Scrape jobs for any monitor object. */
export function monitorJobs(monitor: Manifest, cluster: SimulatedCluster, options: ScrapeOptions): GeneratedScrapeJob[] {
  return monitor.kind === 'PodMonitor' ? podMonitorJobs(monitor, cluster, options) : serviceMonitorJobs(monitor, cluster, options);
}

/**
 * A PrometheusRule's groups as a Prometheus rules file. Group intervals become the test interval; the alert
 * `for` durations stay as declared (the suite evaluates the expressions themselves, not the pending timers).
 */
export function prometheusRuleGroups(rule: Manifest, testInterval: string): { groups: object[] } {
  if (rule.kind !== 'PrometheusRule') throw new Error(`expected a PrometheusRule, got ${rule.kind}`);
  return {
    groups: (rule.spec.groups as any[]).map((g) => ({
      name: g.name,
      interval: testInterval,
      rules: (g.rules as any[]).map((r) => {
        const out: Record<string, unknown> = {};
        if (r.alert) out.alert = r.alert;
        if (r.record) out.record = r.record;
        out.expr = typeof r.expr === 'string' ? r.expr : String(r.expr);
        if (r.for) out.for = r.for;
        if (r.keepFiringFor) out.keep_firing_for = r.keepFiringFor;
        if (r.labels) out.labels = r.labels;
        if (r.annotations) out.annotations = r.annotations;
        return out;
      }),
    })),
  };
}

import { ApiObject, Chart, Duration, JsonPatch, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { DcgmFieldType, KNOWN_DCGM_FIELDS } from './dcgm-fields';
import { DCGM_EXPORTER_PORT, DCGM_GPU_UTIL_FIELD, DCGM_GPU_UTILIZATION, DcgmPodLabels, GpuUtilizationSource } from './gpu-metrics';
import { GPU_NODE_LABEL, GPU_TOLERATION } from './gpu-node-labels';
import { checkDnsLabel, invalidProp } from './validation';
import * as monitoring from '../imports/monitoring.coreos.com';

const CONSTRUCT = 'DcgmExporter';

/**
 * NVIDIA's dcgm-exporter image the DaemonSet runs unless told otherwise.
 *
 * The distroless build: a shell-less image with nothing in it but the exporter and the DCGM libraries. Tag
 * `<dcgm version>-<exporter version>-<flavour>` as NVIDIA publishes it (the GPU Operator ships this one).
 */
export const DCGM_EXPORTER_IMAGE = 'nvcr.io/nvidia/k8s/dcgm-exporter:4.4.1-4.6.0-distroless';

/** Where the kubelet serves its pod-resources API on a standard node; dcgm-exporter asks it which pod has a GPU. */
export const KUBELET_POD_RESOURCES_PATH = '/var/lib/kubelet/pod-resources';

/** What the GPU Operator names its exporter's Service, and the labels and port name it gives it. */
export const GPU_OPERATOR_EXPORTER = {
  namespace: 'gpu-operator',
  serviceLabels: { app: 'nvidia-dcgm-exporter' },
  portName: 'gpu-metrics',
} as const;

/** One line of dcgm-exporter's counters file: a DCGM field and how it is exposed. */
export interface DcgmCounter {
  /** DCGM field name, e.g. `DCGM_FI_DEV_GPU_UTIL`; must be a field dcgm-exporter knows. */
  readonly field: string;

  /**
   * Prometheus type of the series.
   * @default - the type dcgm-exporter's own counter lists give the field
   */
  readonly type?: DcgmFieldType;

  /**
   * Help text of the series.
   * @default - the help text of dcgm-exporter's own counter lists
   */
  readonly help?: string;
}

/**
 * The counters collected unless told otherwise: what an operator of GPU inference workers watches.
 *
 * GPU utilization (the scaling signal), frame-buffer memory used and free (does the model fit, is a batch too big),
 * SM and tensor-core activity (how busy the GPU really is; utilization only says a kernel was running), power and
 * temperature (throttling), and XID errors (driver-reported GPU faults, the first thing to read when a job fails).
 * SM and tensor activity are profiling (DCP) fields: on GPUs without profiling support dcgm-exporter skips them and
 * exports the rest.
 */
export const DEFAULT_DCGM_COUNTERS: readonly string[] = [
  DCGM_GPU_UTIL_FIELD,
  'DCGM_FI_DEV_FB_USED',
  'DCGM_FI_DEV_FB_FREE',
  'DCGM_FI_PROF_SM_ACTIVE',
  'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_XID_ERRORS',
];

/** Where to scrape the exporter that NVIDIA's GPU Operator already runs. */
export interface GpuOperatorExporterOptions {
  /**
   * Namespace the GPU Operator runs in.
   * @default 'gpu-operator'
   */
  readonly namespace?: string;

  /**
   * Labels of the operator's exporter Service.
   * @default { app: 'nvidia-dcgm-exporter' }
   */
  readonly serviceLabels?: Record<string, string>;

  /**
   * Name of the metrics port on that Service.
   * @default 'gpu-metrics'
   */
  readonly portName?: string;
}

/** Props of {@link DcgmExporter}. */
export interface DcgmExporterProps {
  /**
   * Namespace of the exporter (or, with `gpuOperator`, of the ServiceMonitor alone).
   * @default - the chart's namespace, else `default`
   */
  readonly namespace?: string;

  /**
   * Scrape the exporter the NVIDIA GPU Operator already runs instead of deploying one.
   *
   * Only the Service discovery objects are emitted (a ServiceMonitor with the same label handling); the operator
   * owns the DaemonSet and its counters. Set the operator's exporter to Kubernetes mode (its default).
   * @default - deploy our own exporter
   */
  readonly gpuOperator?: GpuOperatorExporterOptions;

  /**
   * Container image of dcgm-exporter.
   * @default DCGM_EXPORTER_IMAGE
   */
  readonly image?: string;

  /**
   * The counters to collect, replacing the default set. Field names or full counter lines.
   * @default DEFAULT_DCGM_COUNTERS
   */
  readonly counters?: Array<string | DcgmCounter>;

  /**
   * Counters collected on top of `counters` (or of the default set).
   * @default - none
   */
  readonly additionalCounters?: Array<string | DcgmCounter>;

  /**
   * DCGM fields to accept although they are not in dcgm-exporter's shipped counter lists (newer or rarer fields).
   * Every other counter name is checked against those lists, so a typo fails at synthesis, not in the exporter log.
   * @default - none
   */
  readonly additionalKnownFields?: string[];

  /**
   * Collect profiling (DCP) fields, `DCGM_FI_PROF_*`, such as SM and tensor-core activity.
   *
   * Profiling needs the `SYS_ADMIN` capability in the exporter container; it is the only capability the container
   * gets. Turn this off where a policy forbids `SYS_ADMIN` (Pod Security "baseline"): no capability is added and
   * profiling fields are refused. dcgm-exporter 3.6 and later refuse to start their embedded host engine without
   * `SYS_ADMIN` on some driver versions ("Host engine is running as non-root"); test such a setup on your nodes.
   * @default true
   */
  readonly profilingMetrics?: boolean;

  /**
   * Run the exporter with a read-only root filesystem.
   *
   * The image's entrypoint script rewrites the dynamic linker cache and sets a file capability on the binary, both
   * writes to the root filesystem, so with a read-only root the container runs `/usr/bin/dcgm-exporter` directly.
   * That needs neither: the process runs as root with `SYS_ADMIN` already effective, and the DCGM libraries are on
   * the linker's default path. `/tmp` and `/var/log` get small writable volumes for DCGM's own files.
   * @default true
   */
  readonly readOnlyRootFilesystem?: boolean;

  /**
   * How often Prometheus scrapes the exporter; the exporter samples DCGM at the same period, so every scrape
   * sees a fresh value (dcgm-exporter's own default, 30 s, would leave the HPA reading stale numbers).
   * @default Duration.seconds(15)
   */
  readonly scrapeInterval?: Duration;

  /**
   * Labels on the ServiceMonitor, for the Prometheus that selects ServiceMonitors by label
   * (e.g. `{ release: 'kube-prometheus-stack' }`).
   * @default - none
   */
  readonly serviceMonitorLabels?: Record<string, string>;

  /**
   * Host directory of the kubelet's pod-resources socket. Change it only on distributions with a non-standard
   * kubelet root (k0s, MicroK8s).
   * @default KUBELET_POD_RESOURCES_PATH
   */
  readonly podResourcesPath?: string;

  /**
   * Resources of the exporter container.
   * @default - requests 100m CPU and 256 MiB, memory limited to 512 MiB, no CPU limit
   */
  readonly resources?: kplus.ContainerResources;

  /**
   * Priority class of the exporter pods.
   * @default 'system-node-critical'
   */
  readonly priorityClassName?: string;
}

/**
 * NVIDIA's dcgm-exporter on every GPU node, scraped by the Prometheus operator with the labels that name the pod
 * using each GPU intact.
 *
 * Creates a DaemonSet (GPU nodes only; the GPU taint tolerated), the counters ConfigMap in dcgm-exporter's CSV
 * format, a ServiceAccount that holds no token and no permissions, a headless Service and a ServiceMonitor. In
 * GPU-Operator mode only the ServiceMonitor is created. {@link gpuUtilization} tells an autoscaler which series to
 * read.
 */
export class DcgmExporter extends Construct {
  /** The GPU utilization series this exporter produces, for `QueueScaledHpa`; undefined if it is not collected. */
  public readonly gpuUtilization?: GpuUtilizationSource;

  /** The counters collected (empty in GPU-Operator mode, where the operator decides). */
  public readonly counters: readonly DcgmCounter[];

  /** Namespace of the exporter objects. */
  public readonly namespace: string;

  /** The ServiceMonitor that makes Prometheus scrape the exporter. */
  public readonly serviceMonitor: monitoring.ServiceMonitor;

  /** The exporter DaemonSet (not in GPU-Operator mode). */
  public readonly daemonSet?: kplus.DaemonSet;

  /** The counters ConfigMap (not in GPU-Operator mode). */
  public readonly countersConfigMap?: kplus.ConfigMap;

  /** The headless Service in front of the exporter pods (not in GPU-Operator mode). */
  public readonly service?: kplus.Service;

  /** The exporter's ServiceAccount (not in GPU-Operator mode). */
  public readonly serviceAccount?: kplus.ServiceAccount;

  constructor(scope: Construct, id: string, props: DcgmExporterProps = {}) {
    super(scope, id);

    this.namespace = checkDnsLabel(CONSTRUCT, 'namespace', props.namespace ?? Chart.of(this).namespace ?? 'default');
    const scrapeInterval = props.scrapeInterval ?? Duration.seconds(15);
    if (scrapeInterval.toMilliseconds() < 1000) {
      invalidProp(CONSTRUCT, 'scrapeInterval', `is ${scrapeInterval.toMilliseconds()} ms`, 'Use at least 1 second.');
    }

    // GPU-Operator mode: the operator owns the exporter; point Prometheus at its Service and stop.
    if (props.gpuOperator) {
      this.counters = [];
      this.gpuUtilization = DCGM_GPU_UTILIZATION;
      this.serviceMonitor = this.createServiceMonitor(props, scrapeInterval, {
        namespace: checkDnsLabel(CONSTRUCT, 'gpuOperator.namespace', props.gpuOperator.namespace ?? GPU_OPERATOR_EXPORTER.namespace),
        serviceLabels: props.gpuOperator.serviceLabels ?? GPU_OPERATOR_EXPORTER.serviceLabels,
        portName: props.gpuOperator.portName ?? GPU_OPERATOR_EXPORTER.portName,
      });
      return;
    }

    // Validate and resolve the counters before anything is created.
    const profiling = props.profilingMetrics ?? true;
    this.counters = resolveCounters(props, profiling);
    this.gpuUtilization = this.counters.some((c) => c.field === DCGM_GPU_UTIL_FIELD) ? DCGM_GPU_UTILIZATION : undefined;

    const labels = { 'app.kubernetes.io/name': 'dcgm-exporter', 'app.kubernetes.io/instance': this.node.id.toLowerCase() };
    const name = this.resourceName();

    this.countersConfigMap = new kplus.ConfigMap(this, 'counters', {
      metadata: { name: `${name}-counters`, namespace: this.namespace, labels },
      data: { [COUNTERS_FILE]: renderCountersCsv(this.counters) },
    });

    // The exporter talks to no API server: counters come from a mounted file, pod names from the kubelet socket.
    this.serviceAccount = new kplus.ServiceAccount(this, 'service-account', {
      metadata: { name, namespace: this.namespace, labels },
      automountToken: false,
    });

    this.daemonSet = this.createDaemonSet(props, name, labels, profiling, scrapeInterval);

    this.service = new kplus.Service(this, 'service', {
      metadata: { name, namespace: this.namespace, labels },
      clusterIP: 'None',
      ports: [{ name: METRICS_PORT_NAME, port: DCGM_EXPORTER_PORT, targetPort: DCGM_EXPORTER_PORT }],
    });
    for (const [key, value] of Object.entries(labels)) this.service.selectLabel(key, value);

    this.serviceMonitor = this.createServiceMonitor(props, scrapeInterval, {
      namespace: this.namespace,
      serviceLabels: labels,
      portName: METRICS_PORT_NAME,
    });
  }

  /** The DaemonSet: GPU nodes only, root with `SYS_ADMIN` at most, kubelet pod-resources socket read-only. */
  private createDaemonSet(
    props: DcgmExporterProps,
    name: string,
    labels: Record<string, string>,
    profiling: boolean,
    scrapeInterval: Duration,
  ): kplus.DaemonSet {
    const readOnlyRoot = props.readOnlyRootFilesystem ?? true;

    const daemonSet = new kplus.DaemonSet(this, 'daemon-set', {
      metadata: { name, namespace: this.namespace, labels },
      podMetadata: { labels },
      // Select on our own labels rather than cdk8s-plus's path-derived one: a DaemonSet selector is immutable.
      select: false,
      serviceAccount: this.serviceAccount,
      automountServiceAccountToken: false,
      // Root is required: the embedded DCGM host engine and the kubelet's root-owned socket both need it.
      securityContext: { ensureNonRoot: false, user: 0, group: 0 },
    });

    daemonSet.select(kplus.LabelSelector.of({ labels }));

    const container = daemonSet.addContainer({
      name: 'exporter',
      image: props.image ?? DCGM_EXPORTER_IMAGE,
      imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
      // See `readOnlyRootFilesystem`: the image's entrypoint writes to the root filesystem.
      // Known shortcoming: running the binary without its entrypoint has not been tried on a GPU node here (no GPU
      // in this project's CI); if the exporter fails to start, `readOnlyRootFilesystem: false` restores the entrypoint.
      command: readOnlyRoot ? ['/usr/bin/dcgm-exporter'] : undefined,
      envVariables: {
        DCGM_EXPORTER_LISTEN: kplus.EnvValue.fromValue(`:${DCGM_EXPORTER_PORT}`),
        DCGM_EXPORTER_KUBERNETES: kplus.EnvValue.fromValue('true'),
        DCGM_EXPORTER_COLLECTORS: kplus.EnvValue.fromValue(`${COUNTERS_DIR}/${COUNTERS_FILE}`),
        DCGM_EXPORTER_INTERVAL: kplus.EnvValue.fromValue(String(scrapeInterval.toMilliseconds())),
      },
      ports: [{ name: METRICS_PORT_NAME, number: DCGM_EXPORTER_PORT }],
      securityContext: {
        ensureNonRoot: false,
        user: 0,
        group: 0,
        readOnlyRootFilesystem: readOnlyRoot,
        allowPrivilegeEscalation: false,
        privileged: false,
        // Kubernetes names capabilities without the CAP_ prefix that cdk8s-plus's enum carries.
        capabilities: { drop: ['ALL' as kplus.Capability], add: profiling ? ['SYS_ADMIN' as kplus.Capability] : [] },
      },
      resources: props.resources ?? {
        cpu: { request: kplus.Cpu.millis(100) },
        memory: { request: Size.mebibytes(256), limit: Size.mebibytes(512) },
      },
      readiness: kplus.Probe.fromHttpGet('/health', { port: DCGM_EXPORTER_PORT, initialDelaySeconds: Duration.seconds(15) }),
      liveness: kplus.Probe.fromHttpGet('/health', {
        port: DCGM_EXPORTER_PORT,
        initialDelaySeconds: Duration.seconds(45),
        periodSeconds: Duration.seconds(10),
      }),
    });

    // Volumes: the kubelet's pod-resources socket (read-only), the counters file, scratch space for DCGM.
    const podResources = kplus.Volume.fromHostPath(this, 'pod-resources', 'pod-resources', {
      path: props.podResourcesPath ?? KUBELET_POD_RESOURCES_PATH,
      type: kplus.HostPathVolumeType.DIRECTORY,
    });
    container.mount(KUBELET_POD_RESOURCES_PATH, podResources, { readOnly: true });
    container.mount(COUNTERS_DIR, kplus.Volume.fromConfigMap(this, 'counters-volume', this.countersConfigMap!, { name: 'counters' }), {
      readOnly: true,
    });
    if (readOnlyRoot) {
      for (const [volumeName, path] of [['tmp', '/tmp'], ['var-log', '/var/log']]) {
        const scratch = kplus.Volume.fromEmptyDir(this, `${volumeName}-volume`, volumeName, { sizeLimit: Size.mebibytes(64) });
        container.mount(path, scratch);
      }
    }

    // GPU nodes only, and tolerate the taint that keeps everything else off them.
    daemonSet.scheduling.attract(kplus.Node.labeled(kplus.NodeLabelQuery.is(GPU_NODE_LABEL.key, GPU_NODE_LABEL.value)));
    daemonSet.scheduling.tolerate(
      kplus.Node.tainted(kplus.NodeTaintQuery.exists(GPU_TOLERATION.key, { effect: kplus.TaintEffect.NO_SCHEDULE })),
    );

    // Fields cdk8s-plus does not model: the priority class and the container's seccomp profile.
    const spec = ApiObject.of(daemonSet);
    spec.addJsonPatch(JsonPatch.add('/spec/template/spec/priorityClassName', props.priorityClassName ?? 'system-node-critical'));
    spec.addJsonPatch(JsonPatch.add('/spec/template/spec/containers/0/securityContext/seccompProfile', { type: 'RuntimeDefault' }));
    return daemonSet;
  }

  /**
   * The ServiceMonitor. `honorLabels` keeps the `namespace`/`pod`/`container` labels dcgm-exporter writes (the pod
   * using the GPU) instead of renaming them `exported_*` under the exporter's own target labels; the exporter's own
   * `namespace`/`pod`/`container` target labels are dropped so a GPU no pod uses is not attributed to the exporter.
   */
  private createServiceMonitor(
    props: DcgmExporterProps,
    scrapeInterval: Duration,
    target: { namespace: string; serviceLabels: Record<string, string>; portName: string },
  ): monitoring.ServiceMonitor {
    const ownLabels = [DcgmPodLabels.namespace, DcgmPodLabels.pod, DcgmPodLabels.container];
    return new monitoring.ServiceMonitor(this, 'service-monitor', {
      metadata: {
        name: this.resourceName(),
        namespace: this.namespace,
        labels: { 'app.kubernetes.io/name': 'dcgm-exporter', ...props.serviceMonitorLabels },
      },
      spec: {
        selector: { matchLabels: target.serviceLabels },
        namespaceSelector: { matchNames: [target.namespace] },
        endpoints: [
          {
            port: target.portName,
            path: '/metrics',
            interval: scrapeInterval.toMilliseconds() % 1000 === 0 ? `${scrapeInterval.toMilliseconds() / 1000}s` : `${scrapeInterval.toMilliseconds()}ms`,
            honorLabels: true,
            relabelings: [
              {
                action: monitoring.ServiceMonitorSpecEndpointsRelabelingsAction.LABELDROP,
                regex: `^(${ownLabels.join('|')})$`,
              },
            ],
          },
        ],
      },
    });
  }

  /** The name of this exporter's objects: the construct id, lower-cased, as a DNS label. */
  private resourceName(): string {
    return checkDnsLabel(CONSTRUCT, 'id', this.node.id.toLowerCase());
  }
}

const METRICS_PORT_NAME = 'metrics';
const COUNTERS_DIR = '/etc/dcgm-exporter/custom';
const COUNTERS_FILE = 'counters.csv';
const FIELD_NAME = /^DCGM_(FI|EXP)_[A-Z0-9_]+$/;

/** The counters to collect: defaults or the user's set, plus additions, validated and de-duplicated. */
function resolveCounters(props: DcgmExporterProps, profiling: boolean): DcgmCounter[] {
  const known = new Set([...Object.keys(KNOWN_DCGM_FIELDS), ...(props.additionalKnownFields ?? [])]);
  for (const [i, field] of (props.additionalKnownFields ?? []).entries()) {
    if (!FIELD_NAME.test(field)) {
      invalidProp(CONSTRUCT, `additionalKnownFields[${i}]`, `is ${JSON.stringify(field)}, not a DCGM field name`,
        'DCGM field names look like DCGM_FI_DEV_GPU_UTIL or DCGM_EXP_XID_ERRORS_COUNT.');
    }
  }

  const requested: Array<[string, string | DcgmCounter]> = [
    ...(props.counters ?? DEFAULT_DCGM_COUNTERS).map((c, i) => [`counters[${i}]`, c] as [string, string | DcgmCounter]),
    ...(props.additionalCounters ?? []).map((c, i) => [`additionalCounters[${i}]`, c] as [string, string | DcgmCounter]),
  ];
  if (requested.length === 0) {
    invalidProp(CONSTRUCT, 'counters', 'is empty', 'Collect at least one field, e.g. DCGM_FI_DEV_GPU_UTIL, or omit the prop for the defaults.');
  }

  const resolved = new Map<string, DcgmCounter>();
  for (const [prop, entry] of requested) {
    const counter = typeof entry === 'string' ? { field: entry } : entry;
    const field = counter.field.trim();
    if (!known.has(field)) {
      invalidProp(CONSTRUCT, prop, `names ${JSON.stringify(counter.field)}, which is not a DCGM field dcgm-exporter knows`,
        'Use a field from dcgm-exporter\'s counter lists (see KNOWN_DCGM_FIELDS), or list a newer field in `additionalKnownFields`.');
    }
    if (!profiling && field.startsWith('DCGM_FI_PROF_')) {
      invalidProp(CONSTRUCT, prop, `is the profiling field ${field}, but \`profilingMetrics\` is false`,
        'Remove profiling (DCGM_FI_PROF_*) fields or set `profilingMetrics: true`.');
    }
    const info = KNOWN_DCGM_FIELDS[field];
    const type = counter.type ?? info?.type;
    if (!type) {
      invalidProp(CONSTRUCT, prop, `gives no type for ${field}`, 'Give `type` (gauge, counter or label) for fields outside the shipped lists.');
    }
    const help = (counter.help ?? info?.help ?? field).trim();
    if (/[,\r\n]/.test(help)) {
      invalidProp(CONSTRUCT, prop, `has help text ${JSON.stringify(help)} with a comma or line break`,
        'dcgm-exporter reads the counters file as three comma-separated columns: write the help text without commas or line breaks.');
    }
    resolved.set(field, { field, type, help });
  }
  return [...resolved.values()];
}

/** dcgm-exporter's counters CSV: `field, type, help` per line. */
function renderCountersCsv(counters: readonly DcgmCounter[]): string {
  const header = [
    '# Generated by DcgmExporter. Format: DCGM field, Prometheus type, help text.',
  ];
  return [...header, ...counters.map((c) => `${c.field}, ${c.type}, ${c.help}`), ''].join('\n');
}

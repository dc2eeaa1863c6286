/**
 * The prometheus-adapter configuration the autoscalers of an app need, as ONE ConfigMap.
 *
 * prometheus-adapter reads a single `config.yaml`. Every `QueueScaledHpa` in an app registers the rules
 * behind its metrics here, so the HPA's metric name, its selector and the adapter's query come from the
 * same values and cannot drift apart. Identical rules from several autoscalers are written once; two
 * different rules under one metric name are an error, because the adapter would silently keep only one.
 */
import { Chart, Lazy } from 'cdk8s';
import { Construct, IConstruct } from 'constructs';
import * as YAML from 'yaml';
import { checkDnsLabel, checkDnsSubdomain, invalidProp } from './validation';
import * as k8s from '../imports/k8s';

/** The adapter's file name inside the ConfigMap; the Helm chart runs `--config=/etc/adapter/config.yaml`. */
export const ADAPTER_CONFIG_KEY = 'config.yaml';

/** Defaults for where the rules ConfigMap lives. */
export const ADAPTER_RULES_DEFAULTS = {
  /** Namespace of prometheus-adapter in kube-prometheus and in most Helm installs. */
  namespace: 'monitoring',
  name: 'prometheus-adapter-rules',
} as const;

/**
 * An `externalRules` entry of the adapter's configuration: one Prometheus series served as one external metric.
 *
 * `resources.namespaced` is always false: the queue's series carry the namespace RabbitMQ runs in
 * (`messaging`), not the namespace of the HPA that reads them (`ai-workers`), so the adapter must not add a
 * `namespace` matcher of the HPA's namespace to the query.
 */
export interface AdapterExternalRule {
  /** Series selector the adapter runs against `/api/v1/series` to discover the metric. */
  readonly seriesQuery: string;

  /** How the discovered series names become the API's metric name. */
  readonly name: { readonly matches: string; readonly as: string };

  /** Query template; `<<.LabelMatchers>>` receives the HPA's metric selector. */
  readonly metricsQuery: string;

  readonly resources: { readonly namespaced: false };
}

/** A `rules` entry (custom metrics API): a per-pod series associated with the pods it describes. */
export interface AdapterCustomRule {
  readonly seriesQuery: string;

  /** Maps the series' labels to the Kubernetes resources `namespace` and `pod`. */
  readonly resources: { readonly overrides: Record<string, { readonly resource: string }> };

  readonly name: { readonly matches: string; readonly as: string };

  readonly metricsQuery: string;
}

/** Properties of {@link PrometheusAdapterRules}. */
export interface PrometheusAdapterRulesProps {
  /**
   * Namespace prometheus-adapter runs in. The adapter's Deployment mounts the ConfigMap, and a Pod can only
   * mount ConfigMaps of its own namespace.
   *
   * @default "monitoring"
   */
  readonly namespace?: string;

  /**
   * Name of the ConfigMap; give it to the adapter's Helm chart as `rules.existing`.
   *
   * @default "prometheus-adapter-rules"
   */
  readonly name?: string;
}

/**
 * The rules ConfigMap of prometheus-adapter for all autoscalers of an app.
 *
 * Create one explicitly (for example in the chart that holds your monitoring objects) or let the first
 * `QueueScaledHpa` create it; every later autoscaler in the same app finds it with {@link PrometheusAdapterRules.of}.
 */
export class PrometheusAdapterRules extends Construct {
  /** The rules object of the app that `scope` belongs to, if one exists. */
  public static find(scope: IConstruct): PrometheusAdapterRules | undefined {
    const root = scope.node.root;
    return root.node.findAll().find((c): c is PrometheusAdapterRules => c instanceof PrometheusAdapterRules);
  }

  /**
   * The rules object of the app that `scope` belongs to; when there is none yet, one with default props is
   * created in the chart of `scope`.
   */
  public static of(scope: IConstruct): PrometheusAdapterRules {
    return PrometheusAdapterRules.find(scope) ?? new PrometheusAdapterRules(Chart.of(scope), 'PrometheusAdapterRules');
  }

  /** The ConfigMap that holds `config.yaml`. */
  public readonly configMap: k8s.KubeConfigMap;

  /** Name of the ConfigMap. */
  public readonly name: string;

  /** Namespace of the ConfigMap (the adapter's namespace). */
  public readonly namespace: string;

  private readonly externalRules = new Map<string, AdapterExternalRule>();
  private readonly customRules = new Map<string, AdapterCustomRule>();

  constructor(scope: Construct, id: string, props: PrometheusAdapterRulesProps = {}) {
    super(scope, id);

    const existing = this.node.root.node.findAll().find((c) => c instanceof PrometheusAdapterRules && c !== this);
    if (existing) {
      invalidProp(
        'PrometheusAdapterRules',
        'scope',
        `is in an app that already has one at ${existing.node.path}`,
        'prometheus-adapter reads one configuration file: create a single PrometheusAdapterRules per app and pass it to every autoscaler.',
      );
    }

    this.namespace = checkDnsLabel('PrometheusAdapterRules', 'namespace', props.namespace ?? ADAPTER_RULES_DEFAULTS.namespace);
    this.name = checkDnsSubdomain('PrometheusAdapterRules', 'name', props.name ?? ADAPTER_RULES_DEFAULTS.name);

    // Rendered at synthesis, after every autoscaler of the app has registered its rules.
    this.configMap = new k8s.KubeConfigMap(this, 'Resource', {
      metadata: { name: this.name, namespace: this.namespace },
      data: { [ADAPTER_CONFIG_KEY]: Lazy.any({ produce: () => this.renderConfig() }) },
    });
  }

  /**
   * Serves a series as an external metric named `rule.name.as`. Adding the same rule twice is a no-op.
   *
   * @throws when another rule already serves that metric name.
   */
  public addExternalRule(rule: AdapterExternalRule): void {
    this.register(this.externalRules, rule.name.as, rule, 'external');
  }

  /**
   * Serves a per-pod series as a custom (pods) metric named `rule.name.as`. Adding the same rule twice is a no-op.
   *
   * @throws when another rule already serves that metric name.
   */
  public addCustomRule(rule: AdapterCustomRule): void {
    this.register(this.customRules, rule.name.as, rule, 'custom');
  }

  /** The adapter configuration as an object: `{ rules, externalRules }`. */
  public toConfig(): { rules: AdapterCustomRule[]; externalRules: AdapterExternalRule[] } {
    return { rules: [...this.customRules.values()], externalRules: [...this.externalRules.values()] };
  }

  /** The adapter configuration as the YAML text of `config.yaml`. */
  public renderConfig(): string {
    return YAML.stringify(this.toConfig(), { lineWidth: 0 });
  }

  /**
   * Values for the `prometheus-community/prometheus-adapter` Helm chart that make it run with this ConfigMap.
   *
   * `rules.existing` mounts the ConfigMap. The chart registers the external-metrics APIService (and lets the
   * HPA controller read it) only when `rules.external` is non-empty, and the custom-metrics one only when
   * `rules.default` or `rules.custom` is: with `rules.existing` their content is not read, so they carry the
   * same rules again, as switches and as documentation. Call it after every autoscaler has been created.
   */
  public helmValues(): { rules: { existing: string; default: boolean; custom: AdapterCustomRule[]; external: AdapterExternalRule[] } } {
    const { rules, externalRules } = this.toConfig();
    return { rules: { existing: this.name, default: false, custom: rules, external: externalRules } };
  }

  private register<T>(rules: Map<string, T>, metricName: string, rule: T, kind: string): void {
    const previous = rules.get(metricName);
    if (previous === undefined) {
      rules.set(metricName, rule);
      return;
    }
    if (JSON.stringify(previous) !== JSON.stringify(rule)) {
      invalidProp(
        'PrometheusAdapterRules',
        `${kind} metric ${metricName}`,
        'is already served by a different rule (the adapter would keep only one of them and scale one workload on the wrong series)',
        'Give one of the autoscalers its own `metricName`.',
      );
    }
  }
}

/**
 * What prometheus-adapter runs for an external metric rule with `namespaced: false` and a given metric
 * selector: `<<.Series>>` becomes the discovered series (the name in `seriesQuery`), `<<.LabelMatchers>>`
 * the selector's `label="value"` matchers, sorted by label and joined with commas, and `<<.GroupBy>>` is
 * empty for external metrics.
 */
export function renderExternalMetricsQuery(rule: AdapterExternalRule, selector: Record<string, string>): string {
  const series = rule.seriesQuery.split('{')[0];
  const matchers = Object.keys(selector)
    .sort()
    .map((label) => `${label}=${JSON.stringify(selector[label])}`)
    .join(',');
  return rule.metricsQuery
    .split('<<.Series>>').join(series)
    .split('<<.LabelMatchers>>').join(matchers)
    .split('<<.GroupBy>>').join('');
}

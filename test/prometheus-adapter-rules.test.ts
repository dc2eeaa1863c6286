import * as YAML from 'yaml';
import { DCGM_GPU_UTILIZATION } from '../src/gpu-metrics';
import {
  ADAPTER_CONFIG_KEY,
  PrometheusAdapterRules,
  renderExternalMetricsQuery,
} from '../src/prometheus-adapter-rules';
import { gpuUtilizationRule, queueBacklogExternalMetric } from '../src/queue-scaled-hpa';
import { BacklogMeasure } from '../src/rabbitmq-metrics';
import { InvalidPropError } from '../src/validation';
import { only, synthValid, testChart } from './util/manifests';

describe('PrometheusAdapterRules', () => {
  test('writes config.yaml in the adapter format, in the adapter namespace', () => {
    const chart = testChart('monitoring');
    const rules = new PrometheusAdapterRules(chart, 'Rules', { namespace: 'observability', name: 'custom-adapter-rules' });
    rules.addExternalRule(queueBacklogExternalMetric('ai-generation-jobs').rule);
    rules.addExternalRule(queueBacklogExternalMetric('ai-generation-jobs', '/', BacklogMeasure.READY).rule);
    rules.addCustomRule(gpuUtilizationRule(DCGM_GPU_UTILIZATION));

    const manifests = synthValid(chart);
    expect(manifests).toMatchSnapshot();
    const configMap = only(manifests, 'ConfigMap');
    expect(configMap.metadata).toEqual({ name: 'custom-adapter-rules', namespace: 'observability' });
    expect(Object.keys(configMap.data)).toEqual([ADAPTER_CONFIG_KEY]);

    const config = YAML.parse(configMap.data[ADAPTER_CONFIG_KEY]);
    expect(Object.keys(config).sort()).toEqual(['externalRules', 'rules']);
    expect(config.externalRules.map((r: any) => r.name.as)).toEqual(['rabbitmq_queue_backlog', 'rabbitmq_queue_ready_backlog']);
    for (const rule of config.externalRules) {
      expect(rule.resources).toEqual({ namespaced: false });
      expect(rule.metricsQuery).toContain('<<.LabelMatchers>>');
      expect(rule.metricsQuery).toContain('<<.Series>>{');
    }
    expect(config.rules[0].metricsQuery).toContain('<<.Series>>');
    expect(config.rules[0].metricsQuery).toContain('<<.GroupBy>>');
    // The YAML round-trips to exactly what was registered.
    expect(config).toEqual(rules.toConfig());
  });

  test('Helm values mount the ConfigMap and switch on the APIServices the rules need', () => {
    const rules = new PrometheusAdapterRules(testChart(), 'Rules');
    expect(rules.helmValues()).toEqual({ rules: { existing: 'prometheus-adapter-rules', default: false, custom: [], external: [] } });

    rules.addExternalRule(queueBacklogExternalMetric('jobs').rule);
    rules.addCustomRule(gpuUtilizationRule(DCGM_GPU_UTILIZATION));
    const { rules: values } = rules.helmValues();
    // Non-empty `external` registers v1beta1.external.metrics.k8s.io; non-empty `custom` the custom metrics API.
    expect(values.external.map((r) => r.name.as)).toEqual(['rabbitmq_queue_backlog']);
    expect(values.custom.map((r) => r.name.as)).toEqual(['dcgm_gpu_utilization']);
    expect(values.existing).toBe(rules.name);
  });

  test('the same rule registered twice is written once', () => {
    const chart = testChart();
    const rules = new PrometheusAdapterRules(chart, 'Rules');
    rules.addExternalRule(queueBacklogExternalMetric('a').rule);
    rules.addExternalRule(queueBacklogExternalMetric('b').rule);
    rules.addCustomRule(gpuUtilizationRule(DCGM_GPU_UTILIZATION));
    rules.addCustomRule(gpuUtilizationRule(DCGM_GPU_UTILIZATION));
    expect(rules.toConfig().externalRules).toHaveLength(1);
    expect(rules.toConfig().rules).toHaveLength(1);
  });

  test('renders the query prometheus-adapter runs for a selector', () => {
    const { rule } = queueBacklogExternalMetric('jobs', 'prod');
    expect(renderExternalMetricsQuery(rule, { queue: 'jobs' })).toBe(
      'max by (vhost, queue) (rabbitmq_detailed_queue_messages{vhost="prod",queue="jobs"})',
    );
    // Several labels: sorted by name, joined by commas, like the adapter's label selector.
    const custom = { ...rule, metricsQuery: 'sum(x{<<.LabelMatchers>>}) by (<<.GroupBy>>)' };
    expect(renderExternalMetricsQuery(custom, { queue: 'jobs', a: 'b' })).toBe('sum(x{a="b",queue="jobs"}) by ()');
  });

  test('bad input: a different rule under a metric name already taken', () => {
    const rules = new PrometheusAdapterRules(testChart(), 'Rules');
    rules.addExternalRule(queueBacklogExternalMetric('a', '/', BacklogMeasure.READY_AND_UNACKED, 'backlog').rule);
    expect(() => rules.addExternalRule(queueBacklogExternalMetric('a b', '/', BacklogMeasure.READY, 'backlog').rule)).toThrow(
      /external metric backlog` is already served by a different rule/,
    );
  });

  test('bad input: namespace and name must be valid Kubernetes names', () => {
    expect(() => new PrometheusAdapterRules(testChart(), 'Rules', { namespace: 'Monitoring' })).toThrow(InvalidPropError);
    expect(() => new PrometheusAdapterRules(testChart(), 'Rules', { name: 'rules_' })).toThrow(/`name` is "rules_"/);
  });
});

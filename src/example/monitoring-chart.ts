import { Chart, ChartProps } from 'cdk8s';
import { Construct } from 'constructs';
import { PrometheusAdapterRules } from '../prometheus-adapter-rules';

/** Namespace of the Prometheus operator (kube-prometheus-stack) and prometheus-adapter. */
export const MONITORING_NAMESPACE = 'monitoring';

/**
 * What the example adds to the `monitoring` namespace, where kube-prometheus-stack and prometheus-adapter are
 * installed with Helm: the adapter's rules ConfigMap (`rules.existing` in the adapter's values), and the
 * ServiceMonitors, PodMonitors and PrometheusRules that the services of the other charts create in it.
 */
export class MonitoringChart extends Chart {
  /** The one prometheus-adapter configuration every autoscaler of the app adds its rules to. */
  public readonly adapterRules: PrometheusAdapterRules;

  constructor(scope: Construct, id: string, props: ChartProps = {}) {
    super(scope, id, { namespace: MONITORING_NAMESPACE, ...props });
    this.adapterRules = new PrometheusAdapterRules(this, 'AdapterRules', { namespace: MONITORING_NAMESPACE });
  }
}

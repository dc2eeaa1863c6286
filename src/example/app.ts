/**
 * The example app: an AI inference platform whose GPU workers consume a RabbitMQ queue.
 *
 * RabbitMQ runs in `messaging`, the workers in `ai-workers`, the Prometheus operator and
 * prometheus-adapter in `monitoring`. `npm run synth` writes one file per chart into dist/.
 */
import { App } from 'cdk8s';
import { AiWorkersChart } from './ai-workers-chart';
import { ClusterChart } from './cluster-chart';
import { GpuInfrastructureChart } from './gpu-infrastructure-chart';
import { KedaWorkersChart } from './keda-chart';
import { MonitoringChart } from './monitoring-chart';

/**
 * Adds every chart of the example to `app`. Each chart is one line here; a chart that needs another one
 * (its adapter rules, its monitoring scope) takes it as a prop.
 */
export function buildExampleApp(app: App = new App()): App {
  new ClusterChart(app, 'cluster');
  const monitoring = new MonitoringChart(app, 'monitoring');
  // The GPU infrastructure comes first for its exporter's series, which the workers scale on; its Cluster Autoscaler
  // comes after them, since it is checked against the workers it must serve.
  const gpuInfrastructure = new GpuInfrastructureChart(app, 'gpu-infrastructure');
  const aiWorkers = new AiWorkersChart(app, 'ai-workers', { monitoring, gpuUtilization: gpuInfrastructure.exporter.gpuUtilization });
  gpuInfrastructure.addClusterAutoscaler([aiWorkers.ocr.workers]);
  new KedaWorkersChart(app, 'ai-workers-keda');
  return app;
}

if (require.main === module) {
  buildExampleApp().synth();
}

/**
 * The example app: an AI inference platform whose GPU workers consume a RabbitMQ queue.
 *
 * RabbitMQ runs in `messaging`, the workers in `ai-workers`, the Prometheus operator and
 * prometheus-adapter in `monitoring`. `npm run synth` writes one file per chart into dist/.
 */
import { App } from 'cdk8s';

export function buildExampleApp(app: App = new App()): App {
  return app;
}

if (require.main === module) {
  buildExampleApp().synth();
}

export * from './contract';
export * from './validation';
export * from './rabbitmq-metrics';
export * from './gpu-metrics';

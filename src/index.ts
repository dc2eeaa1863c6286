export * from './contract';
export * from './validation';
export * from './rabbitmq-metrics';
export * from './gpu-metrics';
export * from './hpa-math';
export * from './gpu-node-labels';

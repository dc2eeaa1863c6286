export * from './contract';
export * from './validation';
export * from './rabbitmq-metrics';
export * from './gpu-metrics';
export * from './hpa-math';
export * from './gpu-node-labels';
export * from './prometheus-adapter-rules';
export * from './queue-scaled-hpa';

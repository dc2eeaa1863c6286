export * from './contract';
export * from './validation';
export * from './rabbitmq-metrics';

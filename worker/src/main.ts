import { DEFAULT_WORKER_IMAGE } from './contract';

console.log(DEFAULT_WORKER_IMAGE);

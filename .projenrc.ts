import { javascript, typescript } from 'projen';

// projen owns package.json, tsconfig*.json, the jest and eslint settings and the task list.
// Change them here and run `npx projen`; the generated files are read-only on purpose.

const project = new typescript.TypeScriptProject({
  name: 'cdk8s-gpu-queue-workers',
  description:
    'cdk8s constructs for GPU inference workers that consume a RabbitMQ queue and scale on its backlog ' +
    '(HPA + prometheus-adapter or KEDA, DCGM exporter, Cluster Autoscaler / Karpenter).',
  keywords: ['cdk8s', 'kubernetes', 'gpu', 'autoscaling', 'rabbitmq', 'keda', 'hpa', 'prometheus-adapter'],
  license: 'Apache-2.0',
  defaultReleaseBranch: 'main',
  packageManager: javascript.NodePackageManager.NPM,
  projenrcTs: true,
  typescriptVersion: '~5.9.0',
  minNodeVersion: '20.0.0',

  // No hosted CI or release automation: .ci/run is the project's CI.
  github: false,
  release: false,
  buildWorkflow: false,
  depsUpgrade: false,
  pullRequestTemplate: false,
  // `dist/` holds the example app's synthesized manifests; npm tarballs go elsewhere.
  artifactsDirectory: 'build/package',

  deps: ['cdk8s@^2.70.0', 'cdk8s-plus-27@^2.9.5', 'constructs@^10.4.0', 'yaml@^2.8.0'],
  peerDeps: [],
  devDeps: [
    'cdk8s-cli@^2.200.0',
    // Schema validation of every synthesized object: kubernetes-models for core kinds (the 4.x line is the
    // last that loads as CommonJS under jest on Node 20), ajv with the imported CRDs' own schemas for the rest.
    'kubernetes-models@^4.5.1',
    'ajv@^8.17.0',
    'amqplib@^2.3.1',
  ],

  // The library's sources import the generated code in imports/, so the compile root is the repo root.
  tsconfig: {
    compilerOptions: { rootDir: '.', outDir: 'lib', lib: ['es2022'], target: 'ES2022' },
    include: ['src/**/*.ts', 'imports/**/*.ts'],
    exclude: ['node_modules', 'worker', 'dist'],
  },
  tsconfigDev: {
    compilerOptions: { lib: ['es2022'], target: 'ES2022' },
    exclude: ['node_modules', 'worker'],
  },
  entrypoint: 'lib/src/index.js',
  entrypointTypes: 'lib/src/index.d.ts',

  jest: true,
  jestOptions: {
    // CI must fail on a changed snapshot, never rewrite it: `npx projen test:update` does that on purpose.
    updateSnapshot: javascript.UpdateSnapshot.NEVER,
    jestConfig: {
      testPathIgnorePatterns: ['/node_modules/', '/worker/', '/dist/', '/lib/'],
      coveragePathIgnorePatterns: ['/node_modules/', '/imports/'],
      testTimeout: 30_000,
    },
  },
  eslintOptions: { commandOptions: { fix: false }, dirs: ['src'], devdirs: ['test', 'bench'], ignorePatterns: ['imports/', 'worker/', 'dist/', 'lib/'] },
});

// `test` runs eslint (commandOptions.fix is off): in a test it reports, never rewrites the checkout.
const lintedDirs = 'src test bench projenrc .projenrc.ts';
project.addTask('eslint:fix', {
  description: 'Fix what eslint can fix',
  exec: `eslint --ext .ts,.tsx --fix --no-error-on-unmatched-pattern ${lintedDirs}`,
});

project.gitignore.exclude('/build/', '/worker/node_modules/', '/worker/dist/', '/worker/models/', '/.live/');
// dist/ is the example app's synthesized manifests, committed on purpose (a test fails when it is stale).
project.gitignore.removePatterns('/dist/');
project.npmignore?.exclude('/imports/', '/worker/', '/dist/', '/bench/', '/build/', '/.ci/', 'cdk8s.yaml');
project.npmignore?.include('/lib/imports/');

// Regenerate imports/ (k8s 1.27 and the CRDs) offline from ../shared; see the script for how.
project.addTask('import', {
  description: 'Regenerate imports/ with cdk8s import (Kubernetes 1.27 and the CRDs the constructs emit)',
  exec: 'bash scripts/import.sh',
});

// Synthesize the example app (cdk8s.yaml) into dist/.
project.addTask('synth', {
  description: 'Synthesize the example app into dist/',
  // cdk8s-cli otherwise asks the npm registry for a newer version on every run and prints a stack trace offline.
  env: { CDK8S_CHECK_UPGRADE: 'false' },
  exec: 'cdk8s synth',
});

// Benchmarks, not tests (CI does not run them): synthesis cost of growing apps here, the worker against the
// broker and inference limits in worker/. See docs/performance.md.
project.addTask('bench', {
  description: 'Benchmarks: synthesis of 1/10/100 worker pools, and the worker against its broker and inference limits',
  steps: [{ exec: 'ts-node --transpile-only bench/synth.ts' }, { exec: 'npm --prefix worker run bench' }],
});

// The worker package's own suite (unit tests, and broker tests against the real RabbitMQ).
const testWorker = project.addTask('test:worker', {
  description: 'The worker package tests (worker/): inference on CPU, real RabbitMQ for the broker tests',
  exec: 'npm --prefix worker test',
});
project.testTask.spawn(testWorker);

// The live-signal suite (test/live): real RabbitMQ, Prometheus and worker processes. `test` runs it after the
// unit tests; it needs the broker and Debian's prometheus package, which .ci/run provides.
const testLive = project.addTask('test:live', {
  description: 'The scaling signal end to end on the real RabbitMQ and a real Prometheus (test/live)',
  exec: 'jest --config test/live/jest.config.js --ci',
});
project.testTask.spawn(testLive);

project.synth();

// The live-signal suite: real RabbitMQ, real Prometheus, real worker processes. Run with
// `npx jest -c test/live/jest.config.js` (the `test:live` task). Its files end in `.live.ts` so that the unit
// test run (`*.test.ts`) never picks them up.
const path = require('path');

module.exports = {
  rootDir: path.resolve(__dirname, '../..'),
  testMatch: ['<rootDir>/test/live/**/*.live.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/worker/', '/dist/', '/lib/'],
  transform: {
    '^.+\\.[t]sx?$': ['ts-jest', { tsconfig: '<rootDir>/test/tsconfig.json' }],
  },
  // One suite, one broker vhost, one Prometheus: nothing to gain from parallel workers on a shared machine.
  maxWorkers: 1,
  testTimeout: 120_000,
  collectCoverage: false,
  reporters: ['default'],
};

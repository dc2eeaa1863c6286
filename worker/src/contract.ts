// The worker side of the contract with the constructs: the same module, compiled into this package.
export * from '../../src/contract';

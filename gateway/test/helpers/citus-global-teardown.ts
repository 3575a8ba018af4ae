// The citus project's globalTeardown: global-teardown.ts under a path of its own (see citus-global-setup.ts).
export { default } from './global-teardown';

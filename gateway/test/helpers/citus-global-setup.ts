// The citus project's globalSetup: global-setup.ts under a path of its own, because jest runs a
// globalSetup module once per run however many projects name it (with the first one's configuration).
export { default } from './global-setup';

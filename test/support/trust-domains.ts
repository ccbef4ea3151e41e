import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

/** `example.org`, the trust domain most tests and benchmarks run their server in, typed for the bundle constructors. */
export const EXAMPLE_ORG = mustTrustDomain('example.org');

import type { FaultKind, MethodStep } from '../experiment/schema.js';
import { authorityWithhold, caRotate, entryDelete } from './admin.js';
import { attestationFlood } from './attestation.js';
import { badCsr } from './bad-csr.js';
import { cpuThrottle } from './cpu.js';
import { datastore } from './datastore.js';
import { bundleEndpoint } from './federation.js';
import { network } from './network.js';
import { clockSkew, processFreeze, processKill } from './process.js';
import { keyCompromise } from './key-compromise.js';
import { issuanceStorm } from './storm.js';
import type { FaultKindImpl } from './types.js';

export type { FaultContext, PreparedFault } from './types.js';

/** Every fault kind, registered in one place. */
const registry: Record<FaultKind, FaultKindImpl<never>> = {
  'process-kill': processKill,
  'process-freeze': processFreeze,
  'clock-skew': clockSkew,
  'ca-rotate': caRotate,
  'entry-delete': entryDelete,
  network,
  datastore,
  'bundle-endpoint': bundleEndpoint,
  'issuance-storm': issuanceStorm,
  'authority-withhold': authorityWithhold,
  'attestation-flood': attestationFlood,
  'cpu-throttle': cpuThrottle,
  'bad-csr': badCsr,
  'key-compromise': keyCompromise,
};

export function faultImpl(step: MethodStep): FaultKindImpl {
  return registry[step.fault] as unknown as FaultKindImpl;
}

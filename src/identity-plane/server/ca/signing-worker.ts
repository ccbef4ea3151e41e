/**
 * A signing worker thread of the server's signing pool (signing-pool.ts): checks CSRs and signs
 * X.509-SVIDs in batches, with the CA key the main thread hands it. The key arrives as a KeyObject
 * through the message port (cloned in memory by Node, never written anywhere), tagged with the
 * CA's generation; every batch names the generation it must be signed under, and a batch for a
 * generation this worker does not hold is refused rather than signed with another key.
 */
import { X509Certificate } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { createX509SvidMinter, type X509SvidMinter } from '../../spiffe/mint/index.js';
import { asBuffer, signJob, type FromSigningWorker, type ToSigningWorker } from './sign-job.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';

const port = parentPort;
if (!port) throw new SvidscopeError('internal', 'signing-worker: not started as a worker thread (the signing pool starts it)');
/** Only a pool built with test hooks may ask a worker to die mid-batch. */
const testHooks = (workerData as { testHooks?: boolean } | undefined)?.testHooks === true;

let current: { generation: number; minter: X509SvidMinter } | undefined;
/** Why the last key could not be loaded, for the refusal of its batches. */
let keyError = '';
const send = (m: FromSigningWorker) => port.postMessage(m);

port.on('message', (m: ToSigningWorker) => {
  if (m.type === 'key') {
    // A key that fails here leaves no minter, so its batches are refused below, not signed with the old one.
    current = undefined;
    try {
      current = { generation: m.generation, minter: createX509SvidMinter({ caCertificate: new X509Certificate(asBuffer(m.caCertificateDer)), caPrivateKey: m.privateKey }) };
      keyError = '';
    } catch (err) {
      keyError = `: ${err instanceof Error ? err.message : String(err)}`;
    }
    return;
  }
  if (m.crash && testHooks) process.exit(70);
  if (!current || current.generation !== m.generation) {
    send({ type: 'failed', id: m.id, message: `signing worker holds no CA of generation ${m.generation}${keyError}` });
    return;
  }
  const { minter } = current;
  // A minted certificate is a view into a shared allocation pool: copy each into a buffer of its
  // own and move those, rather than clone the pools with the message.
  const outcomes = m.jobs.map((job) => {
    const o = signJob(minter, job, m.nowMs);
    return o.ok ? { ...o, der: Buffer.from(new Uint8Array(o.der).buffer) } : o;
  });
  port.postMessage({ type: 'result', id: m.id, outcomes } satisfies FromSigningWorker, outcomes.flatMap((o) => (o.ok ? [o.der.buffer as ArrayBuffer] : [])));
});
send({ type: 'ready' });

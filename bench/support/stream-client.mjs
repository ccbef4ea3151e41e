// Opens N FetchX509SVID streams over C channels with a bare proto client (no parsing of the
// answer), and prints the time to each stream's first message as JSON. Runs as its own process so
// the agent under test has its core to itself.
import path from 'node:path';
import { createRequire } from 'node:module';

const [socketPath, projectRoot, nText, cText] = process.argv.slice(2);
const require = createRequire(path.join(projectRoot, 'package.json'));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const def = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(projectRoot, 'src/identity-plane/workload-api/proto/workload.proto'), { keepCase: true }));
const n = Number(nText);
const clients = Array.from({ length: Number(cText) }, () => new def.SpiffeWorkloadAPI(`unix://${socketPath}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
await Promise.all(clients.map((c) => new Promise((resolve) => c.waitForReady(Date.now() + 10000, resolve))));
const md = new grpc.Metadata();
md.set('workload.spiffe.io', 'true');
const latencies = [];
const calls = [];
let errors = 0;
await Promise.all(Array.from({ length: n }, (_, i) => new Promise((resolve) => {
  const start = process.hrtime.bigint();
  const call = clients[i % clients.length].FetchX509SVID({}, md);
  calls.push(call);
  call.once('data', () => {
    latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
    resolve();
  });
  call.on('error', (err) => {
    if (err.code !== grpc.status.CANCELLED) errors++;
    resolve();
  });
})));
for (const c of calls) c.cancel();
console.log(JSON.stringify({ latencies, errors }));
process.exit(0);

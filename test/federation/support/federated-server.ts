// `svidscope server run` plus federation, as a real process, until server.ts wires startFederation
// itself: the same config file (with its `federation` section), the federation metrics on the
// server's /metrics, and the federation admin methods on `<data_dir>/federation-admin.sock`.
// Usage: node --import tsx federated-server.ts <config.yaml>
import path from 'node:path';
import { waitForShutdownSignal } from '../../../src/cli/signals.js';
import { systemClock } from '../../../src/common/clock.js';
import { readYamlConfig } from '../../../src/common/config/load.js';
import { createLogger } from '../../../src/common/log.js';
import { createRegistry } from '../../../src/common/telemetry/registry.js';
import { buildServerConfig } from '../../../src/identity-plane/server/config.js';
import { registerFederationMetrics, startFederation } from '../../../src/identity-plane/server/federation/index.js';
import { startServer } from '../../../src/identity-plane/server/server.js';
import { serveFederationAdmin } from './admin.js';

const config = buildServerConfig(readYamlConfig(process.argv[2]));
const logger = createLogger({ name: 'server', level: config.logLevel });
const registry = createRegistry(); // the server's own kind (OpenMetrics-capable, for exemplars)
const running = await startServer(config, { logger, registry });
const federation = await startFederation({
  config: config.federation, trustDomain: config.trustDomain, datastore: running.datastore, ca: running.ca, bundles: running.bundles,
  clock: systemClock, logger, dataDir: config.dataDir, bundleRefreshHintSeconds: config.bundleRefreshHintSeconds,
});
registerFederationMetrics(registry, federation);
const admin = await serveFederationAdmin(federation, path.join(config.dataDir, 'federation-admin.sock'), logger);
await waitForShutdownSignal(logger);
await admin.close();
await federation.stop();
await running.stop();

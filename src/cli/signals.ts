import type { Logger } from '../common/log.js';

/**
 * Resolves on the first SIGTERM or SIGINT, so a long-running command can drain and exit cleanly.
 * A second signal while draining exits at once (the operator insists).
 */
export function waitForShutdownSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) {
        logger.warn({ signal }, 'second signal: exiting without draining');
        process.exit(130);
      }
      received = true;
      logger.info({ signal }, 'shutting down');
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import type { Logger } from '../../common/log.js';
import { startChild, type Child } from './children.js';

/**
 * How `up` starts an agent: `<dataDir>/<name>.yaml` with `config`, plus the join token in a 0600
 * `<dataDir>/<name>.join-token` the config names as join_token_file. The token never goes on the
 * command line: /proc/<pid>/cmdline is world-readable, and another local uid that reads it first
 * attests as this node.
 */
export function launchAgent(o: { name: string; dataDir: string; logDir: string; logger: Logger; token: string; config: Record<string, unknown> }): { child: Child; configFile: string; tokenFile: string } {
  const tokenFile = path.join(o.dataDir, `${o.name}.join-token`);
  writeFileAtomic(tokenFile, o.token + '\n');
  const configFile = path.join(o.dataDir, `${o.name}.yaml`);
  writeFileSync(configFile, stringify({ ...o.config, join_token_file: tokenFile }));
  const child = startChild({ name: o.name, args: ['agent', 'run', '--config', configFile], logDir: o.logDir, logger: o.logger });
  return { child, configFile, tokenFile };
}

import type { Command } from 'commander';
import { printResult, usageError, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { withAdmin } from './client.js';
import { socketOption } from './entry.js';

export function registerTokenCommands(program: Command, io: Io): void {
  const token = program.command('token').description('join tokens for agent attestation');
  token.command('generate').description('create a one-time join token for an agent')
    .option('--ttl <seconds>', 'how long the token stays usable', '600')
    .option('--spiffe-id <id>', 'also create an alias entry so the agent is known by this SPIFFE ID')
    .option('--token <value>', 'use this token value instead of a random UUID')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { ttl: string; spiffeId?: string; token?: string; adminSocket?: string; json?: boolean }) => {
      if (!/^\d+$/.test(f.ttl) || Number(f.ttl) < 1) throw usageError(`--ttl must be a whole number of seconds >= 1, got "${f.ttl}"`);
      const res = await withAdmin(f.adminSocket, (a) =>
        a.call<{ value: string; expires_at: string }>('CreateJoinToken', { ttl: Number(f.ttl), token: f.token ?? '', agent_id: f.spiffeId ?? '' }));
      const expiresAt = new Date(Number(res.expires_at) * 1000).toISOString();
      printResult(io, f, { token: res.value, expiresAt }, () => [`Token: ${res.value}`, `Expires: ${expiresAt}`]);
    }));
}

import type { Command } from 'commander';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { withAdmin } from './client.js';
import { socketOption } from './entry.js';

interface AgentMsg {
  id: string;
  attestation_type: string;
  x509svid_serial_number: string;
  x509svid_expires_at: string;
  selectors: { type: string; value: string }[];
  banned: boolean;
}

/** Registers `agent list|evict|ban` (admin); `agent run` and the Workload API client live with the agent. */
export function registerAgentAdminCommands(agent: Command, io: Io): void {
  agent.command('list').description('list attested agents')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { adminSocket?: string; json?: boolean }) => {
      const res = await withAdmin(f.adminSocket, (a) => a.call<{ agents: AgentMsg[] }>('ListAgents', {}));
      const agents = res.agents.map((a) => ({
        spiffeId: a.id, attestationType: a.attestation_type, serialNumber: a.x509svid_serial_number,
        expiresAt: new Date(Number(a.x509svid_expires_at) * 1000).toISOString(), banned: a.banned,
        selectors: a.selectors.map((s) => `${s.type}:${s.value}`),
      }));
      printResult(io, f, { agents }, () => [
        `Found ${agents.length} attested ${agents.length === 1 ? 'agent' : 'agents'}`,
        ...agents.flatMap((a) => ['', `SPIFFE ID         : ${a.spiffeId}`, `Attestation type  : ${a.attestationType}`,
          `Expiration time   : ${a.expiresAt}`, `Serial number     : ${a.serialNumber}`, `Banned            : ${a.banned}`]),
      ]);
    }));
  for (const [verb, method, description, done] of [
    ['evict', 'EvictAgent', 'evict an agent: it must attest again with a new join token', 'Evicted'],
    ['ban', 'BanAgent', 'ban an agent: its SVID is refused until the agent is evicted and attests again', 'Banned'],
  ] as const) {
    agent.command(verb).description(description)
      .requiredOption('--spiffe-id <id>', 'the agent SPIFFE ID')
      .addOption(socketOption())
      .option('--json', 'print one JSON object')
      .action(withErrors(io, async (f: { spiffeId: string; adminSocket?: string; json?: boolean }) => {
        await withAdmin(f.adminSocket, (a) => a.call(method, { id: f.spiffeId }));
        printResult(io, f, { spiffeId: f.spiffeId, action: verb }, () => [`${done} agent ${f.spiffeId}`]);
      }));
  }
}

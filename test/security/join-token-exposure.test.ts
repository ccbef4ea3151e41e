import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/common/log.js';
import { launchAgent } from '../../src/cli/up/agent-launch.js';
import { stopChild, type Child } from '../../src/cli/up/children.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { bundlePemOf, removeDir, startTestServer, tempDir, type TestServer } from '../support/server.js';
import { ensureUser, runNodeAs } from '../support/users.js';

/**
 * Issue 14 item 1: `up` used to start agents with `--join-token <token>`, readable by every local
 * uid in /proc/<pid>/cmdline. The attacker here is a real process of another uid that scans the
 * process table while the agent `up`'s launch path started is running, and then tries the token file.
 */
const isRoot = process.getuid?.() === 0;
const dir = tempDir('join-token');
// Traversable by others, so the token file's own mode is what keeps the token private.
chmodSync(dir, 0o755);
let server: TestServer;
let agent: Child | undefined;
let launched: { configFile: string; tokenFile: string };
let token: string;

beforeAll(async () => {
  server = await startTestServer();
  const bundlePem = path.join(dir, 'bundle.pem');
  writeFileSync(bundlePem, bundlePemOf(server.server));
  token = (await server.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value;
  const health = await freePort();
  const r = launchAgent({
    name: 'agent-1', dataDir: dir, logDir: dir, logger: createLogger({ name: 'test', level: 'silent' }), token,
    config: { trust_domain: 'example.org', server_address: server.server.address, data_dir: path.join(dir, 'agent-1'), socket_path: path.join(dir, 'agent-1', 'api.sock'), trust_bundle_path: bundlePem, health_bind: `127.0.0.1:${health}` },
  });
  agent = r.child;
  launched = r;
  // Ready = attested: the agent took its token from the file alone.
  await waitFor('agent ready', async () => httpOk(`http://127.0.0.1:${health}/ready`), 40_000, () => readFileSync(agent!.logFile, 'utf8'));
}, 60_000);

afterAll(async () => {
  if (agent) await stopChild(agent);
  await server?.stop();
  removeDir(dir);
});

/** Run as the attacker: every pid whose argv holds the needle, and whether the config path was seen at all. */
const SCAN = `import { readdirSync, readFileSync } from 'node:fs';
// The token comes reversed, so this scanner's own argv does not match it.
const needle = [...process.argv[2]].reverse().join(''); const config = process.argv[3];
const hits = []; let sawAgent = false;
for (const pid of readdirSync('/proc').filter((p) => /^\\d+$/.test(p))) {
  let cmd; try { cmd = readFileSync('/proc/' + pid + '/cmdline', 'utf8'); } catch { continue; }
  if (cmd.includes(needle)) hits.push(pid);
  if (cmd.split('\\0').includes(config)) sawAgent = true;
}
let file = 'unread';
try { readFileSync(process.argv[4], 'utf8'); file = 'read'; } catch (err) { file = err.code; }
console.log(JSON.stringify({ hits, sawAgent, file }));
`;

describe.runIf(isRoot)('join token: another local uid', () => {
  it('finds the token in no process\'s cmdline and cannot read the token file', async () => {
    const attacker = ensureUser('svidscope-test-a');
    const script = path.join(dir, 'scan.mjs');
    writeFileSync(script, SCAN, { mode: 0o755 });
    const r = await runNodeAs(attacker, script, [[...token].reverse().join(''), launched.configFile, launched.tokenFile], dir);
    expect(r.code, r.stderr).toBe(0);
    const seen = JSON.parse(r.stdout) as { hits: string[]; sawAgent: boolean; file: string };
    expect(seen.sawAgent).toBe(true); // the scan did see the agent's argv, so an empty `hits` means something
    expect(seen.hits).toEqual([]);
    expect(seen.file).toBe('EACCES');
  });
});

describe('join token file', () => {
  it('is 0600, owned by the agent\'s user, and named by the agent config instead of a flag', () => {
    const st = statSync(launched.tokenFile);
    expect(st.mode & 0o777).toBe(0o600);
    const pidUid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${agent!.process.pid}/status`, 'utf8'))![1]);
    expect(st.uid).toBe(pidUid);
    expect(readFileSync(launched.tokenFile, 'utf8').trim()).toBe(token);
    expect(readFileSync(launched.configFile, 'utf8')).toContain(`join_token_file: ${launched.tokenFile}`);
    expect(readFileSync(`/proc/${agent!.process.pid}/cmdline`, 'utf8')).not.toContain(token);
  });

  it('`agent run --join-token` still works but warns that other users can see the token', async () => {
    const port = await freePort();
    const { child, logs } = spawnCli(['agent', 'run', '--trust-domain', 'example.org', '--server-address', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'flag-agent'), '--insecure-bootstrap', '--health-bind', '127.0.0.1:0', '--join-token', 'not-a-real-token']);
    try {
      await waitFor('warning', async () => logs().includes('visible to other local users'), 20_000, logs);
      expect(logs()).toContain('--join-token');
    } finally {
      child.kill('SIGKILL');
      await child;
    }
  });

  it('an agent whose join_token_file others can read warns about it', async () => {
    const port = await freePort();
    const loose = path.join(dir, 'loose.join-token');
    writeFileSync(loose, 'not-a-real-token\n', { mode: 0o644 });
    chmodSync(loose, 0o644);
    const { child, logs } = spawnCli(['agent', 'run', '--trust-domain', 'example.org', '--server-address', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'loose-agent'), '--insecure-bootstrap', '--health-bind', '127.0.0.1:0', '--join-token-file', loose]);
    try {
      await waitFor('warning', async () => logs().includes('join_token_file is readable by group or others'), 20_000, logs);
      expect(logs()).not.toContain('visible to other local users'); // no flag, no flag warning
    } finally {
      child.kill('SIGKILL');
      await child;
    }
  });
});

// The exporter's per-authority view (key compromise): unexpired SVIDs held per issuing authority
// (the leaf's authorityKeyIdentifier) and the age of the oldest, across sources, with a bounded
// number of key ids per trust domain.
import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { buildExporterConfig, createExporter, METRIC, type Exporter, type ObservedSvid } from '../../src/exporter/index.js';
import { svidOf } from '../../src/exporter/sources/convert.js';
import { parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { readCertificateInfo } from '../../src/identity-plane/spiffe/mint/cert-parts.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair } from '../../src/identity-plane/spiffe/mint/index.js';
import { waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { parseSamples, promtoolRun, valueOf } from '../support/metrics.js';

const TD = 'example.org';
const MIN = 60_000;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const start = Date.UTC(2030, 0, 1);
const cas = [0, 1].map(() => createSelfSignedCa({ trustDomain: TD, ttlSeconds: 86400, now: new Date(start - 3600_000) }));
const skiHex = (i: number) => readCertificateInfo(cas[i].der).subjectKeyId!.toString('hex');

function mint(ca: number, id: string, ttlSeconds: number, now: Date): X509Certificate {
  const minter = createX509SvidMinter({ caCertificate: cas[ca].certificate, caPrivateKey: cas[ca].privateKey });
  return new X509Certificate(minter.mint({ id: parseSpiffeId(`spiffe://${TD}/${id}`), publicKey: generateKeyPair('ec-p256').publicKey, ttlSeconds, now }).der);
}

function setup(sources: object[], extra: Record<string, unknown> = {}): { clock: FakeClock; ex: Exporter } {
  const clock = new FakeClock(start);
  const ex = createExporter(buildExporterConfig({ sources, ...extra }), { clock, processMetrics: false });
  cleanups.push(() => ex.stop());
  return { clock, ex };
}

const two = [{ name: 'agent-a', type: 'workload_api', address: 'unix:///nowhere.sock' }, { name: 'svid-files', type: 'files', paths: ['/nowhere'] }];

describe('SVIDs by authority', () => {
  it('reads the issuing authority from the leaf, counts each SVID once across sources, leaves expired ones out and ages the oldest', async () => {
    const { clock, ex } = setup(two);
    const web = mint(0, 'web', 3600, new Date(start - 20 * MIN));
    const db = mint(0, 'db', 600, new Date(start - 5 * MIN));
    const api = mint(1, 'api', 3600, new Date(start - 2 * MIN));
    const observed = [svidOf('web', web)!, svidOf('db', db)!, svidOf('api', api)!];
    expect(observed.map((o) => o.authorityKeyId)).toEqual([skiHex(0), skiHex(0), skiHex(1)]);
    ex.state.observe('agent-a', { svids: observed });
    ex.state.observe('svid-files', { svids: [svidOf('/run/web.pem', web)!] }); // the same SVID, written to disk by the workload

    let series = parseSamples((await ex.render()).body);
    const held = (i: number) => valueOf(series, METRIC.svidsByAuthority, { trust_domain: TD, authority_key_id: skiHex(i) });
    const age = (i: number) => valueOf(series, METRIC.oldestSvidAge, { trust_domain: TD, authority_key_id: skiHex(i) });
    expect([held(0), held(1)]).toEqual([2, 1]);
    // notBefore is backdated by the minter; web is the oldest of the first CA.
    expect(age(0)).toBe((start - Date.parse(web.validFrom)) / 1000);
    expect(age(1)).toBe((start - Date.parse(api.validFrom)) / 1000);

    // db expires after 5 more minutes: web is left; then everything of the first CA is gone but the series stays, at 0.
    clock.advance(6 * MIN);
    series = parseSamples((await ex.render()).body);
    expect(held(0)).toBe(1);
    clock.advance(60 * MIN);
    series = parseSamples((await ex.render()).body);
    expect([held(0), held(1)]).toEqual([0, 0]);
    expect(age(0)).toBeUndefined();
    expect(await promtoolRun((await ex.render()).body)).toEqual({ code: 0, output: '' });
  });

  it('keeps at most authority_max_series key ids per trust domain: the busiest, then "other"; counts the folded ones', async () => {
    const { clock, ex } = setup(two, { authority_max_series: 3 });
    const svid = (n: number, aki: string | undefined, bornMinAgo: number): ObservedSvid => ({
      key: `w${n}`, spiffeId: `spiffe://${TD}/w${n}`, trustDomain: TD, serial: `${n}`, notAfterMs: clock.nowMs() + 30 * MIN,
      notBeforeMs: clock.nowMs() - bornMinAgo * MIN, ...(aki ? { authorityKeyId: aki } : {}),
    });
    // aa: 3 SVIDs, bb: 2, cc, dd and no AKI: 1 each.
    ex.state.observe('agent-a', { svids: [svid(1, 'aa', 1), svid(2, 'aa', 1), svid(3, 'aa', 1), svid(4, 'bb', 2), svid(5, 'bb', 2), svid(6, 'cc', 9), svid(7, 'dd', 4), svid(8, undefined, 5)] });
    const r = await ex.render();
    const series = parseSamples(r.body);
    const ids = series.filter((x) => x.name === METRIC.svidsByAuthority).map((x) => x.labels.authority_key_id);
    expect(ids).toEqual(['aa', 'bb', 'other']);
    expect(valueOf(series, METRIC.svidsByAuthority, { authority_key_id: 'other' })).toBe(3); // cc, dd, none
    expect(valueOf(series, METRIC.oldestSvidAge, { authority_key_id: 'other' })).toBe(9 * 60);
    expect(r.dropped.authority_cap).toBe(3);
    expect(valueOf(parseSamples((await ex.render()).body), METRIC.seriesDropped, { reason: 'authority_cap' })).toBe(3); // the counter a scrape serves holds the scrapes before it

    // Under the cap a leaf without an authorityKeyIdentifier has its own series.
    const { ex: ex2 } = setup(two);
    ex2.state.observe('agent-a', { svids: [svid(8, undefined, 5)] });
    expect(valueOf(parseSamples((await ex2.render()).body), METRIC.svidsByAuthority, { authority_key_id: 'unknown' })).toBe(1);
  });

  it('a files source reports the authority of the SVIDs on disk', async () => {
    const dir = tempDir('exporter-authority');
    cleanups.push(() => removeDir(dir));
    mkdirSync(path.join(dir, 'web'));
    const now = new Date();
    for (const [i, ca] of [[0, 0], [1, 1], [2, 1]] as const) writeFileSync(path.join(dir, 'web', `svid-${i}.pem`), encodePem('CERTIFICATE', mint(ca, `w${i}`, 3600, now).raw));
    const clock = new FakeClock(now);
    const ex = createExporter(buildExporterConfig({ sources: [{ name: 'files', type: 'files', paths: [dir] }] }), { clock, processMetrics: false });
    ex.start();
    cleanups.push(() => ex.stop());
    const series = await waitFor('the files source', async () => {
      const s = parseSamples((await ex.render()).body);
      return valueOf(s, METRIC.svidsByAuthority) === 3 ? s : undefined;
    }, 10_000);
    expect(valueOf(series, METRIC.svidsByAuthority, { authority_key_id: skiHex(0) })).toBe(1);
    expect(valueOf(series, METRIC.svidsByAuthority, { authority_key_id: skiHex(1) })).toBe(2);
  });
});

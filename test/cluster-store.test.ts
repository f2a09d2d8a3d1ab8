/**
 * The cluster state store's contract (src/cluster/store.ts), run against both implementations: a real
 * etcd (Debian's etcd-server on loopback) and the local file store. Compare-and-set on revisions, commits
 * of several keys all or nothing, claims held by a process while it lives (and freed when it dies),
 * watches in order, and read-modify-write by processes racing each other losing nothing. etcd runs on TLS
 * with client certificates (as a cluster runs it): a client without one, or with another CA's, is refused.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EtcdStore } from '../src/cluster/etcd-store.js';
import { LocalStore } from '../src/cluster/local-store.js';
import { StoreLoop, update, type Event, type Store } from '../src/cluster/store.js';
import { etcdAvailable, startEtcd, type TestEtcd } from './helpers/etcd.js';
import { X509Certificate } from 'node:crypto';
import { etcdCaHome, issue, revoke } from '../src/cli/cert.js';
import { etcdCredentials, etcdTransport } from '../src/cli/etcd-access.js';
import { MAIN_JS } from '../src/cli/state.js';
import { followEtcdCrl, reportEtcdCert, revokeEtcdCert } from '../src/cli/etcd-pki.js';
import { keys, type PeerRecord } from '../src/cluster/records.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How a child process opens the same store: `local:FILE` or `etcd:URL#DIR` (DIR: its client credentials, test/helpers/etcd.ts). */
type Where = string;
const tlsOf = (dir: string) => ({ ca: fs.readFileSync(path.join(dir, 'ca.pem')), cert: fs.readFileSync(path.join(dir, 'cert.pem')), key: fs.readFileSync(path.join(dir, 'key.pem')) });
function open(where: Where): Store {
  if (!where.startsWith('etcd:')) return new LocalStore(where.slice(6));
  const [url, dir] = where.slice(5).split('#');
  return new EtcdStore([url], { tls: tlsOf(dir) });
}

/** A node process that runs `body` (JS, with `store` and `update` in scope) against the store and prints what it prints. */
function child(where: Where, body: string) {
  const storeJs = path.join(here, '..', 'src', 'cluster');
  const src = `
    const { EtcdStore } = await import(${JSON.stringify(path.join(storeJs, 'etcd-store.js'))});
    const { LocalStore } = await import(${JSON.stringify(path.join(storeJs, 'local-store.js'))});
    const { update } = await import(${JSON.stringify(path.join(storeJs, 'store.js'))});
    const fs = await import('node:fs');
    const where = ${JSON.stringify(where)};
    const [url, dir] = where.slice(5).split('#');
    const tls = () => ({ ca: fs.readFileSync(dir + '/ca.pem'), cert: fs.readFileSync(dir + '/cert.pem'), key: fs.readFileSync(dir + '/key.pem') });
    const store = where.startsWith('etcd:') ? new EtcdStore([url], { tls: tls() }) : new LocalStore(where.slice(6));
    ${body}
  `;
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // a plain process, not a test runner's child
  const p = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'inherit'], env });
  // Lines are queued as they come (one printed before anybody waits for it is kept).
  // A child that ends without its line fails the wait, rather than leaving it pending.
  const queued: string[] = [];
  const waiting: { ok: (l: string) => void; fail: (e: Error) => void }[] = [];
  let ended = false;
  createInterface({ input: p.stdout! }).on('line', (l) => (waiting.length ? waiting.shift()!.ok(l) : queued.push(l)));
  p.once('close', (code, signal) => {
    ended = true;
    for (const w of waiting.splice(0)) w.fail(new Error(`the child process ended (${signal ?? `exit ${code}`}) without its line`));
  });
  const line = () => (queued.length ? Promise.resolve(queued.shift()!) : ended ? Promise.reject(new Error('the child process ended')) : new Promise<string>((ok, fail) => waiting.push({ ok, fail })));
  return { p, line };
}

function contract(kind: string, setup: () => Promise<{ where: Where; done: () => Promise<void> }>, claimFreedWithinMs: number) {
  test(`${kind} store: compare-and-set, all-or-nothing commits, lists, watches`, async () => {
    const { where, done } = await setup();
    const s = open(where);
    try {
      assert.equal(await s.get('vol/a'), null);
      assert.ok(await s.commit([{ key: 'vol/a', value: '1', ifRev: 0 }]));
      assert.ok(!(await s.commit([{ key: 'vol/a', value: '2', ifRev: 0 }])), 'a second create of one key loses');
      const a = (await s.get('vol/a'))!;
      assert.equal(a.value, '1');
      assert.ok(await s.commit([{ key: 'vol/a', value: '2', ifRev: a.rev }]));
      assert.ok(!(await s.commit([{ key: 'vol/a', value: '3', ifRev: a.rev }])), 'a change from a stale revision loses');
      assert.equal((await s.get('vol/a'))!.value, '2');
      // Several keys: all or nothing.
      const a2 = (await s.get('vol/a'))!;
      assert.ok(
        !(await s.commit([
          { key: 'vol/b', value: 'b' },
          { key: 'vol/a', value: 'x', ifRev: a2.rev + 1000 },
        ])),
      );
      assert.equal(await s.get('vol/b'), null, 'nothing of a failed commit is applied');
      assert.ok(
        await s.commit([
          { key: 'vol/b', value: 'b', ifRev: 0 },
          { key: 'vol/a', value: 'y', ifRev: a2.rev },
          { key: 'other', value: 'o' },
        ]),
      );
      assert.deepEqual(
        (await s.list('vol/')).map((e) => [e.key, e.value]),
        [
          ['vol/a', 'y'],
          ['vol/b', 'b'],
        ],
      );
      // Watches see every change under their prefix, in order, deletes included.
      const seen: Event[] = [];
      const stop = await s.watch('vol/', (e) => seen.push(e));
      assert.ok(await s.commit([{ key: 'vol/c', value: 'c1' }]));
      await sleep(300);
      assert.ok(await s.commit([{ key: 'vol/c', value: 'c2' }]));
      await sleep(300);
      assert.ok(
        await s.commit([
          { key: 'vol/a', value: null },
          { key: 'elsewhere', value: 'e' },
        ]),
      );
      for (let i = 0; i < 50 && seen.length < 3; i++) await sleep(100);
      await stop();
      assert.deepEqual(
        seen.map((e) => [e.key, e.entry?.value ?? null]),
        [
          ['vol/c', 'c1'],
          ['vol/c', 'c2'],
          ['vol/a', null],
        ],
      );
      assert.equal(await s.get('vol/a'), null);
    } finally {
      await s.close();
      await done();
    }
  });

  test(`${kind} store: read-modify-write from two processes at once loses no update`, async () => {
    const { where, done } = await setup();
    const s = open(where);
    try {
      const body = `for (let i = 0; i < 25; i++) await update(store, 'counter', (c) => ({ n: (c?.n ?? 0) + 1 })); await store.close(); console.log('done');`;
      const a = child(where, body);
      const b = child(where, body);
      assert.equal(await a.line(), 'done');
      assert.equal(await b.line(), 'done');
      assert.deepEqual(JSON.parse((await s.get('counter'))!.value), { n: 50 });
    } finally {
      await s.close();
      await done();
    }
  });

  test(`${kind} store: a claim is one process's while it lives, and free once it died`, async () => {
    const { where, done } = await setup();
    const s = open(where);
    try {
      const holder = child(where, `const c = await store.claim('task/rebalance/v', 'node-a', 2); console.log(c ? 'held' : 'refused'); setInterval(() => {}, 1000);`);
      assert.equal(await holder.line(), 'held');
      assert.equal(await s.claim('task/rebalance/v', 'node-b', 2), null, 'held by another process');
      assert.equal((await s.get('task/rebalance/v'))!.value, 'node-a');
      holder.p.kill('SIGKILL');
      await once(holder.p, 'exit');
      const t0 = Date.now();
      let mine = null;
      while (!mine && Date.now() - t0 < claimFreedWithinMs) {
        mine = await s.claim('task/rebalance/v', 'node-b', 2);
        if (!mine) await sleep(100);
      }
      assert.ok(mine, `the dead holder's claim was freed within ${claimFreedWithinMs} ms`);
      assert.equal((await s.get('task/rebalance/v'))!.value, 'node-b');
      await mine.release();
      assert.equal(await s.get('task/rebalance/v'), null, 'released');
    } finally {
      await s.close();
      await done();
    }
  });
}

contract(
  'local',
  async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-store-'));
    return { where: `local:${path.join(dir, 'store.json')}`, done: async () => fs.rmSync(dir, { recursive: true, force: true }) };
  },
  2000,
);

test('how the CLI and the node daemon reach etcd: plaintext on loopback only (else --insecure-etcd, warned), https with a client certificate, issued where the etcd CA is', () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-etcd-access-'));
  const before = process.env.DHTFS_HOME;
  process.env.DHTFS_HOME = home;
  try {
    assert.equal(etcdTransport(['http://127.0.0.1:2379', 'http://localhost:2379'], false), 'plain');
    assert.throws(() => etcdTransport(['http://10.0.0.1:2379'], false), /etcd http:\/\/10\.0\.0\.1:2379 is plaintext on the network: .*--insecure-etcd/);
    // A name that only begins like a loopback address is another host's.
    assert.throws(() => etcdTransport(['http://127.example.com:2379'], false), /is plaintext on the network/);
    assert.equal(etcdTransport(['http://[::1]:2379', 'http://127.1.2.3:2379'], false), 'plain');
    const warned: string[] = [];
    assert.equal(
      etcdTransport(['http://10.0.0.1:2379'], true, (l) => warned.push(l)),
      'plain',
    );
    assert.match(warned.join('\n'), /^WARNING: etcd http:\/\/10\.0\.0\.1:2379 is reached in plaintext/);
    assert.throws(() => etcdTransport(['https://10.0.0.1:2379', 'http://10.0.0.2:2379'], false), /every endpoint https:\/\/, or none/);
    // On TLS, no credentials and no etcd CA here: what is missing, and how to get it.
    assert.throws(() => etcdCredentials(['https://10.0.0.1:2379'], {}), /etcd https:\/\/10\.0\.0\.1:2379 is on TLS and this host has no etcd client certificate .*dhtfs cert issue etcd-client NAME -o DIR/);
    // The etcd CA here (made by the first etcd-server certificate): this host's client certificate is issued when first needed, once.
    issue('etcd-server', 'm0', path.join(home, 'm0'), ['10.0.0.1'], false, etcdCaHome());
    const notes: string[] = [];
    const tls = etcdCredentials(['https://10.0.0.1:2379'], { note: (l) => notes.push(l) })!;
    const cert = new X509Certificate(tls.cert!);
    assert.ok(cert.verify(new X509Certificate(tls.ca).publicKey), 'signed by the etcd CA');
    assert.equal(tls.ca.toString(), fs.readFileSync(path.join(etcdCaHome(), 'ca.pem'), 'utf8'));
    assert.match(cert.subject, /OU=etcd-client/);
    assert.match(notes.join('\n'), /etcd client certificate .* issued into .*tls\/etcd-client/);
    assert.deepEqual(etcdCredentials(['https://10.0.0.1:2379'], { note: (l) => notes.push(l) })!.cert, tls.cert);
    assert.equal(notes.length, 1);
  } finally {
    if (before === undefined) delete process.env.DHTFS_HOME;
    else process.env.DHTFS_HOME = before;
    fs.rmSync(home, { recursive: true, force: true });
  }
});

const avail = etcdAvailable();
if (avail.ok) {
  // A fresh etcd for each test: the store's key prefix is fixed, and each test starts from no keys.
  contract(
    'etcd',
    async () => {
      const e: TestEtcd = await startEtcd();
      return { where: `etcd:${e.endpoint}#${e.tlsDir}`, done: () => e.stop() };
    },
    10_000,
  );
  test('etcd store: etcd away gives a clear error naming it, and it works again once back', async () => {
    const e = await startEtcd();
    const s = new EtcdStore([e.endpoint], { tls: e.tls });
    try {
      assert.ok(await s.commit([{ key: 'k', value: 'v' }]));
      await e.kill();
      await assert.rejects(s.get('k'), (err: Error) => {
        assert.match(err.message, new RegExp(`cluster state \\(etcd ${e.endpoint.replace(/[.]/g, '\\.')}\\)`));
        return true;
      });
      await e.start();
      let v = null;
      for (let i = 0; i < 100 && !v; i++) v = await s.get('k').catch(() => sleep(100).then(() => null));
      assert.equal(v?.value, 'v');
    } finally {
      await s.close();
      await e.stop();
    }
  });
  test("etcd on TLS refuses a client without a certificate, a plaintext one, one with another CA's certificate, and a revoked one; the CLI names the endpoint and the reason", async () => {
    const e = await startEtcd();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-etcd-refused-'));
    const where = `cluster state \\(etcd ${e.endpoint.replace(/[.]/g, '\\.')}\\)`;
    const stores: Store[] = [];
    try {
      const good = new EtcdStore([e.endpoint], { tls: e.tls });
      stores.push(good);
      assert.ok(await good.commit([{ key: 'volumes/v', value: 'the secret' }]));
      // It trusts etcd's CA but shows no certificate of its own: etcd ends the handshake.
      const bare = new EtcdStore([e.endpoint], { tls: { ca: e.tls.ca } });
      stores.push(bare);
      await assert.rejects(bare.get('volumes/v'), new RegExp(`${where}: etcd refused this client's TLS certificate`));
      // Plaintext to etcd's TLS port: nothing read either.
      const plain = new EtcdStore([e.endpoint.replace('https:', 'http:')]);
      stores.push(plain);
      await assert.rejects(plain.get('volumes/v'), /cluster state \(etcd http:.*\(etcd away, or on TLS: https:\/\/ with a client certificate\)/);
      // Another CA's client certificate, through the CLI (it trusts etcd's CA, as a thief of ca.pem would).
      const home = path.join(dir, 'home');
      const other = path.join(dir, 'other');
      issue('etcd-client', 'mallory', other, [], false, path.join(dir, 'other-ca'));
      fs.writeFileSync(path.join(other, 'ca.pem'), e.tls.ca);
      fs.mkdirSync(home);
      fs.writeFileSync(path.join(home, 'cluster.json'), JSON.stringify({ etcd: [e.endpoint], etcdTls: other }));
      const r = spawnSync(process.execPath, [MAIN_JS, 'volume', 'info'], { env: { ...process.env, DHTFS_HOME: home }, encoding: 'utf8' });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`^dhtfs: ${where}: etcd refused this client's TLS certificate \\(none, or one not signed by the CA etcd trusts`));
      assert.doesNotMatch(r.stdout + r.stderr, /the secret/);
      // A good certificate revoked (the CRL etcd reads at each new connection, --client-crl-file): read before, refused after.
      const gone = issue('etcd-client', 'gone', path.join(dir, 'gone'), [], false, e.caDir);
      const goneTls = { ca: fs.readFileSync(gone.ca), cert: fs.readFileSync(gone.cert), key: fs.readFileSync(gone.key) };
      const before = new EtcdStore([e.endpoint], { tls: goneTls });
      stores.push(before);
      assert.equal((await before.get('volumes/v'))?.value, 'the secret');
      revoke('gone', 'etcd-client', e.caDir);
      const after = new EtcdStore([e.endpoint], { tls: goneTls });
      stores.push(after);
      await assert.rejects(after.get('volumes/v'), new RegExp(`${where}: .*a revoked certificate\\?`));
      assert.equal((await good.get('volumes/v'))?.value, 'the secret', 'a good client reads on');
    } finally {
      for (const s of stores) await s.close();
      await e.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  test("peer detach revokes the detached host's etcd client certificate: published in the store, written to etcd's --client-crl-file by a node daemon's follower, refused at its next connection", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-etcd-detach-'));
    const crlFile = path.join(dir, 'etcd-client-crl.pem');
    const e = await startEtcd(undefined, { crlFile });
    const where = `cluster state \\(etcd ${e.endpoint.replace(/[.]/g, '\\.')}\\)`;
    const stores: Store[] = [];
    let stopFollow: (() => Promise<void>) | null = null;
    try {
      const good = new EtcdStore([e.endpoint], { tls: e.tls });
      stores.push(good);
      assert.ok(await good.commit([{ key: 'volumes/v', value: 'the secret' }]));
      // Three node daemons report the certificate they reach etcd with: n2 its own, n1 and n3 the test's (shared).
      issue('etcd-client', 'host2', path.join(dir, 'host2'), [], false, e.caDir);
      const h2Tls = tlsOf(path.join(dir, 'host2'));
      for (const [id, tls] of [
        ['n1', e.tls],
        ['n2', h2Tls],
        ['n3', e.tls],
      ] as const) {
        await good.commit([{ key: keys.peer(id), value: JSON.stringify({ id, address: '127.0.0.1', mgmtPort: 0 }) }]);
        await reportEtcdCert(good, id, tls);
      }
      const peer = async (id: string) => JSON.parse((await good.get(keys.peer(id)))!.value) as PeerRecord;
      assert.equal((await peer('n2')).etcdCert?.name, 'host2');
      // A certificate another host uses too is not revoked (it would lose etcd as well): said, and why.
      assert.match((await revokeEtcdCert(good, await peer('n3'), e.tls, e.caDir))!, /keeps its etcd client certificate test-client .*: n1, this CLI use it too/);
      // Where the etcd CA is not: said, nothing revoked.
      assert.match((await revokeEtcdCert(good, await peer('n2'), e.tls, path.join(dir, 'no-ca')))!, /the etcd CA is not on this host/);
      // n2's connection, open before the detach.
      const held = new EtcdStore([e.endpoint], { tls: h2Tls });
      stores.push(held);
      assert.equal((await held.get('volumes/v'))?.value, 'the secret');
      assert.equal(await revokeEtcdCert(good, await peer('n2'), e.tls, e.caDir), null);
      const published = (await good.get(keys.pkiEtcdCrl))!.value;
      assert.equal(published, fs.readFileSync(path.join(e.caDir, 'crl.pem'), 'utf8'), "the etcd CA's new CRL is in the store");
      assert.notEqual(fs.readFileSync(crlFile, 'utf8'), published, "etcd's file is not the CA's: nothing copied it there yet");
      // A node daemon on the etcd member's host (node serve --etcd-crl-file) writes it where etcd reads it.
      stopFollow = await followEtcdCrl(good, crlFile, e.tls.ca, () => {});
      assert.equal(fs.readFileSync(crlFile, 'utf8'), published);
      const after = new EtcdStore([e.endpoint], { tls: h2Tls });
      stores.push(after);
      await assert.rejects(after.get('volumes/v'), new RegExp(`${where}: .*a revoked certificate\\?`));
      // etcd checks the CRL at TLS handshakes only: the connection n2 had open still reads (docs/SECURITY.md "etcd").
      assert.equal((await held.get('volumes/v'))?.value, 'the secret');
      assert.equal((await good.get('volumes/v'))?.value, 'the secret', 'the other hosts read on');
    } finally {
      await stopFollow?.();
      for (const s of stores) await s.close();
      await e.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
} else test('etcd store', { skip: avail.reason }, () => {});

test('a StoreLoop stopped while its start() still sets up the watch starts nothing: the watch is undone, no pass runs, no timer is set', async () => {
  let release!: () => void;
  let unwatched = 0;
  const timers: number[] = [];
  const store = {
    watch: async () => {
      await new Promise<void>((r) => (release = r));
      return async () => void unwatched++;
    },
  } as unknown as Store;
  const clock = { now: () => 0, wallNow: () => 0, sleep: async () => {}, setTimer: (ms: number) => (timers.push(ms), { cancel() {} }) };
  let passes = 0;
  const loop = new StoreLoop(
    store,
    'x/',
    async () => void passes++,
    clock,
    1000,
    () => {},
  );
  const started = loop.start();
  const stopped = loop.stop();
  release();
  await Promise.all([started, stopped]);
  assert.deepEqual({ unwatched, passes, timers }, { unwatched: 1, passes: 0, timers: [] });
});

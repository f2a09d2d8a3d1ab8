/**
 * TLS on the brick path (issue 19 item 5), on real brick processes: a client with a certificate of the
 * volume's CA reads and writes; a client without a certificate, one with a certificate of another CA,
 * one whose certificate was revoked (the brick reloads the CRL without a restart) and a plaintext client
 * are refused, each with one short log line at the brick naming why, and so is a good certificate not in
 * the brick's auth.ssl-allow (unless its session proves the admin secret); a client with the CA's CRL
 * refuses a revoked brick, and a client by host keeps the CRL each node daemon sends with a spec and
 * refuses a revoked node once a node told it; a recording proxy between client
 * and bricks finds a file's content and name on the wire without TLS and not with it. Then the same
 * through the CLI: volume create --tls, cert issue client, cert revoke.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Volume } from '../src/api/volume.js';
import { RpcClient } from '../src/wire/rpc.js';
import { tcpNetwork, wrap } from '../src/wire/tcp.js';
import { checkCrl, crlInfo, keepNewerCrl, tlsFilesIn, tlsNetwork, type TlsFiles } from '../src/wire/tls.js';
import type { Network } from '../src/wire/transport.js';
import { issue, revoke } from '../src/cli/cert.js';
import { MAIN_JS } from '../src/cli/state.js';
import type { VolumeSpec } from '../src/dht/spec.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { sleep } from './helpers/raw.js';
import { startMount, unmountCluster } from './helpers/mount.js';
import { LocalStore } from '../src/cluster/local-store.js';
import { MgmtServer } from '../src/cluster/mgmt-server.js';
import { keys, type VolumeRecord } from '../src/cluster/records.js';
import { realClock } from '../src/common/real-env.js';
import { specByHost } from '../src/api/network.js';

/** Runs `f` with DHTFS_HOME set to `home` (the CA functions read it). */
function inHome<T>(home: string, f: () => T): T {
  const old = process.env.DHTFS_HOME;
  process.env.DHTFS_HOME = home;
  try {
    return f();
  } finally {
    if (old === undefined) delete process.env.DHTFS_HOME;
    else process.env.DHTFS_HOME = old;
  }
}

/** A client transport over TLS that presents no certificate. */
function noCertNetwork(ca: string): Network {
  return {
    connect: (host, port) =>
      new Promise((resolve, reject) => {
        const s = tls.connect({ host, port, ca: fs.readFileSync(ca), minVersion: 'TLSv1.3' });
        s.once('error', reject);
        s.once('secureConnect', () => resolve(wrap(s)));
      }),
    listen: () => Promise.reject(new Error('no')),
  };
}

/** Waits until brick i's log has a line matching `re`; returns the line. */
async function logLine(c: Cluster, i: number, re: RegExp): Promise<string> {
  for (let t = 0; t < 200; t++) {
    const line = c.logs[i].split('\n').find((l) => re.test(l));
    if (line) return line;
    await sleep(50);
  }
  assert.fail(`no log line ${re} at brick ${i}; its log: ${c.logs[i].slice(-2000)}`);
}

/** A TCP proxy to `port` that records every byte both ways. */
async function recordingProxy(port: number): Promise<{ port: number; bytes: () => Buffer; close: () => Promise<void> }> {
  const chunks: Buffer[] = [];
  const socks = new Set<net.Socket>();
  const srv = net.createServer((a) => {
    const b = net.connect(port, '127.0.0.1');
    socks.add(a).add(b);
    a.on('data', (d) => chunks.push(Buffer.from(d)));
    b.on('data', (d) => chunks.push(Buffer.from(d)));
    a.pipe(b).pipe(a);
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
    a.on('close', () => b.destroy());
    b.on('close', () => a.destroy());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    bytes: () => Buffer.concat(chunks),
    close: () => {
      for (const s of socks) s.destroy();
      return new Promise((r) => srv.close(() => r()));
    },
  };
}

/** Writes a file with a known content and name through proxies to every brick; the bytes they saw. */
async function sniff(c: Cluster, opts: { tlsDir?: string }): Promise<{ wire: Buffer; marker: string; name: string }> {
  const proxies = await Promise.all(c.spec.bricks.map((b) => recordingProxy(b.port)));
  try {
    const spec: VolumeSpec = { ...c.spec, bricks: c.spec.bricks.map((b, i) => ({ ...b, port: proxies[i].port })) };
    const marker = `secret-content-${randomBytes(8).toString('hex')}`;
    const name = `/name-${randomBytes(6).toString('hex')}.txt`;
    const vol = await Volume.connect(spec, { localFiles: null, ...(opts.tlsDir ? { tlsDir: opts.tlsDir } : {}) });
    await vol.writeFile(name, marker.repeat(100));
    assert.equal(await vol.readFile(name, 'utf8'), marker.repeat(100));
    await vol.close();
    return { wire: Buffer.concat(proxies.map((p) => p.bytes())), marker, name: name.slice(1) };
  } finally {
    await Promise.all(proxies.map((p) => p.close()));
  }
}

test('TLS bricks: a good client works; no certificate, another CA, a revoked certificate and plaintext are refused with a log line; the wire shows no content', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-tls-'));
  const home = path.join(base, 'home');
  const otherHome = path.join(base, 'other');
  const brickDir = (i: number) => path.join(base, `tls-b${i}`);
  const certs = inHome(home, () => {
    for (let i = 0; i < 2; i++) issue('brick', `tv-client-${i}`, brickDir(i), ['127.0.0.1'], true);
    return { alice: issue('client', 'alice', path.join(base, 'alice')), mallory: issue('client', 'mallory', path.join(base, 'mallory')), bob: issue('client', 'bob', path.join(base, 'bob')) };
  });
  const eve = inHome(otherHome, () => issue('client', 'eve', path.join(base, 'eve')));
  // A plaintext client waits for the brick's challenge, which a TLS brick never sends: cut at this.
  process.env.DHTFS_LIMIT_HANDSHAKE_MS = '1500';
  const c = await startCluster(2, { options: { tls: true }, tlsDir: brickDir });
  delete process.env.DHTFS_LIMIT_HANDSHAKE_MS;
  try {
    const b = c.spec.bricks[0];
    const auth = { volumeId: c.spec.volumeId, secret: c.spec.secret };
    const spec: VolumeSpec = { ...c.spec, tls: { ca: certs.alice.ca, cert: certs.alice.cert, key: certs.alice.key } };

    // A good client: through the spec's tls files, and through tlsDir.
    const vol = await Volume.connect(spec, { localFiles: null });
    for (let i = 0; i < 20; i++) await vol.writeFile(`/f${i}`, `content ${i}`);
    const vol2 = await Volume.connect(c.spec, { localFiles: null, tlsDir: path.join(base, 'alice') });
    for (let i = 0; i < 20; i++) assert.equal(await vol2.readFile(`/f${i}`, 'utf8'), `content ${i}`);
    await vol2.close();
    // The FUSE mount of a spec file whose tls names the client's files.
    const specFile = path.join(base, 'spec.json');
    fs.writeFileSync(specFile, JSON.stringify(spec), { mode: 0o600 });
    const mnt = path.join(base, 'mnt');
    fs.mkdirSync(mnt);
    const daemon = await startMount(specFile, mnt);
    try {
      fs.writeFileSync(path.join(mnt, 'via-mount'), 'mounted over tls');
      assert.equal(fs.readFileSync(path.join(mnt, 'f7'), 'utf8'), 'content 7');
    } finally {
      await unmountCluster(undefined, mnt, daemon);
    }
    assert.equal(await vol.readFile('/via-mount', 'utf8'), 'mounted over tls');
    // A spec of a TLS volume without client files is refused in the client, before any connection.
    await assert.rejects(Volume.connect(c.spec, { localFiles: null }), { code: 'EACCES', message: /TLS clients only/ });

    // No certificate.
    await assert.rejects(RpcClient.connect(noCertNetwork(certs.alice.ca), b.host, b.port, auth));
    const noCert = await logLine(c, 0, /no client certificate.*TLS client refused/);

    // A certificate of another CA (it trusts the brick's CA, so the brick is the one to refuse).
    const eveFiles: TlsFiles = { ca: certs.alice.ca, cert: eve.cert, key: eve.key };
    await assert.rejects(RpcClient.connect(tlsNetwork({ files: eveFiles }), b.host, b.port, auth));
    const otherCa = await logLine(c, 0, /not signed by this volume's CA.*TLS client refused/);
    // And a client that trusts only another CA refuses the brick itself.
    await assert.rejects(RpcClient.connect(tlsNetwork({ files: tlsFilesIn(path.join(base, 'eve')) }), b.host, b.port, auth), /TLS connect/);

    // Revoked: works before, refused after `revoke` (the brick reloads the CRL, no restart).
    const m = await RpcClient.connect(tlsNetwork({ files: certs.mallory }), b.host, b.port, auth);
    m.close();
    inHome(home, () => revoke('mallory'));
    await assert.rejects(RpcClient.connect(tlsNetwork({ files: certs.mallory }), b.host, b.port, auth));
    const revoked = await logLine(c, 0, /revoked.*TLS client refused/);
    // alice is still fine, on a new connection too.
    const a = await RpcClient.connect(tlsNetwork({ files: certs.alice }), b.host, b.port, auth);
    a.close();

    // auth.ssl-allow on the brick (from its topology, as a cluster's volume set tells it): only alice's
    // certificate is served; bob's, good and proving the secret, is refused with a line naming it; a
    // session that proves the admin secret (the cluster's own tools) is served whatever its certificate.
    const admin = { ...auth, adminSecret: c.spec.adminSecret };
    const t = await RpcClient.connect(tlsNetwork({ files: certs.alice }), b.host, b.port, admin);
    await t.call('setTopology', { topology: { version: 1, bricks: c.spec.bricks.map(({ name, host, port }) => ({ name, host, port })), decommissioned: [], sslAllow: ['alice'] } });
    t.close();
    await assert.rejects(RpcClient.connect(tlsNetwork({ files: certs.bob }), b.host, b.port, { ...auth, clientName: 'bob-laptop' }), /authentication failed/);
    const notAllowed = await logLine(c, 0, /certificate bob is not in the volume's auth\.ssl-allow \(alice\)/);
    (await RpcClient.connect(tlsNetwork({ files: certs.alice }), b.host, b.port, auth)).close();
    (await RpcClient.connect(tlsNetwork({ files: certs.bob }), b.host, b.port, admin)).close();
    // The other brick was not told: it serves bob.
    (await RpcClient.connect(tlsNetwork({ files: certs.bob }), c.spec.bricks[1].host, c.spec.bricks[1].port, auth)).close();

    // A client given the CA's CRL refuses a brick whose certificate it revokes (a detached node's bricks).
    const crl = path.join(home, 'tls', 'crl.pem');
    inHome(home, () => revoke('tv-client-1', 'brick'));
    const withCrl = tlsNetwork({ files: { ...certs.alice, crl } });
    await assert.rejects(RpcClient.connect(withCrl, c.spec.bricks[1].host, c.spec.bricks[1].port, auth), /TLS connect .*: the server's certificate is revoked \(in the CA's CRL\)/);
    (await RpcClient.connect(withCrl, b.host, b.port, auth)).close();

    // A client by host gets the CRL with the spec and keeps the newest in its TLS folder: a node revoked
    // (peer detach) is refused from the next connection on, once any node told the client.
    const store = new LocalStore(path.join(base, 'store.json'));
    const nodeFiles = inHome(home, () => issue('node', 'n1', path.join(base, 'n1'), ['127.0.0.1'], true));
    const srv = new MgmtServer(store, tlsNetwork({ files: nodeFiles, caName: "the cluster's CA" }), realClock, () => {});
    const byHost = path.join(base, 'alice-by-host');
    fs.mkdirSync(byHost);
    for (const f of ['ca.pem', 'cert.pem', 'key.pem']) fs.copyFileSync(path.join(base, 'alice', f), path.join(byHost, f));
    try {
      const rec: VolumeRecord = { name: 'gv', volumeId: 'id-1', secret: 's', adminSecret: 'a', state: 'started', bricks: [{ name: 'gv-client-0', node: 'n1', host: '127.0.0.1', dir: '/b0', port: 1 }], decommissioned: [], version: 1 };
      const publish = () => store.commit([{ key: keys.pkiCrl, value: fs.readFileSync(crl, 'utf8') }]);
      await store.commit([{ key: keys.volume('gv'), value: JSON.stringify(rec) }]);
      await publish();
      const mport = await srv.listen('127.0.0.1', 0);
      const addr = `127.0.0.1:${mport}:/gv`;
      assert.equal((await specByHost(addr, realClock, { tlsDir: byHost })).name, 'gv');
      assert.equal(fs.readFileSync(path.join(byHost, 'crl.pem'), 'utf8'), fs.readFileSync(crl, 'utf8'), 'the CRL came with the spec');
      inHome(home, () => revoke('n1', 'node'));
      await publish();
      assert.equal((await specByHost(addr, realClock, { tlsDir: byHost })).name, 'gv', 'served once more: the client had the older CRL');
      assert.equal(fs.readFileSync(path.join(byHost, 'crl.pem'), 'utf8'), fs.readFileSync(crl, 'utf8'), 'the newer CRL replaced it');
      const said: string[] = [];
      await assert.rejects(specByHost(addr, realClock, { tlsDir: byHost, log: (_l, m) => said.push(m) }), /the server's certificate is revoked \(in the CA's CRL\)/);
      assert.match(said.join('\n'), /^TLS server refused 127\.0\.0\.1:\d+: the server's certificate is revoked \(in the CA's CRL\)/m, 'the client logs it');
    } finally {
      await srv.close();
      await store.close();
    }

    // Plaintext: the HMAC client over TCP gets nowhere.
    await assert.rejects(RpcClient.connect(tcpNetwork, b.host, b.port, auth));
    const plain = await logLine(c, 0, /plaintext.*TLS client refused/);

    for (const line of [noCert, otherCa, revoked, plain, notAllowed]) assert.ok(line.length < 400, `a short line: ${line}`);
    assert.equal(await vol.readFile('/f3', 'utf8'), 'content 3', 'the good client was not disturbed');
    await vol.close();

    // The wire through a recording proxy: neither the content nor the name.
    const s = await sniff(c, { tlsDir: path.join(base, 'alice') });
    assert.equal(s.wire.includes(s.marker), false, 'content not on the wire');
    assert.equal(s.wire.includes(s.name), false, 'name not on the wire');
    assert.ok(s.wire.length > 1000, 'the proxy saw the traffic');
  } finally {
    await c.stop();
  }
  // The control: the same sniffer on a volume without TLS sees both.
  const p = await startCluster(2);
  try {
    const s = await sniff(p, {});
    assert.ok(s.wire.includes(s.marker), 'plaintext content on the wire');
    assert.ok(s.wire.includes(s.name), 'plaintext name on the wire');
  } finally {
    await p.stop();
  }
  fs.rmSync(base, { recursive: true, force: true });
});

test('CLI: volume create --tls, cert issue client, a client with it, cert revoke refuses it', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-tlscli-'));
  const env = { ...process.env, DHTFS_HOME: path.join(base, 'home') };
  const cli = (...args: string[]) => execFileSync(process.execPath, [MAIN_JS, ...args], { env, encoding: 'utf8' });
  try {
    cli('volume', 'create', 'sv', '--tls', `127.0.0.1:${base}/b0`, `127.0.0.1:${base}/b1`);
    cli('volume', 'start', 'sv');
    const status = JSON.parse(cli('volume', 'status', 'sv', '--json'));
    assert.deepEqual(
      status.bricks.map((x: { online: boolean }) => x.online),
      [true, true],
      'the CLI reaches its TLS bricks',
    );
    const key = fs.statSync(path.join(base, 'home', 'tls', 'private', 'ca-key.pem'));
    assert.equal(key.mode & 0o777, 0o600);
    cli('cert', 'issue', 'client', 'bob', '-o', `${base}/bob`);
    assert.equal(fs.statSync(`${base}/bob/key.pem`).mode & 0o777, 0o600);
    cli('volume', 'spec', 'sv', '-o', `${base}/spec.json`);
    const spec = JSON.parse(fs.readFileSync(`${base}/spec.json`, 'utf8')) as VolumeSpec;
    assert.equal(spec.options?.tls, true);
    const vol = await Volume.connect(spec, { localFiles: null, tlsDir: `${base}/bob` });
    await vol.writeFile('/hello', 'over tls');
    assert.equal(await vol.readFile('/hello', 'utf8'), 'over tls');
    await vol.close();
    // transport.tls on for a volume made without it: its bricks serve TLS once started.
    cli('volume', 'create', 'pv', `127.0.0.1:${base}/p0`);
    assert.match(cli('volume', 'set', 'pv', 'transport.tls', 'on'), /transport.tls = on: success/);
    cli('volume', 'start', 'pv');
    assert.match(fs.readFileSync(path.join(base, 'home', 'volumes', 'pv', 'logs', 'pv-client-0.log'), 'utf8'), /"tls":true.*brick serving/);
    cli('volume', 'spec', 'pv', '-o', `${base}/pv.json`);
    const pv = await Volume.connect(JSON.parse(fs.readFileSync(`${base}/pv.json`, 'utf8')) as VolumeSpec, { localFiles: null, tlsDir: `${base}/bob` });
    await pv.writeFile('/x', 'y');
    // A brick added to a TLS volume gets its certificate and serves TLS; the topology reaches the client.
    cli('volume', 'add-brick', 'pv', `127.0.0.1:${base}/p1`);
    assert.match(fs.readFileSync(path.join(base, 'home', 'volumes', 'pv', 'logs', 'pv-client-1.log'), 'utf8'), /"tls":true.*brick serving/);
    const st = JSON.parse(cli('volume', 'status', 'pv', '--json'));
    assert.deepEqual(
      st.bricks.map((x: { online: boolean }) => x.online),
      [true, true],
      'the CLI reaches the added brick over TLS',
    );
    // A rebalance (its own process, a TLS client with the CLI's certificate) gives it hash ranges.
    cli('volume', 'rebalance', 'pv', 'start');
    let state = '';
    for (let i = 0; i < 300 && state !== 'completed'; i++) {
      state = (JSON.parse(cli('volume', 'rebalance', 'pv', 'status', '--json')) ?? {}).state ?? '';
      if (state === 'failed') assert.fail(cli('volume', 'rebalance', 'pv', 'status'));
      if (state !== 'completed') await sleep(100);
    }
    assert.equal(state, 'completed');
    for (let i = 0; i < 30; i++) await pv.writeFile(`/n${i}`, `n${i}`);
    for (let i = 0; i < 30; i++) assert.equal(await pv.readFile(`/n${i}`, 'utf8'), `n${i}`);
    assert.ok(
      fs.readdirSync(`${base}/p1`).some((n) => n.startsWith('n')),
      'new files reach the added brick',
    );
    await pv.close();
    cli('volume', 'stop', 'pv');
    cli('cert', 'revoke', 'bob');
    await assert.rejects(Volume.connect(spec, { localFiles: null, tlsDir: `${base}/bob` }));
    const log = fs.readFileSync(path.join(base, 'home', 'volumes', 'sv', 'logs', 'sv-client-0.log'), 'utf8') + fs.readFileSync(path.join(base, 'home', 'volumes', 'sv', 'logs', 'sv-client-1.log'), 'utf8');
    assert.match(log, /revoked.*TLS client refused/);
  } finally {
    for (const v of ['sv', 'pv']) {
      try {
        cli('volume', 'stop', v);
      } catch {
        /* not made, or stopped */
      }
    }
    fs.rmSync(base, { recursive: true, force: true });
  }
});

/** A CA of its own in a new folder, with a node certificate for a server on 127.0.0.1 and a client's. */
function caWithServerAndClient(name: string): { base: string; ca: string; srv: TlsFiles; cli: TlsFiles } {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `dhtfs-${name}-`));
  const ca = path.join(base, 'ca');
  const srv = issue('node', 'srv', path.join(base, 'srv'), ['127.0.0.1'], false, ca);
  const cli = issue('client', 'cli', path.join(base, 'cli'), [], false, ca);
  return { base, ca, srv, cli };
}

test("a CRL is used only with the CA's signature: one of another key with the CA's name is refused and logged (client, server, kept copy), the CA's own used", async () => {
  const { base, ca, srv, cli } = caWithServerAndClient('crlsig');
  // The forger: a copy of the CA's folder whose certificate has the CA's subject but another key, which
  // then revokes everything the CA issued (a CRL that would refuse the server and the client).
  const forged = path.join(base, 'forged');
  fs.cpSync(ca, forged, { recursive: true });
  fs.writeFileSync(path.join(forged, 'ca.cnf'), fs.readFileSync(path.join(ca, 'ca.cnf'), 'utf8').replace(`dir = ${ca}`, `dir = ${forged}`));
  const key = path.join(forged, 'private', 'ca-key.pem');
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  execFileSync('openssl', ['x509', '-in', path.join(ca, 'ca.pem'), '-signkey', key, '-out', path.join(forged, 'ca.pem')]);
  revoke('srv', 'node', forged);
  revoke('cli', 'client', forged);
  const bad = fs.readFileSync(path.join(forged, 'crl.pem'), 'utf8');
  const caPem = fs.readFileSync(path.join(ca, 'ca.pem'));
  assert.equal(crlInfo(bad)!.issuer.equals(crlInfo(fs.readFileSync(path.join(ca, 'crl.pem'), 'utf8'))!.issuer), true, 'the forged CRL names the CA as its issuer');
  assert.match((checkCrl(bad, caPem) as { reason: string }).reason, /its signature is not the CA's/);
  assert.equal(checkCrl(fs.readFileSync(path.join(ca, 'crl.pem')), caPem).ok, true);
  // Kept copies (a client by host, the CLI, a node daemon): the forged one is not written.
  const kept = path.join(base, 'kept-crl.pem');
  fs.copyFileSync(path.join(ca, 'crl.pem'), kept);
  const before = fs.readFileSync(kept, 'utf8');
  assert.match(keepNewerCrl(kept, bad, caPem).refused ?? '', /its signature is not the CA's/);
  assert.equal(fs.readFileSync(kept, 'utf8'), before);
  // Server and client each given the forged CRL: both refuse it, say so, and the session goes through.
  const srvLog: string[] = [];
  const cliLog: string[] = [];
  const srvCrl = path.join(base, 'srv-crl.pem');
  const cliCrl = path.join(base, 'cli-crl.pem');
  fs.writeFileSync(srvCrl, bad);
  fs.writeFileSync(cliCrl, bad);
  const server = tlsNetwork({ files: { ...srv, crl: srvCrl }, log: (m) => srvLog.push(m) });
  const l = await server.listen('127.0.0.1', 0, (c) => c.close());
  try {
    const client = tlsNetwork({ files: { ...cli, crl: cliCrl }, log: (m) => cliLog.push(m) });
    (await client.connect('127.0.0.1', l.port)).close();
    assert.match(srvLog.join('\n'), /TLS: the CRL is refused: its signature is not the CA's.*none is checked/);
    assert.match(cliLog.join('\n'), /TLS: the CRL is refused: its signature is not the CA's.*none is checked/);
    // The CA's own CRL, revoking the server: the client uses it (and refuses the server).
    revoke('srv', 'node', ca);
    fs.copyFileSync(path.join(ca, 'crl.pem'), cliCrl);
    await assert.rejects(client.connect('127.0.0.1', l.port), /the server's certificate is revoked/);
    // A forged one over it: the verified one stays in use.
    fs.writeFileSync(cliCrl, bad + '\n');
    await assert.rejects(client.connect('127.0.0.1', l.port), /the server's certificate is revoked/);
    assert.match(cliLog.join('\n'), /the one verified before stays/);
  } finally {
    await l.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a CRL file is used as the one CRL that was verified: a block before it that OpenSSL skips cannot make it load an older CRL of the CA', async () => {
  const { base, ca, srv, cli } = caWithServerAndClient('crlone');
  const older = fs.readFileSync(path.join(ca, 'crl.pem'), 'utf8');
  revoke('srv', 'node', ca);
  const newer = fs.readFileSync(path.join(ca, 'crl.pem'), 'utf8');
  // The newer CRL behind text on its BEGIN line (OpenSSL's PEM reader skips such a line and its block), then the
  // older one: checkCrl read the newer, OpenSSL would load the older, which does not revoke the server.
  const crafted = `x${newer}\n${older}`;
  const caPem = fs.readFileSync(path.join(ca, 'ca.pem'));
  assert.equal(checkCrl(crafted, caPem).ok, true);
  const cliCrl = path.join(base, 'cli-crl.pem');
  fs.writeFileSync(cliCrl, crafted);
  const server = tlsNetwork({ files: srv });
  const l = await server.listen('127.0.0.1', 0, (c) => c.close());
  try {
    const client = tlsNetwork({ files: { ...cli, crl: cliCrl } });
    await assert.rejects(client.connect('127.0.0.1', l.port), /the server's certificate is revoked/);
    // A kept copy holds the one CRL verified, nothing else.
    const kept = path.join(base, 'kept-crl.pem');
    fs.writeFileSync(kept, older);
    assert.equal(keepNewerCrl(kept, crafted, caPem).kept, true);
    assert.equal((fs.readFileSync(kept, 'utf8').match(/BEGIN X509 CRL/g) ?? []).length, 1);
    assert.equal(crlInfo(fs.readFileSync(kept, 'utf8'))!.madeAt, crlInfo(newer)!.madeAt);
  } finally {
    await l.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

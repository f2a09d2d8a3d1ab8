/**
 * The admin credential and mutual authentication (issue 17, item 3), on real brick processes: an
 * ordinary client cannot change the volume's topology or commit hash, a brick that does not know the
 * volume's secret is refused by the client, and the spec handed to clients holds no admin secret.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Volume } from '../src/api/volume.js';
import { RpcClient } from '../src/wire/rpc.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import { FrameDecoder, encodeFrame, PROTOCOL_VERSION, type Message } from '../src/wire/frame.js';
import { MAIN_JS } from '../src/cli/state.js';
import type { VolumeSpec } from '../src/dht/spec.js';
import { startCluster } from './helpers/cluster.js';
import { sleep } from './helpers/raw.js';

test('an ordinary client may not change the topology or the commit hash; the admin may', async () => {
  const c = await startCluster(2);
  try {
    const { adminSecret, ...clientSpec } = c.spec;
    assert.ok(adminSecret, 'the test cluster has an admin secret');
    await c.pushTopology();
    const b = c.spec.bricks[0];
    const user = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, clientName: 'mallory' });
    const before = (await user.call('getTopology', {})) as { topology: { version: number } };
    const relay = { version: before.topology.version + 1, bricks: [{ name: b.name, host: '10.9.9.9', port: 1 }, ...c.spec.bricks.slice(1)], decommissioned: [] };
    await assert.rejects(user.call('setTopology', { topology: relay }), { code: 'EPERM' });
    assert.deepEqual(await user.call('getTopology', {}), before, 'the topology is unchanged');
    // A commit hash may be given once (a new volume's first client, here an ordinary one, does), not changed.
    const vol = await Volume.connect(clientSpec as VolumeSpec);
    const root = await user.call('rootInfo', {});
    assert.equal(typeof root.commitHash, 'number');
    await user.call('setCommitHash', { value: root.commitHash! });
    await assert.rejects(user.call('setCommitHash', { value: (root.commitHash! ^ 2) >>> 0 }), { code: 'EPERM' });
    // A client that claims the admin role with a wrong admin secret is not let in at all.
    await assert.rejects(RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, adminSecret: 'guess' }), { code: 'EACCES' });
    // The library with the client spec works as before.
    await vol.writeFile('/f', 'x');
    assert.equal(await vol.readFile('/f', 'utf8'), 'x');
    await vol.close();
    // The admin's change goes through.
    const admin = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, adminSecret, brickName: b.name });
    const next = { ...before.topology, version: before.topology.version + 1 };
    await admin.call('setTopology', { topology: next });
    assert.equal(((await user.call('getTopology', {})).topology as { version: number }).version, next.version);
    user.close();
    admin.close();
    await sleep(100);
    const lines = c.logs[0].split('\n').filter((l) => l.includes('setTopology refused'));
    assert.equal(lines.length, 1, 'the refusal is logged once');
    assert.match(lines[0], /mallory/, 'naming the client');
    assert.ok(lines[0].length < 600);
  } finally {
    await c.stop();
  }
});

/** A fake brick: it speaks the protocol but does not know the secret; it records what clients send it. */
async function fakeBrick(): Promise<{ port: number; ops: string[]; close(): void }> {
  const ops: string[] = [];
  const socks: net.Socket[] = [];
  const srv = net.createServer((s) => {
    socks.push(s);
    s.on('error', () => {});
    const dec = new FrameDecoder();
    s.write(Buffer.concat(encodeFrame([2, 'challenge', { proto: PROTOCOL_VERSION, nonce: randomBytes(32), brick: 'tv-client-0' }])));
    s.on('data', (d) => {
      for (const m of dec.push(d) as Message[]) {
        if (m[0] !== 0) continue;
        ops.push(m[2]);
        // Whatever it is asked, it says yes (a hello gets a made-up proof).
        s.write(Buffer.concat(encodeFrame([1, m[1], null, m[2] === 'hello' ? { ok: true, admin: false, brick: 'tv-client-0', proof: randomBytes(32) } : {}])));
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    ops,
    close: () => {
      for (const s of socks) s.destroy();
      srv.close();
    },
  };
}

test('a client refuses a brick that cannot prove it knows the volume secret', async () => {
  const fake = await fakeBrick();
  try {
    const spec: VolumeSpec = { name: 'tv', volumeId: '6b1f7a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b', secret: 'the-real-secret', bricks: [{ name: 'tv-client-0', host: '127.0.0.1', port: fake.port }] };
    await assert.rejects(RpcClient.connect(tcpNetwork, '127.0.0.1', fake.port, { volumeId: spec.volumeId, secret: spec.secret, brickName: 'tv-client-0' }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'EACCES');
      assert.match(e.message, /did not prove it knows the volume's secret/);
      return true;
    });
    await assert.rejects(Volume.connect(spec), (e: Error & { code?: string }) => e.code === 'EACCES' || e.code === 'ENOTCONN');
    assert.deepEqual([...new Set(fake.ops)], ['hello'], 'nothing but hello was sent to the fake brick');
  } finally {
    fake.close();
  }
});

test('an ordinary client connects to bricks whose commit hashes differ (it may not set them)', async () => {
  const c = await startCluster(2);
  try {
    const { adminSecret, ...clientSpec } = c.spec;
    const v = await Volume.connect(c.spec); // the first client gives every brick the volume's commit hash
    await v.close();
    const b = c.spec.bricks[1];
    const admin = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, adminSecret });
    const { commitHash } = await admin.call('rootInfo', {});
    await admin.call('setCommitHash', { value: (commitHash! ^ 4) >>> 0 }); // as a rebalance cut short leaves it
    admin.close();
    const vol = await Volume.connect(clientSpec as VolumeSpec);
    await vol.writeFile('/x', 'y');
    assert.equal(await vol.readFile('/x', 'utf8'), 'y');
    await vol.close();
  } finally {
    await c.stop();
  }
});

test('a real brick proves itself under its own name only', async () => {
  const c = await startCluster(1);
  try {
    const b = c.spec.bricks[0];
    await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, brickName: b.name }).then((r) => r.close());
    // The spec naming it as another brick (a topology pointing brick 1's name at brick 0's address): refused.
    await assert.rejects(RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, brickName: 'tv-client-1' }), { code: 'EACCES' });
  } finally {
    await c.stop();
  }
});

test('the client spec printed by the CLI holds no admin secret, the stored volume does', () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-auth-'));
  try {
    const env = { ...process.env, DHTFS_HOME: home };
    execFileSync(process.execPath, [MAIN_JS, 'volume', 'create', 'av', `127.0.0.1:1:${path.join(home, 'b0')}`], { env });
    const stored = JSON.parse(fs.readFileSync(path.join(home, 'volumes/av/spec.json'), 'utf8'));
    assert.equal(typeof stored.adminSecret, 'string');
    assert.ok(stored.adminSecret.length >= 24);
    const printed = execFileSync(process.execPath, [MAIN_JS, 'volume', 'spec', 'av'], { env, encoding: 'utf8' });
    assert.ok(!printed.includes(stored.adminSecret), 'volume spec leaves the admin secret out');
    assert.equal(JSON.parse(printed).adminSecret, undefined);
    assert.equal(JSON.parse(printed).secret, stored.secret);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('a topology change is compare-and-set on its version: one made from a stale view is refused', async () => {
  const c = await startCluster(1);
  try {
    const b = c.spec.bricks[0];
    const admin = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, adminSecret: c.spec.adminSecret, brickName: b.name });
    try {
      const base = ((await admin.call('getTopology', {})) as { topology: { version?: number } | null }).topology?.version ?? 0;
      const one = { version: base + 1, bricks: [{ name: b.name, host: b.host, port: b.port }], decommissioned: [] };
      const other = {
        version: base + 1,
        bricks: [
          { name: b.name, host: b.host, port: b.port },
          { name: 'stale-view', host: '127.0.0.1', port: 9 },
        ],
        decommissioned: [],
      };
      await admin.call('setTopology', { topology: one });
      // A second host's CLI that started from the version before makes the same version with other bricks.
      await assert.rejects(admin.call('setTopology', { topology: other }), { code: 'ESTALE' });
      await admin.call('setTopology', { topology: one }); // the same change again (a retried push) is taken
      await assert.rejects(admin.call('setTopology', { topology: { ...one, version: base } }), { code: 'ESTALE' });
      const now = ((await admin.call('getTopology', {})) as { topology: { bricks: unknown[] } }).topology;
      assert.deepEqual(now, one);
    } finally {
      admin.close();
    }
  } finally {
    await c.stop();
  }
});

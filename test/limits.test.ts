/**
 * Memory bounds of a brick against hostile clients (issue 17, item 5), on real brick processes: replies
 * a client never reads, oversized frames before authentication, connections that never authenticate,
 * and attacker text in the log.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Volume } from '../src/api/volume.js';
import { RpcClient } from '../src/wire/rpc.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { Packr } from 'msgpackr';
import { closesWithin, frame, packr, rawConnect, rssOf, sleep } from './helpers/raw.js';

const MiB = 1024 * 1024;

async function goodClient(c: Cluster): Promise<RpcClient> {
  const b = c.spec.bricks[0];
  return RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, clientName: 'good' });
}

async function timed<T>(p: Promise<T>): Promise<number> {
  const t = performance.now();
  await p;
  return performance.now() - t;
}

test('a client that never reads its replies cannot grow the brick without bound', async () => {
  const c = await startCluster(1);
  try {
    const vol = await Volume.connect(c.spec);
    await vol.writeFile('/big', Buffer.alloc(8 * MiB, 7));
    await vol.close();
    const pid = c.procs[0]!.pid!;
    const base = rssOf(pid);
    const r = await rawConnect(c.spec.bricks[0], { spec: c.spec, hello: true });
    const o = await r.call('open', { path: '/big', flags: 0 });
    const fd = (o[3] as { fd: number }).fd;
    // Stop reading, then ask for 2.4 GB of replies.
    r.sock.pause();
    const N = 300;
    for (let i = 0; i < N; i++) r.send([0, 10_000 + i, 'read', { fd, offset: 0, length: 8 * MiB }]);
    let peak = 0;
    for (let i = 0; i < 30; i++) {
      await sleep(100);
      peak = Math.max(peak, rssOf(pid));
    }
    const good = await goodClient(c);
    const pingMs = await timed(good.call('ping', {}));
    peak = Math.max(peak, rssOf(pid));
    console.log(`unread replies: brick RSS ${Math.round(base / MiB)} MiB before, peak ${Math.round(peak / MiB)} MiB with ${N} unread 8 MiB reads; a good client's ping ${pingMs.toFixed(1)} ms`);
    assert.ok(peak - base < 300 * MiB, `brick grew by ${Math.round((peak - base) / MiB)} MiB`);
    assert.ok(pingMs < 2000, `ping took ${pingMs} ms`);
    // The attacker goes away: its waiting reads are dropped, the brick is idle again.
    r.sock.destroy();
    await sleep(500);
    const t = performance.now();
    await good.call('ping', {});
    assert.ok(performance.now() - t < 500);
    // A reader that does read gets every reply, in full, although it asks for more than the bound at once.
    const r2 = await rawConnect(c.spec.bricks[0], { spec: c.spec, hello: true });
    const o2 = await r2.call('open', { path: '/big', flags: 0 });
    const fd2 = (o2[3] as { fd: number }).fd;
    const replies = await Promise.all(Array.from({ length: 20 }, () => r2.call('read', { fd: fd2, offset: 0, length: 8 * MiB })));
    for (const m of replies) assert.equal((m[3] as { data: Uint8Array }).data.length, 8 * MiB);
    r2.sock.destroy();
    good.close();
  } finally {
    await c.stop();
  }
});

test('many connections that never read their replies are held to the brick-wide budget, and a reader is still served', async () => {
  process.env.DHTFS_LIMIT_MAX_UNSENT_BYTES_TOTAL = String(128 * MiB);
  let c: Cluster;
  try {
    c = await startCluster(1);
  } finally {
    delete process.env.DHTFS_LIMIT_MAX_UNSENT_BYTES_TOTAL;
  }
  const attackers: Awaited<ReturnType<typeof rawConnect>>[] = [];
  try {
    const vol = await Volume.connect(c.spec);
    await vol.writeFile('/big', Buffer.alloc(8 * MiB, 7));
    await vol.close();
    const pid = c.procs[0]!.pid!;
    const base = rssOf(pid);
    for (let k = 0; k < 8; k++) {
      const r = await rawConnect(c.spec.bricks[0], { spec: c.spec, hello: true });
      const fd = ((await r.call('open', { path: '/big', flags: 0 }))[3] as { fd: number }).fd;
      r.sock.pause();
      for (let i = 0; i < 100; i++) r.send([0, 10_000 + i, 'read', { fd, offset: 0, length: 8 * MiB }]);
      attackers.push(r);
    }
    let peak = 0;
    for (let i = 0; i < 30; i++) {
      await sleep(100);
      peak = Math.max(peak, rssOf(pid));
    }
    // A reader that reads is served meanwhile, if slowly: one read at a time at worst.
    const reader = await rawConnect(c.spec.bricks[0], { spec: c.spec, hello: true });
    const fd = ((await reader.call('open', { path: '/big', flags: 0 }))[3] as { fd: number }).fd;
    const t = performance.now();
    const got = await Promise.all(Array.from({ length: 10 }, () => reader.call('read', { fd, offset: 0, length: 8 * MiB })));
    for (const m of got) assert.equal((m[3] as { data: Uint8Array }).data.length, 8 * MiB);
    peak = Math.max(peak, rssOf(pid));
    console.log(`8 connections x 100 unread 8 MiB reads (budget 128 MiB): brick RSS ${Math.round(base / MiB)} -> peak ${Math.round(peak / MiB)} MiB; a reader's 10 reads of 8 MiB took ${(performance.now() - t).toFixed(0)} ms`);
    assert.ok(peak - base < 350 * MiB, `brick grew by ${Math.round((peak - base) / MiB)} MiB`);
    reader.sock.destroy();
  } finally {
    for (const r of attackers) r.sock.destroy();
    await c.stop();
  }
});

test('before authentication frames are small: a large one closes the connection at its header', async () => {
  const c = await startCluster(1);
  try {
    const b = c.spec.bricks[0];
    // A header announcing an 8 MiB body, then 1 MiB of it: closed at once, nothing held.
    const r = await rawConnect(b);
    const h = Buffer.alloc(8);
    h.writeUInt32BE(8 * MiB, 0);
    h.writeUInt32BE(8 * MiB - 4, 4);
    r.sock.write(h);
    r.sock.write(Buffer.alloc(MiB));
    assert.ok(await closesWithin(r.closed, 2000), 'an 8 MiB frame before hello closes the connection');
    // An 8 MiB msgpack map before the handshake does not stall another client.
    const good = await goodClient(c);
    const map: Record<string, number> = {};
    for (let i = 0; i < 600_000; i++) map[`k${i}`] = i;
    const body = new Packr({ useRecords: false, variableMapSize: true } as never).pack(map);
    assert.ok(body.length > 7 * MiB);
    const r2 = await rawConnect(b);
    r2.sock.write(frame(body));
    await sleep(50);
    const pingMs = await timed(good.call('ping', {}));
    assert.ok(await closesWithin(r2.closed, 2000));
    console.log(`a ${(body.length / MiB).toFixed(1)} MiB msgpack map before hello: a good client's ping ${pingMs.toFixed(1)} ms`);
    assert.ok(pingMs < 500, `ping took ${pingMs} ms`);
    // After hello the normal limit holds: a 4 MiB write goes through.
    const vol = await Volume.connect(c.spec);
    await vol.writeFile('/w', Buffer.alloc(4 * MiB, 1));
    assert.equal((await vol.stat('/w')).size, 4 * MiB);
    await vol.close();
    good.close();
  } finally {
    await c.stop();
  }
});

test('a connection that never authenticates is closed at the handshake deadline, and logged', async () => {
  process.env.DHTFS_LIMIT_HANDSHAKE_MS = '1000';
  let c: Cluster;
  try {
    c = await startCluster(1);
  } finally {
    delete process.env.DHTFS_LIMIT_HANDSHAKE_MS;
  }
  try {
    const idle = await Promise.all(Array.from({ length: 10 }, () => rawConnect(c.spec.bricks[0])));
    for (const r of idle) assert.ok(await closesWithin(r.closed, 4000), 'an idle unauthenticated connection is closed');
    await sleep(200);
    const lines = c.logs[0].split('\n').filter((l) => l.includes('handshakeMs'));
    assert.equal(lines.length, 1, 'one line for ten hits (rate-limited)');
    assert.match(lines[0], /127\.0\.0\.1:\d+/, 'the line names the client');
    // An authenticated connection stays past the deadline.
    const good = await goodClient(c);
    await sleep(1500);
    await good.call('ping', {});
    good.close();
  } finally {
    await c.stop();
  }
});

test('attacker text in a brick log line is cut to a few hundred bytes', async () => {
  const c = await startCluster(1);
  try {
    const b = c.spec.bricks[0];
    const r = await rawConnect(b);
    r.sock.write(frame(packr.pack(['x'.repeat(60_000)])));
    assert.ok(await closesWithin(r.closed));
    const r2 = await rawConnect(b);
    r2.sock.write(frame(packr.pack([0, 1, 'y'.repeat(60_000), {}])));
    assert.ok(await closesWithin(r2.closed));
    const r3 = await rawConnect(b, { spec: c.spec, hello: false });
    r3.send([0, 1, 'hello', { proto: 0, volumeId: 'z'.repeat(50_000), mac: Buffer.alloc(32), client: 'q'.repeat(50_000) }]);
    assert.ok(await closesWithin(r3.closed));
    await sleep(200);
    const lines = c.logs[0].split('\n').filter(Boolean);
    assert.ok(lines.length >= 3);
    const longest = Math.max(...lines.map((l) => l.length));
    console.log(`longest brick log line: ${longest} bytes`);
    assert.ok(longest < 1000, `a log line of ${longest} bytes`);
  } finally {
    await c.stop();
  }
});

test('a flood of bad connections writes a few log lines, not one each', async () => {
  const c = await startCluster(1);
  try {
    const b = c.spec.bricks[0];
    const rs = await Promise.all(Array.from({ length: 200 }, () => rawConnect(b)));
    for (const r of rs) r.sock.write(frame(packr.pack(['junk'])));
    for (const r of rs) assert.ok(await closesWithin(r.closed));
    await sleep(200);
    const lines = c.logs[0].split('\n').filter((l) => l.includes('closing connection'));
    console.log(`200 bad connections: ${lines.length} log lines`);
    assert.ok(lines.length >= 1 && lines.length <= 3, `${lines.length} lines`);
    // A good client is served meanwhile.
    const good = await goodClient(c);
    await good.call('ping', {});
    good.close();
  } finally {
    await c.stop();
  }
});

/**
 * Migration between hosts (issue 19 item 6): when src and dst are bricks of different hosts, dst reads the
 * file from src over the brick path (migFetch -> src's migRead, brick/peers.ts), so that its bytes do not
 * cross the migrator's process; where dst cannot reach src, the migrator relays them as before. The two
 * bricks here are processes of this machine that take themselves for two hosts (DHTFS_HOST_ID), so that
 * the same-host pull (dst reading src's disk) is not taken.
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { RpcClient } from '../src/wire/rpc.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import { Volume } from '../src/api/volume.js';
import { migrateFile } from '../src/migration/migrator.js';
import type { DhtClient } from '../src/dht/client.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { namesOn, onDisk } from './helpers/disk.js';
import { rotateLayout } from './helpers/layout.js';

let c: Cluster;
let files: string[];
const data = new Map<string, Buffer>();

before(async () => {
  c = await startCluster(2, { hostId: (i) => `migrate-hosts-test-host-${i}` });
  const names = c.spec.bricks.map((b) => b.name);
  const v = await Volume.connect(c.spec);
  files = namesOn(c.dirs, names, '/', 0, 3, 'x');
  for (const f of files) {
    const d = randomBytes(5 * 1024 * 1024 + 3);
    data.set(f, d);
    await v.writeFile(`/${f}`, d);
  }
  await v.close();
  rotateLayout(c.dirs, names); // the files now hash to brick 1 but live on brick 0
});
after(async () => {
  await c?.stop();
});

/** Counts the file operations a client sends, by name. */
function countOps(client: DhtClient): Map<string, number> {
  const counts = new Map<string, number>();
  const fdCall = client.fdCall.bind(client);
  client.fdCall = ((f, op, args, into) => {
    counts.set(op, (counts.get(op) ?? 0) + 1);
    return fdCall(f, op, args, into);
  }) as DhtClient['fdCall'];
  return counts;
}

test('where dst does not know src (no topology stored on it), the migrator relays the bytes', async () => {
  // No topology was stored on the bricks yet (the volume's CLI writes one; this helper does not).
  const v = await Volume.connect(c.spec);
  const ops = countOps(v.client);
  const f = files[1];
  const r = await migrateFile(v.client, `/${f}`, { chunk: 1024 * 1024 });
  assert.equal(r.result, 'migrated');
  const asked = ops.get('migFetch') ?? 0;
  assert.ok(asked >= 1 && asked <= 4, `dst was asked at most once per copy worker, and could not (${asked})`);
  assert.ok((ops.get('read') ?? 0) >= 6, 'the migrator relayed the ranges');
  const fresh = await Volume.connect(c.spec);
  assert.ok((await fresh.readFile(`/${f}`)).equals(data.get(f)!), 'its bytes');
  await fresh.close();
  await v.close();
});

test('between hosts, dst reads the file from src over the brick path: no byte through the migrator', async () => {
  await c.pushTopology(); // dst reaches only bricks of the topology stored on it
  const v = await Volume.connect(c.spec);
  const ops = countOps(v.client);
  const f = files[0];
  const r = await migrateFile(v.client, `/${f}`, { chunk: 1024 * 1024 });
  assert.equal(r.result, 'migrated');
  assert.ok((ops.get('migFetch') ?? 0) >= 6, `dst fetched the ranges itself (${JSON.stringify([...ops])})`);
  assert.equal(ops.get('read') ?? 0, 0, 'the migrator read nothing from src');
  assert.ok((ops.get('migPull') ?? 0) <= 4, 'a same-host pull tried at most once per copy worker (EXDEV between hosts)');
  assert.ok(onDisk(c.dirs[1], f), 'the file is on brick 1');
  assert.equal(onDisk(c.dirs[0], f), null, 'and no longer on brick 0');
  const fresh = await Volume.connect(c.spec);
  assert.ok((await fresh.readFile(`/${f}`)).equals(data.get(f)!), 'its bytes');
  await fresh.close();
  await v.close();
});

test("a peer brick that accepted dst's connection and then answers nothing: dst gives up after the volume's ping-timeout (ENOTCONN, logged) and the migrator relays the rest", { timeout: 120_000 }, async () => {
  // Between dst and src, a relay that forwards until told to hang, then swallows dst's requests (the connection stays open).
  let hang = false;
  const socks: net.Socket[] = [];
  const src = c.spec.bricks[0];
  const proxy = net.createServer((down) => {
    const up = net.connect(src.port, src.host);
    socks.push(down, up);
    down.on('data', (d) => void (hang || up.write(d)));
    up.on('data', (d) => down.write(d));
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const proxyPort = (proxy.address() as net.AddressInfo).port;
  try {
    // dst (brick 1) reaches src through the relay, and waits 1 s for a peer's answer (network.ping-timeout).
    // Version 100 for dst only; the client's spec says 100 too, so that it keeps reaching src directly.
    const t = { version: 100, bricks: c.spec.bricks.map(({ name, host, port }, i) => ({ name, host, port: i === 0 ? proxyPort : port })), decommissioned: [], options: { pingTimeout: 1 } };
    const r = await RpcClient.connect(tcpNetwork, c.spec.bricks[1].host, c.spec.bricks[1].port, { volumeId: c.spec.volumeId, secret: c.spec.secret, adminSecret: c.spec.adminSecret });
    await r.call('setTopology', { topology: t });
    r.close();
    const v = await Volume.connect({ ...c.spec, version: 100 });
    const ops = countOps(v.client);
    // The first range goes through the relay (the peer connection is made); then the relay hangs.
    const fdCall = v.client.fdCall.bind(v.client);
    v.client.fdCall = (async (f, op, args, into) => {
      const out = await fdCall(f, op, args, into);
      if (op === 'migFetch') hang = true;
      return out;
    }) as DhtClient['fdCall'];
    const f = files[2];
    const res = await migrateFile(v.client, `/${f}`, { chunk: 1024 * 1024 });
    assert.equal(res.result, 'migrated');
    assert.ok((ops.get('migFetch') ?? 0) >= 2, 'dst fetched a range, then was asked again');
    assert.ok((ops.get('read') ?? 0) >= 1, 'the migrator relayed what dst could not fetch');
    assert.match(c.logs[1], /peer brick .*did not answer within 1 s \(ping-timeout\): connection closed/, "dst's log says it gave up on its peer");
    const fresh = await Volume.connect({ ...c.spec, version: 100 });
    assert.ok((await fresh.readFile(`/${f}`)).equals(data.get(f)!), 'its bytes');
    await fresh.close();
    await v.close();
  } finally {
    for (const s of socks) s.destroy();
    await new Promise((r) => proxy.close(r));
  }
});

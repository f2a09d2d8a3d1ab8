/** Placement past min-free-disk, stale layouts, dead bricks, locks and gfid handles, on real bricks. */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Volume } from '../src/api/volume.js';
import { RpcClient } from '../src/wire/rpc.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import { encodeRanges } from '../src/dht/layout.js';
import * as xattr from '@napi-rs/xattr';
import { startCluster } from './helpers/cluster.js';
import { P, diskLayout, handleFile, hashedIndex, namesOn, onDisk } from './helpers/disk.js';
import type { Attr } from '../src/wire/types.js';

const isRoot = process.getuid?.() === 0;

test('create past min-free-disk: data on the emptiest brick, linkto on the hashed one', { skip: !isRoot && 'needs root to mount a small tmpfs' }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-full-'));
  const dirs = [0, 1, 2].map((i) => path.join(base, `b${i}`));
  for (const d of dirs) fs.mkdirSync(d);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dirs[2]]);
  const c = await startCluster(3, { dirs, options: { minFreeDisk: 10, weightedRebalance: false } });
  const names = c.spec.bricks.map((b) => b.name);
  try {
    // Fill brick 2's filesystem to over 90% behind the volume's back.
    fs.mkdirSync(path.join(dirs[2], '.glusterfs'), { recursive: true });
    fs.writeFileSync(path.join(dirs[2], '.glusterfs', 'ballast'), Buffer.alloc(3900 * 1024));
    const vol = await Volume.connect(c.spec);
    try {
      const full = namesOn(dirs, names, '/', 2, 3, 'full');
      for (const n of full) await vol.writeFile(`/${n}`, `content of ${n}`);
      for (const n of full) {
        const link = onDisk(dirs[2], n)!;
        assert.equal(link.mode & 0o7777, 0o1000, `${n}: linkto on the full hashed brick`);
        const data = [0, 1].map((i) => onDisk(dirs[i], n)).filter(Boolean);
        assert.equal(data.length, 1, `${n}: data on exactly one other brick`);
        assert.equal(link.linkto, names[[0, 1].find((i) => onDisk(dirs[i], n))!]);
        assert.equal(await vol.readFile(`/${n}`, 'utf8'), `content of ${n}`);
      }
      // Names hashing to bricks with room still go to their hashed brick.
      const [ok] = namesOn(dirs, names, '/', 0, 1, 'ok');
      await vol.writeFile(`/${ok}`, 'fine');
      assert.equal(onDisk(dirs[0], ok)!.linkto, null);
      assert.deepEqual((await vol.readdir('/')).sort(), [...full, ok].sort());
      // Unlink removes the data and its linkto.
      await vol.unlink(`/${full[0]}`);
      assert.equal(dirs.map((d) => onDisk(d, full[0])).filter(Boolean).length, 0);
    } finally {
      await vol.close();
    }
  } finally {
    await c.stop();
    execFileSync('umount', [dirs[2]]);
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a client with a stale layout is told to refresh and then places files by the new layout', async () => {
  const c = await startCluster(3);
  const names = c.spec.bricks.map((b) => b.name);
  try {
    const logs: string[] = [];
    const vol = await Volume.connect(c.spec, { log: (_l, m) => logs.push(m) });
    await vol.writeFile('/warmup', 'x'); // caches the root layout
    // Another actor rewrites the root layout: rotate the ranges one brick on.
    const old = diskLayout(c.dirs, names, '/');
    for (let i = 0; i < 3; i++) {
      const rs = old.filter((e) => e.brick === names[(i + 1) % 3]);
      xattr.setAttributeSync(c.dirs[i], P + 'glusterfs.dht', encodeRanges(rs));
    }
    const now = diskLayout(c.dirs, names, '/');
    assert.notDeepEqual(
      now.map((e) => e.start),
      old.map((e) => e.start),
    );
    for (let i = 0; i < 12; i++) {
      await vol.writeFile(`/after${i}`, 'y');
      const h = hashedIndex(c.dirs, names, '/', `after${i}`);
      assert.ok(onDisk(c.dirs[h], `after${i}`), `after${i} is on the brick the new layout names`);
      assert.equal(onDisk(c.dirs[h], `after${i}`)!.linkto, null);
    }
    assert.ok(
      logs.some((m) => m.includes('stale layout of /')),
      'the brick refused the stale layout at least once',
    );
    await vol.close();
  } finally {
    await c.stop();
  }
});

test('a dead brick: its files fail with ENOTCONN, others work, and it comes back', async () => {
  const c = await startCluster(3);
  const names = c.spec.bricks.map((b) => b.name);
  try {
    const vol = await Volume.connect(c.spec);
    const [on1] = namesOn(c.dirs, names, '/', 1, 1, 'x');
    const [on0] = namesOn(c.dirs, names, '/', 0, 1, 'y');
    await vol.writeFile(`/${on1}`, 'one');
    await vol.writeFile(`/${on0}`, 'zero');
    await c.kill(1);
    await assert.rejects(vol.readFile(`/${on1}`), { code: 'ENOTCONN' });
    assert.equal(await vol.readFile(`/${on0}`, 'utf8'), 'zero');
    await c.restart(1);
    await new Promise((r) => setTimeout(r, 1100)); // the client waits a second before re-dialling
    assert.equal(await vol.readFile(`/${on1}`, 'utf8'), 'one');
    await vol.close();
  } finally {
    await c.stop();
  }
});

test('brick locks: blocking and non-blocking, released when the holder disconnects', async () => {
  const c = await startCluster(1);
  try {
    const b = c.spec.bricks[0];
    const auth = { volumeId: c.spec.volumeId, secret: c.spec.secret };
    const a1 = await RpcClient.connect(tcpNetwork, b.host, b.port, auth);
    const a2 = await RpcClient.connect(tcpNetwork, b.host, b.port, auth);
    const lk = (r: RpcClient, type: 'rd' | 'wr' | 'un', block: boolean, owner: string) => r.call('inodelk', { domain: 'd', path: '/', type, block, owner });
    await lk(a1, 'wr', false, 'o1');
    await assert.rejects(lk(a2, 'wr', false, 'o2'), { code: 'EAGAIN' });
    await assert.rejects(lk(a2, 'rd', false, 'o2'), { code: 'EAGAIN' });
    let granted = false;
    const waiting = lk(a2, 'wr', true, 'o2').then(() => (granted = true));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(granted, false, 'blocked while held');
    a1.close(); // the brick drops a1's locks
    await waiting;
    assert.equal(granted, true);
    // Shared locks coexist; an entry lock is independent of the inode lock.
    const a3 = await RpcClient.connect(tcpNetwork, b.host, b.port, auth);
    await a3.call('entrylk', { domain: 'd', path: '/', name: 'n', type: 'wr', block: false, owner: 'e' });
    await lk(a2, 'un', false, 'o2');
    await lk(a3, 'rd', false, 'r1');
    await lk(a2, 'rd', false, 'r2');
    await assert.rejects(lk(a2, 'wr', false, 'w'), { code: 'EAGAIN' });
    a2.close();
    a3.close();
  } finally {
    await c.stop();
  }
});

test('a file is reachable by gfid after a rename, and fds survive the rename', async () => {
  const c = await startCluster(1);
  try {
    const vol = await Volume.connect(c.spec);
    await vol.writeFile('/orig', 'by gfid');
    const gfid = (await vol.stat('/orig')).gfid!;
    const h = await vol.open('/orig', 'r+');
    await vol.rename('/orig', '/renamed');
    await h.write('BY', 0, 2, 0);
    await h.close();
    const b = c.spec.bricks[0];
    const r = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret });
    const a = await r.call('lookupGfid', { gfid });
    assert.equal(a.gfid, gfid);
    assert.equal(a.size, 7);
    const o = await r.call('open', { gfid, flags: 0 });
    const d = await r.call('read', { fd: o.fd, offset: 0, length: 100 });
    assert.equal(Buffer.from(d.data).toString(), 'BY gfid');
    // Directories too: the handle follows a directory rename.
    await vol.mkdir('/dir1');
    const dg = (await vol.stat('/dir1')).gfid!;
    await vol.rename('/dir1', '/dir2');
    const da = await r.call('lookupGfid', { gfid: dg });
    assert.equal(da.gfid, dg);
    r.close();
    // The handle goes when the last name goes.
    await vol.unlink('/renamed');
    assert.equal(fs.existsSync(handleFile(c.dirs[0], gfid)), false);
    await vol.close();
  } finally {
    await c.stop();
  }
});

test('a full disk: ENOSPC comes back as an error, nothing written before is lost, the brick lives', { skip: !isRoot && 'needs root to mount a small tmpfs' }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-enospc-'));
  const dir = path.join(base, 'b0');
  fs.mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
  const c = await startCluster(1, { dirs: [dir], options: { minFreeDisk: 0, minFreeInodes: 0 } });
  try {
    const vol = await Volume.connect(c.spec);
    await vol.writeFile('/safe', 'kept');
    const h = await vol.open('/filler', 'w');
    const chunk = Buffer.alloc(256 * 1024, 7);
    let err: unknown = null;
    let written = 0;
    for (let i = 0; i < 32 && !err; i++) {
      try {
        // A write cut short by the full disk says so (its count); the next one fails.
        written += (await h.write(chunk, 0, chunk.length, written)).bytesWritten;
      } catch (e) {
        err = e;
      }
    }
    assert.equal((err as { code?: string })?.code, 'ENOSPC');
    await h.close();
    assert.equal(await vol.readFile('/safe', 'utf8'), 'kept');
    const back = await vol.readFile('/filler');
    assert.ok(back.length >= written, 'every acknowledged byte is there');
    assert.ok(back.subarray(0, written).every((b) => b === 7));
    await vol.unlink('/filler');
    await vol.writeFile('/again', 'room again');
    assert.equal(await vol.readFile('/again', 'utf8'), 'room again');
    await vol.close();
  } finally {
    await c.stop();
    execFileSync('umount', [dir]);
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('ping-timeout: a hung brick is cut off and its calls fail with ENOTCONN, not wait for ever; it is used again once it answers; a call that waits on a live brick (a blocking lock) is not cut off', async () => {
  const c = await startCluster(2, { options: { pingTimeout: 1 } });
  const vol = await Volume.connect(c.spec);
  const vol2 = await Volume.connect(c.spec);
  const within = <T>(p: Promise<T>, ms: number) =>
    Promise.race([
      p.then(
        (v) => ({ v }),
        (e: unknown) => ({ e }),
      ),
      new Promise<null>((r) => setTimeout(() => r(null), ms)),
    ]);
  try {
    await vol.writeFile('/f', 'data');
    const i = c.dirs.findIndex((d) => fs.existsSync(path.join(d, 'f')));
    const brick = c.spec.bricks[i].name;
    // A blocking lock held by another client: the waiter is pinged, the brick answers, the wait goes on.
    await vol2.client.sv(brick).call('inodelk', { domain: 'd', path: '/', type: 'wr', block: false, owner: 'holder' });
    const waiting = vol.client.sv(brick).call('inodelk', { domain: 'd', path: '/', type: 'wr', block: true, owner: 'waiter' });
    assert.equal(await within(waiting, 3000), null, 'still waiting after three ping-timeouts');
    await vol2.client.sv(brick).call('inodelk', { domain: 'd', path: '/', type: 'un', block: false, owner: 'holder' });
    assert.ok(await within(waiting, 3000), 'granted once the holder lets go');
    // The brick's process stops: a read fails within the timeout and a little, and so does a new dial.
    c.procs[i]!.kill('SIGSTOP');
    try {
      const r = await within(vol.readFile('/f', 'utf8'), 10_000);
      assert.ok(r && 'e' in r, 'the read fails rather than hangs');
      assert.equal((r as { e: { code: string } }).e.code, 'ENOTCONN');
      const again = await within(vol.client.sv(brick).call('lookup', { path: '/f' }), 10_000);
      assert.ok(again && 'e' in again, 'a call on a new connection fails too');
    } finally {
      c.procs[i]!.kill('SIGCONT');
    }
    // Answering again, the brick is used again (after the client's reconnect back-off).
    let back: string | null = null;
    for (let t = 0; t < 50 && back === null; t++) {
      back = await vol.readFile('/f', 'utf8').catch(() => null);
      if (back === null) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(back, 'data');
  } finally {
    await vol.close();
    await vol2.close();
    await c.stop();
  }
});

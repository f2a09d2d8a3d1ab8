/**
 * Migration keeps holes (issue 20, item 9): a 1 GiB sparse file holding a few MiB of data migrates
 * with its holes kept (its allocated blocks on the new brick's disk stay small), its contents identical,
 * and the bytes reported are the bytes copied: disk to disk between bricks of one host (migPull,
 * copy_file_range over the data segments) and through the migrator (pull off). Real brick processes.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Volume } from '../src/api/volume.js';
import { migrateFile } from '../src/migration/migrator.js';
import { startCluster } from './helpers/cluster.js';
import { rotateLayout } from './helpers/layout.js';

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

function hashFile(p: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(p, 'r');
  const buf = Buffer.alloc(8 * MiB);
  try {
    for (let off = 0; ; off += buf.length) {
      const n = fs.readSync(fd, buf, 0, buf.length, off);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Which brick directory holds the data file of `name` (in the root). */
function holder(dirs: string[], name: string): number {
  return dirs.findIndex((d) => {
    try {
      const st = fs.lstatSync(path.join(d, name));
      return st.isFile() && (st.mode & 0o7777) !== 0o1000;
    } catch {
      return false;
    }
  });
}

test('a 1 GiB sparse file migrates with its holes: few blocks allocated, same bytes, bytes reported = data', { timeout: 300_000 }, async () => {
  const c = await startCluster(2);
  try {
    const vol = await Volume.connect(c.spec);
    // Data: 1 MiB at 0, 1 MiB at 300 MiB, 2 MiB at 700 MiB, the last 64 KiB; holes elsewhere.
    const pieces: [number, number][] = [
      [0, MiB],
      [300 * MiB, MiB],
      [700 * MiB, 2 * MiB],
      [GiB - 64 * 1024, 64 * 1024],
    ];
    const dataBytes = pieces.reduce((s, [, n]) => s + n, 0);
    for (const name of ['sparse-pull', 'sparse-through']) {
      const fh = await vol.open(`/${name}`, 'w+');
      await fh.truncate(GiB);
      for (const [at, n] of pieces) await fh.write(Buffer.alloc(n, ((at / MiB) & 0xff) | 1), 0, n, at);
      await fh.close();
    }
    const names = c.spec.bricks.map((b) => b.name);
    const before = new Map<string, { from: number; hash: string }>();
    for (const name of ['sparse-pull', 'sparse-through']) {
      const from = holder(c.dirs, name);
      const p = path.join(c.dirs[from], name);
      assert.ok(fs.statSync(p).blocks * 512 < 16 * MiB, 'the source is sparse');
      before.set(name, { from, hash: hashFile(p) });
    }
    // Every name now hashes to the other brick.
    rotateLayout(c.dirs, names);
    const rb = await Volume.connect(c.spec);
    for (const [name, pull] of [
      ['sparse-pull', true],
      ['sparse-through', false],
    ] as const) {
      const r = await migrateFile(rb.client, `/${name}`, { pull });
      assert.equal(r.result, 'migrated', JSON.stringify(r));
      const to = holder(c.dirs, name);
      assert.notEqual(to, before.get(name)!.from, `${name} moved`);
      const p = path.join(c.dirs[to], name);
      const st = fs.statSync(p);
      assert.equal(st.size, GiB, `${name} keeps its size`);
      const allocated = st.blocks * 512;
      console.log(`# ${name}: ${(allocated / MiB).toFixed(2)} MiB allocated on the new brick for ${dataBytes / MiB} MiB of data in 1 GiB; ${(r as { bytes: number }).bytes} bytes reported copied`);
      assert.ok(allocated < 16 * MiB, `${name}: ${allocated} bytes allocated on the new brick`);
      assert.equal(hashFile(p), before.get(name)!.hash, `${name}: the same bytes`);
      const bytes = (r as { bytes: number }).bytes;
      assert.ok(bytes >= dataBytes && bytes <= dataBytes + 4 * MiB, `${name}: ${bytes} bytes reported copied`);
    }
    // Through the volume too.
    const fh = await vol.open('/sparse-pull', 'r');
    const b = Buffer.alloc(4096);
    await fh.read(b, 0, 4096, 700 * MiB + 12345);
    assert.ok(b.every((x) => x === ((700 & 0xff) | 1)));
    await fh.read(b, 0, 4096, 500 * MiB);
    assert.ok(b.every((x) => x === 0));
    await fh.close();
    await vol.close();
    await rb.close();
  } finally {
    await c.stop();
  }
});

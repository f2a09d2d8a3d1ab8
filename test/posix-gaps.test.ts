/**
 * POSIX answers a local disk gives and the volume must give too (issue 20, item 11): a name longer than
 * NAME_MAX is ENAMETOOLONG on lookup too (a client's negative-lookup cache answered ENOENT), and the I/O
 * size the mount reports (1 MiB made programs write 1 MiB at a time).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Volume } from '../src/api/volume.js';
import { startCluster } from './helpers/cluster.js';
import { mountCluster, unmountCluster } from './helpers/mount.js';

const fuse = fs.existsSync('/dev/fuse') ? false : 'no /dev/fuse on this machine';
const long = 'n'.repeat(256);

test('a lookup of a 256-byte name is ENAMETOOLONG, in a directory the client made too', async () => {
  const c = await startCluster(2);
  try {
    const vol = await Volume.connect(c.spec);
    try {
      await vol.mkdir('/mine');
      for (const p of [`/mine/${long}`, `/${long}`, `/mine/${long}/x`]) {
        await assert.rejects(vol.stat(p), { code: 'ENAMETOOLONG' }, p);
        await assert.rejects(vol.writeFile(p, 'x'), { code: 'ENAMETOOLONG' }, p);
      }
      await vol.writeFile(`/mine/${long.slice(1)}`, 'a 255-byte name is fine');
      assert.equal(await vol.readFile(`/mine/${long.slice(1)}`, 'utf8'), 'a 255-byte name is fine');
    } finally {
      await vol.close();
    }
  } finally {
    await c.stop();
  }
});

test('through the mount: names past NAME_MAX and the I/O size, as on a local disk', { skip: fuse }, async () => {
  const { c, mnt, daemon } = await mountCluster('pg');
  const local = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-local-'));
  try {
    for (const root of [local, mnt]) {
      fs.mkdirSync(path.join(root, 'd'));
      assert.throws(() => fs.statSync(path.join(root, 'd', long)), { code: 'ENAMETOOLONG' }, root);
    }
    fs.writeFileSync(path.join(mnt, 'io'), 'x');
    assert.ok(fs.statSync(path.join(mnt, 'io')).blksize <= 128 * 1024, 'an I/O size that does not inflate programs\' writes');
  } finally {
    fs.rmSync(local, { recursive: true, force: true });
    await unmountCluster(c, mnt, daemon);
  }
});

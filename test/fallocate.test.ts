/**
 * fallocate (issue 20, item 11): every mode ext4 has, through the library and the mount, checked against
 * the same calls on a local file by difference (util-linux's fallocate(1) there); and on a file being
 * migrated, where a fallocate follows the rules of any change (held while frozen, re-copied when it
 * changed bytes the copy has, followed to dst after the commit).
 */
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Volume, type FileHandle } from '../src/api/volume.js';
import { migrateFile } from '../src/migration/migrator.js';
import type { SafeStep } from '../src/migration/steps.js';
import { FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../src/storage/storage.js';
import { pauseAfter, startCluster, type Cluster } from './helpers/cluster.js';
import { mountCluster, unmountCluster } from './helpers/mount.js';
import { namesOn } from './helpers/disk.js';
import { rotateLayout } from './helpers/layout.js';

const fuse = fs.existsSync('/dev/fuse') ? false : 'no /dev/fuse on this machine';
const KiB = 1024;

/** One fallocate call. */
interface Call {
  mode: number;
  offset: number;
  length: number;
}

/**
 * fallocate(2) on a file of the local disk or the mount, from another process (libc's, through Python's
 * ctypes: fallocate(1) cannot ask for every mode): the errno's name, or null.
 */
function fallocateAt(file: string, c: Call): string | null {
  const py = [
    'import ctypes, errno, os, sys',
    'libc = ctypes.CDLL(None, use_errno=True)',
    'libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]',
    'fd = os.open(sys.argv[1], os.O_RDWR)',
    'r = libc.fallocate(fd, int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))',
    "print(errno.errorcode[ctypes.get_errno()] if r else 'ok')",
  ].join('\n');
  const out = execFileSync('python3', ['-c', py, file, String(c.mode), String(c.offset), String(c.length)], { encoding: 'utf8' }).trim();
  return out === 'ok' ? null : out === 'ENOTSUP' ? 'EOPNOTSUPP' : out; // (one errno, two names)
}

/** Every mode, with an unaligned collapse (EINVAL on ext4) and a punch without KEEP_SIZE (EOPNOTSUPP). */
const CALLS: Call[] = [
  { mode: 0, offset: 1024 * KiB, length: 256 * KiB }, // allocate past the end: the file grows
  { mode: FALLOC_FL_KEEP_SIZE, offset: 2048 * KiB, length: 64 * KiB }, // allocate only
  { mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset: 4 * KiB, length: 8 * KiB },
  { mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset: 100, length: 5000 }, // unaligned: partial pages are zeroed
  { mode: FALLOC_FL_ZERO_RANGE, offset: 64 * KiB, length: 4 * KiB + 17 },
  { mode: FALLOC_FL_ZERO_RANGE, offset: 1200 * KiB, length: 200 * KiB }, // past the end: grows
  { mode: FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset: 1300 * KiB, length: 400 * KiB },
  { mode: FALLOC_FL_COLLAPSE_RANGE, offset: 128 * KiB, length: 64 * KiB },
  { mode: FALLOC_FL_INSERT_RANGE, offset: 256 * KiB, length: 8 * KiB },
  { mode: FALLOC_FL_COLLAPSE_RANGE, offset: 1000, length: 4 * KiB }, // unaligned: EINVAL
  { mode: FALLOC_FL_PUNCH_HOLE, offset: 0, length: 4 * KiB }, // punch must keep the size: EOPNOTSUPP
];

let c: Cluster;
let names: string[];
let local: string;
before(async () => {
  c = await startCluster(2);
  names = c.spec.bricks.map((b) => b.name);
  local = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-falloc-'));
});
after(async () => {
  fs.rmSync(local, { recursive: true, force: true });
  await c?.stop();
});

const readAll = async (h: FileHandle) => {
  const size = (await h.stat()).size;
  const b = Buffer.alloc(size);
  let at = 0;
  while (at < size) {
    const { bytesRead } = await h.read(b, at, size - at, at);
    if (bytesRead === 0) break;
    at += bytesRead;
  }
  return b.subarray(0, at);
};

test('every fallocate mode through the library, as on a local file: bytes, size, allocation and errors', async () => {
  const vol = await Volume.connect(c.spec);
  try {
    const data = randomBytes(1024 * KiB);
    const mine = path.join(local, 'lib');
    fs.writeFileSync(mine, data);
    await vol.writeFile('/lib', data);
    const h = await vol.open('/lib', 'r+');
    for (const call of CALLS) {
      const want = fallocateAt(mine, call);
      const got = await h.fallocate(call.mode, call.offset, call.length).then(
        () => null,
        (e) => e.code as string,
      );
      const what = `mode ${call.mode} at ${call.offset}+${call.length}`;
      assert.equal(got, want, `${what}: the same answer`);
      const st = await h.stat();
      const lst = fs.statSync(mine);
      assert.equal(st.size, lst.size, `${what}: the same size`);
      assert.ok((await readAll(h)).equals(fs.readFileSync(mine)), `${what}: the same bytes`);
      // Allocation as the local disk's (the bricks' file system is the same kind here): within a block
      // or two of extent bookkeeping, and a punch or an allocation moves it alike.
      assert.ok(Math.abs(st.blocks - lst.blocks) <= 16, `${what}: ${st.blocks} blocks allocated, ${lst.blocks} locally`);
    }
    // More than the bricks' disk has: refused at once, nothing allocated.
    const sf = await vol.statfs();
    const free = sf.bavail * sf.bsize;
    const blocks = (await h.stat()).blocks;
    await assert.rejects(h.fallocate(FALLOC_FL_KEEP_SIZE, 0, free * 4), { code: 'ENOSPC' });
    assert.equal((await h.stat()).blocks, blocks);
    await h.close();
    const ro = await vol.open('/lib', 'r');
    await assert.rejects(ro.fallocate(0, 0, 4096), { code: 'EBADF' });
    await ro.close();
  } finally {
    await vol.close();
  }
});

test('fallocate on a file being migrated: re-copied when it changes bytes, held while frozen, followed after the commit', async () => {
  const vol = await Volume.connect(c.spec);
  const files = namesOn(c.dirs, names, '/', 0, 4, 'fm');
  const model = path.join(local, 'mig');
  try {
    for (const f of files) await vol.writeFile(`/${f}`, Buffer.alloc(0));
    rotateLayout(c.dirs, names); // every such name now hashes to brick 1 but lives on brick 0
    const data = randomBytes(2048 * KiB);
    const changes: Call[] = [
      { mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset: 64 * KiB, length: 192 * KiB },
      { mode: FALLOC_FL_ZERO_RANGE, offset: 1024 * KiB, length: 64 * KiB },
      { mode: FALLOC_FL_COLLAPSE_RANGE, offset: 512 * KiB, length: 128 * KiB },
      { mode: FALLOC_FL_INSERT_RANGE, offset: 300 * KiB, length: 32 * KiB },
      { mode: 0, offset: 2100 * KiB, length: 64 * KiB },
    ];
    // Each change made once the copy is done (before the rounds that copy what clients changed), and
    // every one of them after the freeze (held until the commit, then made on dst).
    for (const [i, when] of (['copy', 'freeze'] as const).entries()) {
      const f = `/${files[i]}`;
      await vol.writeFile(f, data);
      fs.writeFileSync(model, data);
      const h = await vol.open(f, 'r+');
      const p = pauseAfter<SafeStep>(when);
      const migration = migrateFile(vol.client, f, { afterStep: p.hook, chunk: 256 * KiB, pull: true });
      await p.paused;
      let applied: Promise<unknown>;
      if (when === 'copy') {
        for (const ch of changes) {
          assert.equal(fallocateAt(model, ch), null);
          await h.fallocate(ch.mode, ch.offset, ch.length);
        }
        // (And a truncate to nothing and back: the bytes there are a hole on src now.)
        fs.truncateSync(model, 0);
        fs.truncateSync(model, 100 * KiB);
        await h.truncate(0);
        await h.truncate(100 * KiB);
        applied = Promise.resolve();
      } else {
        let done = false;
        applied = (async () => {
          for (const ch of changes) {
            assert.equal(fallocateAt(model, ch), null);
            await h.fallocate(ch.mode, ch.offset, ch.length);
          }
          done = true;
        })();
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(done, false, 'held while the file is frozen');
      }
      p.resume();
      assert.equal((await migration).result, 'migrated');
      await applied;
      const fresh = await Volume.connect(c.spec);
      try {
        const got = await fresh.readFile(f);
        assert.equal(got.length, fs.statSync(model).size, `${when}: the size`);
        assert.ok(got.equals(fs.readFileSync(model)), `${when}: the bytes on dst are the bytes every fallocate left`);
        assert.ok((await readAll(h)).equals(fs.readFileSync(model)), `${when}: read through the old handle`);
        assert.equal(h.loc.cached, names[1], 'the handle followed the file to dst');
      } finally {
        await fresh.close();
      }
      await h.close();
    }
  } finally {
    await vol.close();
  }
});

test('fallocate through the mount, as on a local disk (the modes the kernel passes to FUSE)', { skip: fuse }, async () => {
  const { c: mc, mnt, daemon } = await mountCluster('falloc');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-falloc-local-'));
  try {
    const data = randomBytes(1024 * KiB);
    // Each call on a file of its own: one the mount refuses leaves the next unaffected.
    const run = (root: string) =>
      CALLS.map((call, i) => {
        const f = path.join(root, `f${i}`);
        fs.writeFileSync(f, data);
        const err = fallocateAt(f, call);
        const st = fs.statSync(f);
        return { call, err, size: st.size, blocks: st.blocks, same: fs.readFileSync(f).toString('base64') };
      });
    const onLocal = run(dir);
    const onMount = run(mnt);
    for (let i = 0; i < CALLS.length; i++) {
      const [l, m] = [onLocal[i], onMount[i]];
      const what = `mode ${l.call.mode} at ${l.call.offset}+${l.call.length}`;
      // The kernel's FUSE passes allocate, KEEP_SIZE and PUNCH_HOLE to a file system, and answers the
      // others (zero, collapse, insert) EOPNOTSUPP itself.
      const passed = (l.call.mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) === 0;
      if (passed) {
        assert.equal(m.err, l.err, `${what}: the same answer`);
        assert.equal(m.size, l.size, `${what}: the same size`);
        assert.ok(Math.abs(m.blocks - l.blocks) <= 16, `${what}: ${m.blocks} blocks, ${l.blocks} locally`);
      } else assert.ok(m.err === l.err || m.err === 'EOPNOTSUPP', `${what}: ${m.err}`);
      if (m.err === l.err) assert.ok(m.same === l.same, `${what}: the same bytes`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await unmountCluster(mc, mnt, daemon);
  }
});

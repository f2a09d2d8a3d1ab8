/** DiskStorage, the brick's real disk: xattrs read in one system call or two, small writes on the event loop. */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as xattr from '@napi-rs/xattr';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { DiskStorage } from '../src/storage/disk.js';
import { O_CREAT, O_RDONLY, O_RDWR } from '../src/storage/storage.js';

const isRoot = process.getuid?.() === 0;
const NS = isRoot ? 'trusted' : 'user';

test('xattrs: values of any size, a missing one is null, a missing path is an error by name', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-storage-'));
  try {
    const st = new DiskStorage(dir);
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    fs.symlinkSync('f', path.join(dir, 'l'));
    // 16 bytes (a gfid), either side of the one-call buffer (512 bytes), and a large one (ext4 keeps a
    // file's xattrs in one 4 KiB block: each but the gfid goes again after its check).
    for (const size of [16, 511, 512, 513, 3000]) {
      const v = Buffer.alloc(size, size % 251);
      st.setxattr('f', `${NS}.v${size}`, v);
      assert.deepEqual(st.getxattr('f', `${NS}.v${size}`), v, `${size} bytes`);
      // What another reader of the disk sees is the same.
      assert.deepEqual(xattr.getAttributeSync(path.join(dir, 'f'), `${NS}.v${size}`), v);
      if (size > 16) st.removexattr('f', `${NS}.v${size}`);
    }
    assert.equal(st.getxattr('f', `${NS}.none`), null);
    assert.equal(st.getxattr('', `${NS}.none`), null);
    assert.throws(() => st.getxattr('nope', `${NS}.v16`), { code: 'ENOENT' });
    assert.throws(() => st.getxattr('f/x', `${NS}.v16`), { code: 'ENOTDIR' });
    assert.throws(() => st.getxattr(`${'d/'.repeat(2100)}f`, `${NS}.v16`), { code: 'ENAMETOOLONG' });
    // A symlink's own xattrs, never its target's.
    assert.equal(st.getxattr('l', `${NS}.v16`), null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('writes: small ones on the event loop and large ones off it land at their offsets; errors reject', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-storage-'));
  try {
    const st = new DiskStorage(dir);
    const h = st.open('f', O_RDWR | O_CREAT, 0o644);
    const small = Buffer.alloc(4096, 1);
    const large = Buffer.alloc(256 * 1024, 2);
    assert.equal(await st.write(h, 0, small), small.length);
    assert.equal(await st.write(h, 8192, large), large.length);
    assert.equal(await st.write(h, 100, Buffer.from('mid')), 3);
    st.close(h);
    const got = fs.readFileSync(path.join(dir, 'f'));
    assert.equal(got.length, 8192 + large.length);
    assert.equal(got.subarray(100, 103).toString(), 'mid');
    assert.ok(got.subarray(0, 100).every((b) => b === 1) && got.subarray(103, 4096).every((b) => b === 1));
    assert.ok(
      got.subarray(4096, 8192).every((b) => b === 0),
      'the hole reads as zeros',
    );
    assert.ok(got.subarray(8192).every((b) => b === 2));
    // A write the file refuses is a rejected promise, not an exception, whatever its size.
    const ro = st.open('f', O_RDONLY, 0);
    const small$ = st.write(ro, 0, small);
    assert.ok(small$ instanceof Promise);
    await assert.rejects(small$, { code: 'EBADF' });
    await assert.rejects(st.write(ro, 0, large), { code: 'EBADF' });
    st.close(ro);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('held parents: a stretch resolves a parent once; a folder swapped for a symlink is refused from the next stretch on, and never leads outside', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-storage-'));
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-outside-'));
  try {
    const st = new DiskStorage(dir);
    fs.mkdirSync(path.join(dir, 'a'));
    st.close(st.open('a/x', O_RDWR | O_CREAT, 0o644));
    await Promise.resolve(); // a new stretch: nothing held from the last one
    // One synchronous stretch: 'a' is resolved (beneath the root, no symlinks) by the first call, then a
    // local user swaps it for a symlink to a folder outside the brick. The stretch's later calls stay in
    // the directory it resolved, wherever it now is: inside the brick, never outside.
    assert.equal(st.lstat('a/x').size, 0);
    fs.renameSync(path.join(dir, 'a'), path.join(dir, 'a.real'));
    fs.symlinkSync(outside, path.join(dir, 'a'));
    st.close(st.open('a/y', O_RDWR | O_CREAT, 0o644));
    assert.ok(fs.existsSync(path.join(dir, 'a.real', 'y')), 'made in the directory the stretch resolved');
    assert.deepEqual(fs.readdirSync(outside), []);
    // The next stretch resolves 'a' again and finds the symlink: refused, as every call was before.
    await Promise.resolve();
    assert.throws(() => st.open('a/z', O_RDWR | O_CREAT, 0o644), { code: 'ELOOP' });
    assert.throws(() => st.lstat('a/x'), { code: 'ELOOP' });
    assert.deepEqual(fs.readdirSync(outside), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  }
});

test("held parents: the brick's own rename, exchange or rmdir of a directory lets them go within the stretch", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-storage-'));
  try {
    const st = new DiskStorage(dir);
    // All in one synchronous stretch: a parent held under a name that a rename, an exchange or an rmdir
    // then gives to another directory (or to none) is resolved again, never used under its old name.
    st.mkdir('d', 0o755);
    st.close(st.open('d/x', O_RDWR | O_CREAT, 0o644));
    st.rename('d', 'e');
    st.mkdir('d', 0o755);
    st.close(st.open('d/y', O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'd')), ['y']);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'e')), ['x']);
    st.exchange('d', 'e');
    st.close(st.open('d/z', O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'd')).sort(), ['x', 'z']);
    st.mkdir('f', 0o755);
    st.close(st.open('f/w', O_RDWR | O_CREAT, 0o644));
    st.unlink('f/w');
    st.rmdir('f');
    st.mkdir('f', 0o755);
    st.close(st.open('f/v', O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'f')), ['v']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A brick's storage in a new folder with folders p and p/q pinned, and a folder outside it; both removed after `f`. */
async function withPinnedPQ(f: (st: DiskStorage, dir: string, outside: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-storage-'));
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-outside-'));
  try {
    const st = new DiskStorage(dir);
    st.mkdir('p', 0o700);
    st.mkdir('p/q', 0o700);
    st.pinDir('p');
    st.pinDir('p/q');
    await f(st, dir, outside);
    st.dispose();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  }
}

test("pinned folders: kept across stretches, never leading outside when swapped; the brick's own rename or rmdir lets them go, and pinning again replaces a folder that went", () =>
  withPinnedPQ(async (st, dir, outside) => {
    await Promise.resolve();
    // A pinned folder swapped for a symlink (a process of the host that can enter the brick): later
    // stretches' calls still land in the folder pinned, wherever it now is, never where the symlink leads.
    fs.renameSync(path.join(dir, 'p'), path.join(dir, 'p.real'));
    fs.symlinkSync(outside, path.join(dir, 'p'));
    st.close(st.open('p/a', O_RDWR | O_CREAT, 0o644));
    st.close(st.open('p/q/b', O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'p.real')).sort(), ['a', 'q']);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'p.real', 'q')), ['b']);
    assert.deepEqual(fs.readdirSync(outside), []);
    fs.unlinkSync(path.join(dir, 'p'));
    fs.renameSync(path.join(dir, 'p.real'), path.join(dir, 'p'));
    await Promise.resolve();
    // The brick's own rename of a folder above a pinned one: both pins go, the names are resolved again.
    st.rename('p', 'r');
    st.mkdir('p', 0o700);
    st.mkdir('p/q', 0o700);
    await Promise.resolve();
    st.close(st.open('p/c', O_RDWR | O_CREAT, 0o644));
    st.close(st.open('p/q/d', O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'p')).sort(), ['c', 'q']);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'p', 'q')), ['d']);
    // And its rmdir of a pinned one.
    st.pinDir('p/q');
    st.unlink('p/q/d');
    st.rmdir('p/q');
    st.mkdir('p/q', 0o700);
    await Promise.resolve();
    st.close(st.open('p/q/e', O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'p', 'q')), ['e']);
    // A pinned folder removed behind the brick's back: its calls fail (ENOENT, the folder is gone) until
    // the brick makes it again and pins it again, as BrickCore does for its private folder.
    st.pinDir('p/q');
    fs.rmSync(path.join(dir, 'p', 'q'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'p', 'q'));
    await Promise.resolve();
    assert.throws(() => st.open('p/q/f', O_RDWR | O_CREAT, 0o644), { code: 'ENOENT' });
    st.pinDir('p/q');
    st.close(st.open('p/q/f', O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'p', 'q')), ['f']);
  }));

test('pinned folders: one moved out of the brick (by a process that can enter it) is let go, and its calls resolve the name beneath the root again, never following it out', () =>
  withPinnedPQ(async (st, dir, outside) => {
    st.close(st.open('p/q/a', O_RDWR | O_CREAT, 0o644));
    await Promise.resolve();
    // The pinned folder (and the one pinned beneath it) renamed to a folder outside the brick, on the same
    // file system, and a folder of that name made again in the brick.
    fs.renameSync(path.join(dir, 'p'), path.join(outside, 'p'));
    fs.mkdirSync(path.join(dir, 'p', 'q'), { recursive: true });
    st.close(st.open('p/b', O_RDWR | O_CREAT, 0o644));
    st.close(st.open('p/q/c', O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(outside, 'p')), ['q']);
    assert.deepEqual(fs.readdirSync(path.join(outside, 'p', 'q')), ['a'], 'nothing made outside the brick');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'p')).sort(), ['b', 'q']);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'p', 'q')), ['c']);
  }));

test('native addons: built with assertions on (native/check.h), and a call with a negative descriptor is refused before it is made', async () => {
  const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const copyNode = path.join(root, 'native', 'copy', 'build', 'Release', 'dhtfs_copy.node');
  const fuseNode = path.join(root, 'native', 'build', 'Release', 'dhtfs_fuse.node');
  for (const f of [copyNode, fuseNode]) {
    if (!fs.existsSync(f)) continue; // not built here (scripts/setup.sh logs why)
    const bin = fs.readFileSync(f);
    // assert() compiled in keeps its expression's text and calls __assert_fail (NDEBUG would drop both).
    assert.ok(bin.includes('__assert_fail'), `${path.basename(f)} calls assert`);
    assert.ok(bin.includes('napi_check_st_ == napi_ok'), `${path.basename(f)} asserts N-API statuses`);
  }
  if (!fs.existsSync(copyNode)) return;
  const copy = createRequire(import.meta.url)(copyNode) as { syncFs(fd: number): Promise<number>; copyRange(a: number, b: number, o: number, l: number): Promise<number> };
  // Before, both went to the thread pool and failed there with EBADF (copyRange's job asserts now).
  assert.throws(() => copy.syncFs(-1), TypeError);
  assert.throws(() => copy.copyRange(-1, 1, 0, 10), TypeError);
  assert.throws(() => copy.copyRange(0, -5, 0, 10), TypeError);
});

test('a path of over 1 KiB whose multibyte character straddles the first KiB is used whole, not cut at that character', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-storage-'));
  try {
    const st = new DiskStorage(dir);
    // Four folders of 250 bytes (1,004 bytes with their slashes), then a name whose 4-byte character
    // begins at byte 1,021: the first 1,023 bytes end inside it, and V8 copies no part of a character.
    const folders = ['a', 'b', 'c', 'd'].map((c) => c.repeat(250));
    for (let i = 1; i <= folders.length; i++) fs.mkdirSync(path.join(dir, ...folders.slice(0, i)));
    const name = `${'n'.repeat(17)}\u{1F600}x`;
    const rel = [...folders, name].join('/');
    assert.ok(Buffer.byteLength(rel) > 1024);
    st.close(st.open(rel, O_RDWR | O_CREAT, 0o644));
    assert.deepEqual(fs.readdirSync(path.join(dir, ...folders)), [name]);
    assert.equal(st.lstat(rel).size, 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

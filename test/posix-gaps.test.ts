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
import { spawnSync } from 'node:child_process';
import { Volume } from '../src/api/volume.js';
import { startCluster } from './helpers/cluster.js';
import { mountCluster, unmountCluster } from './helpers/mount.js';
import { namesOn } from './helpers/disk.js';
import { execFileSync } from 'node:child_process';
import { S_IFBLK, S_IFCHR, S_IFREG } from '../src/storage/storage.js';

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
    assert.ok(fs.statSync(path.join(mnt, 'io')).blksize <= 128 * 1024, "an I/O size that does not inflate programs' writes");
  } finally {
    fs.rmSync(local, { recursive: true, force: true });
    await unmountCluster(c, mnt, daemon);
  }
});

/** makedev(3), glibc's encoding, for the small numbers used here. */
const makedev = (major: number, minor: number) => ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12);

test('device nodes: mknod of block and character devices through the library, rdev in stat, for a fresh client too', async () => {
  const c = await startCluster(2);
  try {
    const vol = await Volume.connect(c.spec);
    try {
      await vol.mkdir('/dev');
      await vol.mknod('/dev/null2', S_IFCHR | 0o666, makedev(1, 3));
      await vol.mknod('/dev/loop9', S_IFBLK | 0o640, makedev(7, 300));
      await assert.rejects(vol.mknod('/dev/null2', S_IFCHR | 0o666, makedev(1, 3)), { code: 'EEXIST' });
      await assert.rejects(vol.mknod('/dev/f', S_IFREG | 0o644), { code: 'EINVAL' });
      const fresh = await Volume.connect(c.spec);
      try {
        for (const v of [vol, fresh]) {
          const ch = await v.lstat('/dev/null2');
          assert.ok(ch.isCharacterDevice());
          assert.equal(ch.rdev, makedev(1, 3));
          assert.equal(ch.mode & 0o7777, 0o644, 'the umask applies, as to mkfifo');
          const bl = await v.lstat('/dev/loop9');
          assert.ok(bl.isBlockDevice());
          assert.equal(bl.rdev, makedev(7, 300));
          assert.equal((await v.lstat('/dev')).rdev, 0);
        }
        const listed = await fresh.readdir('/dev', { withFileTypes: true });
        assert.deepEqual(listed.map((e) => [e.name, e.isCharacterDevice(), e.isBlockDevice()]).sort(), [
          ['loop9', false, true],
          ['null2', true, false],
        ]);
        // The brick never opens one for a client.
        await assert.rejects(vol.open('/dev/null2', 'r'), { code: 'ENXIO' });
      } finally {
        await fresh.close();
      }
    } finally {
      await vol.close();
    }
  } finally {
    await c.stop();
  }
});

test('through the mount: mknod of devices, their stat and their use, as on a local disk', { skip: fuse }, async () => {
  // libfuse mounts nodev by default (as fusermount does): -o dev lets the kernel open the devices.
  const { c, mnt, daemon } = await mountCluster('pgdev', 'dev');
  const local = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-local-'));
  try {
    const seen = (root: string) => {
      execFileSync('mknod', ['-m', '0620', path.join(root, 'zero'), 'c', '1', '5']);
      execFileSync('mknod', ['-m', '0600', path.join(root, 'blk'), 'b', '7', '300']);
      assert.throws(() => execFileSync('mknod', [path.join(root, 'zero'), 'c', '1', '5'], { stdio: 'pipe' }), /exists/);
      const out: Record<string, unknown> = {};
      for (const n of ['zero', 'blk']) {
        const st = fs.lstatSync(path.join(root, n));
        out[n] = { mode: st.mode.toString(8), rdev: st.rdev, nlink: st.nlink, size: st.size, char: st.isCharacterDevice(), block: st.isBlockDevice() };
      }
      // The kernel opens the device itself: a read of /dev/zero's device gives zeros on either.
      const fd = fs.openSync(path.join(root, 'zero'), 'r');
      try {
        const b = Buffer.alloc(8, 0xff);
        out.read = [fs.readSync(fd, b, 0, 8, null), b.toString('hex')];
      } finally {
        fs.closeSync(fd);
      }
      out.listed = fs
        .readdirSync(root, { withFileTypes: true })
        .map((e) => [e.name, e.isCharacterDevice(), e.isBlockDevice()])
        .sort();
      fs.unlinkSync(path.join(root, 'zero'));
      out.after = fs.readdirSync(root).sort();
      return out;
    };
    assert.deepEqual(seen(mnt), seen(local));
  } finally {
    fs.rmSync(local, { recursive: true, force: true });
    await unmountCluster(c, mnt, daemon);
  }
});

test('through the mount: fstat, fchmod, fchown and futimes of an open file whose name is gone, as on a local disk', { skip: fuse }, async () => {
  const { c, mnt, daemon } = await mountCluster('pgfstat');
  const local = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-local-'));
  try {
    const seen = (root: string) => {
      const out: unknown[] = [];
      const shown = (st: fs.Stats) => ({ size: st.size, nlink: st.nlink, file: st.isFile(), mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid });
      const p = path.join(root, 'gone');
      const fd = fs.openSync(p, 'w+', 0o640);
      const other = fs.openSync(p, 'r');
      try {
        fs.writeSync(fd, 'hello');
        fs.unlinkSync(p);
        out.push(shown(fs.fstatSync(fd)));
        fs.writeSync(fd, ', world', 5);
        out.push(shown(fs.fstatSync(fd)), shown(fs.fstatSync(other)));
        fs.ftruncateSync(fd, 3);
        out.push(shown(fs.fstatSync(other)));
        // Attributes by descriptor (the kernel sends these without a handle too).
        fs.fchmodSync(fd, 0o604);
        fs.fchownSync(fd, 4001, 4002);
        fs.futimesSync(fd, 1_000_000_001, 1_000_000_002);
        const st = fs.fstatSync(other);
        out.push(shown(st), st.mtimeMs, st.atimeMs);
        const b = Buffer.alloc(8);
        out.push(b.subarray(0, fs.readSync(other, b, 0, 8, 0)).toString());
        // Another file made at the name meanwhile is another file.
        fs.writeFileSync(p, 'new file, longer');
        out.push(shown(fs.fstatSync(fd)), fs.statSync(p).size);
        fs.unlinkSync(p);
        out.push(shown(fs.fstatSync(other)));
      } finally {
        fs.closeSync(fd);
        fs.closeSync(other);
      }
      // A renamed-over file, too.
      fs.writeFileSync(path.join(root, 'a'), 'aaa');
      fs.writeFileSync(path.join(root, 'b'), 'bbbbbb');
      const fa = fs.openSync(path.join(root, 'b'), 'r');
      fs.renameSync(path.join(root, 'a'), path.join(root, 'b'));
      out.push(shown(fs.fstatSync(fa)));
      fs.closeSync(fa);
      return out;
    };
    assert.deepEqual(seen(mnt), seen(local));
  } finally {
    fs.rmSync(local, { recursive: true, force: true });
    await unmountCluster(c, mnt, daemon);
  }
});

test('RENAME_EXCHANGE: two names on one brick swap their files at once; directories and names on two bricks answer EXDEV', async () => {
  const c = await startCluster(2);
  try {
    const names = c.spec.bricks.map((b) => b.name);
    const vol = await Volume.connect(c.spec);
    const other = await Volume.connect(c.spec);
    try {
      const [a, b] = namesOn(c.dirs, names, '/', 0, 2, 'x').map((n) => `/${n}`);
      const [far] = namesOn(c.dirs, names, '/', 1, 1, 'y').map((n) => `/${n}`);
      await vol.writeFile(a, 'file a\n');
      await vol.symlink('target of b', b);
      await vol.writeFile(far, 'far\n');
      await vol.mkdir('/d');
      const [ga, gb] = [(await vol.lstat(a)).gfid, (await vol.lstat(b)).gfid];
      // A reader that looks both names up meanwhile always finds both, each one of the two files.
      let reading = true;
      const seen: string[] = [];
      const reader = (async () => {
        while (reading) {
          for (const n of [a, b]) {
            const st = await other.lstat(n).catch((e) => e.code as string);
            if (typeof st === 'string') seen.push(`${n}: ${st}`);
            else if (st.gfid !== ga && st.gfid !== gb) seen.push(`${n}: another file`);
          }
        }
      })();
      for (let i = 0; i < 20; i++) await vol.exchange(a, b);
      await vol.exchange(a, b);
      reading = false;
      await reader;
      assert.deepEqual(seen, []);
      assert.equal((await other.lstat(a)).gfid, gb, 'a names what b named (an odd number of exchanges)');
      assert.equal(await other.readlink(a), 'target of b');
      assert.equal(String(await other.readFile(b)), 'file a\n');
      assert.equal((await other.lstat(b)).gfid, ga);
      await assert.rejects(vol.exchange(a, '/missing'), { code: 'ENOENT' });
      await assert.rejects(vol.exchange(b, far), { code: 'EXDEV' }, 'names on two bricks');
      await assert.rejects(vol.exchange(b, '/d'), { code: 'EXDEV' }, 'a directory');
      assert.equal(String(await other.readFile(far)), 'far\n', 'nothing changed');
      // A file in a subdirectory and one at the root, both on brick 0.
      await vol.mkdir('/sub');
      const [s] = namesOn(c.dirs, names, '/sub', 0, 1, 'z').map((n) => `/sub/${n}`);
      await vol.writeFile(s, 'in sub\n');
      await vol.exchange(s, b);
      assert.equal(String(await other.readFile(b)), 'in sub\n');
      assert.equal(String(await other.readFile(s)), 'file a\n');
      assert.deepEqual((await other.readdir('/sub')).length, 1);
    } finally {
      await other.close();
      await vol.close();
    }
  } finally {
    await c.stop();
  }
});

/** renameat2(2) from another process (Python's ctypes: Node has none): the errno's name, or null. */
function renameat2(from: string, to: string, flags: number): string | null {
  const py = ['import ctypes, errno, sys', 'libc = ctypes.CDLL(None, use_errno=True)', 'r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))', "print(errno.errorcode[ctypes.get_errno()] if r else 'ok')"].join(
    '\n',
  );
  const out = execFileSync('python3', ['-c', py, from, to, String(flags)], { encoding: 'utf8' }).trim();
  return out === 'ok' ? null : out;
}

test('through the mount: RENAME_EXCHANGE of two files on one brick, and RENAME_NOREPLACE, as on a local disk', { skip: fuse }, async () => {
  const { c, mnt, daemon } = await mountCluster('pgx');
  const local = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-local-'));
  try {
    const names = c.spec.bricks.map((b) => b.name);
    const [a, b] = namesOn(c.dirs, names, '/', 0, 2, 'x');
    const seen = (root: string) => {
      const out: unknown[] = [];
      const [pa, pb] = [path.join(root, a), path.join(root, b)];
      fs.writeFileSync(pa, 'aaa');
      fs.writeFileSync(pb, 'bbbbbb');
      const ino = [fs.statSync(pa).ino, fs.statSync(pb).ino];
      const fd = fs.openSync(pa, 'r');
      out.push(renameat2(pa, pb, 2));
      out.push(fs.readFileSync(pa, 'utf8'), fs.readFileSync(pb, 'utf8'));
      out.push(fs.statSync(pa).ino === ino[1], fs.statSync(pb).ino === ino[0]);
      // An fd opened before follows its file, now under the other name.
      const buf = Buffer.alloc(8);
      out.push(buf.subarray(0, fs.readSync(fd, buf, 0, 8, 0)).toString());
      fs.closeSync(fd);
      out.push(renameat2(pa, path.join(root, 'none'), 2));
      out.push(renameat2(pa, pb, 1), renameat2(pa, path.join(root, 'new'), 1), fs.existsSync(path.join(root, 'new')));
      out.push(renameat2(pa, pb, 3));
      out.push(fs.readdirSync(root).sort());
      return out;
    };
    assert.deepEqual(seen(mnt), seen(local));
  } finally {
    fs.rmSync(local, { recursive: true, force: true });
    await unmountCluster(c, mnt, daemon);
  }
});

/**
 * Issue 20 item 11: a brick resolves names beneath its folder's descriptor, never prefixing the folder, so
 * a volume path as long as a local disk takes (here 4,068 bytes) works as there; one past PATH_MAX is
 * ENAMETOOLONG, as there.
 */
test('a path of 4,068 bytes: mkdir, create, stat, read, readdir, unlink, rmdir, as on a local disk', async () => {
  const c = await startCluster(2);
  try {
    const vol = await Volume.connect(c.spec);
    try {
      const dirs = Array.from({ length: 19 }, (_, i) => String(i % 10).repeat(200));
      const dir = '/' + dirs.join('/');
      const file = `${dir}/${'f'.repeat(248)}`;
      assert.equal(Buffer.byteLength(file), 4068);
      await vol.mkdir(dir, { recursive: true });
      await vol.writeFile(file, 'at the bottom');
      assert.equal((await vol.stat(file)).size, 13);
      assert.equal(await vol.readFile(file, 'utf8'), 'at the bottom');
      assert.deepEqual(await vol.readdir(dir), ['f'.repeat(248)]);
      await vol.rename(file, `${dir}/g`);
      assert.equal(await vol.readFile(`${dir}/g`, 'utf8'), 'at the bottom');
      await vol.unlink(`${dir}/g`);
      assert.deepEqual(await vol.readdir(dir), []);
      // Past PATH_MAX (4,096 bytes with its NUL): refused as a local disk refuses it.
      await assert.rejects(vol.writeFile(`${dir}/${'x'.repeat(255)}/${'y'.repeat(30)}`, 'x'), { code: 'ENAMETOOLONG' });
      for (let i = dirs.length; i > 0; i--) await vol.rmdir('/' + dirs.slice(0, i).join('/'));
      assert.deepEqual(await vol.readdir('/'), []);
    } finally {
      await vol.close();
    }
  } finally {
    // rm(1) walks a tree deeper than PATH_MAX (Node's rmSync does not), should the test stop half way.
    for (const d of c.dirs) spawnSync('rm', ['-rf', path.join(d, '0'.repeat(200))]);
    await c.stop();
  }
});

/**
 * The operator session of issue 20, end to end on real parts: a volume made and started by the CLI,
 * mounted through FUSE, a real tree copied in with `cp -a` (documentation files, symlinks, hard links,
 * FIFOs, sockets, sparse files, user xattrs), then add-brick, rebalance, a failed add-brick and its retry,
 * a brick killed and restarted, remove-brick start/commit without --force. After each step the mounted
 * tree is compared with its source (type, mode, owner, size, times, content, link targets, hard-link
 * groups, user xattrs), while a library client reads every file it knows of and counts each ENOENT
 * (there must be none: a file that exists is never reported missing), and sparse files keep their holes
 * on whichever brick holds them.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import xattr from '@napi-rs/xattr';
import { MAIN_JS, freePort } from '../src/cli/state.js';
import { Volume } from '../src/api/volume.js';
import { fuseAvailable } from '../src/fuse/mount.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a name is, as compared between the source tree and the mount. */
interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: string;
  content?: string;
  target?: string;
  /** The other names of this inode under the tree (hard links), sorted. */
  links?: string[];
  xattrs?: string;
}

function typeOf(st: fs.BigIntStats): string {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'other';
}

async function hashFile(p: string): Promise<string> {
  return createHash('sha256')
    .update(await fs.promises.readFile(p))
    .digest('hex');
}

async function userXattrs(p: string): Promise<string> {
  const names = (await xattr.listAttributes(p)).filter((n) => n.startsWith('user.')).sort();
  const values = await Promise.all(names.map(async (n) => Buffer.from((await xattr.getAttribute(p, n)) ?? []).toString('hex')));
  return names.map((n, i) => `${n}=${values[i]}`).join(',');
}

/**
 * Every name under `root` with what it is; hard-link groups by inode. Asynchronous: this process's
 * library client (the workload) must go on while the mount is walked, as a client elsewhere would. A
 * synchronous call froze it, and a directory heal it had begun held the namespace lock the mount's own
 * heal then waited for, until the lock-timeout (30 s).
 */
async function snapshot(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const byIno = new Map<bigint, string[]>();
  const walk = async (rel: string) => {
    for (const name of (await fs.promises.readdir(path.join(root, rel))).sort()) {
      const r = path.posix.join(rel, name);
      const p = path.join(root, r);
      const st = await fs.promises.lstat(p, { bigint: true });
      const e: Entry = { type: typeOf(st), mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), size: st.isDirectory() ? 0 : Number(st.size), mtime: String(st.mtimeNs) };
      if (st.isFile()) {
        e.content = await hashFile(p);
        e.xattrs = await userXattrs(p);
        if (st.nlink > 1n) byIno.set(st.ino, [...(byIno.get(st.ino) ?? []), r]);
      }
      if (st.isSymbolicLink()) e.target = await fs.promises.readlink(p);
      out.set(r, e);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  for (const names of byIno.values()) for (const n of names) out.get(n)!.links = [...names].sort();
  return out;
}

function diff(want: Map<string, Entry>, got: Map<string, Entry>): string[] {
  const out: string[] = [];
  for (const [n, w] of want) {
    const g = got.get(n);
    if (!g) out.push(`${n}: missing`);
    else
      for (const k of Object.keys(w) as (keyof Entry)[]) {
        if (k === 'mtime' && w.type === 'dir') continue; // a directory's mtime moves with the names made in it
        if (JSON.stringify(w[k]) !== JSON.stringify(g[k])) out.push(`${n}: ${k} ${JSON.stringify(g[k])}, not ${JSON.stringify(w[k])}`);
      }
  }
  for (const n of got.keys()) if (!want.has(n)) out.push(`${n}: not in the source`);
  return out;
}

/** The source: a slice of a real documentation tree, and every other kind of name a volume holds. */
function makeSource(dir: string): { sparse: string[] } {
  fs.mkdirSync(dir);
  const docs = fs.existsSync('/usr/share/doc') ? fs.readdirSync('/usr/share/doc').sort().slice(0, 25) : [];
  fs.mkdirSync(path.join(dir, 'doc'));
  if (docs.length) execFileSync('cp', ['-a', ...docs.map((d) => path.join('/usr/share/doc', d)), path.join(dir, 'doc')]);
  const x = path.join(dir, 'kinds');
  fs.mkdirSync(path.join(x, 'deep', 'a', 'b', 'c'), { recursive: true });
  fs.mkdirSync(path.join(x, 'empty'));
  for (let i = 0; i < 40; i++) {
    fs.writeFileSync(path.join(x, `f${i}`), `file ${i}\n`.repeat(i * 37 + 1), { mode: i % 3 === 0 ? 0o600 : 0o644 });
    fs.symlinkSync(i % 2 ? `f${i}` : `/nowhere/${i}`, path.join(x, `l${i}`));
    if (i % 4 === 0) execFileSync('mkfifo', ['-m', '0640', path.join(x, `p${i}`)]);
    if (i % 5 === 0) {
      fs.writeFileSync(path.join(x, `h${i}`), `linked ${i}\n`);
      fs.linkSync(path.join(x, `h${i}`), path.join(x, `h${i}-b`));
      fs.linkSync(path.join(x, `h${i}`), path.join(x, 'deep', 'a', `h${i}-c`));
    }
    if (i % 8 === 0) xattr.setAttributeSync(path.join(x, `f${i}`), 'user.note', Buffer.from(`note ${i}`));
  }
  fs.writeFileSync(path.join(x, 'deep', 'a', 'b', 'c', 'leaf'), 'deep\n');
  fs.chmodSync(path.join(x, 'deep', 'a'), 0o750);
  // A socket: bound by a short-lived process, left behind as a name.
  execFileSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path.join(x, 'sock'))}, function () { process.exit(0) })`]);
  // Sparse files: 48 MiB apparent, 1 MiB of data in the middle and a few bytes at the end.
  const sparse: string[] = [];
  for (let i = 0; i < 3; i++) {
    const p = path.join(x, `sparse${i}`);
    const fd = fs.openSync(p, 'w');
    fs.writeSync(fd, Buffer.alloc(1 << 20, 0x41 + i), 0, 1 << 20, 20 << 20);
    fs.writeSync(fd, Buffer.from('end\n'), 0, 4, (48 << 20) - 4);
    fs.closeSync(fd);
    sparse.push(`kinds/sparse${i}`);
  }
  for (const p of [path.join(x, 'f1'), path.join(x, 'l1')]) fs.lutimesSync(p, new Date('2001-02-03T04:05:06.789Z'), new Date('2002-03-04T05:06:07.891Z'));
  return { sparse };
}

test('an operator session: cp -a, add-brick, rebalance, failed add-brick retried, brick killed and restarted, remove-brick commit; nothing lost, no false ENOENT', { skip: !fuseAvailable().ok && 'no FUSE here', timeout: 600_000 }, async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-session-'));
  const env = { ...process.env, DHTFS_HOME: home };
  const cli = async (...args: string[]) => (await run(process.execPath, [MAIN_JS, ...args], { env, maxBuffer: 64 << 20 })).stdout;
  const brick = async (i: number) => `127.0.0.1:${await freePort()}:${path.join(home, `b${i}`)}`;
  const mnt = path.join(home, 'mnt');
  const src = path.join(home, 'src');
  const mountedHere = () =>
    fs
      .readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === mnt);
  const waitDone = async (verb: string[]) => {
    for (let i = 0; i < 1800; i++) {
      const s = JSON.parse(await cli('volume', ...verb, 'status', '--json'));
      const st = s && 'rebalance' in s ? s.rebalance : s;
      if (st && st.state !== 'running') return st;
      await sleep(100);
    }
    throw new Error(`${verb.join(' ')} did not end`);
  };
  const brickNames = async () => (JSON.parse(await cli('volume', 'info', 'sv', '--json')) as { bricks: { name: string; dir: string }[] }).bricks;
  let want!: Map<string, Entry>;
  const check = async (step: string) => {
    const problems = diff(want, await snapshot(path.join(mnt, 'tree')));
    assert.deepEqual(problems.slice(0, 20), [], `the mounted tree against its source ${step} (${problems.length} differences)`);
  };
  /** Sparse files keep their holes on the brick that holds their data. */
  const checkSparse = async (sparse: string[], step: string) => {
    const bricks = await brickNames();
    for (const s of sparse) {
      const holders = bricks.map((b) => path.join(b.dir, 'tree', s)).filter((p) => fs.existsSync(p) && fs.statSync(p).size > 0);
      assert.equal(holders.length, 1, `${s} has its data on one brick ${step}`);
      const st = fs.statSync(holders[0]);
      assert.equal(st.size, 48 << 20);
      assert.ok(st.blocks * 512 < 4 << 20, `${s} on its brick allocates ${st.blocks * 512} bytes ${step}, not its 48 MiB`);
    }
  };

  // The workload: a library client that reads every file of the tree it knows, over and over.
  let phase = 'copy';
  let working = true;
  const enoent: string[] = [];
  const otherErrors: string[] = [];
  let reads = 0;
  let workload: Promise<void> = Promise.resolve();
  try {
    const { sparse } = makeSource(src);
    want = await snapshot(src);
    await cli('volume', 'create', 'sv', await brick(0), await brick(1));
    await cli('volume', 'start', 'sv');
    fs.mkdirSync(mnt);
    await cli('mount', 'sv', mnt, '--background');
    assert.ok(mountedHere());
    await run('cp', ['-a', src, path.join(mnt, 'tree')]);
    await check('after cp -a');

    const specFile = path.join(home, 'client-spec.json');
    await cli('volume', 'spec', 'sv', '-o', specFile);
    const vol = await Volume.connect(JSON.parse(fs.readFileSync(specFile, 'utf8')));
    const files = [...want].filter(([, e]) => e.type === 'file' && e.size < 1 << 20).map(([n, e]) => ({ path: `/tree/${n}`, content: e.content! }));
    workload = (async () => {
      let i = 0;
      while (working) {
        const f = files[i++ % files.length];
        try {
          const data = await vol.readFile(f.path);
          assert.equal(createHash('sha256').update(data).digest('hex'), f.content, `${f.path} read back`);
          reads++;
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code === 'ENOENT') enoent.push(`${phase}: ${f.path}`);
          else if (!(phase === 'brick down' && code === 'ENOTCONN')) otherErrors.push(`${phase}: ${f.path}: ${(e as Error).message}`);
        }
        if (i % 50 === 0) await sleep(1);
      }
    })();

    phase = 'add-brick';
    assert.match(await cli('volume', 'add-brick', 'sv', await brick(2)), /success/);
    await check('after add-brick');

    phase = 'rebalance';
    await cli('volume', 'rebalance', 'sv', 'start');
    const r = await waitDone(['rebalance', 'sv']);
    assert.equal(r.state, 'completed', r.error);
    assert.equal(r.counters.failed, 0);
    assert.ok(r.counters.migrated > 0, 'the rebalance moved files to the new brick');
    await check('after rebalance');
    await checkSparse(sparse, 'after rebalance');

    // A failed add-brick (its port is taken) leaves the volume as it was; a retry succeeds.
    phase = 'failed add-brick';
    const before = await brickNames();
    const squatter = net.createServer();
    await new Promise<void>((res) => squatter.listen(0, '127.0.0.1', res));
    const taken = (squatter.address() as net.AddressInfo).port;
    try {
      await assert.rejects(cli('volume', 'add-brick', 'sv', `127.0.0.1:${taken}:${path.join(home, 'b3')}`));
    } finally {
      squatter.close();
    }
    assert.deepEqual(await brickNames(), before, 'a failed add-brick left the volume as it was');
    await check('after a failed add-brick');
    phase = 'add-brick retried';
    assert.match(await cli('volume', 'add-brick', 'sv', await brick(3)), /success/);
    await check('after the retried add-brick');

    // One brick killed: the others keep serving; restarted by volume start, everything is back.
    phase = 'brick down';
    const status = JSON.parse(await cli('volume', 'status', 'sv', '--json')) as { bricks: { brick: string; pid: number | null; online: boolean }[] };
    const victim = status.bricks.find((b) => b.brick === 'sv-client-1')!;
    assert.ok(victim.pid, `the brick's pid is shown: ${JSON.stringify(status)}`);
    process.kill(victim.pid!, 'SIGKILL');
    await sleep(1500);
    const down = await cli('volume', 'status', 'sv', '--json');
    assert.ok(
      (JSON.parse(down) as { bricks: { brick: string; online: boolean }[] }).bricks.some((b) => b.brick === 'sv-client-1' && !b.online),
      down,
    );
    await cli('volume', 'start', 'sv');
    // A client that found the brick down dials again a second after (RECONNECT_MS): until then ENOTCONN.
    await sleep(1500);
    phase = 'brick restarted';
    await check('after a brick was killed and restarted');

    // Drain the first brick and commit without --force.
    phase = 'remove-brick';
    await cli('volume', 'remove-brick', 'sv', 'sv-client-0', 'start');
    const d = await waitDone(['remove-brick', 'sv', 'sv-client-0']);
    assert.equal(d.state, 'completed', d.error);
    assert.equal(d.counters.failed, 0);
    assert.match(await cli('volume', 'remove-brick', 'sv', 'sv-client-0', 'commit'), /removed sv-client-0/);
    await check('after remove-brick commit');
    await checkSparse(sparse, 'after remove-brick commit');

    phase = 'end';
    await sleep(500);
    working = false;
    await workload;
    await vol.close();
    console.log(`# ${want.size} names compared after each of 6 steps; the workload read ${reads} files, ENOENT ${enoent.length}`);
    assert.deepEqual(enoent.slice(0, 10), [], `${enoent.length} false ENOENT`);
    assert.deepEqual(otherErrors.slice(0, 10), [], `${otherErrors.length} other errors`);
    assert.ok(reads > files.length, `the workload ran throughout (${reads} reads)`);
  } finally {
    working = false;
    await workload.catch(() => {});
    if (mountedHere()) await run('umount', ['-l', mnt]).catch(() => {});
    await cli('volume', 'stop', 'sv').catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  }
});

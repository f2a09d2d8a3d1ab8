/**
 * An authenticated but hostile client against a running brick process (issue 17, items 1, 2, 4, 7):
 * forged gfid handles that would lead outside the brick, gfids taken from other inodes, a float64 -0
 * where an integer goes, FIFOs opened through the brick, and the brick's root left open to local users.
 * Each attack is refused, the brick keeps serving a good client, nothing outside the brick changes, and
 * the refusal is logged with the client's name.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { Volume } from '../src/api/volume.js';
import { RpcClient } from '../src/wire/rpc.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import type { Message } from '../src/wire/frame.js';
import { ROOT_GFID } from '../src/common/gfid.js';
import { O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, S_IFIFO } from '../src/storage/storage.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { frame, packr, rawConnect, type Raw } from './helpers/raw.js';
import { snapshot } from './helpers/disk.js';

const isRoot = process.getuid?.() === 0;

async function client(c: Cluster): Promise<RpcClient> {
  const b = c.spec.bricks[0];
  return RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, clientName: 'mallory' });
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? 'unknown';
  }
  return 'ok';
}

/** The brick answers a good client's request within a second. */
async function alive(c: Cluster): Promise<void> {
  const r = await client(c);
  try {
    const t0 = Date.now();
    await r.call('ping', {});
    assert.ok(Date.now() - t0 < 1000, 'the brick answers at once');
  } finally {
    r.close();
  }
}

function outsideFile(c: Cluster): { file: string; before: string } {
  const dir = path.join(c.base, 'outside');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'secret');
  fs.writeFileSync(file, 'root only\n', { mode: 0o600 });
  const st = fs.statSync(file);
  return { file, before: `${st.mode} ${st.uid} ${st.gid} ${st.size} ${fs.readFileSync(file, 'utf8')}` };
}

function describe(file: string): string {
  const st = fs.statSync(file);
  return `${st.mode} ${st.uid} ${st.gid} ${st.size} ${fs.readFileSync(file, 'utf8')}`;
}

test('a symlink whose text looks like a directory handle leads nowhere when its file is opened by gfid', async () => {
  const c = await startCluster(1);
  try {
    const { file, before } = outsideFile(c);
    const r = await client(c);
    const rel = path.relative(c.dirs[0], file); // ../outside/secret
    await r.call('mkdir', { path: '/d', mode: 0o755, gfid: randomUUID() });
    const forged = [
      `../../00/00/${ROOT_GFID}/${rel}`, // the reported attack: a path joined onto the brick's root
      `../../00/00/${ROOT_GFID}/..`,
      `../../00/00/${ROOT_GFID}/d`, // a well-formed handle text naming a real directory of another gfid
    ];
    for (const [i, target] of forged.entries()) {
      const g = randomUUID();
      await r.call('symlink', { path: `/x${i}`, target, gfid: g });
      for (const flags of [O_RDONLY, O_RDWR]) {
        assert.notEqual(await code(r.call('open', { gfid: g, flags })), 'ok', `open by gfid of symlink ${i}`);
      }
      assert.notEqual(await code(r.call('open', { path: `/x${i}`, flags: O_RDONLY })), 'ok');
      // Looked up by gfid it is what it is: a symlink, not what its text names.
      const at = (await r.call('lookupGfid', { gfid: g })) as { mode: number };
      assert.equal(at.mode & 0o170000, 0o120000, `symlink ${i} stays a symlink`);
      // Its last name gone, its handle goes too (it must never be taken for a directory's).
      await r.call('unlink', { path: `/x${i}` });
      assert.notEqual(await code(r.call('lookupGfid', { gfid: g })), 'ok');
      assert.notEqual(await code(r.call('open', { gfid: g, flags: O_RDWR })), 'ok');
    }
    assert.equal(describe(file), before, 'nothing outside the brick changed');
    r.close();
    await alive(c);
    assert.match(c.logs[0], /refused open from mallory/);
    for (const line of c.logs[0].split('\n').filter((l) => l.includes('refused'))) assert.ok(line.length < 600, `log line of ${line.length} bytes`);
  } finally {
    await c.stop();
  }
});

test("gfids are the brick's to keep unique: no create takes over a handle in use", async () => {
  const c = await startCluster(1);
  try {
    const r = await client(c);
    const D = randomUUID();
    const F = randomUUID();
    await r.call('mkdir', { path: '/d', mode: 0o755, gfid: D });
    const made = (await r.call('create', { path: '/f', mode: 0o644, flags: O_RDWR, gfid: F, data: Buffer.from('file f'), close: true })) as { fd: number };
    assert.equal(made.fd, -1);
    const taken = [D, F];
    for (const g of taken) {
      assert.equal(await code(r.call('create', { path: `/c-${g}`, mode: 0o644, flags: O_RDWR, gfid: g })), 'EEXIST');
      assert.equal(await code(r.call('mkdir', { path: `/m-${g}`, mode: 0o755, gfid: g })), 'EEXIST');
      assert.equal(await code(r.call('symlink', { path: `/s-${g}`, target: 'x', gfid: g })), 'EEXIST');
      assert.equal(await code(r.call('mknod', { path: `/p-${g}`, mode: S_IFIFO | 0o644, gfid: g })), 'EEXIST');
      assert.equal(await code(r.call('mklinkto', { path: `/l-${g}`, target: 'tv-client-0', gfid: g })), 'EEXIST');
    }
    for (const g of [ROOT_GFID, '00000000-0000-0000-0000-000000000000']) {
      assert.equal(await code(r.call('create', { path: '/root-twin', mode: 0o644, flags: O_RDWR, gfid: g })), 'EPERM');
      assert.equal(await code(r.call('mkdir', { path: '/root-twin', mode: 0o755, gfid: g })), 'EPERM');
      assert.equal(await code(r.call('symlink', { path: '/root-twin', target: '.', gfid: g })), 'EPERM');
    }
    // Nothing was left behind by the refused creates, and every handle still leads to its own inode.
    const names = ((await r.call('readdir', { path: '/' })) as { entries: { name: string }[] }).entries.map((e) => e.name).sort();
    assert.deepEqual(names, ['d', 'f']);
    const d = (await r.call('lookupGfid', { gfid: D })) as { mode: number; gfid: string };
    assert.equal(d.mode & 0o170000, 0o040000);
    assert.equal(d.gfid, D);
    const root = (await r.call('lookupGfid', { gfid: ROOT_GFID })) as { gfid: string };
    assert.equal(root.gfid, ROOT_GFID);
    const o = (await r.call('open', { gfid: F, flags: O_RDONLY })) as { fd: number };
    const data = (await r.call('read', { fd: o.fd, offset: 0, length: 100 })) as { data: Buffer };
    assert.equal(Buffer.from(data.data).toString(), 'file f');
    r.close();
    await alive(c);
    assert.match(c.logs[0], /refused (create|mkdir) from mallory/);
  } finally {
    await c.stop();
  }
});

/** Waits (5 s at most) for the reply to request `id` among a raw connection's messages. */
async function replyTo(r: Raw, id: number): Promise<Message> {
  for (const t0 = Date.now(); ; await new Promise((res) => setTimeout(res, 5))) {
    const m = r.msgs.find((x) => x[0] === 1 && x[1] === id);
    if (m) return m;
    if (Date.now() - t0 > 5000) throw new Error(`no reply to request ${id}: the brick is gone or hung`);
  }
}

/** A request whose `mode` is the float64 -0 (msgpackr itself would send an integer 0). */
function withNegativeZero(id: number, op: string, args: Record<string, unknown>): Buffer {
  const body = packr.pack([0, id, op, { ...args, mode: 0.5 }]);
  const f64half = Buffer.from([0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]);
  const at = body.indexOf(f64half);
  assert.ok(at > 0);
  Buffer.from([0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0]).copy(body, at);
  return frame(body);
}

test('a float64 -0 in a mode field is an ordinary 0, not a crash', async () => {
  const c = await startCluster(1);
  try {
    const r = await rawConnect(c.spec.bricks[0], { spec: c.spec, hello: true });
    const F = randomUUID();
    r.sock.write(withNegativeZero(2, 'mkdir', { path: '/z', gfid: randomUUID() }));
    r.sock.write(withNegativeZero(3, 'create', { path: '/zf', flags: O_RDWR, gfid: F }));
    r.send([0, 4, 'close', { fd: 1 }]);
    await replyTo(r, 4);
    r.sock.write(withNegativeZero(5, 'setattr', { path: '/zf' }));
    for (const id of [2, 3, 5]) assert.equal((await replyTo(r, id))[2], null, `request ${id}`);
    r.sock.destroy();
    await alive(c);
    assert.equal(fs.statSync(path.join(c.dirs[0], 'z')).mode & 0o7777, 0);
    assert.equal(fs.statSync(path.join(c.dirs[0], 'zf')).mode & 0o7777, 0);
    assert.ok(c.procs[0] && c.procs[0].exitCode === null, 'the brick process lives');
  } finally {
    await c.stop();
  }
});

test('a brick never opens a FIFO: the open is refused at once and the brick keeps answering', async () => {
  const c = await startCluster(1);
  try {
    const r = await client(c);
    const P = randomUUID();
    await r.call('mknod', { path: '/p', mode: S_IFIFO | 0o666, gfid: P });
    for (const flags of [O_RDONLY, O_WRONLY, O_RDWR]) {
      assert.equal(await code(r.call('open', { path: '/p', flags })), 'ENXIO');
      assert.equal(await code(r.call('open', { gfid: P, flags })), 'ENXIO');
    }
    assert.equal(await code(r.call('create', { path: '/p', mode: 0o644, flags: O_RDWR | O_CREAT, gfid: randomUUID() })), 'EEXIST');
    r.close();
    const vol = await Volume.connect(c.spec);
    try {
      assert.equal(await code(vol.open('/p', 'r')), 'ENXIO');
      await vol.writeFile('/after', 'still serving');
      assert.equal(String(await vol.readFile('/after')), 'still serving');
    } finally {
      await vol.close();
    }
    await alive(c);
  } finally {
    await c.stop();
  }
});

test("a brick's root is 0700 on disk; the volume root's mode and owner are kept beside it", async () => {
  const c = await startCluster(2);
  try {
    for (const d of c.dirs) assert.equal(fs.statSync(d).mode & 0o7777, 0o700, `${d} is closed to local users`);
    const vol = await Volume.connect(c.spec);
    try {
      assert.equal((await vol.stat('/')).mode & 0o7777, 0o755, 'the volume root shows the mode the directory had');
      await vol.chmod('/', 0o3777);
      assert.equal((await vol.stat('/')).mode & 0o7777, 0o3777);
      for (const d of c.dirs) assert.equal(fs.statSync(d).mode & 0o7777, 0o700, 'the brick root stays closed');
      // Set-group-ID on the volume root is inherited as on a local disk, though the brick root lacks it.
      await vol.chown('/', 0, 4242);
      await vol.mkdir('/sub');
      const sub = await vol.stat('/sub');
      assert.ok(sub.mode & 0o2000, 'a new directory inherits set-group-ID');
      assert.equal(sub.gid, 4242, 'and the group');
      await vol.writeFile('/f', 'x');
      assert.equal((await vol.stat('/f')).gid, 4242);
      await vol.chmod('/', 0o755);
      await vol.mkdir('/sub2');
      assert.equal((await vol.stat('/sub2')).mode & 0o2000, 0);
    } finally {
      await vol.close();
    }
    if (isRoot) {
      // A local user of the brick's host reaches nothing below the brick's root, whatever the volume's modes.
      const ls = spawnSync('ls', [path.join(c.dirs[0], 'sub')], { uid: 65534, gid: 65534 });
      assert.notEqual(ls.status, 0, 'nobody cannot list a folder below the brick root');
      assert.match(String(ls.stderr), /Permission denied/);
    }
  } finally {
    await c.stop();
  }
});

/**
 * Issue 17 item 7: a local user of the brick's host swaps a folder of the volume for a symlink to a
 * folder outside the brick. Brick roots are 0700 so that no local user can; this is the second wall: every
 * name the brick takes is resolved beneath its root's descriptor with no symlink followed (openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so neither a swap between two requests nor one in the middle
 * of a request leads a call outside.
 */
test("a folder swapped for a symlink on the brick's disk leads no call outside the brick, between requests or during them", async () => {
  const c = await startCluster(1);
  const swapper: { proc: ReturnType<typeof spawn> | null } = { proc: null };
  try {
    const brick = c.dirs[0];
    const outside = path.join(c.base, 'outside');
    fs.mkdirSync(path.join(outside, 'dir'), { recursive: true });
    fs.writeFileSync(path.join(outside, 'secret'), 'root only\n', { mode: 0o600 });
    fs.symlinkSync('secret', path.join(outside, 'l2'));
    const r = await client(c);
    const g = () => randomUUID();
    await r.call('mkdir', { path: '/pub', mode: 0o1777, gfid: g() });
    await r.call('mkdir', { path: '/pub/sub', mode: 0o755, gfid: g() });
    for (const name of ['/pub/sub/secret', '/pub/x']) {
      const { fd } = (await r.call('create', { path: name, mode: 0o644, flags: O_RDWR | O_CREAT, gfid: g() })) as { fd: number };
      await r.call('close', { fd });
    }
    const before = snapshot(outside, true);

    // Between requests: the folder is a symlink when each request comes.
    fs.renameSync(path.join(brick, 'pub/sub'), path.join(brick, 'pub/sub.real'));
    fs.symlinkSync(outside, path.join(brick, 'pub/sub'));
    const attempts: [Parameters<RpcClient['call']>[0], Record<string, unknown>][] = [
      ['lookup', { path: '/pub/sub/secret' }],
      ['create', { path: '/pub/sub/new', mode: 0o644, flags: O_RDWR | O_CREAT, gfid: g() }],
      ['open', { path: '/pub/sub/secret', flags: O_RDONLY }],
      ['open', { path: '/pub/sub/secret', flags: O_RDWR }],
      ['mkdir', { path: '/pub/sub/d', mode: 0o755, gfid: g() }],
      ['unlink', { path: '/pub/sub/secret' }],
      ['rmdir', { path: '/pub/sub/dir' }],
      ['rename', { from: '/pub/sub/secret', to: '/pub/y' }],
      ['rename', { from: '/pub/x', to: '/pub/sub/x' }],
      ['link', { from: '/pub/x', to: '/pub/sub/x2' }],
      ['symlink', { path: '/pub/sub/l', target: 'x', gfid: g() }],
      ['mknod', { path: '/pub/sub/p', mode: S_IFIFO | 0o644, gfid: g() }],
      ['setattr', { path: '/pub/sub/secret', mode: 0o777 }],
      ['setattr', { path: '/pub/sub/secret', uid: 1234, gid: 1234 }],
      ['setattr', { path: '/pub/sub/secret', size: 0 }],
      ['setattr', { path: '/pub/sub/secret', atime: [1, 0], mtime: [1, 0] }],
      ['setxattr', { path: '/pub/sub/secret', name: 'user.x', value: Buffer.from('v') }],
      ['getxattr', { path: '/pub/sub/secret', name: 'user.x' }],
      ['listxattr', { path: '/pub/sub/secret' }],
      ['removexattr', { path: '/pub/sub/secret', name: 'user.x' }],
      ['readlink', { path: '/pub/sub/l2' }],
      ['readdir', { path: '/pub/sub' }],
    ];
    for (const [op, args] of attempts) {
      const got = await code(r.call(op, args));
      assert.ok(['ELOOP', 'ENOTDIR', 'EXDEV'].includes(got), `${op} ${JSON.stringify(args)} answered ${got}`);
    }
    assert.equal(snapshot(outside, true), before, 'nothing outside the brick changed');
    assert.match(c.logs[0], /refused \w+ from mallory at [^:]+:\d+: .*a folder on its path is a symlink on the brick's disk/);
    await alive(c);

    // During requests: the folder flips between the real one and the symlink as fast as a process can
    // rename, while creates and mkdirs stream in (the reported race: a check of the path, then a call
    // that resolves it again, found a folder and then followed the symlink).
    // renameat2(RENAME_EXCHANGE) through python3's ctypes swaps the two names atomically, so the name is
    // always either the folder or the symlink.
    fs.renameSync(path.join(brick, 'pub/sub'), path.join(brick, 'pub/link'));
    fs.renameSync(path.join(brick, 'pub/sub.real'), path.join(brick, 'pub/sub'));
    const flip = ['import ctypes, sys', 'libc = ctypes.CDLL(None, use_errno=True)', 'a, b = sys.argv[1].encode(), sys.argv[2].encode()', 'while True: libc.renameat2(-100, a, -100, b, 2)'].join('\n');
    swapper.proc = spawn('python3', ['-c', flip, path.join(brick, 'pub/sub'), path.join(brick, 'pub/link')], { stdio: 'ignore' });
    // Streams begin once the flipper runs (its first swap seen), and go on until both outcomes were met
    // (a loaded machine may starve the flipper for a while).
    for (let i = 0; !fs.lstatSync(path.join(brick, 'pub/sub')).isSymbolicLink() && i < 10_000; i++) await new Promise((res) => setTimeout(res, 1));
    const counts = new Map<string, number>();
    const both = () => (counts.get('ok') ?? 0) > 0 && [...counts.keys()].some((k) => k !== 'ok');
    for (let round = 0; round < 40 || (!both() && round < 400); round++) {
      const batch = Array.from({ length: 50 }, (_, i) =>
        i % 2 === 0 ? r.call('create', { path: `/pub/sub/f${round}-${i}`, mode: 0o644, flags: O_RDWR | O_CREAT, gfid: g(), close: true }) : r.call('mkdir', { path: `/pub/sub/d${round}-${i}`, mode: 0o755, gfid: g() }),
      );
      for (const p of batch) {
        const got = await code(p);
        counts.set(got, (counts.get(got) ?? 0) + 1);
      }
    }
    swapper.proc.kill('SIGKILL');
    await once(swapper.proc, 'exit');
    swapper.proc = null;
    assert.equal(snapshot(outside, true), before, `nothing outside the brick changed while the folder flipped (answers: ${JSON.stringify([...counts])})`);
    assert.ok(both(), `both outcomes were met: ${JSON.stringify([...counts])}`);
    r.close();
    await alive(c);
  } finally {
    swapper.proc?.kill('SIGKILL');
    await c.stop();
  }
});

/**
 * Operator mistakes and small truths through the CLI, on real brick processes (issue 20: items 3, 4, 7
 * and parts of 12): what the CLI says when something fails, the spec's secret, mount points, statfs.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MAIN_JS, freePort } from '../src/cli/state.js';
import { RpcClient } from '../src/wire/rpc.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import type { VolumeSpec } from '../src/dht/spec.js';
import { Volume } from '../src/api/volume.js';
import { fuseAvailable } from '../src/fuse/mount.js';

const run = promisify(execFile);

/** A DHTFS_HOME of its own, and the CLI run in it: `cli` resolves with stdout, `cliFails` with stderr of a failure. */
function operator(prefix: string) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const env = { ...process.env, DHTFS_HOME: home };
  const cli = async (...args: string[]) => (await run(process.execPath, [MAIN_JS, ...args], { env })).stdout;
  const cliFails = async (...args: string[]): Promise<string> => {
    try {
      await run(process.execPath, [MAIN_JS, ...args], { env });
    } catch (e) {
      return (e as { stderr: string }).stderr;
    }
    throw new Error(`dhtfs ${args.join(' ')} succeeded`);
  };
  const cleanup = async (...vols: string[]) => {
    for (const v of vols) await run(process.execPath, [MAIN_JS, 'volume', 'stop', v], { env }).catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  };
  /** A fresh library client of volume `name` (its spec from the CLI): file work without a CLI process per file. */
  const client = async (name: string): Promise<Volume> => {
    const f = path.join(home, `${name}-spec.json`);
    await cli('volume', 'spec', name, '-o', f);
    return Volume.connect(JSON.parse(fs.readFileSync(f, 'utf8')) as VolumeSpec);
  };
  return { home, env, cli, cliFails, cleanup, client };
}

/** A started volume of `n` bricks on loopback under `home` (ports given: HOST:PORT:/DIR). */
async function volumeOf(cli: (...a: string[]) => Promise<string>, home: string, name: string, n: number): Promise<void> {
  const bricks = [];
  for (let i = 0; i < n; i++) bricks.push(`127.0.0.1:${await freePort()}:${path.join(home, `b${i}`)}`);
  await cli('volume', 'create', name, ...bricks);
  await cli('volume', 'start', name);
}

test('CLI errors name the volume path once, with their code, and never a brick path', async () => {
  const { home, cli, cliFails, cleanup } = operator('dhtfs-op-err-');
  try {
    await volumeOf(cli, home, 'ev', 3);
    await cli('-V', 'ev', 'mkdir', '/a');
    // Before: "dhtfs: EEXIST: EEXIST: file already exists, mkdir '<home>/b1/a'".
    assert.equal(await cliFails('-V', 'ev', 'mkdir', '/a'), 'dhtfs: mkdir /a: file already exists (EEXIST)\n');
    fs.writeFileSync(path.join(home, 'f'), 'x');
    await cli('-V', 'ev', 'put', path.join(home, 'f'), '/a/f');
    for (const args of [
      ['mkdir', '/a/f/x'],
      ['cat', '/nope'],
      ['rm', '/a'],
      ['mkdir', '/a/f'],
    ]) {
      const err = await cliFails('-V', 'ev', ...args);
      assert.ok(!err.includes(home), `no brick path in: ${err}`);
      const code = /\((E[A-Z]+)\)\n$/.exec(err)?.[1];
      assert.ok(code, `ends with its code: ${err}`);
      assert.equal(err.split(code).length, 2, `the code once: ${err}`);
    }
  } finally {
    await cleanup('ev');
  }
});

test('volume spec (it holds the secret) is written mode 0600, to a file named with -o or a redirected stdout', async () => {
  const { home, cli, cleanup } = operator('dhtfs-op-spec-');
  try {
    await cli('volume', 'create', 'pv', `127.0.0.1:${await freePort()}:${path.join(home, 'b0')}`);
    const specOut = path.join(home, 'spec-o.json');
    await cli('volume', 'spec', 'pv', '-o', specOut);
    assert.equal(fs.statSync(specOut).mode & 0o777, 0o600);
    const redirected = path.join(home, 'spec-redirect.json');
    await run('sh', ['-c', `umask 022; "${process.execPath}" "${MAIN_JS}" volume spec pv > "${redirected}"`], { env: { ...process.env, DHTFS_HOME: home } });
    assert.equal(fs.statSync(redirected).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(fs.readFileSync(redirected, 'utf8')), JSON.parse(fs.readFileSync(specOut, 'utf8')));
    assert.ok(JSON.parse(fs.readFileSync(specOut, 'utf8')).secret);
  } finally {
    await cleanup();
  }
});

test('statfs counts bricks that share one file system once', async () => {
  const { home, cli, cleanup } = operator('dhtfs-op-statfs-');
  try {
    await volumeOf(cli, home, 'fv', 3);
    const vol = await Volume.connect(JSON.parse(await cli('volume', 'spec', 'fv')));
    try {
      const st = await vol.statfs();
      const disk = fs.statfsSync(path.join(home, 'b0'));
      // Three bricks in one file system: the volume is that file system's size, not three times it.
      assert.equal(st.blocks, Math.floor((disk.blocks * disk.bsize) / st.bsize));
      assert.ok(st.bavail * st.bsize <= disk.bavail * disk.bsize + 2 ** 24, `free ${st.bavail * st.bsize} of one disk's ${disk.bavail * disk.bsize}`);
    } finally {
      await vol.close();
    }
  } finally {
    await cleanup('fv');
  }
});

test('mount refuses a mount point that is not empty, unless -o nonempty', { skip: !fuseAvailable().ok && 'no FUSE here' }, async () => {
  const { home, cli, cliFails, cleanup } = operator('dhtfs-op-mnt-');
  const mnt = path.join(home, 'mnt');
  const mountedHere = () =>
    fs
      .readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === mnt);
  try {
    await cli('volume', 'create', 'mv', `127.0.0.1:${await freePort()}:${path.join(home, 'b0')}`);
    await cli('volume', 'start', 'mv');
    fs.mkdirSync(mnt);
    fs.writeFileSync(path.join(mnt, 'mine'), 'hidden by a mount');
    assert.match(await cliFails('mount', 'mv', mnt, '--background'), /mount point .* is not empty; mount with -o nonempty .*\(ENOTEMPTY\)/);
    assert.match(await cliFails('mount', 'mv', mnt), /not empty/);
    assert.ok(!mountedHere());
    await cli('mount', 'mv', mnt, '--background', '-o', 'nonempty');
    assert.ok(mountedHere());
    assert.deepEqual(fs.readdirSync(mnt), []);
    await cli('umount', mnt);
    assert.equal(fs.readFileSync(path.join(mnt, 'mine'), 'utf8'), 'hidden by a mount');
  } finally {
    if (mountedHere()) await run('umount', ['-l', mnt]).catch(() => {});
    await cleanup('mv');
  }
});

interface InfoBrick {
  name: string;
  host: string;
  port: number;
  dir: string;
}

/** Every brick's topology record, as the bricks of `spec` hold them. */
async function topologies(spec: VolumeSpec): Promise<unknown[]> {
  const out = [];
  for (const b of spec.bricks) {
    const c = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: spec.volumeId, secret: spec.secret, brickName: b.name });
    try {
      out.push((await c.call('getTopology', {})).topology);
    } finally {
      c.close();
    }
  }
  return out;
}

/** A TCP port held by this process until `close` (someone else's port, for the brick). */
async function holdPort(port = 0): Promise<{ port: number; close: () => Promise<void> }> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve());
  });
  return { port: (s.address() as net.AddressInfo).port, close: () => new Promise((r) => s.close(() => r())) };
}

test('bricks take ports from the brick port range, binding before anyone is told, the next port when one is taken (HOST:/DIR)', async () => {
  const { home, env, cleanup } = operator('dhtfs-op-ports-');
  // A range whose first port someone else holds.
  const taken = await holdPort();
  const range = `${taken.port}-${taken.port + 40}`;
  const cli = async (...args: string[]) => (await run(process.execPath, [MAIN_JS, ...args], { env: { ...env, DHTFS_PORT_RANGE: range } })).stdout;
  try {
    await cli('volume', 'create', 'rv', `127.0.0.1:${path.join(home, 'b0')}`, `127.0.0.1:${path.join(home, 'b1')}`);
    // A volume never started takes a brick into its spec alone; it starts with the others.
    assert.match(await cli('volume', 'add-brick', 'rv', `127.0.0.1:${path.join(home, 'b2')}`), /success \(rv-client-2 127\.0\.0\.1:0:/);
    await assert.rejects(cli('volume', 'spec', 'rv'), /no port yet/);
    await cli('volume', 'start', 'rv');
    const info = JSON.parse(await cli('volume', 'info', 'rv', '--json')) as { bricks: InfoBrick[] };
    const ports = info.bricks.map((b) => b.port);
    for (const p of ports) assert.ok(p > taken.port && p <= taken.port + 40, `port ${p} in ${range}, not the taken one`);
    assert.equal(new Set(ports).size, 3);
    const st = JSON.parse(await cli('volume', 'status', 'rv', '--json')) as { bricks: { online: boolean }[] };
    assert.deepEqual(
      st.bricks.map((b) => b.online),
      [true, true, true],
    );
    // The port stays the brick's: a restart binds the same one.
    await cli('volume', 'stop', 'rv');
    await cli('volume', 'start', 'rv');
    assert.deepEqual(
      (JSON.parse(await cli('volume', 'info', 'rv', '--json')) as { bricks: InfoBrick[] }).bricks.map((b) => b.port),
      ports,
    );
    // add-brick HOST:/DIR: the same, the brick's own port in the spec.
    assert.match(await cli('volume', 'add-brick', 'rv', `127.0.0.1:${path.join(home, 'b3')}`), /success \(rv-client-3 127\.0\.0\.1:\d+:/);
    const after = JSON.parse(await cli('volume', 'info', 'rv', '--json')) as { bricks: InfoBrick[] };
    assert.ok(after.bricks[3].port > taken.port && !ports.includes(after.bricks[3].port));
    // The default range is GlusterFS's.
    const dflt = await run(process.execPath, [MAIN_JS, 'volume', 'create', 'dv', `127.0.0.1:${path.join(home, 'd0')}`], { env });
    assert.match(dflt.stdout, /success/);
    await run(process.execPath, [MAIN_JS, 'volume', 'start', 'dv'], { env });
    const dp = (JSON.parse((await run(process.execPath, [MAIN_JS, 'volume', 'info', 'dv', '--json'], { env })).stdout) as { bricks: InfoBrick[] }).bricks[0].port;
    assert.ok(dp >= 49152 && dp <= 60999, `port ${dp} in 49152-60999`);
    await assert.rejects(cli('volume', 'create', 'xv', `[::ffff:192.0.2.1]:${path.join(home, 'x0')}`), /another host: give its port/);
  } finally {
    await taken.close();
    await cleanup('rv', 'dv');
  }
});

test('a brick directory is claimed once: a second process on it, or another brick name, is refused at start', async () => {
  const { home, cli, env, cleanup } = operator('dhtfs-op-claim-');
  try {
    await cli('volume', 'create', 'cv', `127.0.0.1:${await freePort()}:${path.join(home, 'b0')}`, `127.0.0.1:${await freePort()}:${path.join(home, 'b1')}`);
    await cli('volume', 'start', 'cv');
    const spec = JSON.parse(fs.readFileSync(path.join(home, 'volumes', 'cv', 'spec.json'), 'utf8')) as VolumeSpec;
    const secretFile = path.join(home, 'secret');
    fs.writeFileSync(secretFile, spec.secret, { mode: 0o600 });
    const serve = (...args: string[]) => run(process.execPath, [MAIN_JS, 'brick', 'serve', ...args], { env, timeout: 10_000 });
    // The same brick again, while it runs, on another port: the directory is locked.
    await assert.rejects(serve('--dir', path.join(home, 'b0'), '--name', 'cv-client-0', '--port', '0', '--volume-id', spec.volumeId, '--secret-file', secretFile), (e: { stderr?: string; killed?: boolean }) => {
      assert.ok(!e.killed, 'it exited by itself');
      assert.match(e.stderr ?? '', /already served by another brick process \(pid \d+\)/);
      return true;
    });
    // Under another name, while it runs, and once it is stopped: the directory is brick cv-client-0's.
    const as = (name: string) => serve('--dir', path.join(home, 'b0'), '--name', name, '--volume-id', spec.volumeId, '--secret-file', secretFile);
    await assert.rejects(as('cv-client-9'), /already served by another brick process/);
    await cli('volume', 'stop', 'cv');
    await assert.rejects(as('cv-client-9'), (e: { stderr?: string; killed?: boolean }) => {
      assert.ok(!e.killed, 'it exited by itself');
      assert.match(e.stderr ?? '', /brick directory is already brick [0-9a-f-]{36} of volume .*; refusing to serve it as cv-client-9/);
      return true;
    });
    // Its own brick starts as before.
    await cli('volume', 'start', 'cv');
    const st = JSON.parse(await cli('volume', 'status', 'cv', '--json')) as { bricks: { online: boolean }[] };
    assert.deepEqual(
      st.bricks.map((b) => b.online),
      [true, true],
    );
  } finally {
    await cleanup('cv');
  }
});

test('add-brick refuses a directory that is, holds or is inside a brick of the volume, before anything changes', async () => {
  const { home, cli, cliFails, cleanup } = operator('dhtfs-op-dup-');
  try {
    await cli('volume', 'create', 'dv', `127.0.0.1:${await freePort()}:${path.join(home, 'bricks', 'b0')}`, `127.0.0.1:${await freePort()}:${path.join(home, 'bricks', 'b1')}`);
    await cli('volume', 'start', 'dv');
    await cli('-V', 'dv', 'mkdir', '/d');
    const specFile = path.join(home, 'volumes', 'dv', 'spec.json');
    const specBefore = fs.readFileSync(specFile, 'utf8');
    const spec = JSON.parse(specBefore) as VolumeSpec;
    const topoBefore = await topologies(spec);
    const port = await freePort();
    // The issue's case: the same directory under a new port.
    assert.match(await cliFails('volume', 'add-brick', 'dv', `127.0.0.1:${port}:${path.join(home, 'bricks', 'b0')}`), /is the directory of brick dv-client-0 .* a directory serves one brick/);
    assert.match(await cliFails('volume', 'add-brick', 'dv', `localhost:${path.join(home, 'bricks', 'b1', '.')}`), /is the directory of brick dv-client-1/);
    assert.match(await cliFails('volume', 'add-brick', 'dv', `127.0.0.1:${path.join(home, 'bricks', 'b1', 'd')}`), /is inside the directory of brick dv-client-1/);
    assert.match(await cliFails('volume', 'add-brick', 'dv', `127.0.0.1:${path.join(home, 'bricks')}`), /holds the directory of brick dv-client-0/);
    fs.symlinkSync(path.join(home, 'bricks', 'b0'), path.join(home, 'link'));
    assert.match(await cliFails('volume', 'add-brick', 'dv', `127.0.0.1:${path.join(home, 'link')}`), /is the directory of brick dv-client-0/);
    assert.match(await cliFails('volume', 'add-brick', 'dv', `127.0.0.1:${path.join(home, 'n0')}`, `127.0.0.1:${path.join(home, 'n0')}`), /given twice/);
    assert.equal(fs.readFileSync(specFile, 'utf8'), specBefore);
    assert.deepEqual(await topologies(spec), topoBefore);
    assert.equal((await cli('-V', 'dv', 'ls', '/')).trim(), 'd');
  } finally {
    await cleanup('dv');
  }
});

test('a failed add-brick (port taken, remote brick not serving) leaves the spec and every topology as they were; a retry works', { timeout: 120_000 }, async () => {
  const { home, cli, cliFails, env, cleanup, client } = operator('dhtfs-op-add-');
  const taken = await holdPort();
  try {
    await cli('volume', 'create', 'av', `127.0.0.1:${await freePort()}:${path.join(home, 'b0')}`, `127.0.0.1:${await freePort()}:${path.join(home, 'b1')}`);
    await cli('volume', 'start', 'av');
    for (let i = 0; i < 8; i++) {
      fs.writeFileSync(path.join(home, 'f'), `file ${i}\n`);
      await cli('-V', 'av', 'put', path.join(home, 'f'), `/f${i}`);
    }
    const specFile = path.join(home, 'volumes', 'av', 'spec.json');
    const specBefore = fs.readFileSync(specFile, 'utf8');
    const spec = JSON.parse(specBefore) as VolumeSpec;
    const topoBefore = await topologies(spec);
    const unchanged = async (what: string) => {
      assert.equal(fs.readFileSync(specFile, 'utf8'), specBefore, `${what}: the spec is as it was`);
      assert.deepEqual(await topologies(spec), topoBefore, `${what}: every brick's topology is as it was`);
      assert.ok(!fs.existsSync(path.join(home, 'volumes', 'av', 'run', 'av-client-2.pid')), `${what}: no brick process left`);
      for (let i = 0; i < 8; i += 3) assert.equal(await cli('-V', 'av', 'cat', `/f${i}`), `file ${i}\n`, `${what}: files read`);
    };
    // 1. The port is someone else's (EADDRINUSE): the new brick never answers.
    const newDir = path.join(home, 'b2');
    assert.match(await cliFails('volume', 'add-brick', 'av', `127.0.0.1:${taken.port}:${newDir}`), /did not start: .*EADDRINUSE/);
    await unchanged('port taken');
    assert.ok(!fs.existsSync(newDir), 'the directory it made is gone');
    // 2. A brick on another host that nobody serves yet ([::ffff:127.0.0.1] is loopback, but not this host's name).
    const remotePort = await freePort();
    const remoteDir = path.join(home, 'r3');
    assert.match(await cliFails('volume', 'add-brick', 'av', `[::ffff:127.0.0.1]:${remotePort}:${remoteDir}`), /does not answer.*start it there first: dhtfs brick serve --dir/);
    await unchanged('remote brick not serving');
    // 3. Bad directories: another volume's brick (left as it is), a file.
    await cli('volume', 'create', 'ov', `127.0.0.1:${path.join(home, 'other0')}`);
    await cli('volume', 'start', 'ov');
    await cli('volume', 'stop', 'ov');
    assert.match(await cliFails('volume', 'add-brick', 'av', `127.0.0.1:${path.join(home, 'other0')}`), /did not start: brick directory belongs to volume [0-9a-f-]+, not /);
    await unchanged('a directory of another volume');
    assert.match(await cli('volume', 'start', 'ov'), /success/, 'the other volume still has its brick');
    fs.writeFileSync(path.join(home, 'plain'), '');
    assert.match(await cliFails('volume', 'add-brick', 'av', `127.0.0.1:${path.join(home, 'plain')}`), /plain is not a directory/);
    await unchanged('a file');
    // 4. Both again, now that they can work: the port freed, the remote brick started by its operator.
    await taken.close();
    fs.writeFileSync(path.join(home, 'secret'), spec.secret, { mode: 0o600 });
    fs.writeFileSync(path.join(home, 'admin-secret'), (spec as { adminSecret?: string }).adminSecret ?? '', { mode: 0o600 });
    fs.mkdirSync(remoteDir);
    const remote = execFile(
      process.execPath,
      [MAIN_JS, 'brick', 'serve', '--dir', remoteDir, '--port', String(remotePort), '--name', 'av-client-3', '--volume-id', spec.volumeId, '--secret-file', path.join(home, 'secret'), '--admin-secret-file', path.join(home, 'admin-secret')],
      { env },
    );
    try {
      for (let i = 0; i < 100 && !(await canConnect(remotePort)); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(await cli('volume', 'add-brick', 'av', `127.0.0.1:${taken.port}:${newDir}`, `[::ffff:127.0.0.1]:${remotePort}:${remoteDir}`), /success \(av-client-2 127\.0\.0\.1:\d+:.*, av-client-3 ::ffff:127\.0\.0\.1:\d+:/);
      const info = JSON.parse(await cli('volume', 'info', 'av', '--json')) as { bricks: InfoBrick[] };
      assert.deepEqual(
        info.bricks.map((b) => b.name),
        ['av-client-0', 'av-client-1', 'av-client-2', 'av-client-3'],
      );
      const now = JSON.parse(fs.readFileSync(specFile, 'utf8')) as VolumeSpec;
      const topo = (await topologies(now)) as { bricks: { name: string }[] }[];
      for (const t of topo)
        assert.deepEqual(
          t.bricks.map((b) => b.name),
          ['av-client-0', 'av-client-1', 'av-client-2', 'av-client-3'],
        );
      // The new bricks take their share of new files (the layout of a new directory), and everything reads.
      // (One library client, connected after the add-brick, for the 24 files: a CLI process each cost 10 s.)
      await cli('-V', 'av', 'mkdir', '/new');
      const v = await client('av');
      const where = new Set<string>();
      for (let i = 0; i < 24; i++) {
        await v.writeFile(`/new/g${i}`, `new ${i}\n`);
        where.add((await v.client.locate(`/new/g${i}`)).cached);
      }
      assert.ok(where.has('av-client-2') && where.has('av-client-3'), [...where].join(' '));
      for (let i = 0; i < 8; i++) assert.equal(await v.readFile(`/f${i}`, 'utf8'), `file ${i}\n`);
      await v.close();
    } finally {
      remote.kill('SIGTERM');
    }
  } finally {
    await taken.close().catch(() => {});
    await cleanup('av', 'ov');
  }
});

async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

test("replace-brick NAME OLD NEW commit force: a dead brick's place goes to a new empty directory; the other bricks' files read, new files go everywhere", { timeout: 120_000 }, async () => {
  const { home, cli, cliFails, cleanup, client } = operator('dhtfs-op-replace-');
  try {
    await cli('volume', 'create', 'xv', ...[0, 1, 2].map((i) => `127.0.0.1:${path.join(home, `b${i}`)}`));
    await cli('volume', 'start', 'xv');
    await cli('-V', 'xv', 'mkdir', '-p', '/d1/d2');
    // File work through library clients, a fresh one for each phase (a CLI process per file cost 15 s).
    const v0 = await client('xv');
    const where = new Map<string, string>();
    for (let i = 0; i < 12; i++) {
      const p = `${['', '/d1', '/d1/d2'][i % 3]}/f${i}`;
      await v0.writeFile(p, `file ${i}\n`);
      where.set(p, (await v0.client.locate(p)).cached);
    }
    await v0.close();
    assert.ok([...where.values()].includes('xv-client-1'), 'some files are on the brick that dies');
    const st = JSON.parse(await cli('volume', 'status', 'xv', '--json')) as { bricks: { brick: string; pid: number }[] };
    process.kill(st.bricks[1].pid, 'SIGKILL');
    const newDir = path.join(home, 'new1');
    // Refused: not commit force, a directory that is a brick's, one that is not empty.
    assert.match(await cliFails('volume', 'replace-brick', 'xv', 'xv-client-1', `127.0.0.1:${newDir}`, 'commit'), /commit force|missing required argument/);
    assert.match(await cliFails('volume', 'replace-brick', 'xv', 'xv-client-1', `127.0.0.1:${path.join(home, 'b2')}`, 'commit', 'force'), /directory of brick xv-client-2/);
    fs.mkdirSync(path.join(home, 'full'));
    fs.writeFileSync(path.join(home, 'full', 'x'), '');
    assert.match(await cliFails('volume', 'replace-brick', 'xv', 'xv-client-1', `127.0.0.1:${path.join(home, 'full')}`, 'commit', 'force'), /not empty/);
    assert.match(await cli('volume', 'replace-brick', 'xv', 'xv-client-1', `127.0.0.1:${newDir}`, 'commit', 'force'), /success \(xv-client-1 is now 127\.0\.0\.1:\d+:.*new1, 2 directories made there\)/);
    const info = JSON.parse(await cli('volume', 'info', 'xv', '--json')) as { bricks: InfoBrick[] };
    assert.deepEqual(
      info.bricks.map((b) => [b.name, b.dir]),
      [
        ['xv-client-0', path.join(home, 'b0')],
        ['xv-client-1', newDir],
        ['xv-client-2', path.join(home, 'b2')],
      ],
    );
    assert.ok(fs.existsSync(path.join(newDir, 'd1', 'd2')), 'the new brick has every directory');
    // Files on the live bricks read; the dead brick's are gone with it (no copy in a distribute volume).
    const v1 = await client('xv');
    for (const [p, b] of where) {
      if (b === 'xv-client-1') await assert.rejects(v1.readFile(p), { code: 'ENOENT' });
      else assert.equal(await v1.readFile(p, 'utf8'), `file ${/f(\d+)$/.exec(p)![1]}\n`);
    }
    // New files are made on every brick, the new one included, in every directory, and read back.
    const placed = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const p = `${['', '/d1', '/d1/d2'][i % 3]}/g${i}`;
      await v1.writeFile(p, `new ${i}\n`);
      const loc = await v1.client.locate(p);
      assert.equal(loc.cached, loc.hashed, `${p} is on its hashed brick: the layouts have no hole`);
      placed.add(loc.cached);
      assert.equal(await v1.readFile(p, 'utf8'), `new ${i}\n`);
    }
    assert.deepEqual([...placed].sort(), ['xv-client-0', 'xv-client-1', 'xv-client-2']);
    // The same names hash where they did: a file of the dead brick made again lands on the new brick.
    const lost = [...where].find(([, b]) => b === 'xv-client-1')![0];
    await v1.writeFile(lost, 'again\n');
    assert.equal((await v1.client.locate(lost)).cached, 'xv-client-1');
    assert.ok(fs.existsSync(path.join(newDir, lost)));
    await v1.close();
    // A live brick's place too: its process is stopped first, and the new directory serves the name.
    const pid2 = (JSON.parse(await cli('volume', 'status', 'xv', '--json')) as { bricks: { pid: number }[] }).bricks[2].pid;
    assert.match(await cli('volume', 'replace-brick', 'xv', 'xv-client-2', `127.0.0.1:${path.join(home, 'new2')}`, 'commit', 'force'), /success \(xv-client-2 is now/);
    assert.throws(() => process.kill(pid2, 0), 'the old brick process was stopped');
    const st2 = JSON.parse(await cli('volume', 'status', 'xv', '--json')) as { bricks: { online: boolean; dir: string }[] };
    assert.deepEqual(
      st2.bricks.map((b) => b.online),
      [true, true, true],
    );
    assert.equal(st2.bricks[2].dir, path.join(home, 'new2'));
    fs.writeFileSync(path.join(home, 'f'), 'after\n');
    await cli('-V', 'xv', 'put', path.join(home, 'f'), '/d1/after');
    assert.equal(await cli('-V', 'xv', 'cat', '/d1/after'), fs.readFileSync(path.join(home, 'f'), 'utf8'));
  } finally {
    await cleanup('xv');
  }
});

/** The dhtfs CLI end to end: volume lifecycle and file commands, as a user runs them. */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort } from '../src/cli/state.js';
import { MAIN_JS } from '../src/cli/state.js';
import { Volume } from '../src/api/volume.js';

const run = promisify(execFile);

test('volume create, start, status, file commands, stop', async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-cli-'));
  const env = { ...process.env, DHTFS_HOME: home };
  const cli = async (...args: string[]) => (await run(process.execPath, [MAIN_JS, ...args], { env })).stdout;
  const bricks = [];
  for (let i = 0; i < 3; i++) bricks.push(`127.0.0.1:${await freePort()}:${path.join(home, `b${i}`)}`);
  try {
    assert.match(await cli('volume', 'create', 'cv', ...bricks), /volume create: cv: success/);
    await assert.rejects(cli('volume', 'create', 'cv', ...bricks), /already exists/);
    await assert.rejects(cli('volume', 'create', 'bad', 'nohostport'), /HOST:PORT/);
    const info = JSON.parse(await cli('volume', 'info', 'cv', '--json'));
    assert.equal(info.bricks.length, 3);
    assert.equal(info.state, 'created');
    assert.match(await cli('volume', 'start', 'cv'), /volume start: cv: success/);
    const st = JSON.parse(await cli('volume', 'status', 'cv', '--json'));
    assert.deepEqual(
      st.bricks.map((b: { online: boolean }) => b.online),
      [true, true, true],
    );
    assert.ok(st.bricks.every((b: { pid: number }) => b.pid > 0));

    const local = path.join(home, 'in.txt');
    fs.writeFileSync(local, 'from the command line\n');
    await cli('-V', 'cv', 'mkdir', '-p', '/x/y');
    await cli('-V', 'cv', 'put', local, '/x/y/f.txt');
    await cli('-V', 'cv', 'put', local, '/x'); // into a directory: keeps the base name
    assert.equal(await cli('-V', 'cv', 'cat', '/x/y/f.txt'), 'from the command line\n');
    assert.deepEqual((await cli('-V', 'cv', 'ls', '/x')).trim().split('\n'), ['in.txt', 'y']);
    const stat = JSON.parse(await cli('-V', 'cv', 'stat', '/x/y/f.txt', '--json'));
    assert.equal(stat.size, 22);
    assert.match(stat.hashedBrick, /^cv-client-\d$/);
    assert.ok(fs.existsSync(path.join(home, `b${stat.dataBrick.slice(-1)}`, 'x/y/f.txt')), 'the data is a real file on the brick');
    const out = path.join(home, 'out.txt');
    await cli('-V', 'cv', 'get', '/x/y/f.txt', out);
    assert.equal(fs.readFileSync(out, 'utf8'), 'from the command line\n');
    await cli('-V', 'cv', 'mv', '/x/y/f.txt', '/x/g.txt');
    assert.deepEqual((await cli('-V', 'cv', 'ls', '/x')).trim().split('\n'), ['g.txt', 'in.txt', 'y']);
    await assert.rejects(cli('-V', 'cv', 'rm', '/x'), /EISDIR/);
    await cli('-V', 'cv', 'rm', '-r', '/x');
    assert.equal((await cli('-V', 'cv', 'ls', '/')).trim(), '');
    await assert.rejects(cli('-V', 'cv', 'cat', '/x/g.txt'), /ENOENT/);
    // A spec file works from anywhere.
    const spec = path.join(home, 'spec.json');
    fs.writeFileSync(spec, await cli('volume', 'spec', 'cv'));
    await cli('--spec', spec, 'mkdir', '/via-spec');
    assert.match(await cli('-V', 'cv', 'ls'), /via-spec/);

    // Options set on the running volume: a client connected now takes them up at once.
    const client = await Volume.connect(JSON.parse(fs.readFileSync(spec, 'utf8')));
    try {
      const until = async (what: string, ok: () => boolean) => {
        for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 20));
        assert.ok(ok(), what);
      };
      assert.equal(client.client.liveOptions().pingTimeout, 42);
      assert.match(await cli('volume', 'set', 'cv', 'network.ping-timeout', '7'), /success/);
      await until('the client took the ping-timeout up', () => client.client.liveOptions().pingTimeout === 7);
      await cli('volume', 'set', 'cv', 'lookup-optimize', 'off');
      await until('the client took lookup-optimize up', () => client.client.liveOptions().lookupOptimize === false);
      const got = JSON.parse(await cli('volume', 'get', 'cv', '--json')) as { option: string; value: unknown }[];
      const values = Object.fromEntries(got.map((r) => [r.option, r.value]));
      assert.deepEqual(Object.fromEntries(Object.entries(values).filter(([k]) => !k.startsWith('limit.'))), {
        'cluster.min-free-disk': 10,
        'cluster.min-free-inodes': 5,
        'cluster.lookup-optimize': false,
        'network.ping-timeout': 7,
        'features.lock-timeout': 30,
      });
      // The bricks' limits are options too, each the brick's own (-1) until set.
      assert.equal(values['limit.max-fds-per-session'], -1);
      assert.equal(Object.keys(values).filter((k) => k.startsWith('limit.')).length, 15);
      for (const k of ['limit.storage-call-timeout-ms', 'limit.health-check-interval-ms', 'limit.health-check-timeout-ms']) assert.equal(values[k], -1, k);
      assert.match(await cli('volume', 'info', 'cv'), /network\.ping-timeout: 7/);
      await cli('volume', 'reset', 'cv', 'ping-timeout');
      await until('the client went back to the default', () => client.client.liveOptions().pingTimeout === 42);
      await assert.rejects(cli('volume', 'set', 'cv', 'no-such-option', '1'), /unknown option/);
      await assert.rejects(cli('volume', 'set', 'cv', 'ping-timeout', '-1'), /not a number of 0 or more/);
      await assert.rejects(cli('volume', 'set', 'cv', 'lookup-optimize', 'maybe'), /not on or off/);
      // The volume's files are still all there for that client.
      assert.deepEqual(await client.readdir('/'), ['via-spec']);
    } finally {
      await client.close();
    }

    assert.match(await cli('volume', 'stop', 'cv'), /3 brick processes stopped/);
    const down = JSON.parse(await cli('volume', 'status', 'cv', '--json'));
    assert.deepEqual(
      down.bricks.map((b: { online: boolean }) => b.online),
      [false, false, false],
    );
    await assert.rejects(cli('-V', 'cv', 'ls', '/'), /ENOTCONN/);
    await cli('volume', 'delete', 'cv');
    await assert.rejects(cli('volume', 'info', 'cv'), /does not exist/);
  } finally {
    await run(process.execPath, [MAIN_JS, 'volume', 'stop', 'cv'], { env }).catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('add-brick, rebalance start/status, remove-brick start/status/commit through the CLI', { timeout: 300_000 }, async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-cli-rb-'));
  const env = { ...process.env, DHTFS_HOME: home };
  const cli = async (...args: string[]) => (await run(process.execPath, [MAIN_JS, ...args], { env })).stdout;
  const brick = async (i: number) => `127.0.0.1:${await freePort()}:${path.join(home, `b${i}`)}`;
  try {
    await cli('volume', 'create', 'rv', await brick(0), await brick(1));
    await cli('volume', 'start', 'rv');
    const local = path.join(home, 'f');
    for (let i = 0; i < 20; i++) {
      fs.writeFileSync(local, `file ${i}\n`);
      await cli('-V', 'rv', 'put', local, `/f${i}`);
    }
    assert.match(await cli('volume', 'add-brick', 'rv', await brick(2)), /success \(rv-client-2 127\.0\.0\.1:\d+:/);
    await cli('volume', 'rebalance', 'rv', 'start');
    let st: { state: string; counters: { migrated: number; failed: number; scanned: number } } | null = null;
    for (let i = 0; i < 300; i++) {
      st = JSON.parse(await cli('volume', 'rebalance', 'rv', 'status', '--json'));
      if (st && st.state !== 'running') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(st!.state, 'completed');
    assert.equal(st!.counters.scanned, 20);
    assert.ok(st!.counters.migrated > 0, 'some files moved to the new brick');
    assert.ok(
      fs.readdirSync(path.join(home, 'b2')).some((n) => /^f\d+$/.test(n)),
      'the new brick holds files',
    );
    assert.match(await cli('volume', 'rebalance', 'rv', 'status'), /Rebalance of volume rv: completed/);
    // Drain the first brick: commit is refused until the drain completed, then allowed.
    await assert.rejects(cli('volume', 'remove-brick', 'rv', 'rv-client-0', 'commit'), /start" first|refused/);
    await cli('volume', 'remove-brick', 'rv', 'rv-client-0', 'start');
    for (let i = 0; i < 300; i++) {
      const s = JSON.parse(await cli('volume', 'remove-brick', 'rv', 'rv-client-0', 'status', '--json'));
      if (s.rebalance && s.rebalance.state !== 'running') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(await cli('volume', 'remove-brick', 'rv', 'rv-client-0', 'commit'), /removed rv-client-0/);
    const info = JSON.parse(await cli('volume', 'info', 'rv', '--json'));
    assert.deepEqual(
      info.bricks.map((b: { name: string }) => b.name),
      ['rv-client-1', 'rv-client-2'],
    );
    for (let i = 0; i < 20; i++) assert.equal(await cli('-V', 'rv', 'cat', `/f${i}`), `file ${i}\n`);
    assert.ok(!fs.readdirSync(path.join(home, 'b0')).some((n) => /^f\d+$/.test(n)), 'the removed brick holds no file');
  } finally {
    await run(process.execPath, [MAIN_JS, 'volume', 'stop', 'rv'], { env }).catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('up brings up the embedded default and mounts it where FUSE is; volume stop unmounts it', async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-up-'));
  const env = { ...process.env, DHTFS_HOME: home };
  const cli = async (...args: string[]) => (await run(process.execPath, [MAIN_JS, ...args], { env })).stdout;
  const mnt = path.join(home, 'mnt');
  const fuse = fs.existsSync('/dev/fuse');
  const mountedHere = () =>
    fs
      .readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === mnt);
  try {
    const out = await cli('up', '--data', path.join(home, 'bricks'), '--mount', mnt);
    assert.match(out, /volume default is up: 3 bricks/);
    // The bricks took their ports from the brick port range themselves (no port probed, then bound).
    const ports = (JSON.parse(await cli('volume', 'info', 'default', '--json')) as { bricks: { port: number }[] }).bricks.map((b) => b.port);
    for (const p of ports) assert.ok(p >= 49152 && p <= 60999, `port ${p}`);
    fs.writeFileSync(path.join(home, 'in.txt'), 'through the CLI');
    await cli('put', path.join(home, 'in.txt'), '/in.txt');
    if (fuse) {
      assert.ok(mountedHere(), out);
      assert.equal(fs.readFileSync(path.join(mnt, 'in.txt'), 'utf8'), 'through the CLI');
      fs.writeFileSync(path.join(mnt, 'via-mount.txt'), 'through the mount');
      assert.equal(await cli('cat', '/via-mount.txt'), 'through the mount');
      // A second up finds it all running and mounted.
      assert.match(await cli('up', '--data', path.join(home, 'bricks'), '--mount', mnt), /mount: /);
    } else assert.match(out, /not mounted/);
    assert.match(await cli('volume', 'stop', 'default'), /3 brick processes stopped/);
    assert.ok(!mountedHere(), 'volume stop unmounted it');
  } finally {
    if (mountedHere()) await run('umount', ['-l', mnt]).catch(() => {});
    await cli('volume', 'stop', 'default').catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  }
});

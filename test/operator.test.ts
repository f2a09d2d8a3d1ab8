/**
 * Operator mistakes and small truths through the CLI, on real brick processes (issue 20: items 3, 4, 7
 * and parts of 12): what the CLI says when something fails, the spec's secret, mount points, statfs.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MAIN_JS, freePort } from '../src/cli/state.js';
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
  return { home, env, cli, cliFails, cleanup };
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
    for (const args of [['mkdir', '/a/f/x'], ['cat', '/nope'], ['rm', '/a'], ['mkdir', '/a/f']]) {
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
  const mountedHere = () => fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
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

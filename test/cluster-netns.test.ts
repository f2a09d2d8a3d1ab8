/**
 * Hosts in network namespaces (issue 19's harness, test/helpers/netns.ts): three bricks on three hosts,
 * each bound to its host's address, and a client on a fourth host. Cutting one host's link costs that
 * host's files only: its calls fail with ENOTCONN after the ping-timeout, every other file reads; once the
 * link is back, everything reads again, fds opened before the cut included (reopened after reconnect).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { VolumeSpec } from '../src/dht/spec.js';
import { jsonLines, makeNet, netnsAvailable, startBricks, type Net } from './helpers/netns.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const avail = netnsAvailable();

test('hosts in network namespaces: one host cut off costs its files only, and they come back with the link', { skip: !avail.ok && avail.reason, timeout: 180_000 }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-netns-'));
  let net: Net | null = null;
  const procs: ChildProcess[] = [];
  try {
    net = makeNet(4);
    // A short ping-timeout: the cut host's calls fail after it, not after the default 42 s.
    const made = await startBricks(net.hosts.slice(0, 3), base, 'nv', procs);
    const spec: VolumeSpec = { name: made.name, volumeId: made.volumeId, secret: made.secret, adminSecret: made.adminSecret, bricks: made.bricks, options: { pingTimeout: 3 } };
    const client = net.hosts[3].spawn(process.execPath, [path.join(here, 'helpers', 'netns-client.js')], { stdio: ['pipe', 'pipe', 'inherit'], env: { DHTFS_TEST_SPEC: JSON.stringify(spec) } });
    procs.push(client);
    const read = jsonLines(client);
    const filled = await read<{ step: string; where: Record<string, string>; error?: string }>();
    assert.equal(filled.step, 'filled', filled.error);
    const on = (b: string) =>
      Object.entries(filled.where)
        .filter(([, w]) => w === b)
        .map(([p]) => p);
    assert.ok(on('nv-client-1').length > 0 && on('nv-client-0').length + on('nv-client-2').length > 0, JSON.stringify(filled.where));

    net.hosts[1].link(false);
    client.stdin!.write('cut\n');
    type Reads = { step: string; reads: { path: string; brick: string; byPath: string; byFd: string }[]; error?: string };
    const cut = await read<Reads>();
    assert.equal(cut.step, 'cut', cut.error);
    for (const r of cut.reads) {
      if (filled.where[r.path] === 'nv-client-1') {
        assert.equal(r.byPath, 'ENOTCONN', `${r.path} on the cut host, by path`);
        assert.equal(r.byFd, 'ENOTCONN', `${r.path} on the cut host, by fd`);
      } else assert.deepEqual([r.byPath, r.byFd], ['ok', 'ok'], `${r.path} on ${filled.where[r.path]} reads while another host is cut off`);
    }

    net.hosts[1].link(true);
    client.stdin!.write('restored\n');
    const back = await read<Reads>();
    assert.equal(back.step, 'restored', back.error);
    assert.deepEqual(
      back.reads.filter((r) => r.byPath !== 'ok' || r.byFd !== 'ok'),
      [],
      'every file reads again, by path and by its old fd',
    );
    client.stdin!.end();
    await once(client, 'exit');
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    net?.destroy();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

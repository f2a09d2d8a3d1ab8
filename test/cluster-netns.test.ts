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
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { MAIN_JS } from '../src/cli/state.js';
import type { VolumeSpec } from '../src/dht/spec.js';
import { makeNet, netnsAvailable, type Net } from './helpers/netns.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const avail = netnsAvailable();

/** A child's stdout as JSON lines, queued as they come. */
function jsonLines(p: ChildProcess) {
  const queued: unknown[] = [];
  const waiting: ((v: unknown) => void)[] = [];
  createInterface({ input: p.stdout! }).on('line', (l) => {
    const v = JSON.parse(l);
    if (waiting.length) waiting.shift()!(v);
    else queued.push(v);
  });
  return <T>() => (queued.length ? Promise.resolve(queued.shift() as T) : new Promise<T>((r) => waiting.push(r as (v: unknown) => void)));
}

test('hosts in network namespaces: one host cut off costs its files only, and they come back with the link', { skip: !avail.ok && avail.reason, timeout: 180_000 }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-netns-'));
  let net: Net | null = null;
  const procs: ChildProcess[] = [];
  try {
    net = makeNet(4);
    const secret = randomBytes(16).toString('hex');
    const adminSecret = randomBytes(16).toString('hex');
    fs.writeFileSync(path.join(base, 'secret'), secret);
    fs.writeFileSync(path.join(base, 'admin'), adminSecret);
    const volumeId = randomUUID();
    const bricks: VolumeSpec['bricks'] = [];
    for (let i = 0; i < 3; i++) {
      const h = net.hosts[i];
      const dir = path.join(base, `b${i}`);
      fs.mkdirSync(dir);
      const p = h.spawn(process.execPath, [MAIN_JS, 'brick', 'serve', '--dir', dir, '--host', h.address, '--port', '0', '--name', `nv-client-${i}`, '--volume-id', volumeId, '--secret-file', path.join(base, 'secret'), '--admin-secret-file', path.join(base, 'admin'), '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
      procs.push(p);
      const ev = await jsonLines(p)<{ port: number }>();
      bricks.push({ name: `nv-client-${i}`, host: h.address, port: ev.port });
    }
    // A short ping-timeout: the cut host's calls fail after it, not after the default 42 s.
    const spec: VolumeSpec = { name: 'nv', volumeId, secret, adminSecret, bricks, options: { pingTimeout: 3 } };
    const client = net.hosts[3].spawn(process.execPath, [path.join(here, 'helpers', 'netns-client.js')], { stdio: ['pipe', 'pipe', 'inherit'], env: { DHTFS_TEST_SPEC: JSON.stringify(spec) } });
    procs.push(client);
    const read = jsonLines(client);
    const filled = await read<{ step: string; where: Record<string, string>; error?: string }>();
    assert.equal(filled.step, 'filled', filled.error);
    const on = (b: string) => Object.entries(filled.where).filter(([, w]) => w === b).map(([p]) => p);
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
    assert.deepEqual(back.reads.filter((r) => r.byPath !== 'ok' || r.byFd !== 'ok'), [], 'every file reads again, by path and by its old fd');
    client.stdin!.end();
    await once(client, 'exit');
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    net?.destroy();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

/**
 * Several hosts on one machine, for tests of what crosses a network (issue 19): each host a Linux network
 * namespace with one veth on a bridge, its own address (10.213.0.N/24) and no route to the others but the
 * bridge; the bridge lives in a namespace of its own, so the machine's own network is never touched. A
 * host's link can be cut and restored (`ip link set ... down` on the bridge's side). Processes run in a
 * host with `ip netns exec`, and get a host identity of their own (DHTFS_HOST_ID), so that no same-host
 * shortcut (a local read, a brick reading a peer brick's disk) is taken between two of them.
 *
 * Needs root and iproute2 (Debian's `iproute2`); `netnsAvailable()` says why not when it cannot.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MAIN_JS } from '../../src/cli/state.js';
import { createInterface } from 'node:readline';
import { RpcClient } from '../../src/wire/rpc.js';
import { tcpNetwork } from '../../src/wire/tcp.js';
import type { VolumeSpec } from '../../src/dht/spec.js';

export interface Host {
  name: string;
  /** The namespace's name (`ip netns exec NS ...`). */
  ns: string;
  address: string;
  /** Runs a command inside this host; environment: the caller's, DHTFS_HOST_ID, and `env`. */
  spawn(cmd: string, args: string[], opts?: SpawnOptions & { env?: NodeJS.ProcessEnv }): ChildProcess;
  /** Cuts this host's link (its veth on the bridge goes down), or restores it. */
  link(up: boolean): void;
}

export interface Net {
  hosts: Host[];
  /** Deletes every namespace made (their veths go with them). */
  destroy(): void;
}

export function netnsAvailable(): { ok: true } | { ok: false; reason: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root' };
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, reason: `no usable ip netns here (${(r.stderr || r.error?.message || '').trim()})` };
  return { ok: true };
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Makes `n` hosts named h1..hn on one bridge. */
export function makeNet(n: number): Net {
  const tag = randomBytes(3).toString('hex');
  const sw = `dh${tag}sw`;
  const made: string[] = [];
  const destroy = () => {
    for (const ns of made.reverse()) spawnSync('ip', ['netns', 'del', ns]);
  };
  try {
    ip('netns', 'add', sw);
    made.push(sw);
    ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', sw, 'link', 'set', 'br0', 'up');
    const hosts: Host[] = [];
    for (let i = 1; i <= n; i++) {
      const ns = `dh${tag}h${i}`;
      ip('netns', 'add', ns);
      made.push(ns);
      // The pair is made in the bridge's namespace, and one end moved into the host.
      const outside = `v${i}`;
      ip('-n', sw, 'link', 'add', outside, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('-n', sw, 'link', 'set', outside, 'master', 'br0');
      ip('-n', sw, 'link', 'set', outside, 'up');
      const address = `10.213.0.${i}`;
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      const hostId = `netns-${tag}-h${i}`;
      hosts.push({
        name: `h${i}`,
        ns,
        address,
        spawn: (cmd, args, opts = {}) => spawn('ip', ['netns', 'exec', ns, cmd, ...args], { ...opts, env: { ...process.env, ...opts.env, DHTFS_HOST_ID: hostId } }),
        link: (up) => ip('-n', sw, 'link', 'set', outside, up ? 'up' : 'down'),
      });
    }
    return { hosts, destroy };
  } catch (e) {
    destroy();
    throw e;
  }
}

/** A child's stdout as JSON lines, queued as they come: each call answers the next one. */
export function jsonLines(p: ChildProcess) {
  const queued: unknown[] = [];
  const waiting: ((v: unknown) => void)[] = [];
  createInterface({ input: p.stdout! }).on('line', (l) => {
    const v = JSON.parse(l);
    if (waiting.length) waiting.shift()!(v);
    else queued.push(v);
  });
  return <T>() => (queued.length ? Promise.resolve(queued.shift() as T) : new Promise<T>((r) => waiting.push(r as (v: unknown) => void)));
}

/** Stores the volume's topology on each of its bricks, as `volume start` does (from inside a host). */
export async function storeTopology(spec: VolumeSpec): Promise<void> {
  const topology = { version: 1, bricks: spec.bricks.map(({ name, host, port }) => ({ name, host, port })), decommissioned: [] };
  for (const b of spec.bricks) {
    const r = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: spec.volumeId, secret: spec.secret, adminSecret: spec.adminSecret });
    await r.call('setTopology', { topology });
    r.close();
  }
}

/**
 * A volume `name` of one brick on each of `hosts` (folders base/b0, b1, ...; its secrets in `base`), each
 * bound to its host's address: the spec, and the brick processes added to `procs`.
 */
export async function startBricks(hosts: Host[], base: string, name: string, procs: ChildProcess[]): Promise<VolumeSpec & { dirs: string[] }> {
  const secret = randomBytes(16).toString('hex');
  const adminSecret = randomBytes(16).toString('hex');
  fs.writeFileSync(path.join(base, 'secret'), secret);
  fs.writeFileSync(path.join(base, 'admin'), adminSecret);
  const volumeId = randomUUID();
  const bricks: VolumeSpec['bricks'] = [];
  const dirs: string[] = [];
  for (const [i, h] of hosts.entries()) {
    const dir = path.join(base, `b${i}`);
    fs.mkdirSync(dir);
    dirs.push(dir);
    const p = h.spawn(
      process.execPath,
      [
        MAIN_JS,
        'brick',
        'serve',
        '--dir',
        dir,
        '--host',
        h.address,
        '--port',
        '0',
        '--name',
        `${name}-client-${i}`,
        '--volume-id',
        volumeId,
        '--secret-file',
        path.join(base, 'secret'),
        '--admin-secret-file',
        path.join(base, 'admin'),
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    procs.push(p);
    const ev = await jsonLines(p)<{ port: number }>();
    bricks.push({ name: `${name}-client-${i}`, host: h.address, port: ev.port });
  }
  return { name, volumeId, secret, adminSecret, bricks, dirs };
}

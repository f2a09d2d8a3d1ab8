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
import { randomBytes } from 'node:crypto';

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

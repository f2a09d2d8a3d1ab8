/**
 * The CLI over a cluster (issue 19, docs/CLUSTER.md): once `dhtfs cluster init --etcd URLS` has written
 * $DHTFS_HOME/cluster.json, volumes live in the cluster's store and their bricks are run by the node
 * daemons of their hosts; `peer probe`, `pool list`, and `volume create/start/stop/info/status/spec` and
 * the file commands work from any host of the pool. Without cluster.json, the CLI works as on one host.
 */
import fs from 'node:fs';
import path from 'node:path';
import dns from 'node:dns/promises';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { clientSpecOf, keys, parseVolume, type BrickStatus, type PeerRecord, type PlacedBrick, type VolumeRecord } from '../cluster/records.js';
import { update, type Store } from '../cluster/store.js';
import type { VolumeOptions, VolumeSpec } from '../dht/spec.js';
import { home } from './state.js';
import { etcdAccessOf, etcdOptions, openStore, type EtcdAccess, type EtcdOptions } from './node.js';
import { announceWith, initClusterCa, issueNodeCert, revokeNodeCert, withCliTls } from './cluster-pki.js';

/** How long `volume start` and `stop` wait for the node daemons to report every brick. */
const BRICKS_WAIT_MS = 30_000;

export interface ClusterConfig {
  etcd: string[];
  /** etcd's client credentials (ca.pem, cert.pem, key.pem) when not in $DHTFS_HOME/tls/etcd-client. */
  etcdTls?: string;
  /** The operator allowed a plaintext etcd on the network (cluster init --insecure-etcd). */
  insecureEtcd?: boolean;
}

function configFile(): string {
  return path.join(home(), 'cluster.json');
}

/** This host's cluster configuration, or null when it is not in one (the single-host CLI). */
export function clusterConfig(): ClusterConfig | null {
  try {
    const c = JSON.parse(fs.readFileSync(configFile(), 'utf8')) as ClusterConfig;
    if (!Array.isArray(c.etcd) || c.etcd.length === 0) throw new Error('no etcd endpoints');
    return c;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`${configFile()}: ${(e as Error).message}`);
  }
}

/** How this host reaches the cluster's etcd (cluster.json). */
export function etcdAccess(c: ClusterConfig): EtcdAccess {
  return etcdAccessOf({ etcd: c.etcd.join(','), etcdTls: c.etcdTls, insecureEtcd: c.insecureEtcd }, () => {})!;
}

export async function withStore<T>(fn: (s: Store) => Promise<T>): Promise<T> {
  const c = clusterConfig();
  if (!c) throw new Error('this host is not in a cluster: run "dhtfs cluster init --etcd URLS" first');
  const s = await openStore(etcdAccess(c));
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

type Out = (json: boolean, value: unknown, text: () => string) => void;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function peers(s: Store): Promise<(PeerRecord & { member?: boolean; online: boolean })[]> {
  const present = new Set((await s.list('presence/')).map((e) => e.key.slice('presence/'.length)));
  return (await s.list(keys.peers)).map((e) => {
    const p = JSON.parse(e.value) as PeerRecord & { member?: boolean };
    return { ...p, online: present.has(p.id) };
  });
}

/** The peer a HOST argument names: by its address, or by a name that resolves to it. */
async function peerOf(s: Store, host: string): Promise<PeerRecord & { member?: boolean; online: boolean }> {
  const all = await peers(s);
  let p = all.find((x) => x.address === host);
  if (!p) {
    const addrs = await dns.lookup(host, { all: true }).catch(() => []);
    p = all.find((x) => addrs.some((a) => a.address === x.address));
  }
  if (!p) throw new Error(`no node daemon at ${host} has joined this cluster: run "dhtfs node serve --etcd ... --address ${host}" there`);
  return p;
}

export async function volumeRecord(s: Store, name: string): Promise<VolumeRecord> {
  const e = await s.get(keys.volume(name));
  if (!e) throw new Error(`volume ${name} does not exist`);
  return parseVolume(e.key, e.value);
}

/** A client's spec of a volume of the cluster (for file commands, and `volume spec`). */
export async function clusterSpec(name: string): Promise<VolumeSpec> {
  return withStore(async (s) => withCliTls(s, specOf(await volumeRecord(s, name))));
}

export function specOf(v: VolumeRecord, admin = false): VolumeSpec {
  return clientSpecOf(v, admin);
}

export async function statuses(s: Store, v: VolumeRecord): Promise<Map<string, BrickStatus>> {
  return new Map((await s.list(keys.brickStatuses(v.name))).map((e) => [e.key.slice(keys.brickStatuses(v.name).length), JSON.parse(e.value) as BrickStatus]));
}

export function registerClusterCommands(program: Command, action: <A extends unknown[]>(fn: (...args: A) => Promise<void> | void) => (...args: A) => Promise<void>, out: Out): void {
  const init = program
    .command('cluster')
    .description('join this host to a cluster whose state is in etcd (being built, issue 19: docs/CLUSTER.md)')
    .command('init')
    .description(
      'make this host a member of the cluster kept in these etcd endpoints: volume commands work on the cluster from now on. etcd on TLS (https://) with a client certificate: --etcd-tls DIR, or issued here when this host holds the etcd CA (cert issue etcd-server made it)',
    );
  etcdOptions(init, 'etcd endpoints, comma-separated (https://HOST:2379,...)').action(
    action(async (o: EtcdOptions) => {
      if (!o.etcd) throw new Error('--etcd URLS is needed');
      const access = etcdAccessOf(
        o,
        (line) => process.stderr.write(`cluster init: ${line}\n`),
        (line) => process.stdout.write(`cluster init: ${line}\n`),
      )!;
      const etcd = access.endpoints;
      const s = await openStore(access);
      let ca: string;
      try {
        await s.list(keys.peers); // reachable, or a clear error now
        ca = await initClusterCa(s);
      } finally {
        await s.close();
      }
      fs.mkdirSync(home(), { recursive: true, mode: 0o700 });
      const config: ClusterConfig = { etcd, ...(o.etcdTls ? { etcdTls: path.resolve(o.etcdTls) } : {}), ...(o.insecureEtcd ? { insecureEtcd: true } : {}) };
      fs.writeFileSync(configFile(), JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
      process.stdout.write(`cluster init: this host uses the cluster state in etcd ${etcd.join(',')}${access.tls ? ' (TLS, client certificate)' : ' (plaintext)'}; ${ca}\n`);
    }),
  );

  const peer = program.command('peer').description('the hosts of the pool (as gluster peer)');
  peer
    .command('probe <host>')
    .description("add a host to the pool: its node daemon must be running with this cluster's --etcd")
    .action(
      action(async (host: string) =>
        withStore(async (s) => {
          const p = await peerOf(s, host);
          if (!p.online) throw new Error(`the node daemon at ${host} (${p.id}) is not running`);
          await update<PeerRecord & { member?: boolean }>(s, keys.peer(p.id), (cur) => (cur && !cur.member ? { ...cur, member: true } : null));
          const unsigned = await issueNodeCert(s, p, host);
          if (unsigned) process.stderr.write(`peer probe: ${unsigned}\n`);
          process.stdout.write(`peer probe: success (${host}, node ${p.id})\n`);
        }),
      ),
    );
  peer
    .command('detach <host>')
    .description(
      "take a host out of the pool (refused while it holds bricks of a volume); on the host holding the cluster's CA it revokes the node's certificate, and where the etcd CA is the etcd client certificate its daemon reported (published for node daemons with --etcd-crl-file); elsewhere it says what it left",
    )
    .action(
      action(async (host: string) =>
        withStore(async (s) => {
          const p = await peerOf(s, host);
          for (const e of await s.list(keys.volumes)) {
            const v = parseVolume(e.key, e.value);
            if (v.bricks.some((b) => b.node === p.id)) throw new Error(`${host} holds bricks of volume ${v.name}; remove them first`);
          }
          await update<PeerRecord & { member?: boolean }>(s, keys.peer(p.id), (cur) => (cur?.member ? { ...cur, member: false } : null));
          const kept = await revokeNodeCert(s, p);
          if (kept) process.stderr.write(`peer detach: ${kept}\n`);
          // Its key to etcd too (every volume's secret is there), where the etcd CA is.
          const { revokeEtcdCert } = await import('./etcd-pki.js');
          const c = clusterConfig();
          const etcdKept = await revokeEtcdCert(s, p, c ? etcdAccess(c).tls : undefined);
          if (etcdKept) process.stderr.write(`peer detach: ${etcdKept}\n`);
          else process.stdout.write(`peer detach: ${p.id}'s etcd client certificate ${p.etcdCert!.name} revoked; node daemons with --etcd-crl-file give etcd the new CRL (its open connection stays until it ends: docs/SECURITY.md)\n`);
          process.stdout.write(`peer detach: success (${host})\n`);
        }),
      ),
    );
  program
    .command('pool')
    .description('the pool')
    .command('list')
    .description('every host of the pool: its node id, address, and whether its node daemon runs')
    .option('--json', 'print as JSON')
    .action(
      action(async (o: { json?: boolean }) =>
        withStore(async (s) => {
          const ps = (await peers(s)).filter((p) => p.member);
          out(
            !!o.json,
            ps.map(({ id, address, online }) => ({ id, address, state: online ? 'Connected' : 'Disconnected' })),
            () => ['UUID                                  Hostname         State', ...ps.map((p) => `${p.id.padEnd(37)} ${p.address.padEnd(16)} ${p.online ? 'Connected' : 'Disconnected'}`)].join('\n'),
          );
        }),
      ),
    );
}

/**
 * Bricks given as HOST:/DIR placed on the pool's nodes, named after those the volume has: each host a
 * member, and no folder twice or inside another brick's folder on one node (a folder is one brick's).
 */
export async function placeBricks(s: Store, vol: string, args: string[], have: PlacedBrick[]): Promise<PlacedBrick[]> {
  const next = have.reduce((m, b) => Math.max(m, Number(/-client-(\d+)$/.exec(b.name)?.[1] ?? -1) + 1), 0);
  const out: PlacedBrick[] = [];
  for (const [i, a] of args.entries()) {
    const m = /^([^:]+):(\/.*)$/.exec(a);
    if (!m) throw new Error(`brick ${a}: HOST:/DIR expected (in a cluster, ports are the node daemons' to give)`);
    const p = await peerOf(s, m[1]);
    if (!p.member) throw new Error(`${m[1]} is not in the pool: run "dhtfs peer probe ${m[1]}" first`);
    const dir = path.posix.normalize(m[2]).replace(/(.)\/$/, '$1');
    for (const b of [...have, ...out]) {
      if (b.node !== p.id) continue;
      const inside = (x: string, y: string) => x === y || x.startsWith(y.endsWith('/') ? y : `${y}/`);
      if (inside(dir, b.dir) || inside(b.dir, dir)) throw new Error(`brick ${m[1]}:${dir} is, holds or is inside the folder of brick ${b.name} (${b.host}:${b.dir})`);
    }
    out.push({ name: `${vol}-client-${next + i}`, node: p.id, host: p.address, dir, port: 0 });
  }
  return out;
}

/** volume create in a cluster: bricks as HOST:/DIR on hosts of the pool; ports come from their node daemons. */
export async function clusterCreate(name: string, args: string[], options: VolumeOptions): Promise<VolumeRecord> {
  return withStore(async (s) => {
    const bricks = await placeBricks(s, name, args, []);
    const v: VolumeRecord = { name, volumeId: randomUUID(), secret: randomBytes(16).toString('hex'), adminSecret: randomBytes(16).toString('hex'), state: 'created', bricks, decommissioned: [], version: 0, options };
    if (!(await s.commit([{ key: keys.volume(name), value: JSON.stringify(v), ifRev: 0 }]))) throw new Error(`volume ${name} already exists`);
    return v;
  });
}

/** volume start/stop in a cluster: the record's state, then the node daemons' reports of every brick. */
export async function clusterStartStop(name: string, state: 'started' | 'stopped'): Promise<{ brick: string; node: string; state: string; pid: number | null; port: number }[]> {
  return withStore(async (s) => {
    await update<VolumeRecord>(s, keys.volume(name), (cur) => {
      if (!cur) throw new Error(`volume ${name} does not exist`);
      return cur.state === state ? null : { ...cur, state };
    });
    const want = state === 'started' ? 'online' : 'stopped';
    const deadline = Date.now() + BRICKS_WAIT_MS;
    for (;;) {
      const v = await volumeRecord(s, name);
      const st = await statuses(s, v);
      const rows = v.bricks.map((b) => ({ brick: b.name, node: b.node, state: st.get(b.name)?.state ?? 'unknown', pid: st.get(b.name)?.pid ?? null, port: b.port, reason: st.get(b.name)?.reason }));
      if (rows.every((r) => r.state === want)) {
        // Every brick listens on its recorded port: one topology with them all, to all of them.
        if (state === 'started') await announceWith(s)((await update<VolumeRecord>(s, keys.volume(name), (cur) => (cur ? { ...cur, version: cur.version + 1 } : null)))!);
        return rows;
      }
      const failed = rows.filter((r) => r.state === 'failed');
      if (failed.length) throw new Error(`bricks did not start: ${failed.map((r) => `${r.brick}: ${r.reason}`).join('; ')}`);
      if (Date.now() > deadline)
        throw new Error(
          `bricks not ${want} after ${BRICKS_WAIT_MS / 1000} s: ${rows
            .filter((r) => r.state !== want)
            .map((r) => `${r.brick} (${r.state}${r.reason ? `: ${r.reason}` : ''})`)
            .join(', ')}; are their node daemons running?`,
        );
      await sleep(200);
    }
  });
}

export async function clusterVolumes(name?: string): Promise<{ v: VolumeRecord; status: Map<string, BrickStatus>; online: Set<string> }[]> {
  return withStore(async (s) => {
    const vs = name ? [await volumeRecord(s, name)] : (await s.list(keys.volumes)).map((e) => parseVolume(e.key, e.value));
    const online = new Set((await s.list('presence/')).map((e) => e.key.slice('presence/'.length)));
    const out = [];
    for (const v of vs) out.push({ v: await withCliTls(s, v), status: await statuses(s, v), online });
    return out;
  });
}

/**
 * volume set/reset in a cluster: the record's options changed (compare-and-set: two hosts changing options
 * at once cannot lose one), and for a started volume a topology one version up, told to every brick.
 */
export async function clusterChangeOptions(name: string, change: (o: VolumeOptions) => VolumeOptions): Promise<VolumeRecord> {
  return withStore(async (s) => {
    const v = await update<VolumeRecord>(s, keys.volume(name), (cur) => {
      if (!cur) throw new Error(`volume ${name} does not exist`);
      return { ...cur, options: change({ ...cur.options }), version: cur.state === 'started' ? cur.version + 1 : cur.version };
    });
    if (v!.state === 'started') await announceWith(s)(v!);
    return v!;
  });
}

/**
 * volume add-brick in a cluster, all or nothing: the new bricks are placed in the record, their node
 * daemons start them, and only once every one is online is the topology with them told to the bricks; a
 * brick that fails to start takes them all out of the record again (its daemon stops the others).
 */
export async function clusterAddBricks(name: string, args: string[]): Promise<PlacedBrick[]> {
  return withStore(async (s) => {
    const e = await s.get(keys.volume(name));
    if (!e) throw new Error(`volume ${name} does not exist`);
    const cur = parseVolume(e.key, e.value);
    if (cur.state !== 'started') throw new Error(`volume ${name} is not started; start it first`);
    const added = await placeBricks(s, name, args, cur.bricks);
    // Compare-and-set on the revision read: a change made meanwhile (another add-brick) is not overwritten.
    if (!(await s.commit([{ key: keys.volume(name), value: JSON.stringify({ ...cur, bricks: [...cur.bricks, ...added] }), ifRev: e.rev }]))) throw new Error(`volume ${name} changed meanwhile; try again`);
    const names = new Set(added.map((b) => b.name));
    const deadline = Date.now() + BRICKS_WAIT_MS;
    try {
      for (;;) {
        const st = await statuses(s, await volumeRecord(s, name));
        const rows = added.map((b) => ({ b, st: st.get(b.name) }));
        const failed = rows.filter((r) => r.st?.state === 'failed' || (r.st?.state === 'restarting' && r.st.exits >= 2));
        if (failed.length) throw new Error(`new bricks did not start: ${failed.map((r) => `${r.b.name} (${r.b.host}:${r.b.dir}): ${r.st!.reason}`).join('; ')}`);
        if (rows.every((r) => r.st?.state === 'online')) break;
        if (Date.now() > deadline)
          throw new Error(
            `new bricks not online after ${BRICKS_WAIT_MS / 1000} s: ${rows
              .filter((r) => r.st?.state !== 'online')
              .map((r) => `${r.b.name} (${r.st?.state ?? 'not seen by its node daemon'})`)
              .join(', ')}`,
          );
        await sleep(200);
      }
    } catch (e) {
      await update<VolumeRecord>(s, keys.volume(name), (v) => (v ? { ...v, bricks: v.bricks.filter((b) => !names.has(b.name)) } : null));
      for (const b of added) await s.commit([{ key: keys.brickStatus(name, b.name), value: null }]).catch(() => {});
      throw e;
    }
    const v = await update<VolumeRecord>(s, keys.volume(name), (x) => (x ? { ...x, version: x.version + 1 } : null));
    await announceWith(s)(v!);
    return (await volumeRecord(s, name)).bricks.filter((b) => names.has(b.name));
  });
}

/** volume delete in a cluster: a volume that is not started is forgotten (its bricks' folders stay). */
export async function clusterDelete(name: string): Promise<void> {
  return withStore(async (s) => {
    const e = await s.get(keys.volume(name));
    if (!e) throw new Error(`volume ${name} does not exist`);
    if (parseVolume(e.key, e.value).state === 'started') throw new Error(`volume ${name} is started; stop it first`);
    if (await s.get(keys.task(name))) throw new Error(`a rebalance of ${name} is running; stop it first`);
    // Its brick statuses and its task (a checkpoint left running would be taken over for a new volume of the name).
    const st = [...(await s.list(keys.brickStatuses(name))), ...(await s.list(`tasks/${name}/`))];
    if (!(await s.commit([{ key: keys.volume(name), value: null, ifRev: e.rev }, ...st.map((x) => ({ key: x.key, value: null }))]))) throw new Error(`volume ${name} changed meanwhile; try again`);
  });
}

/**
 * `dhtfs node serve` and `dhtfs node install-service`: the node daemon of a host (src/cluster/node.ts),
 * its identity, its store, and the systemd unit that runs it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { LocalStore } from '../cluster/local-store.js';
import { NodeDaemon } from '../cluster/node.js';
import { TASK_DEFAULTS, TaskWatcher } from '../cluster/tasks.js';
import { ProcessBrickRunner, announcer } from '../cluster/brick-runner.js';
import { keys, type PeerRecord } from '../cluster/records.js';
import type { Store } from '../cluster/store.js';
import { realClock } from '../common/real-env.js';
import { MAIN_JS, home } from './state.js';
import { MGMT_PORT } from '../wire/mgmt.js';
import { startManagement } from './node-pki.js';
import type { EtcdTls } from '../cluster/etcd-store.js';
import { etcdCredentials, etcdTransport, parseEndpoints } from './etcd-access.js';

/** How long the store keeps a dead daemon's presence. */
const PRESENCE_TTL_S = 10;

/**
 * This node's id: made once and kept in its state folder (machine-id cannot tell hosts apart that share
 * it: containers of one image, network namespaces).
 */
export function nodeId(stateDir: string): string {
  const f = path.join(stateDir, 'node-id');
  try {
    return fs.readFileSync(f, 'utf8').trim();
  } catch {
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const id = randomUUID();
    fs.writeFileSync(f, id + '\n', { mode: 0o600, flag: 'wx' });
    return id;
  }
}

/** etcd's endpoints and, for https ones, this host's client credentials (src/cli/etcd-access.ts). */
export interface EtcdAccess {
  endpoints: string[];
  tls?: EtcdTls;
}

/**
 * The cluster's store: etcd when endpoints are given, else the local file of this host's $DHTFS_HOME.
 * The etcd client (gRPC) is loaded only then: every other command starts without it.
 */
export async function openStore(etcd: EtcdAccess | undefined): Promise<Store> {
  if (etcd) {
    const { EtcdStore } = await import('../cluster/etcd-store.js');
    return new EtcdStore(etcd.endpoints, { tls: etcd.tls });
  }
  return new LocalStore(path.join(home(), 'store.json'));
}

/** The etcd options of `node serve` and `cluster init`. */
export interface EtcdOptions {
  etcd?: string;
  etcdTls?: string;
  insecureEtcd?: boolean;
}

export function etcdOptions(c: Command, what = "etcd endpoints (comma-separated) holding the cluster's state"): Command {
  return c
    .option('--etcd <urls>', what)
    .option('--etcd-tls <dir>', "etcd's client credentials for https endpoints: ca.pem (etcd's CA), cert.pem, key.pem (from cert issue etcd-client); default $DHTFS_HOME/tls/etcd-client")
    .option('--insecure-etcd', 'allow a plaintext (http://) etcd on another host than this one: its secrets cross the network in clear');
}

/** What `--etcd`, `--etcd-tls` and `--insecure-etcd` say: how to reach etcd (checked: see etcd-access.ts), or undefined without --etcd. */
export function etcdAccessOf(o: EtcdOptions, warn: (line: string) => void, note?: (line: string) => void): EtcdAccess | undefined {
  if (!o.etcd) return undefined;
  const endpoints = parseEndpoints(o.etcd);
  return { endpoints, tls: etcdCredentials(endpoints, { tlsDir: o.etcdTls, insecure: o.insecureEtcd, warn, note }) };
}

/** The daemon's part in long tasks: it takes over a rebalance or drain whose runner died (src/cluster/tasks.ts). */
async function startTaskWatcher(store: Store, id: string, log: (level: 'info' | 'warn' | 'error', msg: string) => void): Promise<TaskWatcher> {
  const { takeOverTask, taskTtlSec } = await import('./cluster-tasks.js');
  const w = new TaskWatcher(store, { host: os.hostname(), pid: process.pid, node: id }, takeOverTask(store, log), realClock, log, { ...TASK_DEFAULTS, ttlSec: taskTtlSec() });
  await w.start();
  return w;
}

export function registerNodeCommands(program: Command, action: <A extends unknown[]>(fn: (...args: A) => Promise<void> | void) => (...args: A) => Promise<void>): void {
  const node = program.command('node').description("this host's node daemon: runs the bricks the cluster places here (being built, issue 19: docs/CLUSTER.md)");
  const serve = node
    .command('serve')
    .description('run the node daemon in the foreground: start, supervise and restart the bricks placed on this node, report them in the cluster state, and take over a rebalance or drain whose runner died')
    .option('--state-dir <dir>', "the daemon's folder: its id, brick logs, volume secrets", path.join(home(), 'node'))
    .option('--address <ip>', "the address this node's bricks listen on", '127.0.0.1');
  etcdOptions(serve, "etcd endpoints (comma-separated) holding the cluster's state; without: $DHTFS_HOME/store.json (one host)");
  serve
    .option('--port-range <first-last>', 'the brick port range (default: $DHTFS_PORT_RANGE, else 49152-60999)')
    .option('--stop-bricks', 'stop the bricks when the daemon stops (by default they keep serving: clients never need the daemon)')
    .option('--etcd-crl-file <path>', "on an etcd member's host: keep this file (etcd's --client-crl-file) the etcd CA's CRL from the store, so that a certificate peer detach or cert revoke --etcd revoked is refused at its next connection")
    .option('--mgmt-port <port>', 'the management port: volume specs for clients (mount HOST:/NAME), over TLS once peer probe gave this node its certificate', String(MGMT_PORT))
    .action(
      action(async (o: EtcdOptions & { stateDir: string; address: string; portRange?: string; stopBricks?: boolean; mgmtPort: string; etcdCrlFile?: string }) => {
        const stateDir = path.resolve(o.stateDir);
        const id = nodeId(stateDir);
        const log = (level: 'info' | 'warn' | 'error', msg: string) => process.stderr.write(JSON.stringify({ level, time: new Date().toISOString(), node: id, msg }) + '\n');
        const access = etcdAccessOf(
          o,
          (line) => log('warn', line),
          (line) => log('info', line),
        );
        if (o.etcdCrlFile && !access?.tls?.ca) throw new Error('--etcd-crl-file: for an etcd on TLS (https endpoints and their etcd CA in --etcd-tls)');
        const store = await openStore(access);
        const presence = await store.claim(keys.presence(id), JSON.stringify({ pid: process.pid, address: o.address }), PRESENCE_TTL_S);
        if (!presence) throw new Error(`a node daemon with id ${id} already runs (its presence is in ${store.where}); stop it first`);
        const peer = await store.get(keys.peer(id));
        if (!peer) {
          const rec: PeerRecord = { id, address: o.address, mgmtPort: 0 };
          await store.commit([{ key: keys.peer(id), value: JSON.stringify(rec), ifRev: 0 }]);
        }
        const { followEtcdCrl, reportEtcdCert } = await import('./etcd-pki.js');
        // Its key to etcd, for peer detach to revoke; the etcd CA's CRL kept where this host's etcd reads it.
        await reportEtcdCert(store, id, access?.tls);
        const stopEtcdCrl = o.etcdCrlFile ? await followEtcdCrl(store, path.resolve(o.etcdCrlFile), access!.tls!.ca!, log) : null;
        // Its certificate first: the bricks of volumes with transport.tls on present it.
        const mgmt = await startManagement(store, id, stateDir, o.address, Number(o.mgmtPort), log);
        const daemon = new NodeDaemon(store, id, new ProcessBrickRunner(stateDir, o.address, o.portRange, mgmt.tlsDir), announcer(mgmt.tls), realClock, log);
        await daemon.start();
        const tasks = await startTaskWatcher(store, id, log);
        process.stdout.write(JSON.stringify({ event: 'node-ready', id, address: o.address, store: store.where, pid: process.pid }) + '\n');
        // Stopped on purpose (SIGTERM, SIGINT): its tasks handed on at a file boundary, for another daemon
        // to take over at once. Its presence lost: the store is away, the tasks' claims lapse by themselves.
        const why = await new Promise<'signal' | 'lost'>((resolve) => {
          process.once('SIGTERM', () => resolve('signal'));
          process.once('SIGINT', () => resolve('signal'));
          void presence.lost.then(() => {
            log('error', `lost this node's presence in ${store.where} (away for more than ${PRESENCE_TTL_S} s); stopping`);
            resolve('lost');
          });
        });
        await mgmt.close();
        await stopEtcdCrl?.();
        if (why === 'signal' && tasks.tasks().length > 0) log('info', `stopping: handing on ${tasks.tasks().join(', ')}'s task at the next file boundary`);
        await tasks.close({ handOn: why === 'signal' });
        await daemon.close({ bricks: !!o.stopBricks });
        await presence.release().catch(() => {});
        await store.close();
        process.exit(0);
      }),
    );
  const install = node
    .command('install-service')
    .description('write the systemd unit that runs `dhtfs node serve` at boot (then: systemctl daemon-reload; systemctl enable --now dhtfs-node)')
    .option('--unit-dir <dir>', 'where to write dhtfs-node.service', '/etc/systemd/system')
    .option('--address <ip>', "the address this node's bricks listen on", '127.0.0.1')
    .option('--state-dir <dir>', "the daemon's folder", '/var/lib/dhtfs/node');
  etcdOptions(install)
    .option('--etcd-crl-file <path>', "on an etcd member's host: the file etcd's --client-crl-file reads, kept current by the daemon (node serve --etcd-crl-file)")
    .action(
      action((o: EtcdOptions & { unitDir: string; address: string; stateDir: string; etcdCrlFile?: string }) => {
        // Checked now (a plaintext etcd on the network refused without --insecure-etcd), not at the first boot.
        if (o.etcd) etcdTransport(parseEndpoints(o.etcd), !!o.insecureEtcd, (line) => process.stderr.write(`${line}\n`));
        const etcdArgs = o.etcd ? ['--etcd', o.etcd, ...(o.etcdTls ? ['--etcd-tls', path.resolve(o.etcdTls)] : []), ...(o.insecureEtcd ? ['--insecure-etcd'] : []), ...(o.etcdCrlFile ? ['--etcd-crl-file', path.resolve(o.etcdCrlFile)] : [])] : [];
        const args = [process.execPath, MAIN_JS, 'node', 'serve', '--state-dir', o.stateDir, '--address', o.address, ...etcdArgs];
        const unit = [
          '[Unit]',
          "Description=dhtfs node daemon (runs this host's bricks)",
          'After=network-online.target',
          'Wants=network-online.target',
          '',
          '[Service]',
          'Type=simple',
          `Environment=DHTFS_HOME=${path.dirname(o.stateDir)}`,
          `ExecStart=${args.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(' ')}`,
          // The bricks are the data path: a daemon restart must not take them down with it.
          'KillMode=process',
          'Restart=on-failure',
          'RestartSec=2',
          'LimitNOFILE=65536',
          '',
          '[Install]',
          'WantedBy=multi-user.target',
          '',
        ].join('\n');
        fs.mkdirSync(o.unitDir, { recursive: true });
        const f = path.join(o.unitDir, 'dhtfs-node.service');
        fs.writeFileSync(f, unit);
        process.stdout.write(`wrote ${f}; then: systemctl daemon-reload && systemctl enable --now dhtfs-node\n`);
      }),
    );
}

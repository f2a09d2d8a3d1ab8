/**
 * The bench's `hosts` part (BENCH_ONLY=hosts; needs root for network namespaces): a rebalance between
 * bricks on two hosts, against a plain copy of the same files over the same veth.
 *
 * Three hosts in namespaces (test/helpers/netns.ts): brick 0 on h1, brick 1 on h2, the volume's client and
 * rebalancer on h3. The client fills brick 0's share of /s (small files) and /l (two large ones); the
 * reference sends those files from h1 to a receiver on h2, one connection, each file written and fsynced
 * (as a migration's copy is); then the client rotates the layouts so that they all belong on brick 1 and
 * rebalances. Every migrated byte crosses a veth at least once in both.
 *
 *   BENCH_HOSTS_FILES (default 2000), BENCH_HOSTS_MB (default 256, each of the two large files)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { jsonLines, makeNet, netnsAvailable, startBricks, type Host } from '../test/helpers/netns.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'hosts-child.js');

export interface HostsRow {
  work: string;
  local: string;
  dhtfs: string;
  ratio: number;
}

/** A child's stdout as JSON lines, one at a time; an `error` step throws. */
function reader(p: ChildProcess) {
  const next = jsonLines(p);
  return async <T>(): Promise<T> => {
    const v = await next<T & { step?: string; error?: string }>();
    if (v.step === 'error') throw new Error(v.error);
    return v;
  };
}

/** The plain copy of `files` from h1 to h2 over their veths: seconds. */
async function plainCopy(from: Host, to: Host, files: string[], into: string, procs: ChildProcess[]): Promise<number> {
  const r = to.spawn(process.execPath, [CHILD, 'recv', into], { stdio: ['pipe', 'pipe', 'inherit'] });
  procs.push(r);
  const { port } = await reader(r)<{ port: number }>();
  const list = `${into}.list`;
  fs.writeFileSync(list, JSON.stringify(files));
  const s = from.spawn(process.execPath, [CHILD, 'send', to.address, String(port), list], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(s);
  const sent = await reader(s)<{ s: number; files: number }>();
  if (sent.files !== files.length) throw new Error(`the plain copy received ${sent.files} of ${files.length} files`);
  r.stdin!.end('done\n');
  await once(r, 'exit');
  return sent.s;
}

export async function hostsBench(rows: HostsRow[]): Promise<string[]> {
  const avail = netnsAvailable();
  if (!avail.ok) return [`hosts part skipped: ${avail.reason}`];
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-hbench-'));
  const net = makeNet(3);
  const procs: ChildProcess[] = [];
  try {
    const { dirs, ...spec } = await startBricks(net.hosts.slice(0, 2), base, 'hb', procs);
    const client = net.hosts[2].spawn(process.execPath, [CHILD, 'client', JSON.stringify(spec), JSON.stringify(dirs)], { stdio: ['pipe', 'pipe', 'inherit'] });
    procs.push(client);
    const read = reader(client);
    const filled = await read<{ small: string[]; big: string[]; bytes: number }>();
    const smallRef = await plainCopy(
      net.hosts[0],
      net.hosts[1],
      filled.small.map((n) => path.join(dirs[0], 's', n)),
      path.join(base, 'ref-s'),
      procs,
    );
    const bigRef = await plainCopy(
      net.hosts[0],
      net.hosts[1],
      filled.big.map((n) => path.join(dirs[0], 'l', n)),
      path.join(base, 'ref-l'),
      procs,
    );
    client.stdin!.write('go\n');
    type Moved = { files: number; bytes: number; s: number };
    const moved = await read<{ small: Moved; big: Moved }>();
    if (moved.small.files !== filled.small.length || moved.big.files !== filled.big.length) throw new Error(`the rebalance moved ${JSON.stringify(moved)} of ${filled.small.length} + ${filled.big.length} files`);
    const refSmall = filled.small.length / smallRef;
    const smallRate = moved.small.files / moved.small.s;
    rows.push({ work: `rebalance between hosts: ${filled.small.length} files of 4 KiB`, local: `${refSmall.toFixed(0)} files/s`, dhtfs: `${smallRate.toFixed(0)} files/s`, ratio: smallRate / refSmall });
    const refBig = filled.bytes / bigRef / 1e6;
    const bigRate = moved.big.bytes / moved.big.s / 1e6;
    rows.push({ work: `rebalance between hosts: ${filled.big.length} files of ${filled.bytes / filled.big.length / 2 ** 20} MiB`, local: `${refBig.toFixed(0)} MB/s`, dhtfs: `${bigRate.toFixed(0)} MB/s`, ratio: bigRate / refBig });
    client.stdin!.end();
    await once(client, 'exit');
    return ['(hosts rows: "local disk" is a plain copy of the same files from brick 0\'s host to brick 1\'s over the same veths, one TCP connection, each file fsynced; the rebalancer runs on a third host)'];
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    net.destroy();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

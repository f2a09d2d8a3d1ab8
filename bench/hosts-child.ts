/**
 * The processes of the bench's `hosts` part (bench/hosts.ts), each run inside a host of its own
 * (test/helpers/netns.ts). One JSON line per step on stdout; a line on stdin lets the next step go.
 *
 *   client SPEC_JSON DIRS_JSON   fills the volume, then (on a line) rotates the layouts and rebalances
 *   recv DIR                     the plain copy's receiving end: writes each file it is sent, fsynced
 *   send HOST PORT LIST_FILE     the plain copy's sending end: the files named in LIST_FILE, one by one
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Volume } from '../src/api/volume.js';
import { Rebalancer, type Checkpoint } from '../src/rebalance/rebalancer.js';
import type { VolumeSpec } from '../src/dht/spec.js';
import { namesOn } from '../test/helpers/disk.js';
import { rotateLayout } from '../test/helpers/layout.js';
import { storeTopology } from '../test/helpers/netns.js';

const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value as string;

async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (i < n) await fn(i++);
    }),
  );
}

/** The volume's client: fills /s (small files) and /l (large ones) on the first brick, then moves them. */
async function client(spec: VolumeSpec, dirs: string[]): Promise<void> {
  const files = Number(process.env.BENCH_HOSTS_FILES ?? 2000);
  const mb = Number(process.env.BENCH_HOSTS_MB ?? 256);
  const names = spec.bricks.map((b) => b.name);
  await storeTopology(spec); // as the CLI does: dst reaches src by it
  const vol = await Volume.connect(spec);
  await vol.mkdir('/s');
  await vol.mkdir('/l');
  const small = namesOn(dirs, names, '/s', 0, files, 'f');
  const data = Buffer.alloc(4096, 5);
  await pool(small.length, 16, (i) => vol.writeFile(`/s/${small[i]}`, data));
  const big = namesOn(dirs, names, '/l', 0, 2, 'big');
  const piece = Buffer.alloc(8 << 20, 9);
  for (const n of big) {
    const h = await vol.open(`/l/${n}`, 'w');
    for (let off = 0; off < mb << 20; off += piece.length) await h.write(piece, 0, piece.length, off);
    await h.sync();
    await h.close();
  }
  say({ step: 'filled', small, big, bytes: big.length * (mb << 20) });
  await next();
  const out: Record<string, unknown> = { step: 'moved' };
  const pull = process.env.BENCH_PULL !== '0';
  for (const dir of ['/s', '/l']) {
    rotateLayout(dirs, names, dir);
    let saved: Checkpoint | null = null;
    const store = { load: () => saved, save: (c: Checkpoint) => void (saved = structuredClone(c)) };
    const rb = await Volume.connect(spec);
    const t = performance.now();
    const r = await new Rebalancer(rb.client, { store, throttle: 2, restart: true, migrate: { pull } }).run();
    const s = (performance.now() - t) / 1000;
    await rb.close();
    if (r.state !== 'completed') throw new Error(`rebalance of ${dir}: ${r.state} ${r.error ?? ''}`);
    out[dir === '/s' ? 'small' : 'big'] = { files: r.counters.migrated, bytes: r.counters.bytes, s };
  }
  say(out);
  await vol.close();
}

/** The plain copy's receiving end: frames of (name length u16, name, size u64, bytes); each file fsynced. */
async function recv(dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const server = net.createServer(async (sock) => {
    let buf = Buffer.alloc(0);
    let fd = -1;
    let left = 0;
    let files = 0;
    sock.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (fd < 0) {
          if (buf.length < 2) return;
          const n = buf.readUInt16BE(0);
          if (n === 0) {
            sock.end(JSON.stringify({ files }));
            return;
          }
          if (buf.length < 2 + n + 8) return;
          const name = buf.subarray(2, 2 + n).toString();
          left = Number(buf.readBigUInt64BE(2 + n));
          fd = fs.openSync(path.join(dir, name), 'w');
          buf = buf.subarray(2 + n + 8);
        }
        const take = Math.min(left, buf.length);
        if (take > 0) fs.writeSync(fd, buf, 0, take);
        left -= take;
        buf = buf.subarray(take);
        if (left > 0) return;
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        fd = -1;
        files++;
      }
    });
  });
  server.listen(0, '0.0.0.0');
  await once(server, 'listening');
  say({ step: 'listening', port: (server.address() as net.AddressInfo).port });
  await next();
  server.close();
}

/** The plain copy's sending end: every file of the list, in order, over one connection. */
async function send(host: string, port: number, list: string): Promise<void> {
  const files = JSON.parse(fs.readFileSync(list, 'utf8')) as string[];
  const t = performance.now();
  const sock = net.connect(port, host);
  await once(sock, 'connect');
  const write = (b: Buffer) => (sock.write(b) ? Promise.resolve() : once(sock, 'drain').then(() => {}));
  for (const f of files) {
    const name = Buffer.from(path.basename(f));
    const size = fs.statSync(f).size;
    const head = Buffer.alloc(2 + name.length + 8);
    head.writeUInt16BE(name.length, 0);
    name.copy(head, 2);
    head.writeBigUInt64BE(BigInt(size), 2 + name.length);
    await write(head);
    const h = fs.openSync(f, 'r');
    const piece = Buffer.alloc(Math.min(size, 8 << 20));
    for (let off = 0; off < size;) {
      const n = fs.readSync(h, piece, 0, Math.min(piece.length, size - off), off);
      await write(Buffer.from(piece.subarray(0, n)));
      off += n;
    }
    fs.closeSync(h);
  }
  await write(Buffer.from([0, 0]));
  let reply = '';
  sock.on('data', (d) => (reply += d));
  await once(sock, 'end');
  say({ step: 'sent', s: (performance.now() - t) / 1000, ...JSON.parse(reply) });
}

const [mode, ...args] = process.argv.slice(2);
const run = mode === 'client' ? client(JSON.parse(args[0]), JSON.parse(args[1])) : mode === 'recv' ? recv(args[0]) : mode === 'send' ? send(args[0], Number(args[1]), args[2]) : Promise.reject(new Error(`unknown mode ${mode}`));
run.then(
  () => process.exit(0),
  (e) => {
    say({ step: 'error', error: String(e) });
    process.exit(1);
  },
);

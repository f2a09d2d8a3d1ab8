/**
 * A cluster of hosts in network namespaces (issue 19), driven by the CLI as an operator would: a
 * 3-member etcd on the first three hosts, a node daemon on each of three hosts, and a fourth host that runs `cluster init`,
 * `peer probe`, `pool list`, `volume create` with a brick on every host, `volume start`, file commands and
 * `volume status`, and `volume set` from two hosts at once. A brick killed on one host is restarted by its node daemon on its port and its files
 * read again; add-brick and a rebalance onto the new brick; remove-brick of a whole host whose drain's
 * process is SIGKILLed mid-way (a node daemon takes the drain over and is SIGKILLed mid-way too; another
 * daemon takes it over and is stopped by SIGTERM mid-way: it hands the drain on, and the third daemon
 * takes it over at once and finishes it: every file reads with
 * its checksum, the brick leaves the volume and its daemon stops it, the host leaves the pool);
 * replace-brick onto another host; etcd killed (clients go on, admin commands fail naming the store and
 * work again when it is back); `volume stop` stops the bricks on every host. One cluster for all of
 * it: each setup costs seconds.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { alive } from '../src/cluster/proc.js';
import type { ChildProcess } from 'node:child_process';
import { MAIN_JS } from '../src/cli/state.js';
import { makeNet, netnsAvailable, type Host, type Net } from './helpers/netns.js';
import { etcdAvailable, startEtcdCluster, type TestEtcd } from './helpers/etcd.js';
import { fuseAvailable } from '../src/fuse/mount.js';

const netns = netnsAvailable();
const etcdHere = etcdAvailable();
const skip = !netns.ok ? netns.reason : !etcdHere.ok ? etcdHere.reason : false;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Task claims lapse 3 s after their runner dies (10 by default): a takeover comes sooner. */
const TTL = { DHTFS_TASK_TTL_S: '3' };

/** Runs the CLI on a host with its own DHTFS_HOME: resolves with stdout, rejects with stderr. */
async function cli(h: Host, home: string, ...args: string[]): Promise<string> {
  return cliEnv(h, home, {}, ...args);
}

async function cliEnv(h: Host, home: string, env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  const p = h.spawn(process.execPath, [MAIN_JS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { DHTFS_HOME: home, ...TTL, ...env } });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  const [code] = await once(p, 'exit');
  if (code !== 0) throw new Error(`dhtfs ${args.join(' ')} on ${h.name}: ${err.trim() || `exit ${code}`}`);
  return out;
}

const VOLUME_JS = path.join(path.dirname(MAIN_JS), '..', 'api', 'volume.js');

/**
 * A client on host `h` with the spec in `specFile` (no store: the data path only, one process where the
 * CLI would take one per file): writes `writes` (path: content), then answers the sha256 of every file
 * /fN in the volume's root, by name.
 */
async function client(h: Host, specFile: string, writes: Record<string, string> = {}): Promise<Record<string, string>> {
  const code = `
    import { Volume } from ${JSON.stringify(pathToFileURL(VOLUME_JS).href)};
    import { createHash } from 'node:crypto';
    import fs from 'node:fs';
    const vol = await Volume.connect(JSON.parse(fs.readFileSync(process.argv[1], 'utf8')));
    for (const [p, data] of Object.entries(JSON.parse(process.argv[2]))) await vol.writeFile(p, data);
    const out = {};
    for (const n of (await vol.readdir('/')).filter((n) => /^f\\d+$/.test(n))) out[n] = createHash('sha256').update(await vol.readFile('/' + n)).digest('hex');
    await vol.close();
    console.log(JSON.stringify(out));`;
  const p = h.spawn(process.execPath, ['--input-type=module', '-e', code, specFile, JSON.stringify(writes)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  const [rc] = await once(p, 'exit');
  if (rc !== 0) throw new Error(`client on ${h.name}: ${err.trim()}`);
  return JSON.parse(out) as Record<string, string>;
}

/**
 * A writer and a reader on host `h` while files migrate (as load.test on one host): the writer appends
 * checksummed records to /w0../w15 (one at a time, each acknowledged before the next), the reader reads a
 * file whole and checks every record, and that it holds at least the records acknowledged before the read
 * began (none lost, stale or torn). It runs until `stop` ends its stdin, then checks every file once more.
 */
async function recordWriter(h: Host, specFile: string): Promise<{ stop: () => Promise<{ acked: number; reads: number; problems: string[] }> }> {
  const code = `
    import { Volume } from ${JSON.stringify(pathToFileURL(VOLUME_JS).href)};
    import { createHash } from 'node:crypto';
    import fs from 'node:fs';
    const vol = await Volume.connect(JSON.parse(fs.readFileSync(process.argv[1], 'utf8')));
    const N = 16;
    const rec = (f, i) => { const b = 'w' + f + ':' + i + ':'; return b + createHash('sha256').update(b).digest('hex').slice(0, 16) + '\\n'; };
    const acked = new Array(N).fill(0);
    const problems = [];
    let reads = 0;
    const check = (f, text, atLeast) => {
      const lines = text.split('\\n');
      const tail = lines.pop();
      if (tail && !rec(f, lines.length).startsWith(tail)) problems.push('w' + f + ': torn tail ' + JSON.stringify(tail));
      lines.forEach((l, i) => { if (l + '\\n' !== rec(f, i)) problems.push('w' + f + ': record ' + i + ' is ' + JSON.stringify(l)); });
      if (lines.length < atLeast) problems.push('w' + f + ': ' + lines.length + ' records read, ' + atLeast + ' acknowledged before the read (stale)');
    };
    const handles = [];
    for (let f = 0; f < N; f++) handles.push(await vol.open('/w' + f, 'a'));
    let stop = false;
    process.stdin.on('end', () => (stop = true)).resume();
    console.log('ready');
    const writer = (async () => {
      for (let n = 0; !stop; n++) {
        const f = n % N;
        await handles[f].write(rec(f, acked[f]));
        acked[f]++;
      }
    })();
    const reader = (async () => {
      for (let n = 0; !stop; n++) {
        const f = (n * 7) % N;
        const want = acked[f];
        check(f, await vol.readFile('/w' + f, 'utf8'), want);
        reads++;
      }
    })();
    await Promise.all([writer, reader]);
    for (const h of handles) await h.close();
    for (let f = 0; f < N; f++) {
      const text = await vol.readFile('/w' + f, 'utf8');
      check(f, text, acked[f]);
      if (text.split('\\n').length - 1 !== acked[f]) problems.push('w' + f + ': ' + (text.split('\\n').length - 1) + ' records, ' + acked[f] + ' written');
    }
    await vol.close();
    console.log(JSON.stringify({ acked: acked.reduce((a, b) => a + b, 0), reads, problems: problems.slice(0, 20) }));`;
  const p = h.spawn(process.execPath, ['--input-type=module', '-e', code, specFile], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  const exited = once(p, 'exit');
  while (!out.includes('ready\n')) {
    if (p.exitCode !== null) throw new Error(`writer on ${h.name}: ${err.trim()}`);
    await sleep(50);
  }
  return {
    stop: async () => {
      p.stdin!.end();
      const [rc] = await exited;
      if (rc !== 0) throw new Error(`writer on ${h.name}: ${err.trim()}`);
      return JSON.parse(out.split('\n').filter(Boolean).pop()!) as { acked: number; reads: number; problems: string[] };
    },
  };
}

/** Whether process `pid` runs (a zombie, dead but not reaped by its new parent, does not). */
function running(pid: number): boolean {
  try {
    return alive(pid) && fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const content = (i: number) => `file ${i} written from the admin host\n`;
const files = (from: number, to: number) => Object.fromEntries([...Array(to - from).keys()].map((i) => [`/f${from + i}`, content(from + i)]));
const expected = (n: number) => Object.fromEntries([...Array(n).keys()].map((i) => [`f${i}`, sha(content(i))]).sort(([a], [b]) => (a < b ? -1 : 1)));

test('a cluster of four hosts through the CLI: pool, a volume with a brick on each host, a brick restarted by its node daemon', { skip, timeout: 240_000 }, async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-hosts-'));
  let net: Net | null = null;
  let etcd: TestEtcd | null = null;
  const daemons: ChildProcess[] = [];
  /** Each host's node daemon log (stderr), kept: the management path's refusals are read there. */
  const logs = new Map<string, string>();
  const homeOf = (h: Host) => path.join(base, h.name);
  // The first node daemon that migrates a file of a task it took over SIGKILLs itself after the copy; the
  // second SIGTERMs itself there (stopped on purpose: it hands the task on).
  const daemonFault = { DHTFS_FAULT_KILL_AFTER_STEP: 'copy', DHTFS_FAULT_ONCE: path.join(base, 'daemon-fault'), DHTFS_FAULT_TERM_AFTER_STEP: 'copy', DHTFS_FAULT_TERM_ONCE: path.join(base, 'daemon-term') };
  /** A node daemon on `h`; `retry`: again every half second while it refuses (its id's presence not lapsed yet). */
  const startDaemon = async (h: Host, endpoint: string, retry = false): Promise<ChildProcess> => {
    const d = h.spawn(process.execPath, [MAIN_JS, 'node', 'serve', '--etcd', endpoint, '--etcd-tls', etcd!.tlsDir, '--address', h.address, '--state-dir', path.join(homeOf(h), 'node')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { DHTFS_HOME: homeOf(h), ...TTL, ...daemonFault },
    });
    d.stderr!.on('data', (x) => logs.set(h.name, (logs.get(h.name) ?? '') + x));
    const line = await Promise.race([once(d.stdout!, 'data').then(([l]) => String(l)), once(d, 'exit').then(() => null)]);
    if (line === null && retry) {
      await sleep(500);
      return startDaemon(h, endpoint, retry);
    }
    assert.match(String(line), /"node-ready"/);
    return d;
  };
  const logShows = async (h: Host, re: RegExp) => {
    for (let i = 0; i < 150 && !re.test(logs.get(h.name) ?? ''); i++) await sleep(200);
    assert.match(logs.get(h.name) ?? '', re);
  };
  try {
    net = makeNet(5);
    // Three node hosts, a client and admin host, and a fifth host that joins the pool later.
    const [h1, h2, h3, admin, h5] = net.hosts;
    /** The hosts of the node daemons, in the order of `daemons`. */
    const nodeHosts = [h1, h2, h3];
    // A 3-member etcd, one member on each of the three node hosts.
    etcd = await startEtcdCluster([h1, h2, h3].map((h) => ({ address: h.address, spawn: h.spawn })));
    for (const h of [h1, h2, h3]) {
      daemons.push(await startDaemon(h, etcd.endpoint));
    }
    const home = homeOf(admin);
    const run = (...a: string[]) => cli(admin, home, ...a);
    // etcd is on TLS with client certificates; a plaintext etcd on the network is refused unless the operator insists.
    await assert.rejects(run('cluster', 'init', '--etcd', etcd.endpoint.replace(/https:/g, 'http:')), /etcd http:\/\/10\.213\.0\.1:2379,.* is plaintext on the network: .* --insecure-etcd/);
    await run('cluster', 'init', '--etcd', etcd.endpoint, '--etcd-tls', etcd.tlsDir);
    // A host whose daemon is not in the cluster cannot be probed; the three can.
    await assert.rejects(run('peer', 'probe', '10.213.0.99'), /no node daemon at 10\.213\.0\.99 has joined/);
    for (const h of [h1, h2, h3]) assert.match(await run('peer', 'probe', h.address), /peer probe: success/);
    const pool = JSON.parse(await run('pool', 'list', '--json')) as { address: string; state: string }[];
    assert.deepEqual(pool.map((p) => [p.address, p.state]).sort(), [h1, h2, h3].map((h) => [h.address, 'Connected']).sort());

    await run('volume', 'create', 'cv', ...[h1, h2, h3].map((h, i) => `${h.address}:${path.join(base, `brick${i}`)}`));
    assert.match(await run('volume', 'start', 'cv'), /volume start: cv: success/);
    const info = JSON.parse(await run('volume', 'info', 'cv', '--json')) as { bricks: { host: string; port: number }[] };
    assert.deepEqual(
      info.bricks.map((b) => b.host),
      [h1, h2, h3].map((h) => h.address),
    );
    for (const b of info.bricks) assert.ok(b.port >= 49152, `a port from its node daemon: ${b.port}`);

    // Two files by the CLI's put (the spec from the store), six by a client given the spec by `volume spec`.
    fs.mkdirSync(path.join(base, 'in'));
    for (let i = 0; i < 2; i++) {
      fs.writeFileSync(path.join(base, 'in', `f${i}`), content(i));
      await run('-V', 'cv', 'put', path.join(base, 'in', `f${i}`), `/f${i}`);
    }
    const specFile = path.join(base, 'cv.json');
    await run('volume', 'spec', 'cv', '-o', specFile);
    assert.deepEqual(await client(admin, specFile, files(2, 8)), expected(8));
    // Files landed on every host's brick.
    for (let i = 0; i < 3; i++)
      assert.ok(
        fs.readdirSync(path.join(base, `brick${i}`)).some((n) => /^f\d+$/.test(n)),
        `brick ${i} holds files`,
      );
    type Status = { bricks: { brick: string; online: boolean; pid: number | null; node: string; state: string }[] };
    const st = JSON.parse(await run('volume', 'status', 'cv', '--json')) as Status;
    assert.ok(
      st.bricks.every((b) => b.online && b.state === 'online' && b.pid),
      JSON.stringify(st),
    );

    // Mount by host (HOST:/NAME): a client host holding nothing but its certificate (cluster init made the
    // CA on the admin host; peer probe signed each node's certificate) gets the spec from a node daemon's
    // management path (TLS) and reads and writes; -V HOST:/NAME is Volume.connect('HOST:/NAME').
    for (const h of [h1, h2, h3]) await logShows(h, /mgmt: serving volume specs on 10\.213\.0\.\d:24007/);
    const clientHome = path.join(base, 'client');
    await run('cert', 'issue', 'client', 'alice', '-o', path.join(clientHome, 'tls', 'client'));
    const byHost = `${h1.address}:/cv`;
    assert.equal(await cli(admin, clientHome, '-V', byHost, 'cat', '/f0'), 'file 0 written from the admin host\n');
    fs.writeFileSync(path.join(base, 'in', 'g'), 'written by a client that came by host\n');
    await cli(admin, clientHome, '-V', byHost, 'put', path.join(base, 'in', 'g'), '/g');
    assert.equal(await run('-V', 'cv', 'cat', '/g'), 'written by a client that came by host\n');
    await assert.rejects(cli(admin, clientHome, '-V', `${h1.address}:/nosuch`, 'cat', '/f0'), /volume nosuch does not exist/);

    // Refused on the management path, each with a line in the node's log: a client without a certificate,
    // with one of another CA, with a revoked one, and a plaintext client.
    const probe = async (mode: 'nocert' | 'plain', port = 24007) => {
      const code = `const [mode, host, ca, port] = process.argv.slice(1); const req = JSON.stringify({ op: 'getSpec', volume: 'cv' }) + '\\n';
        const s = mode === 'plain' ? require('net').connect(Number(port), host) : require('tls').connect({ host, port: Number(port), ca: require('fs').readFileSync(ca), minVersion: 'TLSv1.3' });
        let got = ''; s.on(mode === 'plain' ? 'connect' : 'secureConnect', () => s.write(req)); s.on('data', (d) => (got += d)); s.on('error', () => {}); s.on('close', () => console.log(JSON.stringify({ got })));`;
      return JSON.parse(
        await new Promise<string>((resolve) => {
          const p = admin.spawn(process.execPath, ['-e', code, mode, h1.address, path.join(clientHome, 'tls', 'client', 'ca.pem'), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          p.stdout!.on('data', (d) => (out += d));
          p.once('exit', () => resolve(out));
        }),
      ) as { got: string };
    };
    assert.equal((await probe('nocert')).got, '', 'no spec without a certificate');
    await logShows(h1, /mgmt: client 10\.213\.0\.4:\d+ refused: no client certificate/);
    assert.equal((await probe('plain')).got, '', 'no spec in plaintext');
    await logShows(h1, /mgmt: client 10\.213\.0\.4:\d+ refused: not a TLS client \(plaintext\?\)/);
    const otherHome = path.join(base, 'other');
    await cli(admin, path.join(base, 'other-ca'), 'cert', 'issue', 'client', 'mallory', '-o', path.join(otherHome, 'tls', 'client'));
    fs.copyFileSync(path.join(clientHome, 'tls', 'client', 'ca.pem'), path.join(otherHome, 'tls', 'client', 'ca.pem'));
    await assert.rejects(cli(admin, otherHome, '-V', byHost, 'cat', '/f0'), /no volume server gave the spec of cv/);
    await logShows(h1, /mgmt: client 10\.213\.0\.4:\d+ refused: certificate not signed by the cluster's CA .*\(certificate mallory\)/);
    const bobHome = path.join(base, 'bob');
    await run('cert', 'issue', 'client', 'bob', '-o', path.join(bobHome, 'tls', 'client'));
    assert.equal(await cli(admin, bobHome, '-V', byHost, 'cat', '/f1'), 'file 1 written from the admin host\n');
    await run('cert', 'revoke', 'bob');
    let revoked = false;
    for (let i = 0; i < 20 && !revoked; i++)
      revoked = await cli(admin, bobHome, '-V', byHost, 'cat', '/f1').then(
        () => false,
        () => true,
      );
    assert.ok(revoked, 'a revoked client gets no spec');
    await logShows(h1, /mgmt: client 10\.213\.0\.4:\d+ refused: certificate revoked \(in the CA's CRL\) \(certificate bob\)/);
    // auth.ssl-allow: the volume's spec for alice only (she mounts it below); carol's good certificate gets none.
    await run('volume', 'set', 'cv', 'auth.ssl-allow', 'alice');
    const carolHome = path.join(base, 'carol');
    await run('cert', 'issue', 'client', 'carol', '-o', path.join(carolHome, 'tls', 'client'));
    await assert.rejects(cli(admin, carolHome, '-V', byHost, 'cat', '/f1'), /volume cv is not for this client's certificate \(carol; auth\.ssl-allow\)/);

    // FUSE by an fstab line, through mount(8) and the helper, with host1's daemon down: the spec comes from
    // a backup volfile server.
    if (fuseAvailable().ok) {
      daemons[0].kill('SIGTERM');
      await once(daemons[0], 'exit');
      const sbin = path.join(base, 'sbin');
      fs.mkdirSync(sbin);
      await run('mount-helper', 'install', '--dir', sbin);
      const mnt = path.join(base, 'mnt');
      fs.mkdirSync(mnt);
      const fstab = path.join(base, 'fstab');
      fs.writeFileSync(fstab, `${byHost} ${mnt} dhtfs defaults,_netdev,backup-volfile-servers=${h2.address}:${h3.address},home=${clientHome} 0 0\n`);
      // One shell: `ip netns exec` gives each command a mount namespace of its own (a slave of the machine's:
      // the helper's folder bound over /usr/sbin, where mount(8) looks for /sbin/mount.dhtfs, is seen in it only).
      const sh = `mount --bind ${sbin} /usr/sbin && mount --fstab ${fstab} ${mnt} && cat ${mnt}/f2 && echo by-mount > ${mnt}/m && cat ${mnt}/m; r=$?; ${process.execPath} ${MAIN_JS} umount ${mnt}; exit $r`;
      const out = await new Promise<string>((resolve, reject) => {
        const p = admin.spawn('sh', ['-c', sh], { stdio: ['ignore', 'pipe', 'pipe'] });
        let o = '';
        let e = '';
        p.stdout!.on('data', (d) => (o += d));
        p.stderr!.on('data', (d) => (e += d));
        p.once('exit', (c) => (c === 0 ? resolve(o) : reject(new Error(`mount by an fstab line with backup servers: exit ${c}: ${e}${o}`))));
      });
      assert.match(out, /mounted 10\.213\.0\.1:\/cv on .*\nfile 2 written from the admin host\nby-mount\n/);
      assert.equal(await run('-V', 'cv', 'cat', '/m'), 'by-mount\n');
      daemons[0] = await startDaemon(h1, etcd.endpoint, true);
    } else console.log('# FUSE is not available here: mount by host through FUSE not tested');

    // A cluster volume with TLS on the brick path: its bricks present their node's certificate (from the
    // cluster's CA); the admin host's CLI and the client by host use theirs; a plaintext client is refused.
    await run('volume', 'create', 'tv', '--tls', `${h1.address}:${path.join(base, 'tls0')}`, `${h2.address}:${path.join(base, 'tls1')}`);
    await run('volume', 'start', 'tv');
    await run('-V', 'tv', 'put', path.join(base, 'in', 'g'), '/g');
    assert.equal(await cli(admin, clientHome, '-V', `${h2.address}:/tv`, 'cat', '/g'), 'written by a client that came by host\n');
    const tvPort = (JSON.parse(await run('volume', 'info', 'tv', '--json')) as { bricks: { port: number }[] }).bricks[0].port;
    assert.equal((await probe('plain', tvPort)).got, '', 'a TLS brick answers no plaintext client');
    const brickLog = path.join(homeOf(h1), 'node', 'logs', 'tv', 'tv-client-0.log');
    for (let i = 0; i < 50 && !/not a TLS client \(plaintext\?\).*TLS client refused|TLS client refused.*not a TLS client/.test(fs.readFileSync(brickLog, 'utf8')); i++) await sleep(200);
    assert.match(fs.readFileSync(brickLog, 'utf8'), /TLS client refused/);
    await run('volume', 'stop', 'tv');
    await run('volume', 'delete', 'tv');

    // The brick on the second host killed: its node daemon starts it again; every file reads.
    const victim = st.bricks[1];
    process.kill(victim.pid!, 'SIGKILL');
    let back: Status['bricks'][number] | undefined;
    for (let i = 0; i < 100; i++) {
      await sleep(200);
      back = (JSON.parse(await run('volume', 'status', 'cv', '--json')) as Status).bricks[1];
      if (back.online && back.pid && back.pid !== victim.pid) break;
    }
    assert.ok(back?.online && back.pid !== victim.pid, `restarted: ${JSON.stringify(back)}`);
    assert.equal(await run('-V', 'cv', 'cat', '/f1'), content(1));
    assert.deepEqual(await client(admin, specFile), expected(8));

    // Two hosts change options at once: neither change is lost (compare-and-set on the record).
    const h1home = path.join(base, 'h1-admin');
    await cli(h1, h1home, 'cluster', 'init', '--etcd', etcd.endpoint, '--etcd-tls', etcd.tlsDir);
    await Promise.all([run('volume', 'set', 'cv', 'network.ping-timeout', '17'), cli(h1, h1home, 'volume', 'set', 'cv', 'cluster.min-free-disk', '7')]);
    const opts = JSON.parse(await cli(h1, h1home, 'volume', 'get', 'cv', '--json')) as { option: string; value: unknown }[];
    assert.equal(opts.find((o) => o.option === 'network.ping-timeout')?.value, 17);
    assert.equal(opts.find((o) => o.option === 'cluster.min-free-disk')?.value, 7);

    // A new host joins: its node daemon starts with the cluster's etcd, and a probe makes it a member.
    daemons.push(await startDaemon(h5, etcd.endpoint));
    nodeHosts.push(h5);
    assert.match(await run('peer', 'probe', h5.address), /peer probe: success/);

    // add-brick, all or nothing: a folder inside a brick's is refused before anything; a brick whose
    // folder cannot be made (a file is there) takes itself out again; a good one on the new host is
    // started by its node.
    await assert.rejects(run('volume', 'add-brick', 'cv', `${h3.address}:${path.join(base, 'brick2', 'inner')}`), /is, holds or is inside the folder of brick cv-client-2/);
    fs.writeFileSync(path.join(base, 'a-file'), '');
    await assert.rejects(run('volume', 'add-brick', 'cv', `${h2.address}:${path.join(base, 'a-file')}`), /new bricks did not start: cv-client-3/);
    assert.equal((JSON.parse(await run('volume', 'info', 'cv', '--json')) as { bricks: unknown[] }).bricks.length, 3, 'the failed add-brick left the volume as it was');
    assert.match(await run('volume', 'add-brick', 'cv', `${h5.address}:${path.join(base, 'brick3')}`), /volume add-brick: cv: success \(cv-client-3 10\.213\.0\.5:\d+:/);
    const four = JSON.parse(await run('volume', 'status', 'cv', '--json')) as Status;
    assert.deepEqual(
      four.bricks.map((b) => [b.brick, b.online]),
      [0, 1, 2, 3].map((i) => [`cv-client-${i}`, true]),
    );
    await run('volume', 'spec', 'cv', '-o', specFile);
    assert.deepEqual(await client(admin, specFile, files(8, 16)), expected(16));

    // A rebalance started on the admin host moves files onto the new brick, across hosts (its run holds the
    // volume's task claim and keeps its checkpoint in the store); another host follows it with status. A
    // writer and a reader on the client host meanwhile: no record lost, stale or torn.
    const writer = await recordWriter(admin, specFile);
    assert.match(await run('volume', 'rebalance', 'cv', 'start', '--throttle', 'lazy'), /volume rebalance: cv: started/);
    let rb: { state: string; counters: { migrated: number; failed: number } } | null = null;
    for (let i = 0; i < 300; i++) {
      rb = JSON.parse(await cli(h1, h1home, 'volume', 'rebalance', 'cv', 'status', '--json'));
      if (rb && rb.state !== 'running') break;
      await sleep(200);
    }
    assert.equal(rb?.state, 'completed', JSON.stringify(rb));
    assert.equal(rb!.counters.failed, 0);
    assert.ok(rb!.counters.migrated > 0, 'files moved to the new brick');
    const written = await writer.stop();
    assert.deepEqual(written.problems, [], 'no record lost, stale or torn');
    assert.ok(written.acked > 50 && written.reads > 10, `records written ${written.acked}, files read ${written.reads}`);
    const movedWritten = fs.readdirSync(path.join(base, 'brick3')).filter((n) => /^w\d+$/.test(n) && (fs.statSync(path.join(base, 'brick3', n)).mode & 0o1000) === 0);
    assert.ok(movedWritten.length > 0, 'files being written moved to the new host');
    console.log(`rebalance across hosts under a writer: ${written.acked} records written, ${written.reads} files read whole, ${movedWritten.length} of the written files moved`);
    assert.ok(
      fs.readdirSync(path.join(base, 'brick3')).some((n) => /^f\d+$/.test(n)),
      'the new brick holds files',
    );
    assert.deepEqual(await client(admin, specFile), expected(16));

    // remove-brick of a whole host (the second's one brick), its drain's process SIGKILLed in the middle of
    // a file's migration: a node daemon takes the drain over once the process's claim lapses, and is
    // SIGKILLed in the middle of a file's migration too; another daemon takes it over, and is stopped by
    // SIGTERM in the middle of a file: it finishes that file and hands the drain on, and the third daemon
    // takes it over at once and finishes it; commit takes the brick out (its node daemon stops it) and the
    // host can leave the pool.
    const brick1 = path.join(base, 'brick1');
    const onIt = fs
      .readdirSync(brick1)
      .filter((n) => /^f\d+$/.test(n) && (fs.statSync(path.join(brick1, n)).mode & 0o1000) === 0)
      .sort();
    assert.ok(onIt.length >= 1, 'the second host holds files');
    const brick1Pid = (JSON.parse(await run('volume', 'status', 'cv', '--json')) as Status).bricks[1].pid!;
    // A 2 s migration lease: each taker waits out what is left of the dead runner's (half a second here).
    const fault = { DHTFS_FAULT_KILL_AFTER_STEP: 'copy', DHTFS_FAULT_KILL_PATH: `/${onIt[0]}` };
    const drain = JSON.parse(await cliEnv(admin, home, fault, 'volume', 'remove-brick', 'cv', 'cv-client-1', 'start', '--json', '--lease-ms', '2000')) as { bricks: string[]; pid: number };
    assert.deepEqual(drain.bricks, ['cv-client-1']);
    type Drain = { draining: string[]; rebalance: { state: string; counters: { migrated: number; failed: number }; awaitingTakeover?: boolean; runner?: { node?: string } } | null };
    let dr: Drain | null = null;
    for (let i = 0; i < 600; i++) {
      dr = JSON.parse(await cli(h1, h1home, 'volume', 'remove-brick', 'cv', 'status', '--json')) as Drain;
      if (dr.rebalance && dr.rebalance.state !== 'running') break;
      await sleep(200);
    }
    assert.deepEqual(dr?.draining, ['cv-client-1']);
    assert.equal(dr?.rebalance?.state, 'completed', `${JSON.stringify(dr)}\n${[...logs.values()].join('\n')}`);
    assert.equal(dr!.rebalance!.counters.failed, 0);
    assert.ok(!running(drain.pid), 'the drain process killed itself (fault injection)');
    const takers = [...logs.values()].join('').split('taking over the remove-brick of volume cv').length - 1;
    assert.ok(takers >= 3, `three node daemons took the drain over, one after the other:\n${[...logs.values()].join('\n')}`);
    const killed = daemons.findIndex((d) => d.signalCode === 'SIGKILL');
    assert.ok(killed >= 0 && Number(fs.readFileSync(daemonFault.DHTFS_FAULT_ONCE, 'utf8')) === daemons[killed].pid, 'the first daemon to take it over was SIGKILLed mid-migration');
    const termed = daemons.findIndex((d) => d.pid === Number(fs.readFileSync(daemonFault.DHTFS_FAULT_TERM_ONCE, 'utf8')));
    assert.ok(termed >= 0 && termed !== killed, 'the second daemon to take it over was sent SIGTERM mid-migration');
    for (let i = 0; i < 100 && daemons[termed].exitCode === null; i++) await sleep(100);
    assert.equal(daemons[termed].exitCode, 0, 'and exited by itself');
    const termedHost = nodeHosts[termed];
    assert.match(logs.get(termedHost.name) ?? '', /handed the remove-brick of volume cv on \(this daemon is stopping\)/);
    assert.match([...logs.values()].join(''), /taking over the remove-brick of volume cv \(handed on by [0-9a-f-]+\): on from its checkpoint at once/);
    daemons[killed] = await startDaemon(nodeHosts[killed], etcd.endpoint, true);
    daemons[termed] = await startDaemon(termedHost, etcd.endpoint, true);
    assert.ok(fs.readFileSync(path.join(home, 'logs', 'rebalance-cv.log'), 'utf8').includes(`fault injection: SIGKILL after copy of /${onIt[0]}`));
    assert.deepEqual(await client(admin, specFile), expected(16), 'every file reads, with its content, after the takeover');
    assert.match(await run('volume', 'remove-brick', 'cv', 'cv-client-1', 'commit'), /volume remove-brick commit: cv: removed cv-client-1$/m);
    const left = JSON.parse(await run('volume', 'info', 'cv', '--json')) as { bricks: { name: string; host: string }[] };
    assert.deepEqual(
      left.bricks.map((b) => b.name),
      ['cv-client-0', 'cv-client-2', 'cv-client-3'],
    );
    assert.ok(!left.bricks.some((b) => b.host === h2.address), 'no brick on the second host');
    for (let i = 0; i < 100 && running(brick1Pid); i++) await sleep(200);
    assert.ok(!running(brick1Pid), "the removed brick's node daemon stopped it");
    assert.match(await run('peer', 'detach', h2.address), /peer detach: success/);
    // Its node certificate revoked and withdrawn: the detached host serves no volume specs any more.
    await logShows(h2, /mgmt: stopped serving volume specs/);
    await assert.rejects(cli(admin, clientHome, '-V', `${h2.address}:/cv`, 'cat', '/f0'), /no volume server gave the spec of cv/);
    // Probed again, it gets a new certificate (it asked for one) and serves specs again.
    await run('peer', 'probe', h2.address);
    await logShows(h2, /mgmt: stopped serving volume specs[^]*mgmt: serving volume specs on 10\.213\.0\.2:24007/);
    assert.equal(await cli(admin, clientHome, '-V', `${h2.address}:/cv`, 'cat', '/f0'), 'file 0 written from the admin host\n');
    await run('volume', 'spec', 'cv', '-o', specFile);
    assert.deepEqual(await client(admin, specFile), expected(16), 'every file reads after the commit');

    // replace-brick: the new host's brick's place given to a new, empty folder on the first host;
    // it gets the directory before any client meets it, the old brick is stopped by its node daemon, and
    // the volume's new files reach it (the old brick's files are out of the volume: no copy is kept).
    await run('-V', 'cv', 'mkdir', '/d');
    const brick3Pid = (JSON.parse(await run('volume', 'status', 'cv', '--json')) as Status).bricks.find((b) => b.brick === 'cv-client-3')!.pid!;
    const brick5 = path.join(base, 'brick5');
    assert.match(await run('volume', 'replace-brick', 'cv', 'cv-client-3', `${h1.address}:${brick5}`, 'commit', 'force'), /^volume replace-brick: cv: success \(cv-client-3 is now 10\.213\.0\.1:\d+:.*brick5, 1 directories made there\)$/m);
    assert.ok(fs.statSync(path.join(brick5, 'd')).isDirectory(), 'the new brick has the directory');
    assert.ok(!running(brick3Pid), "the old brick's node daemon stopped it");
    const replaced = (JSON.parse(await run('volume', 'status', 'cv', '--json')) as Status).bricks.find((b) => b.brick === 'cv-client-3')!;
    assert.ok(replaced.online && replaced.node === (JSON.parse(await run('pool', 'list', '--json')) as { id: string; address: string }[]).find((p) => p.address === h1.address)!.id, JSON.stringify(replaced));
    await run('volume', 'spec', 'cv', '-o', specFile);
    await client(admin, specFile, Object.fromEntries([...Array(8).keys()].map((i) => [`/d/n${i}`, `n${i}\n`])));
    assert.ok(
      fs.readdirSync(path.join(brick5, 'd')).some((n) => /^n\d$/.test(n) && fs.statSync(path.join(brick5, 'd', n)).size > 0),
      'new files reach the new brick',
    );
    assert.equal(await run('-V', 'cv', 'cat', '/d/n7'), 'n7\n');

    // etcd killed (every member): a client keeps reading and writing (the data path never reads the store); an admin
    // command fails, naming the store; once etcd is back, admin commands work again and the node daemons
    // carry on (they stop the bricks below).
    await etcd.kill();
    await client(admin, specFile, { '/d/e': 'written while etcd was away\n' });
    await assert.rejects(run('volume', 'info', 'cv'), /cluster state \(etcd https:\/\/10\.213\.0\.1:2379,https:\/\/10\.213\.0\.2:2379,https:\/\/10\.213\.0\.3:2379\): /);
    await etcd.start();
    assert.equal(await run('-V', 'cv', 'cat', '/d/e'), 'written while etcd was away\n');

    assert.match(await run('volume', 'stop', 'cv'), /volume stop: cv: success \(3 brick processes stopped\)/);
    const stopped = JSON.parse(await run('volume', 'status', 'cv', '--json')) as Status;
    assert.ok(
      stopped.bricks.every((b) => !b.online && b.state === 'stopped'),
      JSON.stringify(stopped),
    );
    assert.match(await run('volume', 'delete', 'cv'), /volume delete: cv: success/);
    await assert.rejects(run('volume', 'info', 'cv'), /volume cv does not exist/);
  } finally {
    for (const d of daemons) if (d.exitCode === null) d.kill('SIGTERM');
    await Promise.all(daemons.map((d) => (d.exitCode === null ? once(d, 'exit') : null)));
    // Bricks still running (a failed test) go with their namespaces' processes.
    for (const h of net?.hosts ?? []) {
      const pids = fs
        .readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            // /run/netns/NS is the namespace's file (not a link): its inode is the one /proc/PID/ns/net names.
            return fs.readlinkSync(`/proc/${p}/ns/net`) === `net:[${fs.statSync(`/run/netns/${h.ns}`).ino}]` || fs.readFileSync(`/proc/${p}/environ`, 'utf8').includes(`DHTFS_HOME=${path.join(base, h.name)}`);
          } catch {
            return false;
          }
        });
      for (const p of pids) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    await etcd?.stop().catch(() => {});
    net?.destroy();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

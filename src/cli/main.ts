/**
 * The dhtfs command line, in the spirit of the gluster CLI.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { Volume } from '../api/volume.js';
import { LIVE_OPTIONS, liveOption, liveOptionsIn, validateSpec, type VolumeOptions, type VolumeSpec } from '../dht/spec.js';
import { serveBrick } from '../brick/server.js';
import { FsError, codeOf, ignoreCodes } from '../common/errors.js';
import { formatStatus, localDrain, migratorOptions, pushTopology, rebalancePid, rebalanceStatus, runRebalance, startRebalance, parseThrottle } from './rebalance.js';
import { migrateFile } from '../migration/migrator.js';
import { migrateFileLegacy } from '../migration/legacy.js';
import type { DirEntryAttr } from '../wire/types.js';
import { PACKAGE_ROOT, brickPid, createVolume, isLocalHost, listVolumes, loadVolume, probeBrick, saveVolume, specPath, startBricks, stopBricks, volDir, type StoredBrick, type StoredVolume } from './state.js';
import { parsePortRange } from '../brick/ports.js';
import { addBricks, findBrick, replaceBrick } from './bricks.js';
import { clusterReplaceBrick } from './cluster-replace.js';
import { brickTlsDir, registerCertCommands, setVolumeTls } from './cert.js';
import { tlsFilesIn } from '../wire/tls.js';
import { parseVolumeAddress } from '../wire/mgmt.js';
import { registerNodeCommands } from './node.js';
import { clusterAddBricks, clusterChangeOptions, clusterConfig, clusterCreate, clusterDelete, clusterSpec, clusterStartStop, clusterVolumes, registerClusterCommands } from './cluster.js';
import { clusterAdminSpec, clusterDrain, clusterRebalanceStart, clusterRebalanceStatus, clusterRebalanceStop, clusterRunRebalance } from './cluster-tasks.js';

const program = new Command();
program
  .name('dhtfs')
  .description('A distributed file system: files spread over bricks by name hash, with safe live migration.')
  .version('0.1.0', '--version')
  .addHelpText(
    'after',
    `
Volumes and their brick processes are kept under $DHTFS_HOME (default ~/.dhtfs).
Quick start:  dhtfs up            3 bricks on loopback, volume "default"
              dhtfs put ./f /f    copy a file in; see also ls, cat, get, rm, mkdir, stat`,
  );

function out(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

/** `dhtfs: mkdir /a: file already exists (EEXIST)`: what failed first, its code once, at the end. */
function fail(e: unknown): never {
  const code = codeOf(e);
  const text = e instanceof FsError ? (e.detail ? `${e.detail} (${e.code})` : e.code) : ((e as Error)?.message ?? String(e));
  process.stderr.write(`dhtfs: ${text}\n`);
  process.exit(code === 'ENOENT' ? 2 : 1);
}

function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      fail(e);
    }
  };
}

// --- brick ----------------------------------------------------------------------------------------

const brick = program.command('brick').description('brick server');
brick
  .command('serve')
  .description('export a directory over TCP (foreground)')
  .option('--brick <name>', 'with --spec FILE: which brick of the spec to serve, all settings from the spec')
  .option('--dir <dir>', 'directory to export')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--port <port>', 'TCP port (0, the default: a free one of the brick port range)', (v) => Number(v))
  .option('--port-range <first-last>', 'the brick port range (default: $DHTFS_PORT_RANGE, else 49152-60999 as GlusterFS)')
  .option('--name <name>', 'subvolume name of this brick (e.g. vol-client-0)')
  .option('--brick-id <id>', 'the id this directory is claimed with (default: the name); a directory claimed by another brick is refused')
  .option('--volume-id <uuid>', 'volume id')
  .option('--secret-file <file>', 'file holding the shared secret')
  .option('--admin-secret-file <file>', "file holding the volume's admin secret (without it no client may change the volume)")
  .option('--tls-dir <dir>', "TLS only (transport.tls on): folder with the brick's cert.pem, key.pem, the CA's ca.pem and crl.pem (reloaded when it changes)")
  .option('--xattr-prefix <prefix>', "xattr namespace for DHT metadata ('trusted.' as root, else 'user.')")
  .option('--log-level <level>', 'pino log level', 'info')
  .action(
    action(async (o, cmd: Command) => {
      o = cmd.optsWithGlobals();
      let opts;
      if (o.spec) {
        const spec = validateSpec(JSON.parse(fs.readFileSync(o.spec, 'utf8')));
        const b = spec.bricks.find((x) => x.name === o.brick);
        if (!b) throw new Error(`brick ${o.brick} is not in ${o.spec}`);
        if (!b.dir) throw new Error(`brick ${o.brick} has no dir in the spec`);
        opts = {
          dir: b.dir,
          host: b.host,
          port: b.port,
          name: b.name,
          brickId: (b as StoredBrick).id ?? o.brickId,
          volumeId: spec.volumeId,
          secret: spec.secret,
          adminSecret: spec.adminSecret,
          tls: spec.options?.tls ? tlsFilesIn(o.tlsDir ?? brickTlsDir(spec.name, b.name)) : undefined,
        };
      } else {
        for (const k of ['dir', 'name', 'volumeId', 'secretFile']) if (o[k] === undefined) throw new Error(`--${k.replace(/[A-Z]/g, (c: string) => '-' + c.toLowerCase())} is required without --spec`);
        opts = {
          dir: path.resolve(o.dir),
          host: o.host,
          port: o.port ?? 0,
          name: o.name,
          brickId: o.brickId,
          volumeId: o.volumeId,
          secret: fs.readFileSync(o.secretFile, 'utf8').trim(),
          adminSecret: o.adminSecretFile ? fs.readFileSync(o.adminSecretFile, 'utf8').trim() : undefined,
          tls: o.tlsDir ? tlsFilesIn(o.tlsDir) : undefined,
        };
      }
      if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('--port is a TCP port, or 0');
      const srv = await serveBrick({ ...opts, portRange: parsePortRange(o.portRange), xattrPrefix: o.xattrPrefix, logLevel: o.logLevel });
      // Told only once bound: whoever started this process reads its port here (stdout, or its log).
      process.stdout.write(JSON.stringify({ event: 'listening', port: srv.listener.port, brick: opts.name, pid: process.pid }) + '\n');
      const stop = () => {
        void srv.close().then(() => process.exit(0));
        setTimeout(() => process.exit(0), 2000).unref();
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    }),
  );

// --- volume ---------------------------------------------------------------------------------------

const volume = program.command('volume').description('create, start, stop and inspect volumes');

volume
  .command('create <name> <bricks...>')
  .description('create a volume from bricks given as HOST:/DIR (a local brick takes a port of the brick port range, 49152 and up, when it first starts) or HOST:PORT:/DIR')
  .option('--min-free-disk <n>', 'percent (< 100) or bytes kept free on each brick', (v) => Number(v), 10)
  .option('--no-lookup-optimize', 'always look on every brick when a name is not on its hashed brick')
  .option('--ping-timeout <s>', 'seconds a brick with calls in flight may stay silent before clients cut it off (0: never)', (v) => Number(v), 42)
  .option('--migration-protocol <p>', "safe, or legacy: GlusterFS's order and client rules, to show its stale read (unsafe)", 'safe')
  .option('--tls', "transport.tls on: bricks take only TLS clients with a certificate of this host's CA (made now if absent; in a cluster: the cluster's CA, the bricks presenting their node's certificate)")
  .option('--json', 'print the result as JSON')
  .action(
    action(async (name: string, bricks: string[], o) => {
      if (o.migrationProtocol !== 'safe' && o.migrationProtocol !== 'legacy') throw new Error('--migration-protocol is safe or legacy');
      if (!Number.isFinite(o.pingTimeout) || o.pingTimeout < 0) throw new Error('--ping-timeout is a number of seconds, 0 or more');
      const options = {
        minFreeDisk: o.minFreeDisk,
        lookupOptimize: o.lookupOptimize,
        pingTimeout: o.pingTimeout,
        ...(o.migrationProtocol === 'legacy' ? { migrationProtocol: 'legacy' as const } : {}),
      };
      // In a cluster, the bricks present their node's certificate (peer probe issued it from the cluster's CA).
      let v = clusterConfig() ? await clusterCreate(name, bricks, o.tls ? { ...options, tls: true } : options) : createVolume(name, bricks, options);
      if (o.tls && !clusterConfig()) {
        v = loadVolume(name);
        setVolumeTls(v, true);
        saveVolume(v);
      }
      out(o.json, { name: v.name, volumeId: v.volumeId, bricks: v.bricks }, () => `volume create: ${name}: success (${v.bricks.length} bricks); start it with: dhtfs volume start ${name}`);
    }),
  );

volume
  .command('start <name>')
  .description("start this host's brick processes of a volume")
  .option('--json', 'print the result as JSON')
  .action(
    action(async (name: string, o) => {
      if (clusterConfig()) {
        const rows = await clusterStartStop(name, 'started');
        return out(o.json, rows, () => `volume start: ${name}: success\n` + rows.map((x) => `  ${x.brick} on node ${x.node}: pid ${x.pid}, port ${x.port}`).join('\n'));
      }
      const v = loadVolume(name);
      const r = await startBricks(v);
      v.state = 'started';
      saveVolume(v);
      out(o.json, r, () => `volume start: ${name}: success\n` + r.map((x) => `  ${x.brick} pid ${x.pid}${x.started ? '' : ' (already running)'}`).join('\n'));
    }),
  );

volume
  .command('stop <name>')
  .description("stop this host's brick processes of a volume")
  .option('--json', 'print the result as JSON')
  .action(
    action(async (name: string, o) => {
      if (clusterConfig()) {
        const rows = await clusterStartStop(name, 'stopped');
        return out(o.json, rows, () => `volume stop: ${name}: success (${rows.length} brick processes stopped)`);
      }
      const v = loadVolume(name);
      // The mount `up` made goes first (its process would only get errors without the bricks).
      const rec = mountRecord(name);
      if (fs.existsSync(rec)) {
        const { isMounted, unmount } = await import('./mount.js');
        const mnt = fs.readFileSync(rec, 'utf8').trim();
        if (isMounted(mnt)) unmount(mnt);
        fs.rmSync(rec, { force: true });
      }
      const r = await stopBricks(v);
      v.state = 'stopped';
      saveVolume(v);
      out(o.json, r, () => `volume stop: ${name}: success (${r.length} brick processes stopped)`);
    }),
  );

volume
  .command('delete <name>')
  .description('forget a stopped volume (brick directories are left as they are)')
  .action(
    action(async (name: string) => {
      if (clusterConfig()) {
        await clusterDelete(name);
        return void process.stdout.write(`volume delete: ${name}: success\n`);
      }
      const v = loadVolume(name);
      if (v.bricks.some((b) => brickPid(v, b.name))) throw new Error(`volume ${name} has running bricks; stop it first`);
      fs.rmSync(volDir(name), { recursive: true, force: true });
      process.stdout.write(`volume delete: ${name}: success\n`);
    }),
  );

volume
  .command('info [name]')
  .description('show volume configuration')
  .option('--json', 'print as JSON')
  .action(
    action(async (name: string | undefined, o) => {
      const vols = clusterConfig() ? (await clusterVolumes(name)).map(({ v }) => v) : (name ? [name] : listVolumes()).map(loadVolume);
      const pub = vols.map((v) => ({ name: v.name, volumeId: v.volumeId, state: v.state, type: 'Distribute', bricks: v.bricks.map(({ name: n, host, port, dir }) => ({ name: n, host, port, dir })), options: v.options ?? {} }));
      out(o.json, name ? pub[0] : pub, () =>
        pub.length === 0
          ? 'No volumes present'
          : pub
              .map(
                (v) =>
                  `Volume Name: ${v.name}\nType: Distribute\nVolume ID: ${v.volumeId}\nStatus: ${v.state}\nNumber of Bricks: ${v.bricks.length}\nBricks:\n` +
                  v.bricks.map((b, i) => `Brick${i + 1}: ${b.host}:${b.port}:${b.dir}  (${b.name})`).join('\n') +
                  `\nOptions:` +
                  Object.entries(v.options)
                    .filter(([, x]) => x !== undefined)
                    .map(([k, x]) => `\n${Object.entries(LIVE_OPTIONS).find(([, l]) => l.key === k)?.[0] ?? k}: ${showOption(x)}`)
                    .join(''),
              )
              .join('\n\n'),
      );
    }),
  );

/** An option's value as `volume info` and `volume get` show it. */
const showOption = (x: unknown) => (x === true ? 'on' : x === false ? 'off' : x === -1 ? 'brick' : String(x));

/** Changes a volume's options; a started volume's bricks, and the clients connected to them, take them up. */
async function changeOptions(name: string, option: string, change: (options: VolumeOptions, o: ReturnType<typeof liveOption>) => VolumeOptions): Promise<string> {
  const o = liveOption(option);
  if (clusterConfig()) {
    await clusterChangeOptions(name, (opts) => change(opts, o));
    return o.name;
  }
  const v = loadVolume(name);
  v.options = change({ ...v.options }, o);
  if (v.state === 'started') await pushTopology(v);
  else saveVolume(v);
  return o.name;
}

volume
  .command('set <name> <option> <value>')
  .description(
    `set an option of a volume; clients connected take it up at once (${Object.keys(LIVE_OPTIONS).join(', ')}); transport.tls on|off (TLS on the brick path; the bricks take it up when they restart: volume stop and start); auth.ssl-allow CN,... or * (a cluster's: the client certificates node daemons give the spec to, and a TLS volume's bricks serve)`,
  )
  .action(
    action(async (name: string, option: string, value: string) => {
      if (option === 'auth.ssl-allow') {
        if (!clusterConfig()) throw new Error('auth.ssl-allow is for volumes of a cluster (whose node daemons serve specs to clients that mount HOST:/NAME)');
        const [{ withStore }, { clusterSetSslAllow }] = await Promise.all([import('./cluster.js'), import('./cluster-pki.js')]);
        await withStore((s) => clusterSetSslAllow(s, name, value));
        return console.log(`volume set: ${name}: auth.ssl-allow = ${value}: success`);
      }
      if (option === 'transport.tls') {
        if (value !== 'on' && value !== 'off') throw new Error('transport.tls is on or off');
        let v: { state: string };
        if (clusterConfig()) {
          const [{ withStore }, { clusterSetTls }] = await Promise.all([import('./cluster.js'), import('./cluster-pki.js')]);
          v = await withStore((s) => clusterSetTls(s, name, value === 'on'));
        } else {
          const sv = loadVolume(name);
          setVolumeTls(sv, value === 'on');
          saveVolume(sv);
          v = sv;
        }
        const restart =
          v.state === 'started' ? `; the bricks take it up when they restart: dhtfs volume stop ${name} && dhtfs volume start ${name} (clients given the spec before need it again, with a client certificate: dhtfs cert issue client NAME -o DIR)` : '';
        return console.log(`volume set: ${name}: transport.tls = ${value}: success${restart}`);
      }
      const full = await changeOptions(name, option, (opts, o) => ({ ...opts, [o.key]: o.parse(value) }));
      console.log(`volume set: ${name}: ${full} = ${value}: success`);
    }),
  );

volume
  .command('get <name> [option]')
  .description('show the options of a volume, or one of them, with their values in force')
  .option('--json', 'print as JSON')
  .action(
    action(async (name: string, option: string | undefined, o) => {
      const v = clusterConfig() ? (await clusterVolumes(name))[0].v : loadVolume(name);
      const inForce = liveOptionsIn(v.options);
      const rows = Object.entries(LIVE_OPTIONS)
        .filter(([full]) => !option || full === liveOption(option).name)
        .map(([full, l]) => ({ option: full, value: inForce[l.key], help: l.help }));
      out(o.json, rows, () => rows.map((r) => `${r.option.padEnd(26)} ${showOption(r.value).padEnd(8)} ${r.help}`).join('\n'));
    }),
  );

volume
  .command('reset <name> <option>')
  .description('set an option of a volume back to its default')
  .action(
    action(async (name: string, option: string) => {
      if (option === 'auth.ssl-allow' && clusterConfig()) {
        const [{ withStore }, { clusterSetSslAllow }] = await Promise.all([import('./cluster.js'), import('./cluster-pki.js')]);
        await withStore((s) => clusterSetSslAllow(s, name, null));
        return console.log(`volume reset: ${name}: auth.ssl-allow: success`);
      }
      const full = await changeOptions(name, option, (opts, o) => {
        delete opts[o.key];
        return opts;
      });
      console.log(`volume reset: ${name}: ${full}: success`);
    }),
  );

volume
  .command('status [name]')
  .description('show whether each brick answers, its process and its free space')
  .option('--json', 'print as JSON')
  .action(
    action(async (name: string | undefined, o) => {
      const res: {
        volume: string;
        state: string;
        bricks: { brick: string; address: string; dir: string; online: boolean; pid: number | null; freeBytes: number | null; totalBytes: number | null; node?: string; state?: string; reason?: string }[];
      }[] = [];
      if (clusterConfig()) {
        // Every brick of every host: what its node daemon reports, and whether it answers now.
        for (const { v, status, online } of await clusterVolumes(name)) {
          const bricks = [];
          for (const b of v.bricks) {
            const st = status.get(b.name);
            const answers = await probeBrick(v, b);
            bricks.push({
              brick: b.name,
              address: `${b.host}:${b.port}`,
              dir: b.dir,
              online: answers,
              pid: st?.pid ?? null,
              freeBytes: null,
              totalBytes: null,
              node: `${b.node}${online.has(b.node) ? '' : ' (daemon not running)'}`,
              state: st?.state ?? 'unknown',
              ...(st?.reason ? { reason: st.reason } : {}),
            });
          }
          res.push({ volume: v.name, state: v.state, bricks });
        }
      }
      const vols = clusterConfig() ? [] : (name ? [name] : listVolumes()).map(loadVolume);
      for (const v of vols) {
        const bricks = [];
        for (const b of v.bricks) {
          const online = await probeBrick(v, b);
          let free: number | null = null;
          let total: number | null = null;
          if (online) {
            try {
              const st = fs.statfsSync(b.dir);
              free = st.bavail * st.bsize;
              total = st.blocks * st.bsize;
            } catch {
              /* remote brick */
            }
          }
          bricks.push({ brick: b.name, address: `${b.host}:${b.port}`, dir: b.dir, online, pid: isLocalHost(b.host) ? brickPid(v, b.name) : null, freeBytes: free, totalBytes: total });
        }
        res.push({ volume: v.name, state: v.state, bricks });
      }
      out(o.json, name ? res[0] : res, () =>
        res
          .map(
            (r) =>
              `Status of volume: ${r.volume}\n${'Brick'.padEnd(40)} ${'Online'.padEnd(7)} ${'Pid'.padEnd(8)} Free${r.bricks.some((b) => b.node) ? '      Node' : ''}\n` +
              r.bricks
                .map((b) =>
                  `${(b.address + ':' + b.dir).padEnd(40)} ${(b.online ? 'Y' : 'N').padEnd(7)} ${String(b.pid ?? 'N/A').padEnd(8)} ${(b.freeBytes === null ? 'N/A' : (b.freeBytes / 2 ** 30).toFixed(1) + ' GiB').padEnd(9)}${b.node ? ` ${b.node}${b.state && b.state !== 'online' ? ` [${b.state}${b.reason ? `: ${b.reason}` : ''}]` : ''}` : ''}`.trimEnd(),
                )
                .join('\n'),
          )
          .join('\n\n'),
      );
    }),
  );

volume
  .command('spec <name>')
  .description('print the client spec of a volume (give it to clients on other hosts with --spec); it holds the secret: a file it is written to (-o, or stdout redirected to a file) is made mode 0600')
  .option('-o, --output <file>', 'write it to FILE (mode 0600) instead of stdout')
  .action(
    action(async (name: string, o) => {
      const v = clusterConfig() ? await clusterSpec(name) : loadVolume(name);
      const unbound = v.bricks.filter((b) => b.port === 0).map((b) => b.name);
      if (unbound.length) throw new Error(`${unbound.join(', ')} have no port yet (they take one when they first start): dhtfs volume start ${name}`);
      const spec: VolumeSpec = { name: v.name, volumeId: v.volumeId, secret: v.secret, bricks: v.bricks.map(({ name: n, host, port }) => ({ name: n, host, port })), options: v.options };
      const text = JSON.stringify(spec, null, 2) + '\n';
      if (o.output) {
        // Made 0600 before the secret is in it, also when the file was there already.
        const fd = fs.openSync(o.output, 'w', 0o600);
        try {
          fs.fchmodSync(fd, 0o600);
          fs.writeSync(fd, text);
        } finally {
          fs.closeSync(fd);
        }
        return;
      }
      // `volume spec NAME > FILE`: the shell made FILE with its umask (0644 as a rule); closed to others first.
      try {
        const st = fs.fstatSync(1);
        if (st.isFile() && st.mode & 0o077) fs.fchmodSync(1, st.mode & 0o7700);
      } catch {
        /* not ours to change: the user's own choice of file */
      }
      process.stdout.write(text);
    }),
  );

volume
  .command('add-brick <name> <bricks...>')
  .description(
    'add bricks (HOST:/DIR or HOST:PORT:/DIR; a brick on another host must be serving already) to a volume, all or none: each new brick is started and answering before any brick is told of it, and a directory that is, holds or is inside a brick of the volume is refused; run "volume rebalance NAME start" to move files onto them',
  )
  .option('--json', 'print the result as JSON')
  .action(
    action(async (name: string, bricks: string[], o) => {
      const added = clusterConfig() ? await clusterAddBricks(name, bricks) : await addBricks(loadVolume(name), bricks);
      const names = added.map((b) => b.name);
      out(
        o.json,
        { added: names, bricks: added.map(({ name: n, host, port, dir }) => ({ name: n, host, port, dir })) },
        () => `volume add-brick: ${name}: success (${added.map((b) => `${b.name} ${b.host}:${b.port}:${b.dir}`).join(', ')}); start a rebalance to use them: dhtfs volume rebalance ${name} start`,
      );
    }),
  );

volume
  .command('replace-brick <name> <old> <new> <commit> <force>')
  .description(
    "give a brick's place (OLD: its name or HOST:PORT) to a new, empty directory (NEW: HOST:/DIR or HOST:PORT:/DIR), as GlusterFS's replace-brick ... commit force: same brick name, so every layout stays valid; the new brick gets every directory with the old one's ranges before clients meet it. OLD's files are not in the volume any more (a distribute volume keeps no other copy): to move a working brick's files, use remove-brick",
  )
  .option('--json', 'print the result as JSON')
  .action(
    action(async (name: string, oldArg: string, newArg: string, commit: string, force: string, o) => {
      if (commit !== 'commit' || force !== 'force') throw new Error('usage: volume replace-brick NAME OLD NEW commit force');
      const r = clusterConfig() ? await clusterReplaceBrick(name, oldArg, newArg) : await replaceBrick(loadVolume(name), oldArg, newArg);
      const b = r.brick;
      out(o.json, { brick: b.name, host: b.host, port: b.port, dir: b.dir, directories: r.dirs }, () => `volume replace-brick: ${name}: success (${b.name} is now ${b.host}:${b.port}:${b.dir}, ${r.dirs} directories made there)`);
    }),
  );

function pickBricks(v: { name: string; bricks: { name: string; host: string; port: number }[] }, args: string[]): string[] {
  return args.map((a) => findBrick(v, a).name);
}

/** Data files still on a brick (linkto files and directories do not count). */
async function filesOn(vol: Volume, brick: string, dir = '/'): Promise<string[]> {
  const names: string[] = [];
  for (let offset = 0; ; offset += 1000) {
    const r = await vol.client.sv(brick).call('readdir', { path: dir, offset, limit: 1000 });
    for (const e of r.entries) {
      const p = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
      if ((e.attr.mode & 0o170000) === 0o040000) names.push(...(await filesOn(vol, brick, p)));
      else if (e.attr.linkto === undefined && !e.attr.moved) names.push(p);
    }
    if (r.eof || r.entries.length === 0) return names;
  }
}

volume
  .command('remove-brick <name> <args...>')
  .description('drain bricks: BRICK... start | status | stop | commit  (BRICK as a name or HOST:PORT)')
  .option('--json', 'print as JSON')
  .option('--force', 'commit even if files remain on the bricks (they stay in the brick directories)')
  .option('--lease-ms <ms>', "start: the drain's migration lease, how long a hung drain can hold a file (default 5000)", (v) => Number(v))
  .action(
    action(async (name: string, args: string[], o) => {
      const verb = args.pop();
      if (!verb || !['start', 'status', 'stop', 'commit'].includes(verb)) throw new Error('remove-brick needs BRICK... followed by start, status, stop or commit');
      const d = clusterConfig() ? await clusterDrain(name) : localDrain(loadVolume(name));
      const bricks = args.length > 0 ? pickBricks(d, args) : [...d.decommissioned];
      if (bricks.length === 0) throw new Error('name the bricks to remove');
      if (verb === 'start') {
        if (bricks.length >= d.bricks.length) throw new Error('cannot remove every brick of a volume');
        d.decommissioned = [...new Set([...d.decommissioned, ...bricks])];
        await d.setDraining(d.decommissioned);
        const pid = await d.startRun(o.leaseMs);
        return out(o.json, { bricks, pid }, () => `volume remove-brick start: ${name}: draining ${bricks.join(', ')} (rebalance pid ${pid}); see: dhtfs volume remove-brick ${name} status`);
      }
      if (verb === 'status') {
        const st = await d.status();
        return out(o.json, { bricks, draining: d.decommissioned, rebalance: st }, () => `Draining: ${d.decommissioned.join(', ') || 'none'}\n` + (st ? formatStatus(st, process.stdout.isTTY) : 'no rebalance has run'));
      }
      if (verb === 'stop') {
        await d.stopRun();
        await d.setDraining(d.decommissioned.filter((b) => !bricks.includes(b)));
        return out(o.json, { stopped: bricks }, () => `volume remove-brick stop: ${name}: ${bricks.join(', ')} back in service; files already moved stay where they are (run "volume rebalance ${name} start" to balance)`);
      }
      // commit
      const st = await d.status();
      const vol = await Volume.connect(d.spec);
      try {
        // Names (files, symlinks, FIFOs, sockets) still on the bricks: commit is refused only for these.
        const leftNames: Record<string, string[]> = {};
        for (const b of bricks) leftNames[b] = await filesOn(vol, b);
        const left = Object.fromEntries(Object.entries(leftNames).map(([b, ns]) => [b, ns.length]));
        const remaining = Object.values(left).reduce((a, b) => a + b, 0);
        if (!o.force) {
          if (!bricks.every((b) => d.decommissioned.includes(b))) throw new Error(`run "volume remove-brick ${name} ${bricks.join(' ')} start" first`);
          if (!st || st.state !== 'completed') throw new Error(`the drain has not completed (rebalance ${st?.state ?? 'not started'}); commit refused`);
          if (remaining > 0)
            throw new Error(
              `${remaining} names remain on ${Object.entries(left)
                .filter(([, n]) => n > 0)
                .map(([b, n]) => `${b} (${n}: ${leftNames[b].slice(0, 5).join(', ')}${n > 5 ? ', ...' : ''})`)
                .join('; ')}; commit refused (see the rebalance log; --force leaves them in the brick directories)`,
            );
        }
        await d.remove(bricks);
        out(o.json, { removed: bricks, filesLeft: left, namesLeft: leftNames }, () =>
          [
            `volume remove-brick commit: ${name}: removed ${bricks.join(', ')}${remaining ? ` (${remaining} names left in their directories, no longer in the volume:)` : ''}`,
            ...Object.entries(leftNames).flatMap(([b, ns]) => ns.map((n) => `  left on ${b}: ${n}`)),
          ].join('\n'),
        );
      } finally {
        await vol.close();
      }
    }),
  );

volume
  .command('rebalance <name> <verb> [flags...]')
  .description('start [fix-layout] [force] | status | stop: move files to the bricks their names hash to')
  .option('--throttle <t>', 'parallel migrations: lazy, normal, aggressive or a number', 'normal')
  .option('--restart', 'start over instead of resuming an unfinished run')
  .option('--lease-ms <ms>', 'migration lease: how long a hung rebalance can hold a file (default 5000)', (v) => Number(v))
  .option('--migration-protocol <p>', "safe or legacy; must be the volume's (see volume create)")
  .option('--json', 'print as JSON')
  .action(
    action(async (name: string, verb: string, flags: string[], o) => {
      if (clusterConfig()) {
        if (verb === 'start') {
          const bad = flags.filter((f) => f !== 'fix-layout' && f !== 'force');
          if (bad.length) throw new Error(`unknown rebalance flags: ${bad.join(' ')}`);
          const pid = await clusterRebalanceStart(name, { mode: flags.includes('fix-layout') ? 'fix-layout' : 'full', force: flags.includes('force'), throttle: o.throttle, restart: o.restart, leaseMs: o.leaseMs });
          return out(o.json, { pid }, () => `volume rebalance: ${name}: started (pid ${pid} on this host); see: dhtfs volume rebalance ${name} status`);
        }
        if (verb === 'status') {
          const st = await clusterRebalanceStatus(name);
          if (!st) return out(o.json, null, () => `no rebalance has run on ${name}`);
          return out(o.json, st, () => formatStatus(st, process.stdout.isTTY));
        }
        if (verb === 'stop') {
          const w = await clusterRebalanceStop(name);
          return out(o.json, w, () => `volume rebalance: ${name}: ${w ? `stopping (pid ${w.pid} on ${w.host})` : 'stopped (its runner had died)'}; "start" resumes where it stopped`);
        }
        throw new Error(`unknown rebalance verb '${verb}': start, status or stop`);
      }
      const v = loadVolume(name);
      if (verb === 'start') {
        const bad = flags.filter((f) => f !== 'fix-layout' && f !== 'force');
        if (bad.length) throw new Error(`unknown rebalance flags: ${bad.join(' ')}`);
        const proto = v.options?.migrationProtocol ?? 'safe';
        if (o.migrationProtocol && o.migrationProtocol !== proto) throw new Error(`volume ${name} uses the ${proto} protocol (its clients follow its rules); create it with --migration-protocol ${o.migrationProtocol} to use that one`);
        parseThrottle(o.throttle);
        const pid = startRebalance(v, { mode: flags.includes('fix-layout') ? 'fix-layout' : 'full', force: flags.includes('force'), throttle: o.throttle, restart: o.restart, leaseMs: o.leaseMs });
        return out(o.json, { pid }, () => `volume rebalance: ${name}: started (pid ${pid}); see: dhtfs volume rebalance ${name} status`);
      }
      if (verb === 'status') {
        const st = rebalanceStatus(v);
        if (!st) return out(o.json, null, () => `no rebalance has run on ${name}`);
        return out(o.json, st, () => formatStatus(st, process.stdout.isTTY));
      }
      if (verb === 'stop') {
        const pid = rebalancePid(v);
        if (!pid) throw new Error(`no rebalance of ${name} is running`);
        process.kill(pid, 'SIGTERM');
        return out(o.json, { pid }, () => `volume rebalance: ${name}: stopping (pid ${pid}); "start" resumes where it stopped`);
      }
      throw new Error(`unknown rebalance verb '${verb}': start, status or stop`);
    }),
  );

volume
  .command('migrate <name> <paths...>')
  .description("migrate files to their hashed bricks now, with the volume's migration protocol")
  .option('--lease-ms <ms>', 'migration lease', (v) => Number(v))
  .option('--json', 'print as JSON')
  .action(
    action(async (name: string, paths: string[], o) => {
      const v = clusterConfig() ? await clusterAdminSpec(name) : loadVolume(name);
      const vol = await Volume.connect(v, { clientName: 'migrate' });
      try {
        const results: ({ path: string } & Awaited<ReturnType<typeof migrateFile>>)[] = [];
        const legacy = v.options?.migrationProtocol === 'legacy';
        for (const p of paths) results.push({ path: p, ...(legacy ? await migrateFileLegacy(vol.client, p) : await migrateFile(vol.client, p, migratorOptions(o.leaseMs))) });
        out(o.json, results, () => results.map((r) => `${r.path}: ${r.result}${'reason' in r ? ` (${r.reason})` : ''}`).join('\n'));
      } finally {
        await vol.close();
      }
    }),
  );

program
  .command('rebalance-run <name>', { hidden: true })
  .option('--mode <m>', 'full or fix-layout', 'full')
  .option('--throttle <t>', 'parallel migrations', 'normal')
  .option('--force')
  .option('--restart')
  .option('--lease-ms <ms>', 'migration lease', (v) => Number(v))
  .action(
    action(async (name: string, o) => {
      if (clusterConfig()) {
        const r = await clusterRunRebalance(name, { mode: o.mode, force: !!o.force, throttle: o.throttle, restart: !!o.restart, leaseMs: o.leaseMs });
        console.log(`${new Date().toISOString()} rebalance ${r.state}: ${JSON.stringify(r.counters)}`);
        process.exit(r.state === 'failed' ? 1 : 0);
      }
      const v = loadVolume(name);
      const r = await runRebalance(v, { mode: o.mode, force: !!o.force, throttle: o.throttle, restart: !!o.restart, leaseMs: o.leaseMs });
      console.log(`${new Date().toISOString()} rebalance ${r.state}: ${JSON.stringify(r.counters)}`);
      process.exit(r.state === 'failed' ? 1 : 0);
    }),
  );

// --- embedded default -------------------------------------------------------------------------------

program
  .command('up')
  .description('bring up the embedded default: volume "default", bricks on loopback, data under ./.dhtfs of the package')
  .option('--bricks <n>', 'number of bricks', (v) => Number(v), 3)
  .option('--data <dir>', 'where brick directories go', path.join(PACKAGE_ROOT, '.dhtfs', 'bricks'))
  .option('--name <name>', 'volume name', 'default')
  .option('--mount <dir>', 'where to mount it through FUSE (where FUSE is available)', path.join(PACKAGE_ROOT, '.dhtfs', 'mnt'))
  .option('--no-mount', 'do not mount it')
  .action(
    action(async (o) => {
      let v: StoredVolume;
      if (listVolumes().includes(o.name)) v = loadVolume(o.name);
      else {
        const bricks = [];
        // Each brick takes its port itself, from the brick port range, when it first starts.
        for (let i = 0; i < o.bricks; i++) bricks.push(`127.0.0.1:${path.resolve(o.data, `b${i}`)}`);
        v = createVolume(o.name, bricks);
        process.stdout.write(`created volume ${o.name} with ${o.bricks} bricks under ${path.resolve(o.data)}\n`);
      }
      const r = await startBricks(v);
      v.state = 'started';
      saveVolume(v);
      const vol = await Volume.connect(v);
      const st = await vol.statfs();
      await vol.close();
      // Mounted too, where FUSE is there (the mount point is remembered: volume stop unmounts it).
      let mounted = '';
      if (o.mount) {
        const { fuseAvailable } = await import('../fuse/mount.js');
        const { isMounted, mountBackground } = await import('./mount.js');
        const avail = fuseAvailable();
        const mnt = path.resolve(o.mount);
        if (!avail.ok) mounted = `not mounted: ${avail.why}\n`;
        else {
          fs.mkdirSync(mnt, { recursive: true });
          if (!isMounted(mnt)) await mountBackground(v.name, mnt, undefined);
          fs.writeFileSync(mountRecord(v.name), mnt + '\n');
          mounted = `mount: ${mnt} (FUSE; ./bin/dhtfs umount ${mnt} unmounts it, volume stop too)\n`;
        }
      }
      process.stdout.write(
        `volume ${v.name} is up: ${r.length} bricks (${r.map((x) => `${x.brick} pid ${x.pid}`).join(', ')}), ${((st.bavail * st.bsize) / 2 ** 30).toFixed(1)} GiB free\n` +
          `spec: ${specPath(v.name)}\n` +
          mounted +
          `try:  ./bin/dhtfs put README.md /README.md && ./bin/dhtfs ls -l /\n` +
          `stop: ./bin/dhtfs volume stop ${v.name}\n`,
      );
    }),
  );

/** Where `up` notes the mount point it mounted the volume on. */
function mountRecord(name: string): string {
  return path.join(volDir(name), 'mountpoint');
}

// --- file commands ------------------------------------------------------------------------------------

/** The volume of the file commands: a spec, or HOST:/NAME (Volume.connect fetches its spec from that node). */
async function specFrom(o: { volume?: string; spec?: string }): Promise<VolumeSpec | string> {
  if (o.spec) return validateSpec(JSON.parse(fs.readFileSync(o.spec, 'utf8')));
  if (o.volume && parseVolumeAddress(o.volume)) return o.volume;
  if (clusterConfig()) return clusterSpec(o.volume ?? 'default');
  return loadVolume(o.volume ?? 'default');
}

async function withVolume<T>(cmd: Command, fn: (v: Volume) => Promise<T>): Promise<T> {
  const o = cmd.optsWithGlobals();
  const vol = await Volume.connect(await specFrom(o));
  try {
    return await fn(vol);
  } finally {
    await vol.close();
  }
}

program.addOption(new Option('-V, --volume <name>', 'volume for file commands: a name, or HOST:/NAME (its spec from the node daemon of HOST, with the client certificate in $DHTFS_HOME/tls/client)').default('default'));
program.addOption(new Option('--spec <file>', 'volume spec file for file commands (instead of --volume)'));

function modeString(mode: number): string {
  const t = { 0o040000: 'd', 0o120000: 'l', 0o100000: '-' }[mode & 0o170000] ?? '?';
  const r = (b: number, c: string) => (mode & b ? c : '-');
  let s = t + r(0o400, 'r') + r(0o200, 'w') + r(0o100, 'x') + r(0o40, 'r') + r(0o20, 'w') + r(0o10, 'x') + r(0o4, 'r') + r(0o2, 'w') + r(0o1, 'x');
  const ch = s.split('');
  if (mode & 0o4000) ch[3] = ch[3] === 'x' ? 's' : 'S';
  if (mode & 0o2000) ch[6] = ch[6] === 'x' ? 's' : 'S';
  if (mode & 0o1000) ch[9] = ch[9] === 'x' ? 't' : 'T';
  s = ch.join('');
  return s;
}

program
  .command('ls [path]')
  .description('list a directory on the volume')
  .option('-l', 'long listing')
  .option('--json', 'print as JSON')
  .action(
    action(async (p: string | undefined, o, cmd: Command) => {
      await withVolume(cmd, async (vol) => {
        const dir = p ?? '/';
        const st = await vol.stat(dir);
        const names = st.isDirectory() ? await vol.readdir(dir) : [path.posix.basename(dir)];
        const base = st.isDirectory() ? dir : path.posix.dirname(dir);
        if (!o.l && !o.json) return void process.stdout.write(names.map((n) => n + '\n').join(''));
        const rows: { name: string; mode: number; size: number; uid: number; gid: number; nlink: number; mtime: string }[] = [];
        for (const n of names) {
          const s = await vol.lstat(path.posix.join(base, n));
          rows.push({ name: n, mode: s.mode, size: s.size, uid: s.uid, gid: s.gid, nlink: s.nlink, mtime: s.mtime.toISOString() });
        }
        out(o.json, rows, () => rows.map((r) => `${modeString(r.mode)} ${String(r.nlink).padStart(2)} ${String(r.uid).padEnd(5)} ${String(r.gid).padEnd(5)} ${String(r.size).padStart(12)} ${r.mtime} ${r.name}`).join('\n'));
      });
    }),
  );

program
  .command('cat <paths...>')
  .description('print files of the volume')
  .action(
    action(async (paths: string[], _o, cmd: Command) => {
      await withVolume(cmd, async (vol) => {
        for (const p of paths) process.stdout.write(await vol.readFile(p));
      });
    }),
  );

program
  .command('put <local> <remote>')
  .description('copy a local file into the volume')
  .action(
    action(async (local: string, remote: string, _o, cmd: Command) => {
      await withVolume(cmd, async (vol) => {
        const st = fs.statSync(local);
        let target = remote;
        try {
          if ((await vol.stat(remote)).isDirectory()) target = path.posix.join(remote, path.basename(local));
        } catch (e) {
          ignoreCodes(e, 'ENOENT');
        }
        const h = await vol.open(target, 'w', st.mode & 0o777);
        const fd = fs.openSync(local, 'r');
        try {
          const buf = Buffer.allocUnsafe(8 * 1024 * 1024);
          let pos = 0;
          for (;;) {
            const n = fs.readSync(fd, buf, 0, buf.length, pos);
            if (n === 0) break;
            await h.write(buf, 0, n, pos);
            pos += n;
          }
        } finally {
          fs.closeSync(fd);
          await h.close();
        }
      });
    }),
  );

program
  .command('get <remote> <local>')
  .description('copy a file of the volume to a local file')
  .action(
    action(async (remote: string, local: string, _o, cmd: Command) => {
      await withVolume(cmd, async (vol) => {
        const h = await vol.open(remote, 'r');
        const fd = fs.openSync(local, 'w');
        try {
          const buf = Buffer.allocUnsafe(8 * 1024 * 1024);
          let pos = 0;
          for (;;) {
            const { bytesRead } = await h.read(buf, 0, buf.length, pos);
            if (bytesRead === 0) break;
            fs.writeSync(fd, buf, 0, bytesRead, pos);
            pos += bytesRead;
          }
        } finally {
          fs.closeSync(fd);
          await h.close();
        }
      });
    }),
  );

program
  .command('rm <paths...>')
  .description('remove files (and trees with -r)')
  .option('-r, --recursive', 'remove directories and their contents')
  .option('-f, --force', 'ignore missing files')
  .action(
    action(async (paths: string[], o, cmd: Command) => {
      await withVolume(cmd, async (vol) => {
        for (const p of paths) await vol.rm(p, { recursive: o.recursive, force: o.force });
      });
    }),
  );

program
  .command('mkdir <paths...>')
  .description('make directories')
  .option('-p, --parents', 'make parents as needed, no error if existing')
  .option('-m, --mode <octal>', 'mode', '755')
  .action(
    action(async (paths: string[], o, cmd: Command) => {
      await withVolume(cmd, async (vol) => {
        for (const p of paths) await vol.mkdir(p, { recursive: o.parents, mode: parseInt(o.mode, 8) });
      });
    }),
  );

program
  .command('mv <from> <to>')
  .description('rename a file or directory')
  .action(
    action(async (from: string, to: string, _o, cmd: Command) => {
      await withVolume(cmd, (vol) => vol.rename(from, to));
    }),
  );

program
  .command('stat <path>')
  .description('show attributes, the hashed brick and the brick holding the data')
  .option('--json', 'print as JSON')
  .action(
    action(async (p: string, o, cmd: Command) => {
      await withVolume(cmd, async (vol) => {
        const loc = await vol.client.locate(p);
        const s = await vol.lstat(p);
        const r = {
          path: loc.path,
          gfid: s.gfid,
          mode: '0' + (s.mode & 0o7777).toString(8),
          type: s.isDirectory() ? 'directory' : s.isSymbolicLink() ? 'symlink' : 'file',
          size: s.size,
          nlink: s.nlink,
          uid: s.uid,
          gid: s.gid,
          mtime: s.mtime.toISOString(),
          hashedBrick: loc.hashed,
          dataBrick: loc.isDir ? null : loc.cached,
        };
        out(o.json, r, () =>
          Object.entries(r)
            .map(([k, v]) => `${k.padEnd(12)} ${v}`)
            .join('\n'),
        );
      });
    }),
  );

// --- FUSE mount -----------------------------------------------------------------------------------------

program
  .command('mount <volume> <mountpoint>')
  .description(
    'mount a volume through FUSE: in the foreground (Ctrl-C or SIGTERM unmounts cleanly), or with --background as mount(8) does. <volume> is a volume name, the path of a spec file, or HOST:/NAME (a cluster volume: its spec from the node daemon of HOST over TLS, with the client certificate in $DHTFS_HOME/tls/client)',
  )
  .option(
    '-o, --options <opts>',
    'mount options, comma-separated: FUSE options (ro, allow_other, ...), home=DIR (the DHTFS_HOME holding the volume), entry_timeout=SECONDS (how long names stay looked up, default 1; 0: never), backup-volfile-servers=HOST2:HOST3 (HOST:/NAME: nodes asked when HOST does not answer), tls-dir=DIR (HOST:/NAME: the folder of the client certificate), nonempty (mount over a directory that holds files; refused otherwise); fstab-only ones (defaults, _netdev, noauto, ...) are ignored',
  )
  .option('--background', 'start the mount as its own process and return once it is mounted (its log: DHTFS_HOME/logs/mount-*.log)')
  .action(
    action(async (name: string, mnt: string, o) => {
      const { mountBackground, mountForeground, parseMountOptions } = await import('./mount.js');
      const opts = parseMountOptions(o.options);
      if (opts.home) process.env.DHTFS_HOME = opts.home;
      if (o.background) {
        const r = await mountBackground(name, mnt, o.options);
        process.stdout.write(`mounted ${name} on ${path.resolve(mnt)} (process ${r.pid}, log ${r.log})\n`);
        return;
      }
      await mountForeground(name, mnt, opts, (s) => process.stdout.write(s));
      process.exit(0);
    }),
  );

program
  .command('umount <mountpoint>')
  .description('unmount a dhtfs mount, also one whose process died ("Transport endpoint is not connected")')
  .action(
    action(async (mnt: string) => {
      const { unmount } = await import('./mount.js');
      unmount(mnt);
      process.stdout.write(`unmounted ${path.resolve(mnt)}\n`);
    }),
  );

const helper = program.command('mount-helper').description('the mount(8) helper: mount -t dhtfs VOLUME DIR, and fstab lines of type dhtfs');
helper
  .command('install')
  .description('write mount.dhtfs (calling this installation) where mount(8) looks for helpers')
  .option('--dir <dir>', 'where to write it', '/sbin')
  .action(
    action(async (o) => {
      const { installHelper } = await import('./mount.js');
      const file = installHelper(o.dir);
      process.stdout.write(`wrote ${file}: mount -t dhtfs VOLUME DIR [-o home=DIR,...] now works; fstab: VOLUME DIR dhtfs defaults,_netdev 0 0\n`);
    }),
  );
helper
  .command('uninstall')
  .description('remove mount.dhtfs')
  .option('--dir <dir>', 'where it is', '/sbin')
  .action(
    action(async (o) => {
      fs.rmSync(path.join(o.dir, 'mount.dhtfs'), { force: true });
    }),
  );

registerNodeCommands(program, action);
registerCertCommands(program, action);
registerClusterCommands(program, action, out);
program.parseAsync(process.argv).catch(fail);

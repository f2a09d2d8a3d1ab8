/**
 * add-brick and replace-brick, all or nothing: a new brick is started, bound and answering (and, for
 * replace-brick, given every directory with its slot's ranges) before any topology names it; a failure
 * stops what was started, unclaims what was claimed, and leaves the spec and every brick's topology as
 * they were (edge code: processes, files, xattrs).
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import * as xattr from '@napi-rs/xattr';
import { RpcClient } from '../wire/rpc.js';
import { specNetwork } from '../api/network.js';
import type { Attr, DirEntryAttr, RootInfo } from '../wire/types.js';
import type { VolumeSpec } from '../dht/spec.js';
import { defaultXattrPrefix } from '../brick/server.js';
import { codeOf, detailOf, ignoreCodes } from '../common/errors.js';
import { pushTopology } from './rebalance.js';
import { copyDirectories } from '../rebalance/replace-brick.js';
import { awaitBrick, brickPid, checkNewBricks, isLocalHost, parseBrickArg, pidFile, probeBrick, saveVolume, spawnBrick, volDir, type Spawned, type StoredBrick, type StoredVolume } from './state.js';

const START_TIMEOUT_MS = 15_000;

/** An admin connection to brick `b` of `v` (over TLS where the volume has it). */
export async function connectBrick(v: VolumeSpec, b: { name: string; host: string; port: number }): Promise<RpcClient> {
  return RpcClient.connect(specNetwork(v), b.host, b.port, { volumeId: v.volumeId, secret: v.secret, adminSecret: v.adminSecret, brickName: b.name, clientName: 'cli' });
}

/** Every brick of `bricks` must answer: each is given the new topology. */
async function allAnswer(v: StoredVolume, bricks: StoredBrick[], what: string): Promise<void> {
  for (const b of bricks) if (!(await probeBrick(v, b))) throw new Error(`brick ${b.name} (${b.host}:${b.port}) does not answer; ${what} needs every brick of the volume up (dhtfs volume start ${v.name})`);
}

/** A brick on another host, started there by its operator: it must answer as this volume's brick `b.name`. */
async function checkRemote(v: StoredVolume, b: StoredBrick): Promise<void> {
  const hint = `start it there first: dhtfs brick serve --dir ${b.dir} --port ${b.port} --host ${b.host} --name ${b.name} --volume-id ${v.volumeId} --secret-file FILE --admin-secret-file FILE2 (the volume's secret and admin secret)`;
  let c: RpcClient;
  try {
    // The handshake proves it is this volume's brick of that name.
    c = await connectBrick(v, b);
  } catch (e) {
    throw new Error(`brick ${b.host}:${b.port} does not answer as brick ${b.name} of volume ${v.name} (${codeOf(e)}: ${detailOf(e)}); ${hint}`);
  }
  try {
    const r = await c.call('rootInfo', {});
    if (r.brick !== b.name) throw new Error(`${b.host}:${b.port} serves brick ${r.brick}, not ${b.name}; ${hint}`);
  } finally {
    c.close();
  }
}

/** What a local brick directory was before this command: made by it, and claimed by a brick or not. */
interface DirBefore {
  dir: string;
  existed: boolean;
  claimed: boolean;
  mode: number;
  /** It had a .glusterfs already. */
  handles: boolean;
}

const claimKeys = () => ['dhtfs.brick-id', 'glusterfs.volume-id', 'dhtfs.root-attr', 'gfid'].map((k) => defaultXattrPrefix() + k);

function dirBefore(dir: string): DirBefore {
  const existed = fs.existsSync(dir);
  const mode = existed ? fs.statSync(dir).mode & 0o7777 : 0;
  let claimed = false;
  try {
    // A brick's directory of any kind, also one from before brick ids: its volume id is there.
    claimed =
      existed &&
      claimKeys()
        .slice(0, 2)
        .some((k) => {
          try {
            return xattr.getAttributeSync(dir, k) !== null;
          } catch {
            return false;
          }
        });
  } catch {
    /* no such xattr */
  }
  return { dir, existed, claimed, mode, handles: fs.existsSync(path.join(dir, '.glusterfs')) };
}

/** Puts a directory this command claimed back as it was: made by it, removed; else its claim removed. */
function undoDir(d: DirBefore): void {
  if (d.claimed) return;
  if (!d.existed) return void fs.rmSync(d.dir, { recursive: true, force: true });
  for (const k of claimKeys()) {
    try {
      xattr.removeAttributeSync(d.dir, k);
    } catch {
      /* not there */
    }
  }
  if (!d.handles) fs.rmSync(path.join(d.dir, '.glusterfs'), { recursive: true, force: true });
  fs.chmodSync(d.dir, d.mode);
}

async function stopProcess(v: StoredVolume, name: string, pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  fs.rmSync(pidFile(v, name), { force: true });
}

/**
 * Starts `bricks` (local ones as processes serving the spec `v` would have with them; remote ones must
 * answer already) and runs `commit` once all answer. On any failure, stops and unclaims what it started
 * and rethrows; `commit` must leave `v` as it was if it throws.
 */
async function withNewBricks<T>(v: StoredVolume, pendingSpec: StoredVolume, bricks: StoredBrick[], commit: () => Promise<T>): Promise<T> {
  const pending = path.join(volDir(v.name), `pending-${process.pid}.json`);
  fs.writeFileSync(pending, JSON.stringify(pendingSpec, null, 2) + '\n', { mode: 0o600 });
  const spawned: Spawned[] = [];
  const dirs: DirBefore[] = [];
  try {
    for (const b of bricks) {
      if (!isLocalHost(b.host)) continue;
      dirs.push(dirBefore(b.dir));
      fs.mkdirSync(b.dir, { recursive: true });
      spawned.push(spawnBrick(v, b, pending));
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (const s of spawned) await awaitBrick(v, s, deadline);
    for (const b of bricks) if (!isLocalHost(b.host)) await checkRemote(v, b);
    return await commit();
  } catch (e) {
    for (const s of spawned) await stopProcess(v, s.brick.name, s.pid);
    for (const d of dirs) undoDir(d);
    throw e;
  } finally {
    fs.rmSync(pending, { force: true });
  }
}

/** Pushes `v`'s topology; if that fails part way, pushes `before`'s bricks back (best effort) and rethrows. */
async function pushOrUndo(v: StoredVolume, before: StoredBrick[]): Promise<void> {
  const now = v.bricks;
  try {
    await pushTopology(v);
  } catch (e) {
    v.bricks = before;
    await pushTopology(v).catch(() => {});
    v.bricks = now;
    throw e;
  }
}

/** add-brick: the new bricks (HOST:/DIR or HOST:PORT:/DIR), named NAME-client-N, all or none. */
export async function addBricks(v: StoredVolume, args: string[]): Promise<StoredBrick[]> {
  const parsed = args.map(parseBrickArg);
  checkNewBricks(v, parsed);
  let next = Math.max(-1, ...v.bricks.map((b) => Number(/-client-(\d+)$/.exec(b.name)?.[1] ?? -1))) + 1;
  const added: StoredBrick[] = parsed.map((p) => ({ name: `${v.name}-client-${next++}`, host: p.host, port: p.port, dir: p.dir, ...(isLocalHost(p.host) ? { id: randomUUID() } : {}) }));
  if (v.state === 'created' && v.version === undefined) {
    // Never started: no brick holds a topology yet; `volume start` starts the new bricks with the others.
    v.bricks.push(...added);
    saveVolume(v);
    return added;
  }
  await allAnswer(v, v.bricks, 'add-brick');
  const before = [...v.bricks];
  return withNewBricks(v, { ...v, bricks: [...before, ...added] }, added, async () => {
    v.bricks = [...before, ...added];
    try {
      await pushOrUndo(v, before);
    } catch (e) {
      v.bricks = before;
      throw e;
    }
    return added;
  });
}

/** A brick of `v` named by its name or HOST:PORT[:DIR]. */
export function findBrick<B extends { name: string; host: string; port: number }>(v: { name: string; bricks: B[] }, arg: string): B {
  const byName = v.bricks.find((b) => b.name === arg);
  if (byName) return byName;
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)(?::.*)?$/.exec(arg);
  const b = m && v.bricks.find((x) => x.host === m[1].replace(/^\[|\]$/g, '') && x.port === Number(m[2]));
  if (!b) throw new Error(`${arg} is not a brick of volume ${v.name}`);
  return b;
}

/**
 * replace-brick OLD NEW commit force: OLD's place (its name, so every layout and linkto stays valid) is
 * given to NEW, an empty directory, which first gets every directory with OLD's ranges. OLD's files are
 * no longer in the volume (a distribute volume has no other copy): use remove-brick to move them off a
 * brick that still works. A local OLD still running is stopped first (and started again on a failure).
 */
export async function replaceBrick(v: StoredVolume, oldArg: string, newArg: string): Promise<{ brick: StoredBrick; dirs: number }> {
  const old = findBrick(v, oldArg);
  const p = parseBrickArg(newArg);
  const others = v.bricks.filter((b) => b !== old);
  checkNewBricks({ name: v.name, bricks: others }, [p]);
  if (p.host === old.host || (isLocalHost(p.host) && isLocalHost(old.host))) {
    const a = path.resolve(p.dir);
    const b = path.resolve(old.dir);
    if (a === b || a.startsWith(b + '/') || b.startsWith(a + '/')) throw new Error(`${p.host}:${p.dir} is, holds or is inside the directory of ${old.name}; replace it with a new, empty directory`);
  }
  if (isLocalHost(p.host) && fs.existsSync(p.dir) && fs.readdirSync(p.dir).length > 0) throw new Error(`${p.dir} is not empty; a replacement brick starts from an empty directory`);
  await allAnswer(v, others, 'replace-brick');
  const nb: StoredBrick = { name: old.name, host: p.host, port: p.port, dir: p.dir, ...(isLocalHost(p.host) ? { id: randomUUID() } : {}) };
  const oldPid = isLocalHost(old.host) ? brickPid(v, old.name) : null;
  if (oldPid) await stopProcess(v, old.name, oldPid);
  const before = [...v.bricks];
  const after = v.bricks.map((b) => (b === old ? nb : b));
  try {
    return await withNewBricks(v, { ...v, bricks: after }, [nb], async () => {
      // Every directory, with OLD's ranges, before any client can meet the new brick.
      const cs = await Promise.all(others.map((b) => connectBrick(v, b)));
      const target = await connectBrick(v, nb);
      let dirs: number;
      try {
        dirs = await copyDirectories(cs, target);
        v.bricks = after;
        try {
          await pushOrUndo(v, before);
        } catch (e) {
          v.bricks = before;
          throw e;
        }
        // Directories made while the first pass ran (clients made them on the bricks they knew); a
        // lookup would make them too, so a failure here is no failure of the replace.
        dirs += await copyDirectories(cs, target, true).catch(() => 0);
      } finally {
        for (const c of [...cs, target]) c.close();
      }
      return { brick: nb, dirs };
    });
  } catch (e) {
    if (oldPid) {
      const s = spawnBrick(v, old);
      await awaitBrick(v, s, Date.now() + START_TIMEOUT_MS).catch(() => {});
    }
    throw e;
  }
}

/** inodelk and entrylk over the lock table (locks.ts). */
import { FsError } from '../../common/errors.js';
import { ROOT_GFID } from '../../common/gfid.js';
import { bad, type Decoded } from '../../wire/ops.js';
import type { BrickCore, Session } from '../core.js';

function lockOp(b: BrickCore, s: Session, a: Decoded<'inodelk'> | Decoded<'entrylk'>, key: string, domain: string, name?: string): Promise<Record<string, never>> | Record<string, never> {
  const mode = a.type;
  const ownerArg = a.owner;
  // A limit hit (name sizes, lock count, domains, a waiter's deadline) is logged with the client named.
  const logged = (e: unknown) => {
    const limit = e instanceof FsError ? e.info?.limit : undefined;
    if (typeof limit === 'string') b.limitHit(limit, s, (e as Error).message);
    return e;
  };
  try {
    b.locks.checkName('domain', domain);
    if (name !== undefined) b.locks.checkName('name', name);
    b.locks.checkName('owner', ownerArg);
  } catch (e) {
    throw logged(e);
  }
  const owner = `${s.id}/${ownerArg}`;
  if (mode === 'un') {
    b.locks.release(key, owner);
    return {};
  }
  let r: Promise<void> | void;
  try {
    r = b.locks.acquire(key, owner, s.id, mode, a.block, domain);
  } catch (e) {
    throw logged(e);
  }
  return r
    ? r.then(
        () => ({}),
        (e) => {
          throw logged(e);
        },
      )
    : {};
}

export function inodelk(b: BrickCore, s: Session, a: Decoded<'inodelk'>): Promise<Record<string, never>> | Record<string, never> {
  const domain = a.domain;
  if (a.gfid === undefined && a.path === undefined) throw bad('path', 'must be a string');
  const gfid = a.gfid ?? b.readGfid(b.walk(a.path!));
  if (!gfid) throw new FsError('EIO', `/${a.path ?? a.gfid} has no gfid`);
  return lockOp(b, s, a, `i\0${domain}\0${gfid}`, domain);
}

export function entrylk(b: BrickCore, s: Session, a: Decoded<'entrylk'>): Promise<Record<string, never>> | Record<string, never> {
  const domain = a.domain;
  const dir = b.walk(a.path);
  const name = a.name;
  const gfid = dir === '' ? ROOT_GFID : b.readGfid(dir);
  if (!gfid) throw new FsError('EIO', 'directory has no gfid');
  return lockOp(b, s, a, `e\0${domain}\0${gfid}\0${name}`, domain, name);
}

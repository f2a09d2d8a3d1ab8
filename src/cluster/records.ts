/**
 * What a cluster keeps in its store (docs/CLUSTER.md, "Keys"): the records' shapes and their keys, and
 * the checks each record gets when read (a record is data from the network: never trusted blindly).
 */
import type { VolumeOptions, VolumeSpec } from '../dht/spec.js';

/** A host of the pool, as `peer probe` (or the first node) wrote it. */
export interface PeerRecord {
  id: string;
  /** The address bricks of this host listen on and clients reach it by. */
  address: string;
  /** The management port its node daemon serves on (0: none yet). */
  mgmtPort: number;
  /** The etcd client certificate its node daemon reaches etcd with (what `peer detach` revokes); absent on a plaintext etcd. */
  etcdCert?: EtcdCertId;
}

/** An etcd client certificate: its issuer (the etcd CA's subject), serial (hex) and name (CN). */
export interface EtcdCertId {
  issuer: string;
  serial: string;
  name: string;
}

/** One brick of a volume: which node runs it, its address and folder there, the port it was given (0: none yet). */
export interface PlacedBrick {
  name: string;
  node: string;
  host: string;
  dir: string;
  port: number;
  /**
   * Placed but not to be announced yet (replace-brick: the new brick gets every directory first): its node
   * runs it and records its port without telling the volume's bricks; whoever placed it announces it.
   */
  pending?: boolean;
}

/** A volume: everything a node daemon needs to run its bricks, and a client to reach them. */
export interface VolumeRecord {
  name: string;
  volumeId: string;
  secret: string;
  adminSecret: string;
  state: 'created' | 'started' | 'stopped';
  bricks: PlacedBrick[];
  decommissioned: string[];
  /** The topology version the bricks were last given. */
  version: number;
  options?: VolumeOptions;
  /**
   * auth.ssl-allow: the common names of the client certificates node daemons give the volume's spec to
   * (absent, or '*': every client of the cluster's CA). Not in the spec.
   */
  sslAllow?: string[];
}

/** What the node running a brick says of it: written by that node only. */
export interface BrickStatus {
  node: string;
  state: 'starting' | 'online' | 'restarting' | 'failed' | 'stopped';
  pid: number | null;
  port: number;
  /** Unexpected exits within the restart window (see node.ts). */
  exits: number;
  /** Why it is not online, when it is not. */
  reason?: string;
  at: string;
}

export const keys = {
  peer: (id: string) => `peers/${id}`,
  peers: 'peers/',
  presence: (id: string) => `presence/${id}`,
  volume: (name: string) => `volumes/${name}`,
  volumes: 'volumes/',
  brickStatus: (vol: string, brick: string) => `status/${vol}/${brick}`,
  brickStatuses: (vol: string) => `status/${vol}/`,
  task: (vol: string) => `tasks/${vol}/owner`,
  checkpoint: (vol: string) => `tasks/${vol}/checkpoint`,
  /** Written by a node daemon that handed the task on as it stopped (SIGTERM): the next runner need not wait for leases. */
  handedOn: (vol: string) => `tasks/${vol}/handed-on`,
  /** The cluster CA's certificate and CRL (PEM; public), written by `cluster init` and `cert revoke`. */
  pki: 'pki/',
  pkiCa: 'pki/ca',
  pkiCrl: 'pki/crl',
  /** The etcd CA's CRL (PEM; public), written by `peer detach` and `cert revoke --etcd` where the etcd CA is; node daemons given --etcd-crl-file write it for etcd. */
  pkiEtcdCrl: 'pki/etcd-crl',
  /** A node's certificate request (its key stays on its host), and the certificate `peer probe` signs for it. */
  nodeCsr: (id: string) => `pki/csr/${id}`,
  nodeCert: (id: string) => `pki/cert/${id}`,
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A volume record read from the store, checked: throws with the key named when it is not one. */
export function parseVolume(key: string, value: string): VolumeRecord {
  const v = JSON.parse(value) as VolumeRecord;
  const bad = (why: string) => new Error(`${key}: not a volume record (${why})`);
  if (!v || typeof v !== 'object') throw bad('not a map');
  if (typeof v.name !== 'string' || !NAME.test(v.name)) throw bad('name');
  if (typeof v.volumeId !== 'string' || typeof v.secret !== 'string' || typeof v.adminSecret !== 'string') throw bad('identity');
  if (!['created', 'started', 'stopped'].includes(v.state)) throw bad('state');
  if (!Array.isArray(v.bricks)) throw bad('bricks');
  for (const b of v.bricks) {
    if (typeof b.name !== 'string' || !NAME.test(b.name) || typeof b.node !== 'string' || typeof b.host !== 'string' || typeof b.dir !== 'string' || !b.dir.startsWith('/')) throw bad(`brick ${JSON.stringify(b.name)}`);
    if (!Number.isInteger(b.port) || b.port < 0 || b.port > 65535) throw bad(`brick ${b.name}'s port`);
  }
  if (!Array.isArray(v.decommissioned) || !Number.isInteger(v.version)) throw bad('topology');
  return v;
}

/** A client's spec of a volume (what `volume spec` prints and node daemons serve): with `admin`, its admin secret too. */
export function clientSpecOf(v: VolumeRecord, admin = false): VolumeSpec {
  return {
    name: v.name,
    volumeId: v.volumeId,
    secret: v.secret,
    ...(admin ? { adminSecret: v.adminSecret } : {}),
    bricks: v.bricks.map(({ name, host, port }) => ({ name, host, port })),
    options: v.options,
    decommissioned: v.decommissioned,
    version: v.version,
  };
}

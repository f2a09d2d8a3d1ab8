/**
 * The brick path over TLS 1.3 with mutual authentication (edge code, next to ./tcp.ts): a brick presents
 * a certificate signed by the volume's CA and accepts only clients presenting one signed by the same CA
 * and not revoked by the CA's CRL; a client verifies the brick's certificate against the CA and the
 * brick's host, and, given the CA's CRL, refuses a brick or node whose certificate it revokes. The RPC's
 * HMAC handshake runs inside the session as before (defense in depth).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate, verify as verifySignature } from 'node:crypto';
import { wrap } from './tcp.js';
import type { Listener, Network } from './transport.js';

/** Where a party's TLS material is: PEM files. */
export interface TlsFiles {
  /** The CA certificate(s) peers are verified against. */
  ca: string;
  cert: string;
  key: string;
  /**
   * The CA's revocation list: read again whenever the file changes, before a new connection. A server
   * refuses a client whose certificate it lists; a client refuses such a server (a detached node, its bricks).
   */
  crl?: string;
}

/** A DER element at `at` of `der`: its tag and where its content starts and ends. */
function tlv(der: Buffer, at: number): { tag: number; start: number; end: number } {
  if (at + 2 > der.length) throw new Error('short');
  const tag = der[at];
  let len = der[at + 1];
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 4) throw new Error('length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i];
    start += n;
  }
  if (start + len > der.length) throw new Error('short');
  return { tag, start, end: start + len };
}

/** The DER of the first CRL in `pem`, or null. */
function crlDer(pem: string | Buffer): Buffer | null {
  const m = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/.exec(String(pem));
  return m ? Buffer.from(m[1].replace(/\s+/g, ''), 'base64') : null;
}

/** A CRL's DER as PEM (64 characters a line, as OpenSSL writes it). */
function crlPem(der: Buffer): string {
  return `-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END X509 CRL-----\n`;
}

/**
 * What a CRL (PEM) says of itself: its issuer (the DER of its Name) and when it was made (thisUpdate, ms
 * since the epoch); null when it is not a CRL.
 */
export function crlInfo(pem: string | Buffer): { issuer: Buffer; madeAt: number } | null {
  const der = crlDer(pem);
  if (!der) return null;
  try {
    // CertificateList { TBSCertList { [version INTEGER], signature SEQ, issuer Name, thisUpdate Time, ... } ... }
    const tbs = tlv(der, tlv(der, 0).start);
    let e = tlv(der, tbs.start);
    if (e.tag === 0x02) e = tlv(der, e.end);
    const issuer = tlv(der, e.end);
    const t = tlv(der, issuer.end);
    const s = der.subarray(t.start, t.end).toString('latin1');
    // UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ)
    const d = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : t.tag === 0x18 ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
    if (!d) return null;
    const year = t.tag === 0x17 ? (Number(d[1]) < 50 ? 2000 : 1900) + Number(d[1]) : Number(d[1]);
    return { issuer: der.subarray(issuer.start, issuer.end), madeAt: Date.UTC(year, Number(d[2]) - 1, Number(d[3]), Number(d[4]), Number(d[5]), Number(d[6])) };
  } catch {
    return null;
  }
}

/** The DER of a certificate's subject Name (the CA's: what its CRLs name as their issuer). */
function subjectOf(certPem: Buffer): Buffer | null {
  try {
    const der = new X509Certificate(certPem).raw;
    // Certificate { TBSCertificate { [0] version, serial, signature, issuer, validity, subject, ... } ... }
    let e = tlv(der, tlv(der, tlv(der, 0).start).start);
    if (e.tag === 0xa0) e = tlv(der, e.end);
    for (let i = 0; i < 4; i++) e = tlv(der, e.end); // signature, issuer, validity, subject
    return der.subarray(e.start, e.end);
  } catch {
    return null;
  }
}

/** The hash of a CRL's signature algorithm (by the DER of its OID; null: the key type names it, EdDSA). */
const SIG_HASH: Record<string, string | null> = {
  '2a864886f70d01010b': 'sha256', // sha256WithRSAEncryption
  '2a864886f70d01010c': 'sha384',
  '2a864886f70d01010d': 'sha512',
  '2a8648ce3d040302': 'sha256', // ecdsa-with-SHA256 (cert.ts's CAs: P-256)
  '2a8648ce3d040303': 'sha384',
  '2a8648ce3d040304': 'sha512',
  '2b6570': null, // Ed25519
  '2b6571': null, // Ed448
};

/**
 * What checkCrl says of a CRL: the CA's, signed by its key (what it says of itself, and `pem`: the one CRL
 * verified, alone, to be used and kept rather than the text given), or why not.
 */
export type CrlCheck = { ok: true; issuer: Buffer; madeAt: number; pem: string } | { ok: false; reason: string };

/**
 * Whether `pem` is a CRL of the CA in `caPem` (one of its certificates, when it holds several): its issuer
 * is the CA's subject and its signature verifies with the CA's public key (node:crypto over the DER:
 * Node has no CRL API, and OpenSSL itself checks a CRL's signature only when it uses it, refusing every
 * peer on a bad one). A CRL with the CA's name but another key's signature is refused: whoever could
 * write it would otherwise make a client refuse every server, or a brick let in a revoked client. Only the
 * verified CRL may go to OpenSSL (`pem`): its PEM reader finds blocks by other rules than crlDer (it skips
 * a BEGIN line with text before it), so the text given could make it load another CRL, an older one.
 */
export function checkCrl(pem: string | Buffer, caPem: string | Buffer): CrlCheck {
  const info = crlInfo(pem);
  if (!info) return { ok: false, reason: 'not a CRL' };
  const der = crlDer(pem)!;
  let tbs: Buffer, hash: string | null | undefined, sig: Buffer, whole: Buffer;
  try {
    // CertificateList { tbsCertList SEQ, signatureAlgorithm SEQ { OID, ... }, signatureValue BIT STRING }
    const outer = tlv(der, 0);
    whole = der.subarray(0, outer.end);
    const t = tlv(der, outer.start);
    tbs = der.subarray(outer.start, t.end);
    const alg = tlv(der, t.end);
    const oid = tlv(der, alg.start);
    const bits = tlv(der, alg.end);
    if (oid.tag !== 0x06 || bits.tag !== 0x03 || der[bits.start] !== 0) return { ok: false, reason: 'not a CRL' };
    hash = SIG_HASH[der.subarray(oid.start, oid.end).toString('hex')];
    sig = der.subarray(bits.start + 1, bits.end);
  } catch {
    return { ok: false, reason: 'not a CRL' };
  }
  if (hash === undefined) return { ok: false, reason: 'its signature algorithm is not one dhtfs checks' };
  const cas = (String(caPem).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).filter((c) => subjectOf(Buffer.from(c))?.equals(info.issuer));
  if (!cas.length) return { ok: false, reason: "not the CA's (another issuer)" };
  for (const c of cas) {
    try {
      if (verifySignature(hash, tbs, new X509Certificate(c).publicKey, sig)) return { ok: true, ...info, pem: crlPem(whole) };
    } catch {
      // a key of another type than the signature's: not this one
    }
  }
  return { ok: false, reason: "its signature is not the CA's (the CA's name, another key: forged?)" };
}

/**
 * Keeps the CRL verified in `pem` (it alone) in `file` when it is a CRL of the CA in `caPem` (checkCrl: its signature verified) newer
 * than the one there (made later, or as late and longer: the CA only adds to its list) or of another
 * issuer (a CA made again), atomically. Revocations are never taken back, so a newer CRL never lets in
 * what an older one refused. `kept`: it wrote it; `refused`: why it is not the CA's (not written).
 */
export function keepNewerCrl(file: string, pem: string, caPem: string | Buffer): { kept: boolean; refused?: string } {
  const got = checkCrl(pem, caPem);
  if (!got.ok) return { kept: false, refused: got.reason };
  let old: string | null = null;
  try {
    old = fs.readFileSync(file, 'utf8');
  } catch {
    // none yet
  }
  const had = old === null ? null : crlInfo(old);
  if (old !== null && had !== null && had.issuer.equals(got.issuer) && (had.madeAt > got.madeAt || (had.madeAt === got.madeAt && old.length >= got.pem.length))) return { kept: false };
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, got.pem, { mode: 0o644 });
  fs.renameSync(tmp, file);
  return { kept: true };
}

/**
 * A CRL file read again when it changed (a stamp of its mtime, size and inode), used only once checkCrl
 * verified it against `ca`: a changed file that is not the CA's is logged and the CRL verified before
 * stays in use. `load()` says whether the CRL in use changed.
 */
function crlFile(file: string | undefined, ca: Buffer, log: (msg: string, extra: Record<string, unknown>) => void): { load(): boolean; pem(): Buffer | undefined } {
  let stamp = '';
  let crl: Buffer | undefined;
  return {
    load() {
      if (!file) return false;
      let now: string;
      try {
        const st = fs.statSync(file);
        now = `${st.mtimeMs}:${st.size}:${st.ino}`;
      } catch {
        now = 'absent';
      }
      if (now === stamp) return false;
      stamp = now;
      if (now === 'absent') {
        const had = crl !== undefined;
        crl = undefined;
        return had;
      }
      const pem = read(file, 'CRL');
      const c = checkCrl(pem, ca);
      if (!c.ok) {
        log(`TLS: the CRL is refused: ${c.reason}; ${crl ? 'the one verified before stays' : 'none is checked'}`, { crl: file });
        return false;
      }
      crl = Buffer.from(c.pem);
      return true;
    },
    pem: () => crl,
  };
}

/** The files of a TLS folder as `dhtfs cert issue` writes it: ca.pem, cert.pem, key.pem (and crl.pem). */
export function tlsFilesIn(dir: string): TlsFiles {
  const f: TlsFiles = { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  if (fs.existsSync(path.join(dir, 'crl.pem'))) f.crl = path.join(dir, 'crl.pem');
  return f;
}

/**
 * Where a client's certificate is by default: $DHTFS_HOME/tls/client (ca.pem, cert.pem, key.pem, as
 * `dhtfs cert issue client NAME -o DIR` writes them), else the CLI's own on the host of the cluster's CA.
 */
export function defaultClientTlsDir(): string {
  const home = process.env.DHTFS_HOME ?? path.join(os.homedir(), '.dhtfs');
  const mine = path.join(home, 'tls', 'client');
  const cli = path.join(home, 'tls', 'clients', 'cli');
  return !fs.existsSync(path.join(mine, 'cert.pem')) && fs.existsSync(path.join(cli, 'cert.pem')) ? cli : mine;
}

/** A client's files in `dir`, or null (with the first one missing) when one of ca.pem, cert.pem, key.pem is not there. */
export function clientTlsFiles(dir: string): { files: TlsFiles } | { missing: string } {
  const files: TlsFiles = { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  for (const f of [files.ca, files.cert, files.key]) if (!fs.existsSync(f)) return { missing: f };
  return { files };
}

export interface TlsNetworkOptions {
  files: TlsFiles;
  /** Brick side: refused handshakes are logged here (one line each, naming the peer and the reason). */
  log?: (msg: string, extra: Record<string, unknown>) => void;
  /**
   * Brick side: a refused client (the default: one `log` line each). The brick passes its rate-limited
   * log, so that a peer cannot fill the log with refused handshakes.
   */
  refused?: (remote: string, reason: string, extra: Record<string, unknown>) => void;
  /** Brick side: a client that has not completed its TLS handshake within this is cut (default 10 s). */
  handshakeMs?: number;
  /**
   * Brick side: sockets open at once, TLS handshakes in progress included (the brick's connection gate
   * sees a connection only once its handshake is done); more are closed as they come.
   */
  maxSockets?: number;
  /** Client side: check the brick's certificate names its host (default true). */
  checkHost?: boolean;
  /** Whose CA it is, in refusal reasons (default "this volume's CA"; the management path: "the cluster's CA"). */
  caName?: string;
}

/** A PEM file of the TLS material, read (an error names what and where). */
export function read(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new Error(`TLS ${what} ${file}: ${(e as Error).message}`);
  }
}

/** Why OpenSSL refused a peer, in words a log reader knows. */
function reasonOf(code: string | undefined, message: string, caName = "this volume's CA"): string {
  switch (code) {
    case 'CERT_REVOKED':
      return "certificate revoked (in the CA's CRL)";
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'CERT_SIGNATURE_FAILURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return `certificate not signed by ${caName} (${code})`;
    case 'CERT_HAS_EXPIRED':
      return 'certificate expired';
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_HTTP_REQUEST':
    case 'ERR_SSL_PACKET_LENGTH_TOO_LONG':
      return 'not a TLS client (plaintext?)';
    case 'ERR_SSL_UNSUPPORTED_PROTOCOL':
    case 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION':
      return 'TLS version below 1.3';
    case 'ECONNRESET':
      return 'connection reset during the TLS handshake';
    default:
      return code ? `${code}: ${message}` : message;
  }
}

export function tlsNetwork(o: TlsNetworkOptions): Network {
  const ca = read(o.files.ca, 'CA');
  const cert = read(o.files.cert, 'certificate');
  const key = read(o.files.key, 'key');
  const log = o.log ?? (() => {});
  const refuse = o.refused ?? ((remote: string, reason: string, extra: Record<string, unknown>) => log('TLS client refused', { remote, reason, ...extra }));
  // The client side's CRL: the server's certificate is checked against it too (read again when it changes),
  // when it is the CA's, its signature verified (one of another CA, or a forged one, would make OpenSSL
  // refuse every server).
  const clientCrl = crlFile(o.files.crl, ca, log);
  return {
    connect(host, port) {
      return new Promise((resolve, reject) => {
        let crl: Buffer | undefined;
        try {
          clientCrl.load();
          crl = clientCrl.pem();
        } catch (e) {
          return reject(Object.assign(new Error(`TLS connect ${host}:${port}: ${(e as Error).message}`), { code: 'ENOTCONN' }));
        }
        const s = tls.connect({
          host,
          port,
          ca,
          cert,
          key,
          ...(crl ? { crl } : {}),
          minVersion: 'TLSv1.3',
          ...(net.isIP(host) ? {} : { servername: host }),
          ...(o.checkHost === false ? { checkServerIdentity: () => undefined } : {}),
        });
        const onErr = (e: Error & { code?: string }) => {
          const revoked = e.code === 'CERT_REVOKED';
          const reason = revoked ? "the server's certificate is revoked (in the CA's CRL): a node detached from the pool, or its brick" : reasonOf(e.code, e.message);
          if (revoked) log('TLS server refused', { remote: `${host}:${port}`, reason });
          reject(Object.assign(new Error(`TLS connect ${host}:${port}: ${reason}`), { code: 'ENOTCONN' }));
        };
        s.once('error', onErr);
        s.once('secureConnect', () => {
          s.off('error', onErr);
          resolve(wrap(s));
        });
      });
    },
    listen(host, port, onConn) {
      const crlFromFile = crlFile(o.files.crl, ca, log);
      const loadCrl = () => crlFromFile.load();
      loadCrl();
      const context = () => {
        const crl = crlFromFile.pem();
        return { ca, cert, key, minVersion: 'TLSv1.3' as const, ...(crl ? { crl } : {}) };
      };
      return new Promise((resolve, reject) => {
        const srv = tls.createServer({ ...context(), requestCert: true, rejectUnauthorized: false, handshakeTimeout: o.handshakeMs ?? 10_000 });
        // Before tls makes the connection's socket with the server's context: a changed CRL is in it.
        srv.prependListener('connection', () => {
          try {
            if (loadCrl()) {
              srv.setSecureContext(context());
              log('TLS: CRL reloaded', { crl: o.files.crl });
            }
          } catch (e) {
            log('TLS: CRL not reloaded, the previous one stays', { crl: o.files.crl, error: (e as Error).message });
          }
        });
        srv.on('tlsClientError', (e: Error & { code?: string }, s: tls.TLSSocket) => {
          const timeout = /timeout/i.test(e.message);
          refuse(`${s.remoteAddress}:${s.remotePort}`, timeout ? 'no TLS handshake in time (a plaintext client?)' : reasonOf(e.code, e.message, o.caName), {});
          // tls leaves a socket whose handshake timed out open (Node 20): a silent client would keep it.
          s.destroy();
        });
        srv.on('secureConnection', (s: tls.TLSSocket) => {
          const remote = `${s.remoteAddress}:${s.remotePort}`;
          const peer = s.getPeerCertificate();
          if (!peer || Object.keys(peer).length === 0) {
            refuse(remote, 'no client certificate', {});
            s.destroy();
            return;
          }
          if (!s.authorized) {
            const err = s.authorizationError as unknown as Error & { code?: string };
            refuse(remote, reasonOf(err?.code ?? String(err), err?.message ?? String(err), o.caName), { subject: peer.subject?.CN });
            s.destroy();
            return;
          }
          onConn(Object.assign(wrap(s), { peerName: peer.subject?.CN, peerUnit: peer.subject?.OU }));
        });
        if (o.maxSockets) srv.maxConnections = o.maxSockets;
        srv.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) => refuse(`${d?.remoteAddress}:${d?.remotePort}`, `too many sockets (limit ${o.maxSockets})`, {}));
        srv.once('error', reject);
        srv.listen({ host, port }, () => {
          const addr = srv.address() as net.AddressInfo;
          const l: Listener = { port: addr.port, close: () => new Promise((r) => srv.close(() => r())) };
          resolve(l);
        });
      });
    },
  };
}

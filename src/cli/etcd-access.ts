/**
 * How the CLI and the node daemon reach etcd (issue 19, docs/SECURITY.md "etcd"): https endpoints with a
 * client certificate (etcd runs with --client-cert-auth; the store holds the volumes' secrets), from a
 * folder of ca.pem, cert.pem and key.pem (`--etcd-tls DIR`, by default $DHTFS_HOME/tls/etcd-client).
 * On the host holding the etcd CA ($DHTFS_HOME/tls/etcd-ca, made by `cert issue etcd-server`) a missing
 * client certificate is issued there and then. Plaintext endpoints are for one host (loopback); on
 * another address they are refused unless the operator says --insecure-etcd, and then warned about.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { EtcdTls } from '../cluster/etcd-store.js';
import { etcdCaHome, issue, tlsHome } from './cert.js';

/** Where this host keeps etcd's client credentials unless told otherwise. */
export function defaultEtcdTlsDir(): string {
  return path.join(tlsHome(), 'etcd-client');
}

export function parseEndpoints(urls: string): string[] {
  const eps = urls
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  if (eps.length === 0) throw new Error('--etcd: no endpoint given');
  for (const e of eps) if (!/^https?:\/\/[^/]+\/?$/.test(e)) throw new Error(`--etcd ${e}: an endpoint is https://HOST:PORT (or http:// on one host)`);
  return eps;
}

/** Whether an endpoint is on this host: localhost, ::1, or an IPv4 address in 127/8 (not a name that begins with 127.). */
function loopback(endpoint: string): boolean {
  const host = new URL(endpoint).hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));
}

/** The files of an etcd client folder, read; an error that says what is missing and how to get it. */
function readTls(dir: string, endpoints: string[]): EtcdTls {
  const files = { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  const missing = Object.values(files).filter((f) => !fs.existsSync(f));
  if (missing.length)
    throw new Error(
      `etcd ${endpoints.join(',')} is on TLS and this host has no etcd client certificate (${missing.join(', ')} missing): ` +
        `on the host holding the etcd CA run "dhtfs cert issue etcd-client NAME -o DIR", copy DIR here and give --etcd-tls DIR (or put it at ${defaultEtcdTlsDir()})`,
    );
  return { ca: fs.readFileSync(files.ca), cert: fs.readFileSync(files.cert), key: fs.readFileSync(files.key) };
}

/**
 * Whether `endpoints` are on TLS (all https) or plaintext (all http); plaintext on another host than this
 * one is refused unless `insecure`, and then `warn` gets a loud line about it.
 */
export function etcdTransport(endpoints: string[], insecure: boolean, warn?: (line: string) => void): 'tls' | 'plain' {
  const tls = endpoints.filter((e) => e.startsWith('https://'));
  if (tls.length && tls.length < endpoints.length) throw new Error(`--etcd ${endpoints.join(',')}: every endpoint https://, or none`);
  if (tls.length) return 'tls';
  const remote = endpoints.filter((e) => !loopback(e));
  if (remote.length && !insecure)
    throw new Error(`etcd ${remote.join(',')} is plaintext on the network: etcd holds the volumes' secrets, so it runs on TLS with client certificates (https://, docs/SECURITY.md "etcd"); --insecure-etcd to use it all the same`);
  if (remote.length) warn?.(`WARNING: etcd ${remote.join(',')} is reached in plaintext (--insecure-etcd): the volumes' secrets and the cluster's state cross the network in clear, and anyone who reaches etcd can read and change them`);
  return 'plain';
}

/**
 * The credentials for `endpoints`: undefined for plaintext ones (after the checks above), else the
 * client certificate of `tlsDir` (issued there first when this host holds the etcd CA and it has none).
 */
export function etcdCredentials(endpoints: string[], o: { tlsDir?: string; insecure?: boolean; warn?: (line: string) => void; note?: (line: string) => void }): EtcdTls | undefined {
  if (etcdTransport(endpoints, !!o.insecure, o.warn) === 'plain') return undefined;
  const dir = path.resolve(o.tlsDir ?? defaultEtcdTlsDir());
  if (!fs.existsSync(path.join(dir, 'cert.pem')) && fs.existsSync(path.join(etcdCaHome(), 'ca.pem'))) {
    const name =
      os
        .hostname()
        .replace(/[^A-Za-z0-9_.@-]/g, '-')
        .slice(0, 64) || 'cli';
    issue('etcd-client', name, dir, [], false, etcdCaHome());
    o.note?.(`etcd client certificate ${name} issued into ${dir} (this host holds the etcd CA)`);
  }
  return readTls(dir, endpoints);
}

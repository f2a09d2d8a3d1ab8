/** Processes of this host, as the node daemon and the local store see them. */

/** Whether process `pid` exists (one of another user's, which we may not signal, counts). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Waits until a queue of background engine work reports it is empty (calls every function in
 * `idle`), or `timeoutMs` passes: true when emptied, false at the timeout. Removals and the
 * background queue both settle this way at a build's or the server's end.
 */
export async function untilIdle(idle: Set<() => void>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  let done!: () => void;
  const emptied = new Promise<boolean>((resolve) => (done = () => resolve(true)));
  idle.add(done);
  const result = await Promise.race([emptied, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))]);
  clearTimeout(timer);
  idle.delete(done);
  return result;
}

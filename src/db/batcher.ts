/**
 * Collects the calls made in one turn of the event loop and hands them over together, so that a burst of
 * writes costs one round trip and one commit instead of one each. Every caller's promise settles after
 * its own item is stored (or has failed): when the batch fails as a whole, the items are tried one by
 * one, in order, so a bad item fails only its own caller.
 */
export function createBatcher<T>(handlers: {
  all(items: T[]): Promise<void>;
  one(item: T): Promise<void>;
  /** Whether, after the batch failed with `error`, the items are worth trying alone (default: yes). */
  retryAlone?(error: unknown): boolean;
}): (item: T) => Promise<void> {
  let queue: Array<{ item: T; resolve(): void; reject(error: unknown): void }> = [];

  async function flush(): Promise<void> {
    const batch = queue;
    queue = [];
    if (batch.length > 1) {
      try {
        await handlers.all(batch.map((b) => b.item));
        for (const b of batch) b.resolve();
        return;
      } catch (error) {
        if (handlers.retryAlone && !handlers.retryAlone(error)) {
          for (const b of batch) b.reject(error);
          return;
        }
        // Fall through: one by one.
      }
    }
    for (const b of batch) {
      try {
        await handlers.one(b.item);
        b.resolve();
      } catch (error) {
        b.reject(error);
      }
    }
  }

  return (item) => new Promise<void>((resolve, reject) => {
    queue.push({ item, resolve, reject });
    // setImmediate runs after this turn's I/O callbacks: every request that arrived with this one adds its
    // item first.
    if (queue.length === 1) setImmediate(() => { void flush(); });
  });
}

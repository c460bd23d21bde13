/**
 * bcrypt off the event loop: bcryptjs is pure JavaScript and takes ~200 ms per hash at cost 12, which
 * would stall every other request. A pool of worker threads, one per core, does the hashing; the main
 * thread keeps serving discovery, tokens and pages.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';

const bcryptPath = createRequire(import.meta.url).resolve('bcryptjs');
/** How much nicer than the process the workers run (nice values go from 0, normal, to 19, lowest). */
export const WORKER_NICE = 10;

// Plain CommonJS so it runs the same from sources, from dist/ and under jest.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const bcrypt = require(${JSON.stringify(bcryptPath)});
// Below the event loop's priority: on Linux each thread has its own nice value, and a thread may lower its
// own (setpriority(2) with the thread id). When sign-ins keep every core hashing, the request thread still
// gets the CPU first, so other requests are not queued behind bcrypt. Elsewhere: equal priority.
try {
  const os = require('node:os');
  const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  os.setPriority(tid, Math.min(19, os.getPriority(tid) + ${WORKER_NICE}));
} catch {}
parentPort.on('message', async ({ id, op, args }) => {
  try {
    const result = op === 'hash' ? await bcrypt.hash(args[0], args[1]) : await bcrypt.compare(args[0], args[1]);
    parentPort.postMessage({ id, result });
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});
`;

interface Task { id: number; op: 'hash' | 'compare'; args: [string, string | number]; resolve(v: unknown): void; reject(e: Error): void }

export interface Bcrypt {
  hash(password: string, cost: number): Promise<string>;
  compare(password: string, hash: string): Promise<boolean>;
}

class BcryptPool implements Bcrypt {
  private readonly idle: Worker[] = [];
  private readonly queue: Task[] = [];
  private readonly running = new Map<Worker, Task>();
  private nextId = 1;

  constructor(size: number) {
    for (let i = 0; i < size; i += 1) this.idle.push(this.spawn());
  }

  private spawn(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (msg: { id: number; result?: unknown; error?: string }) => {
      const task = this.running.get(worker);
      this.running.delete(worker);
      if (task) {
        if (msg.error !== undefined) task.reject(new Error(msg.error));
        else task.resolve(msg.result);
      }
      this.idle.push(worker);
      this.drain();
    });
    worker.on('error', (err) => {
      const task = this.running.get(worker);
      this.running.delete(worker);
      task?.reject(err);
      this.idle.push(this.spawn());
      this.drain();
    });
    // After the listeners: adding a 'message' listener refs the worker's port again.
    worker.unref();
    return worker;
  }

  private drain(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const task = this.queue.shift()!;
      this.running.set(worker, task);
      worker.postMessage({ id: task.id, op: task.op, args: task.args });
    }
  }

  private run<T>(op: Task['op'], args: Task['args']): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, op, args, resolve: resolve as (v: unknown) => void, reject });
      this.drain();
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.idle, ...this.running.keys()].map((w) => w.terminate()));
  }

  hash(password: string, cost: number) { return this.run<string>('hash', [password, cost]); }

  compare(password: string, hash: string) { return this.run<boolean>('compare', [password, hash]); }
}

let shared: BcryptPool | undefined;

/** The process-wide pool (workers are unref'd: they never keep the process alive). */
export function bcryptPool(): Bcrypt {
  shared ??= new BcryptPool(Math.max(1, availableParallelism()));
  return shared;
}

/** Stops the workers (for short-lived processes such as the CLI). */
export async function closeBcryptPool(): Promise<void> {
  const pool = shared;
  shared = undefined;
  await pool?.close();
}

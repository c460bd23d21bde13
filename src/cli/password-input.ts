/** Reads a password from standard input (--password-stdin) or from the terminal without echo. */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { AppError } from '../errors.js';

export async function readPasswordFromStdin(stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.from(chunk as Buffer));
  // One trailing newline is the end of the line, not part of the password.
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** The operator ended a prompt (Ctrl-C, or Ctrl-D on an empty line): nothing was done. */
export class Cancelled extends Error {
  constructor() {
    super('cancelled');
  }
}

function promptHidden(question: string): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk, _encoding, done) {
      if (!muted) process.stderr.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  return new Promise((resolve, reject) => {
    let answered = false;
    // The terminal is raw while readline reads it, so Ctrl-C reaches readline, not the process; with no
    // listener readline only pauses and the command hangs. Ctrl-C, and Ctrl-D on an empty line (which
    // closes readline), abort the command.
    rl.on('SIGINT', () => rl.close());
    rl.on('close', () => {
      if (answered) return;
      process.stderr.write('\n');
      reject(new Cancelled());
    });
    rl.question(question, (answer) => {
      answered = true;
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
    muted = true;
  });
}

export async function promptNewPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    throw new AppError('no_terminal', 'no terminal to ask for the password on; pipe it in with --password-stdin');
  }
  const first = await promptHidden('Password: ');
  const second = await promptHidden('Repeat the password: ');
  if (first !== second) throw new AppError('password_mismatch', 'the two passwords differ');
  return first;
}

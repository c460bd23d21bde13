import type { Knex } from 'knex';
import { statements } from '../db/fast.js';
import { CONSUME_CHALLENGE } from './challenges.js';

export interface PasskeyRow {
  id: string;
  user_id: string;
  public_key: string;
  counter: number;
  transports: string[];
  aaguid: string;
  backup_eligible: boolean;
  backed_up: boolean;
  user_verified: boolean;
  name: string;
  created_at: number;
  last_used_at: number | null;
}

const toPasskey = (r: Record<string, unknown>): PasskeyRow => ({
  id: String(r.id),
  user_id: String(r.user_id),
  public_key: String(r.public_key),
  counter: Number(r.counter),
  transports: JSON.parse(String(r.transports ?? '[]')) as string[],
  aaguid: String(r.aaguid),
  backup_eligible: !!r.backup_eligible,
  backed_up: !!r.backed_up,
  user_verified: !!r.user_verified,
  name: String(r.name),
  created_at: Number(r.created_at),
  last_used_at: r.last_used_at == null ? null : Number(r.last_used_at),
});

// The statements of a passkey sign-in (options, then verification), written out for the fast paths
// (src/db/fast.ts); the rest goes through knex.
const SQL = {
  findById: 'select * from webauthn_credentials where id = ?',
  listForUser: 'select * from webauthn_credentials where user_id = ? order by created_at',
  // A use moves the counter forward only, or keeps an always-zero counter at zero. Booleans as 1/0:
  // better-sqlite3 binds no booleans, and PostgreSQL reads '1'/'0' as a boolean. The parameter compared
  // with 1 says whether the new counter is 0: compared with a literal, PostgreSQL would type the counter
  // integer, and a counter is up to 2^32 - 1 (WebAuthn §6.1: 32 bits, unsigned).
  // PostgreSQL: the challenge consumed and the counter moved in one statement, the update only if this
  // statement's delete removed the challenge (a data-modifying WITH, which SQLite does not have). Of
  // parallel requests carrying one challenge, the others wait for the first's row lock, find the row
  // gone, and leave the counter alone.
  useConsumingChallenge: `with c as (delete from webauthn_challenges where id = ? and purpose = 'authentication' and challenge = ? returning id),
    u as (update webauthn_credentials set counter = ?, backed_up = ?, last_used_at = ?
      where id = ? and (counter < ? or (? = 1 and counter = 0)) and exists (select 1 from c) returning id)
    select (select count(*) from c) as consumed, (select count(*) from u) as counted`,
  // SQLite: the counter moved only while the challenge is there; then the challenge is consumed as
  // ChallengeQueries.consume does it (see useConsumingChallenge for why the two are enough).
  recordUseWithChallenge: `update webauthn_credentials set counter = ?, backed_up = ?, last_used_at = ?
    where id = ? and (counter < ? or (? = 1 and counter = 0))
    and exists (select 1 from webauthn_challenges where id = ? and purpose = 'authentication' and challenge = ?) returning id`,
};

export function createPasskeyQueries(db: Knex | Knex.Transaction) {
  const table = () => db('webauthn_credentials');
  const run = statements(db);
  return {
    async insert(row: PasskeyRow): Promise<void> {
      await table().insert({ ...row, transports: JSON.stringify(row.transports) });
    },
    /** Inserts the passkey unless its credential id is stored already (any user's); false then. */
    async insertNew(row: PasskeyRow): Promise<boolean> {
      const inserted = await table().insert({ ...row, transports: JSON.stringify(row.transports) }).onConflict('id').ignore().returning('id');
      return inserted.length === 1;
    },
    async findById(id: string): Promise<PasskeyRow | undefined> {
      const row = await run.get<Record<string, unknown>>(SQL.findById, [id]);
      return row ? toPasskey(row) : undefined;
    },
    async listForUser(userId: string): Promise<PasskeyRow[]> {
      return (await run.all<Record<string, unknown>>(SQL.listForUser, [userId])).map(toPasskey);
    },
    async countForUser(userId: string): Promise<number> {
      const row = await table().where({ user_id: userId }).count<{ n: number | string }[]>({ n: '*' }).first();
      return Number(row?.n ?? 0);
    },
    /**
     * A verified assertion: consumes its challenge (`binding`, `challenge`) and records the use, in one
     * commit: the new signature counter is stored only if it moved forward (WebAuthn §7.2 step 22), in the
     * statement that checks it, and authenticators that always report 0 (many synced passkeys) keep 0;
     * and only if this call consumed the challenge: of parallel requests with one challenge, exactly one
     * moves the counter. On SQLite, two statements sent together: the use if the challenge is there, then
     * its delete. The one writer connection runs them in the order they were sent, one pair after another
     * (nothing is sent between two calls made in one go, also while the connection is being reopened:
     * sqlite-direct.ts), in one commit.
     */
    async useConsumingChallenge(binding: string, challenge: string, id: string, newCounter: number, backedUp: boolean, at: number):
    Promise<{ consumed: boolean; counted: boolean }> {
      const use = [newCounter, backedUp ? 1 : 0, at, id, newCounter, newCounter === 0 ? 1 : 0];
      if (db.client.config.client === 'pg') {
        const row = await run.get<{ consumed: string | number; counted: string | number }>(SQL.useConsumingChallenge, [binding, challenge, ...use]);
        return { consumed: Number(row?.consumed) === 1, counted: Number(row?.counted) === 1 };
      }
      const [counted, consumed] = await Promise.all([
        run.get(SQL.recordUseWithChallenge, [...use, binding, challenge]),
        run.get(CONSUME_CHALLENGE, [binding, 'authentication', challenge]),
      ]);
      return { consumed: consumed !== undefined, counted: consumed !== undefined && counted !== undefined };
    },
    async rename(userId: string, id: string, name: string): Promise<boolean> {
      return (await table().where({ id, user_id: userId }).update({ name })) === 1;
    },
  };
}

export type PasskeyQueries = ReturnType<typeof createPasskeyQueries>;

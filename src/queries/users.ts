import type { Knex } from 'knex';
import { statements } from '../db/fast.js';

export interface UserRow {
  id: string;
  username: string;
  email: string;
  name: string | null;
  email_verified: boolean;
  password_hash: string | null;
  disabled: boolean;
  created_at: number;
  updated_at: number;
}

type Raw = Record<string, unknown>;

/** A user without the password hash: what the provider needs (claims, disabled). */
export type UserProfile = Omit<UserRow, 'password_hash'>;
/** The columns of a UserProfile: the one list of them, for this module's reads and for joins elsewhere. */
export const PROFILE_COLUMNS = ['id', 'username', 'email', 'name', 'email_verified', 'disabled', 'created_at', 'updated_at'] as const;
const USER_COLUMNS = [...PROFILE_COLUMNS, 'password_hash'].join(', ');

/** Booleans read back as 0/1 on SQLite and bigints as strings on PostgreSQL: normalise here, once. */
export function toProfile(row: Raw): UserProfile {
  return {
    id: String(row.id),
    username: String(row.username),
    email: String(row.email),
    name: (row.name as string | null) ?? null,
    email_verified: !!row.email_verified,
    disabled: !!row.disabled,
    created_at: Number(row.created_at),
    updated_at: Number(row.updated_at),
  };
}

function toUser(row: Raw | undefined): UserRow | undefined {
  return row ? { ...toProfile(row), password_hash: (row.password_hash as string | null) ?? null } : undefined;
}

// Read on every token request (claims) and sign-in, so they skip the query builder (src/db/fast.ts).
const BY_ID = `select ${USER_COLUMNS} from users where id = ? limit 1`;
const BY_LOGIN = `select ${USER_COLUMNS} from users where username = ? or email = ? limit 1`;

/**
 * Inside a transaction: makes the user's other transactions that also lock it wait for this one, so that
 * a check and the change it allows (the factors left after a removal, whether recovery codes exist yet)
 * are one step. PostgreSQL locks the row (READ COMMITTED would let two such transactions each miss the
 * other's change); SQLite runs one transaction at a time on its single connection, so needs nothing.
 */
export async function lockUser(trx: Knex.Transaction, userId: string): Promise<void> {
  if (trx.client.config.client === 'pg') await trx.raw('select id from users where id = ? for update', [userId]);
}

export function createUserQueries(db: Knex | Knex.Transaction) {
  const users = () => db('users');
  const run = statements(db);
  return {
    /** False when the username or e-mail address is taken (a unique violation); other errors throw. */
    async insert(user: UserRow): Promise<boolean> {
      try {
        await users().insert(user);
        return true;
      } catch (err) {
        const code = (err as { code?: string }).code;
        // PostgreSQL's unique_violation; better-sqlite3's extended result code.
        if (code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE') return false;
        throw err;
      }
    },
    async findById(id: string): Promise<UserRow | undefined> {
      return toUser(await run.get<Raw>(BY_ID, [id]));
    },
    async findByUsername(username: string): Promise<UserRow | undefined> {
      return toUser(await users().where({ username }).first());
    },
    /** Username or e-mail address, both stored lower-case. */
    async findByLogin(login: string): Promise<UserRow | undefined> {
      return toUser(await run.get<Raw>(BY_LOGIN, [login, login]));
    },
    async existing(username: string, email: string): Promise<{ username: boolean; email: boolean }> {
      const rows: Raw[] = await users().select('username', 'email').where({ username }).orWhere({ email });
      return {
        username: rows.some((r) => r.username === username),
        email: rows.some((r) => r.email === email),
      };
    },
    /** Whether there is any user at all (the start banner's first-user hint). */
    async any(): Promise<boolean> {
      return (await users().first('id')) !== undefined;
    },
    async list(): Promise<UserRow[]> {
      const rows: Raw[] = await users().select('*').orderBy('username');
      return rows.map((r) => toUser(r)!);
    },
    async update(id: string, changes: Partial<Omit<UserRow, 'id' | 'created_at'>>): Promise<boolean> {
      return (await users().where({ id }).update(changes)) > 0;
    },
    /** Sets a new password hash only if the stored one is still `previous`. */
    async replacePasswordHash(id: string, previous: string, next: string, at: number): Promise<boolean> {
      return (await users().where({ id, password_hash: previous }).update({ password_hash: next, updated_at: at })) > 0;
    },
    async delete(id: string): Promise<boolean> {
      return (await users().where({ id }).delete()) > 0;
    },
  };
}

export type UserQueries = ReturnType<typeof createUserQueries>;

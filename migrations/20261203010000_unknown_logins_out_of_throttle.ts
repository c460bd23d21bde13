import type { Knex } from 'knex';

// Since this version a login no user has is counted by the throttle under its keyed hash
// (src/auth/users.ts findLoginUser), as what people type into the login field is sometimes their
// password. Earlier versions counted it under the login in clear (`acct:login:<login>:pwd`): those rows
// go now rather than when they expire. A user's login (their username or e-mail address, stored as the
// throttle normalised it) keeps its count. The login is cut out of the key, so each row is matched through
// the users table's unique indexes.
export async function up(db: Knex): Promise<void> {
  await db.raw(`delete from throttle where key like 'acct:login:%:pwd' and not exists (
    select 1 from users u where u.username = substr(throttle.key, 12, length(throttle.key) - 15)
      or u.email = substr(throttle.key, 12, length(throttle.key) - 15))`);
}

// Nothing to undo: the earlier versions count such logins from zero again.
export async function down(): Promise<void> {}

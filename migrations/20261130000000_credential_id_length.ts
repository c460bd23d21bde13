import type { Knex } from 'knex';

// A credential id may be 1023 bytes (WebAuthn L3 §7.1, registering a new credential), 1364 characters in
// base64url; the column held 1024, and PostgreSQL refused longer ids with a server error (SQLite does not
// enforce the length). Widening a varchar is a catalog change on PostgreSQL, without a table rewrite, and
// instances still running the previous version keep working.
export async function up(db: Knex): Promise<void> {
  if (db.client.config.client === 'pg') await db.raw('alter table webauthn_credentials alter column id type varchar(1400)');
}

export async function down(db: Knex): Promise<void> {
  if (db.client.config.client === 'pg') await db.raw('alter table webauthn_credentials alter column id type varchar(1024)');
}
